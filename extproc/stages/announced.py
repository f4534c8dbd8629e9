"""What Envoy's request reader (a Lua filter ahead of ext_proc) read from a JSON request body
before the service sees its headers (metadata namespace `llm_gateway.request`: `stream`,
`model`, `include_usage`, and what bounds the output; envoy/quickstart.yaml). Stages that
choose a response path at request headers read it here (one_message.py, pass_through.py,
body_unread.py)."""

from __future__ import annotations

from ..config.envoy_contract import NUMBERS_UNREAD, REQUEST_METADATA_NAMESPACE
from ..pipeline.call import Call


def announced(call: Call):
    """The fields Envoy read (Struct fields by key), or None when Envoy sent no such
    metadata (a config without the reader, or a body it left unread)."""
    if call.request_metadata is None:
        return None
    fields = call.request_metadata.filter_metadata.get(REQUEST_METADATA_NAMESPACE)
    return fields.fields if fields is not None else None


def announced_bool(fields, key: str) -> bool | None:
    """A JSON boolean Envoy read, or None when the key was missing or not a boolean."""
    value = fields.get(key)
    return value.bool_value if value is not None and value.WhichOneof("kind") == "bool_value" else None


def announced_string(fields, key: str) -> str:
    value = fields.get(key)
    return value.string_value if value is not None and value.WhichOneof("kind") == "string_value" else ""


def announced_fields(fields, names: tuple[str, ...]) -> dict | None:
    """The body as far as these dotted `names` go, from the integers Envoy read
    (`{"generationConfig": {"candidateCount": 2}}`), for a dialect's own readers of the
    body to read; None when one of the fields Envoy met was not a plain integer."""
    unread = fields.get(NUMBERS_UNREAD)
    if unread is not None and unread.WhichOneof("kind") == "bool_value" and unread.bool_value:
        return None
    body: dict = {}
    for name in names:
        value = fields.get(name)
        if value is None:
            continue
        if value.WhichOneof("kind") != "number_value":
            return None
        *outer, inner = name.split(".")
        holder = body
        for part in outer:
            holder = holder.setdefault(part, {})
        holder[inner] = int(value.number_value)
    return body
