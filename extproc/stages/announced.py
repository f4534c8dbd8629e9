"""What Envoy's request reader (a Lua filter ahead of ext_proc) read from a JSON request body
before the service sees its headers (metadata namespace `llm_gateway.request`: `stream`,
`model`, `include_usage`, and what bounds the output; envoy/quickstart.yaml). Stages that
choose a response path at request headers read it here (one_message.py, pass_through.py,
body_unread.py)."""

from __future__ import annotations

from ..config.envoy_contract import NUMBERS_UNREAD, REQUEST_METADATA_NAMESPACE
from ..pipeline.call import Call


def announced(call: Call) -> dict | None:
    """The fields Envoy read (a Struct's values by key: None, float, str, bool, dict,
    list), or None when Envoy sent no such metadata (a config without the reader, or a
    body it left unread)."""
    if call.request_metadata is None:
        return None
    return call.request_metadata.get(REQUEST_METADATA_NAMESPACE)


def announced_bool(fields: dict, key: str) -> bool | None:
    """A JSON boolean Envoy read, or None when the key was missing or not a boolean."""
    value = fields.get(key)
    return value if type(value) is bool else None


def announced_string(fields: dict, key: str) -> str:
    value = fields.get(key)
    return value if type(value) is str else ""


def announced_fields(fields: dict, names: tuple[str, ...]) -> dict | None:
    """The body as far as these dotted `names` go, from the integers Envoy read
    (`{"generationConfig": {"candidateCount": 2}}`), for a dialect's own readers of the
    body to read; None when one of the fields Envoy met was not a plain integer."""
    if fields.get(NUMBERS_UNREAD) is True:
        return None
    body: dict = {}
    for name in names:
        if name not in fields:
            continue
        value = fields[name]
        if type(value) is not float:
            return None
        *outer, inner = name.split(".")
        holder = body
        for part in outer:
            holder = holder.setdefault(part, {})
        holder[inner] = int(value)
    return body
