"""The output items a Responses stream writes for its caller (responses_stream.Encoder):
each item's kind, place, id and text so far, and its delta event made ready around the
sequence number and the piece, so that a delta costs one join, not a JSON document."""

from __future__ import annotations

from typing import Any

from ...api import provider_json
from .responses_answer import call_item, message_item, reasoning_item

PREFIXES = {kind: b'event: %s\ndata: {"type":"%s","sequence_number":' % (name, name) for kind, name in (
    ("message", b"response.output_text.delta"), ("reasoning", b"response.reasoning_summary_text.delta"),
    ("function_call", b"response.function_call_arguments.delta"))}
ITEM_KINDS = {"text": "message", "thinking": "reasoning", "tool_use": "function_call"}
ID_PREFIXES = {"reasoning": "rs", "message": "msg", "function_call": "fc"}


class OutputItem:
    """An output item being written: its kind, place and id, its text so far, and its
    delta event around the sequence number and the piece."""
    __slots__ = ("call_id", "head", "ident", "index", "kind", "name", "parts", "prefix", "tail")

    def __init__(self, kind: str, index: int, ident: str, call_id: Any = None, name: Any = None) -> None:
        self.kind, self.index, self.ident = kind, index, ident
        self.parts: list[str] = []
        self.call_id, self.name = call_id, name
        self.prefix = PREFIXES[kind]
        where = b',"item_id":' + provider_json.dumps(ident) + b',"output_index":%d' % index
        if kind == "message":
            self.head, self.tail = where + b',"content_index":0,"delta":', b',"logprobs":[]}\n\n'
        elif kind == "reasoning":
            self.head, self.tail = where + b',"summary_index":0,"delta":', b"}\n\n"
        else:
            self.head, self.tail = where + b',"delta":', b"}\n\n"

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def whole(self, status: str = "completed") -> dict:
        if self.kind == "reasoning":
            return reasoning_item(self.ident, self.text)
        if self.kind == "message":
            return message_item(self.ident, self.text, status)
        return call_item(self.ident, self.call_id, self.name, self.text, status)
