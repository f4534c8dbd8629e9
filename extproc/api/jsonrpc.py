"""JSON-RPC 2.0 as MCP's streamable HTTP carries it: one message per POST, answered as
one JSON object or as server-sent events (`event: message` + `data: <message>`).

The gateway reads every message that crosses a profile's route: a request's method and
tool, an answer's result. Errors it gives itself are JSON-RPC error objects, with the
codes of the JSON-RPC spec and, for the gateway's own refusals, of its server range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# The server range (-32000..-32099): the gateway's own refusals.
UNAUTHORIZED = -32001        # no identity (HTTP 401)
FORBIDDEN = -32003           # a policy refused it (a tool not allowed, no access to the profile)
SESSION_NOT_FOUND = -32004   # an Mcp-Session-Id that is not this caller's (HTTP 404: start again)
TOO_LARGE = -32005           # a message larger than the gateway accepts (HTTP 413)
BLOCKED = -32006             # a guardrail blocked the arguments or the result
RATE_LIMITED = -32029        # too many tool calls (HTTP 429)


def error_body(message_id: Any, code: int, message: str, data: dict | None = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if data:
        error["data"] = data
    return orjson.dumps({"jsonrpc": "2.0", "id": message_id, "error": error})


def request_id(message: Any) -> Any:
    """The id of a request, as JSON-RPC allows it (string or number), else None."""
    if isinstance(message, dict):
        value = message.get("id")
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return value
    return None


@dataclass(slots=True)
class SseEvent:
    """One server-sent event: its fields in order (data lines joined), kept so the event
    goes on as it came when the gateway leaves it alone."""
    fields: list[tuple[str, str]] = field(default_factory=list)

    @property
    def data(self) -> str:
        return "\n".join(value for name, value in self.fields if name == "data")

    def with_data(self, data: str) -> "SseEvent":
        out, placed = [], False
        for name, value in self.fields:
            if name != "data":
                out.append((name, value))
            elif not placed:
                out.extend(("data", line) for line in data.split("\n"))
                placed = True
        return SseEvent(out)


def parse_sse(body: bytes) -> list[SseEvent]:
    """The events of a complete SSE body (line ends \\n, \\r\\n or \\r)."""
    text = body.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
    events, current = [], SseEvent()
    for line in text.split("\n"):
        if not line:
            if current.fields:
                events.append(current)
                current = SseEvent()
            continue
        name, _, value = line.partition(":")
        current.fields.append((name, value[1:] if value.startswith(" ") else value))
    if current.fields:
        events.append(current)
    return events


def render_sse(events: list[SseEvent]) -> bytes:
    lines = []
    for event in events:
        lines.extend(f"{name}: {value}" if name else f":{value}" for name, value in event.fields)
        lines.append("")
    return ("\n".join(lines) + "\n").encode() if lines else b""
