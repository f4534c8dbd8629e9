"""Which of the caller's headers a provider never sees: those that choose the provider
account's organization, project, workspace, quota or credential, and those that describe
the caller's network.

The gateway calls a provider with its own credential, for its operators' account. A
header that picks which part of that account pays, stores or signs (`openai-organization`,
Anthropic's account headers, Google's `x-goog-user-project`, AWS's `x-amz-*`: each
dialect's table, `Dialect.account_headers`, in extproc/dialects/) is the operators'
choice, not the caller's: it is removed, on the way to every provider whatever its
dialect, unless the provider's config passes it (`pass_headers`). `anthropic-version`
and `anthropic-beta` tune the API itself and pass (route.py drops them for a provider of
another dialect).

The caller's address (`x-forwarded-for`, `forwarded`, `x-real-ip`, `x-forwarded-host`)
is the operators' data: the provider sees the gateway as its client. A provider config
may pass them too. (`x-envoy-original-path`, which would name a path the provider never
saw, Envoy's provider routes remove themselves: ext_proc may not touch `x-envoy-*`.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from operator import methodcaller

from ..config.providers import Provider
from ..dialects import ACCOUNT_HEADER_PREFIXES, ACCOUNT_HEADERS, API_HEADERS

# What says where the caller is.
_NETWORK = frozenset({"x-forwarded-for", "forwarded", "x-real-ip", "x-forwarded-host"})
_EXACT = ACCOUNT_HEADERS | _NETWORK
_ACCOUNT_PREFIXED = methodcaller("startswith", ACCOUNT_HEADER_PREFIXES)


def is_withheld(name: str) -> bool:
    """Whether a header of the caller's is withheld from providers (unless passed)."""
    return name in _EXACT or (name.startswith(ACCOUNT_HEADER_PREFIXES) and name not in API_HEADERS)


def withheld_headers(headers: Mapping[str, str] | Iterable[str], provider: Provider) -> list[str]:
    """The caller's headers not to forward to `provider` (names in lower case, as Envoy
    hands them over), in their order. The provider's own credential header (Gemini's
    x-goog-api-key) is set by the gateway, never removed here.

    Those `is_withheld` names, found in C: a client's SDK sends ~20 headers, few or none
    of them withheld, where a Python call per header cost ~1% of a short call."""
    names = headers if type(headers) is dict or isinstance(headers, Mapping) else list(headers)
    found = set(_EXACT.intersection(names))
    found.update(name for name in filter(_ACCOUNT_PREFIXED, names) if name not in API_HEADERS)
    if not found:
        return []
    found.difference_update(provider.pass_headers)
    found.discard(provider.auth_header)
    return [name for name in names if name in found]
