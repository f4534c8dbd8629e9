"""Where a Chat Completions (or legacy Completions) answer and its stream events carry
generated text and tool calls, for the response guardrails: each answer's content, its
refusal and reasoning, and each tool call's arguments are a text (a lane) of their own;
an event carrying released text is written again in the shape of the lane's last one."""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from ...api.provider_json import dumps
from ..base import TextPiece

# Fields of a content part that hold text, or parts of their own: Mistral's reasoning
# models answer with a list of chunks, a thinking chunk nesting its own
# ({"type": "thinking", "thinking": [{"type": "text", "text": "..."}]}).
PART_TEXTS = ("text", "output", "arguments", "refusal", "thinking", "content")
# Generated text a message carries besides its content: a refusal, and reasoning as some
# OpenAI-compatible providers send it (DeepSeek's `reasoning_content`, `reasoning`).
OTHER_TEXT_FIELDS = ("refusal", "reasoning_content", "reasoning")
TEXT_FIELDS = ("content", *OTHER_TEXT_FIELDS)
GENERATED = (*TEXT_FIELDS, "tool_calls", "function_call")


def content_walk(container: Any, key: Any, path: tuple = ()) -> Iterator[tuple[Any, Any, tuple]]:
    """The text of a content value (a string, or a list of parts, strings or dicts): each
    string's slot, with its path from the value (list indexes and part fields)."""
    value = container[key]
    if isinstance(value, str):
        yield container, key, path
    elif isinstance(value, list) and len(path) < 8:
        for index, part in enumerate(value):
            if isinstance(part, str):
                yield value, index, (*path, index)
            elif isinstance(part, dict):
                for field in PART_TEXTS:
                    if field in part:
                        yield from content_walk(part, field, (*path, index, field))


def called_tools(body: dict) -> list[str]:
    """Tool names an answer (or one streamed chunk) calls."""
    names = []
    for choice in body.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        message = choice.get("message") or choice.get("delta") or {}
        if not isinstance(message, dict):
            continue
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("name"), str):
                names.append(function["name"])
        legacy = message.get("function_call")            # the deprecated `functions` API
        if isinstance(legacy, dict) and isinstance(legacy.get("name"), str) and legacy["name"]:
            names.append(legacy["name"])               # later stream deltas carry arguments only
    return names


def arguments(call) -> str | None:
    """A streamed tool call's (or function call's) new arguments."""
    if not isinstance(call, dict):
        return None
    function = call.get("function", call)
    value = function.get("arguments") if isinstance(function, dict) else None
    return value if isinstance(value, str) and value else None


def chat_pieces(data: dict) -> list[TextPiece]:
    pieces = []
    for choice in data.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        answer = choice.get("index", 0)
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            continue
        for field in TEXT_FIELDS:
            value = delta.get(field)
            if isinstance(value, str):
                if value:
                    pieces.append(TextPiece((answer, field), choice, value, field))
            elif isinstance(value, list):   # a list of parts (Mistral): each part's text held
                for container, key, path in content_walk(delta, field):
                    if container[key]:
                        pieces.append(TextPiece((answer, field, path), choice, container[key], (field, path)))
        for call in delta.get("tool_calls") or ():
            new_arguments = arguments(call)
            if new_arguments:
                slot = ("tool", call.get("index", 0))
                pieces.append(TextPiece((answer, slot), choice, new_arguments, slot,
                                        _header(data, choice, "tool_calls", call)))
        if arguments(delta.get("function_call")):      # the deprecated `functions` API
            call = delta["function_call"]
            pieces.append(TextPiece((answer, "function_call"), choice, call["arguments"], "function_call",
                                    _header(data, choice, "function_call", call)))
    return pieces


def completion_pieces(data: dict) -> list[TextPiece]:
    pieces = []
    for choice in data.get("choices") or ():
        if isinstance(choice, dict):
            text = choice.get("text")
            if isinstance(text, str) and text:
                pieces.append(TextPiece((choice.get("index", 0), "text"), choice, text, "text"))
    return pieces


def _header(data: dict, choice: dict, field: str, call: dict) -> bytes:
    """The event with this call alone and its arguments empty, when it carries more
    than arguments (its first: id, type, name); b"" otherwise."""
    function = call.get("function") if field == "tool_calls" else call
    if set(call) <= {"index", "function", "arguments"} and set(function) <= {"arguments"}:
        return b""
    emptied = {**function, "arguments": ""}
    if field == "tool_calls":
        emptied = [{**call, "function": emptied}]
    delta = without_generated(choice["delta"])
    return b"data: " + dumps({**data, "choices": [{**choice, "delta": {**delta, field: emptied}}]}) + b"\n\n"


def rest_of_event(data: dict, pieces: list[TextPiece]) -> dict | None:
    """Other answers' choices in the same event without text (one ending, say)."""
    rest = [c for c in data.get("choices") or () if isinstance(c, dict)
            and not any(c is piece.choice for piece in pieces)]
    return {**data, "choices": rest} if rest else None


def ended(data: dict, keys: Iterable[tuple]) -> list[tuple]:
    """An answer's last chunk (its finish_reason), or a chunk that moves it on to a tool
    call, ends that answer's texts; a chunk naming no answer (the usage's) ends all. A
    chunk with nothing new (`"content": ""`, a role, an empty delta), which some providers
    send between tokens, ends nothing: its text may still be arriving."""
    choices = [c for c in data.get("choices") or () if isinstance(c, dict)]
    if not choices:
        return list(keys)
    answers = {c.get("index", 0) for c in choices if c.get("finish_reason") or _moves_on(c.get("delta"))}
    return [key for key in keys if key[0] in answers]


def _moves_on(delta) -> bool:
    return isinstance(delta, dict) and bool(delta.get("tool_calls") or delta.get("function_call"))


def event_with(template: dict, lane_choice: dict | None, slot: object, text: str) -> bytes:
    choice = dict(lane_choice or {})
    if slot == "text":
        choice["text"] = text
    elif slot in TEXT_FIELDS:              # (the event's other texts are lanes of their own)
        choice["delta"] = {**without_generated(choice["delta"]), slot: text}
    elif slot == "function_call":
        choice["delta"] = {"function_call": {"arguments": text}}
    elif slot[0] == "tool":
        choice["delta"] = {"tool_calls": [{"index": slot[1], "function": {"arguments": text}}]}
    else:                                   # a part of a list of parts: (field, path)
        field, path = slot
        parts = only_part(choice["delta"][field], path, text)
        choice["delta"] = {**without_generated(choice["delta"]), field: parts}
    return b"data: " + dumps({**template, "choices": [choice]}) + b"\n\n"


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


# Chat delta fields whose strings are generated text (the plugins read whole strings).
_DELTA_TEXTS = ("content", "refusal", "reasoning_content", "reasoning")


def plugin_pieces(data: dict, completions: bool) -> Iterator[tuple[tuple, Any, Any]]:
    for choice in data.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        answer = choice.get("index", 0)
        if completions:
            if isinstance(choice.get("text"), str):
                yield (answer, "text"), choice, "text"
            continue
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            continue
        for field in _DELTA_TEXTS:
            if isinstance(delta.get(field), str):
                yield (answer, field), delta, field
        for call in delta.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                yield (answer, "tool", call.get("index", 0)), function, "arguments"
