"""The config page's text: the running config file as YAML, every secret masked. Imports
nothing of the gateway's but its config's type.

Secrets are found three ways: by the name of the field that holds them (`api_key`,
`token`, a credential's `value`...), by their shape (`sk-...`, `Bearer ...`), and inside
URLs wherever they are written: a URL's userinfo (`redis://:password@host`, an OTLP
endpoint's `user:token@host:4317`, with or without a scheme) and the values of query
parameters whose names say credential (`?sig=`, `&access_token=`, `X-Amz-Signature=`)."""

from __future__ import annotations

import re

import yaml

from ..config.filter_config import GatewayConfig
from ..yamltree import safe_load

MASK = "***"
# Names whose values the config page never shows: credentials' `value`, keys, tokens, secrets.
SECRET_NAMES = frozenset({"value", "key", "token", "secret", "password", "api_key", "private_key",
                          "secret_access_key", "access_key_id", "client_secret", "session_secret",
                          "authorization"})
# A query parameter whose name holds any of these is a credential (`sig`, `signature`,
# `access_token`, `api_key`, `apikey`, `x-amz-credential`, `client_secret`, `pwd`...):
# masking a harmless one costs nothing, showing a real one is a leak.
_CREDENTIAL_PARTS = ("key", "token", "secret", "passw", "pwd", "pass", "sig", "auth", "credential",
                     "session", "jwt", "bearer", "cookie", "code")
# A URL's userinfo, with a scheme: everything between `scheme://` and the LAST `@` of the
# run (a password may hold an unescaped `/` or `@`; masking too much is safe).
_SCHEME_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)[^\s\"'<>]*@")
# Without a scheme (`user:token@host:4317`, as an OTLP endpoint may be written): a run
# holding a `:` before its last `@` at the start of a word.
_BARE_USERINFO = re.compile(r"(?<![^\s\"'<>,;=(])[^\s\"'<>,;=(/:@]+:(?!//)[^\s\"'<>,;]*@")
# A query (or fragment) parameter: `?name=value`, `&name=value`, `;name=value`, `#name=value`.
_PARAMETER = re.compile(r"([?&;#])([^=&#\s\"'<>?]+)=([^&#\s\"'<>]*)")


def masked_config(config: GatewayConfig) -> str:
    """The running config file as YAML, every secret-looking value replaced by ***."""
    try:
        with open(config.path, encoding="utf-8") as handle:
            tree = safe_load(handle)
    except (OSError, yaml.YAMLError) as error:
        return f"# the config file cannot be read now: {type(error).__name__}"
    return yaml.safe_dump(_mask(tree), sort_keys=False, allow_unicode=True)


def _mask(node, name: str = ""):
    if isinstance(node, dict):
        # A key may itself be a URL (a map from endpoint to settings): masked as text is.
        return {(masked_text(k) if isinstance(k, str) else k): _mask(v, str(k).lower())
                for k, v in node.items()}
    if isinstance(node, list):
        return [_mask(item, name) for item in node]
    if name in SECRET_NAMES or name.endswith(("secret", "password", "_token", "_key", "-token", "-key")):
        return MASK if node is not None else node
    if isinstance(node, str):
        if node.startswith(("sk-", "Bearer ", "Basic ")):
            return MASK
        return masked_text(node)
    return node


def masked_text(text: str) -> str:
    """`text` with every URL's userinfo and every credential-named parameter's value masked."""
    if "@" in text:
        text = _SCHEME_USERINFO.sub(lambda m: f"{m[1]}{MASK}@", text)
        text = _BARE_USERINFO.sub(f"{MASK}@", text)
    if "=" in text:
        text = _PARAMETER.sub(_masked_parameter, text)
    return text


def _masked_parameter(match: re.Match) -> str:
    name = match[2].lower()
    if match[3] and any(part in name for part in _CREDENTIAL_PARTS):
        return f"{match[1]}{match[2]}={MASK}"
    return match[0]
