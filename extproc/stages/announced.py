"""What Envoy's request reader (a Lua filter ahead of ext_proc) read from a JSON request body
before the service sees its headers (metadata namespace `llm_gateway.request`: `stream`,
`model`, `include_usage`; envoy/quickstart.yaml). Stages that choose a response path at
request headers read it here (one_message.py, pass_through.py)."""

from __future__ import annotations

from ..config.envoy_contract import REQUEST_METADATA_NAMESPACE
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
