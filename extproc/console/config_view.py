"""The config page's text: the running config file as YAML, every secret masked. Imports
nothing of the gateway's but its config's type."""

from __future__ import annotations

import yaml

from ..config.filter_config import GatewayConfig

MASK = "***"
# Names whose values the config page never shows: credentials' `value`, keys, tokens, secrets.
SECRET_NAMES = frozenset({"value", "key", "token", "secret", "password", "api_key", "private_key",
                          "secret_access_key", "access_key_id", "client_secret", "session_secret",
                          "authorization"})


def masked_config(config: GatewayConfig) -> str:
    """The running config file as YAML, every secret-looking value replaced by ***."""
    try:
        with open(config.path, encoding="utf-8") as handle:
            tree = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError) as error:
        return f"# the config file cannot be read now: {type(error).__name__}"
    return yaml.safe_dump(_mask(tree), sort_keys=False, allow_unicode=True)


def _mask(node, name: str = ""):
    if isinstance(node, dict):
        return {k: _mask(v, str(k).lower()) for k, v in node.items()}
    if isinstance(node, list):
        return [_mask(item, name) for item in node]
    if name in SECRET_NAMES or name.endswith(("secret", "password", "_token", "_key")):
        return MASK if not isinstance(node, (dict, list)) and node is not None else node
    if isinstance(node, str) and node.startswith(("sk-", "Bearer ")):
        return MASK
    return node
