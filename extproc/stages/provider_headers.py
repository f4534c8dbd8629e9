"""Which of the caller's headers a provider never sees: those that choose the provider
account's organization, project or workspace, and those that describe the caller's
network.

The gateway calls a provider with its own credential, for its operators' account. A
header that picks which part of that account pays or stores (`openai-organization`,
`openai-project`, Anthropic's account headers) is the operators' choice, not the
caller's: it is removed unless the provider's config passes it (`pass_headers`).
`anthropic-version` and `anthropic-beta` tune the API itself and pass (route.py drops
them for an OpenAI-dialect provider).

The caller's address (`x-forwarded-for`, `forwarded`, `x-real-ip`, `x-forwarded-host`)
is the operators' data: the provider sees the gateway as its client. A provider config
may pass them too. (`x-envoy-original-path`, which would name a path the provider never
saw, Envoy's provider routes remove themselves: ext_proc may not touch `x-envoy-*`.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..config.providers import Provider

# Account headers of OpenAI's API (also what Azure's OpenAI-compatible endpoints accept).
_ACCOUNT = frozenset({"openai-organization", "openai-project"})
# Anthropic's API headers that pass: the rest of `anthropic-*` is the account's.
_ANTHROPIC_API = frozenset({"anthropic-version", "anthropic-beta"})
# What says where the caller is.
_NETWORK = frozenset({"x-forwarded-for", "forwarded", "x-real-ip", "x-forwarded-host"})


def is_withheld(name: str) -> bool:
    """Whether a header of the caller's is withheld from providers (unless passed)."""
    return name in _ACCOUNT or name in _NETWORK or (
        name.startswith("anthropic-") and name not in _ANTHROPIC_API)


def withheld_headers(headers: Mapping[str, str] | Iterable[str], provider: Provider) -> list[str]:
    """The caller's headers not to forward to `provider` (names in lower case, as Envoy
    hands them over)."""
    passed = provider.pass_headers
    return [name for name in headers if is_withheld(name) and name not in passed]
