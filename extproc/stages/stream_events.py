"""Writing and reading streamed events for the response guardrails (stream_guard.py,
stream_plugins.py): an event as the guardrails read it, the parts of a delta, the texts
that Responses events repeat whole."""

from __future__ import annotations

from ..api.provider_json import dumps
from ..api.sse import Event
from ..guardrails.scan import OTHER_TEXT_FIELDS, PART_TEXTS

# Generated text in a chat delta: the answer, a refusal, reasoning (guardrails/scan.py).
TEXT_FIELDS = ("content", *OTHER_TEXT_FIELDS)
GENERATED = (*TEXT_FIELDS, "tool_calls", "function_call")


def anthropic_event(data: dict) -> bytes:
    return b"event: " + str(data.get("type", "")).encode() + b"\ndata: " + dumps(data) + b"\n\n"


def written(event: Event, data: dict) -> bytes:
    """The event as the guardrails read it: redacted, or a key the provider wrote twice
    (the guardrails read the last value, a client's parser may keep the first) once."""
    name = b"event: " + event.name + b"\n" if event.name else b""
    return name + b"data: " + dumps(data) + b"\n\n"


def without_generated(delta: dict) -> dict:
    """A delta's other fields (role, ...): each generated text leaves in events of its own."""
    return {k: v for k, v in delta.items() if k not in GENERATED}


def only_part(node, path: tuple, text: str):
    """A delta's list of parts with only the part on `path`, its text replaced (the
    list's other parts are lanes of their own)."""
    if not path:
        return text
    head, rest = path[0], path[1:]
    if isinstance(node, list):
        return [only_part(node[head], rest, text)]
    return {**{k: v for k, v in node.items() if k not in PART_TEXTS}, head: only_part(node[head], rest, text)}


def arguments(call) -> str | None:
    """A streamed tool call's (or function call's) new arguments."""
    if not isinstance(call, dict):
        return None
    function = call.get("function", call)
    arguments = function.get("arguments") if isinstance(function, dict) else None
    return arguments if isinstance(arguments, str) and arguments else None


def whole_text_fields(node, depth: int = 0):
    """Text (and tool call arguments) in a Responses event that repeats it whole."""
    if depth > 8:
        return
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("text", "arguments", "refusal") and isinstance(value, str):
                yield node, key
            elif isinstance(value, (dict, list)):
                yield from whole_text_fields(value, depth + 1)
    elif isinstance(node, list):
        for item in node:
            yield from whole_text_fields(item, depth + 1)
