"""Tool names a request declares or a response calls, and the text of a streamed
content value. Requests are walked whole (walk.py: every string the model may read),
JSON responses too (response_walk.py: every string the client reads).
"""

from __future__ import annotations

from typing import Any, Iterator

from .walk import request_slots, request_texts  # noqa: F401 - requests: one walk

Slot = tuple[Any, Any]


# Fields of a content part that hold text, or parts of their own: Mistral's reasoning
# models answer with a list of chunks, a thinking chunk nesting its own
# ({"type": "thinking", "thinking": [{"type": "text", "text": "..."}]}).
PART_TEXTS = ("text", "output", "arguments", "refusal", "thinking", "content")


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


# Generated text a message carries besides its content: a refusal, and reasoning as some
# OpenAI-compatible providers send it (DeepSeek's `reasoning_content`, `reasoning`).
OTHER_TEXT_FIELDS = ("refusal", "reasoning_content", "reasoning")


def tool_name(kind: str, tool: Any) -> str:
    """What a tools allowlist calls a declared tool: a function's (or custom tool's) name,
    where the endpoint reads it (chat: `function.name`; Responses and Messages: `name`); a built-in
    tool's type (`web_search_preview`, `code_interpreter`, `mcp`, ...), whatever else it
    carries; "" for a shape it cannot name, which no list allows."""
    if not isinstance(tool, dict):
        return ""
    tool_type = tool.get("type")
    if kind in ("messages", "count_tokens") and tool_type in (None, "custom"):
        name = tool.get("name")             # Anthropic's own tools: no type, or "custom"
        return name if isinstance(name, str) else ""
    if tool_type not in ("function", "custom"):
        return tool_type if isinstance(tool_type, str) else ""
    holder = tool.get(tool_type) if kind == "chat" else tool
    name = holder.get("name") if isinstance(holder, dict) else None
    return name if isinstance(name, str) else ""


def tool_names(kind: str, body: dict) -> list[str]:
    """The tools a request declares: `tools`, and chat's deprecated `functions`."""
    names = [tool_name(kind, tool) for tool in body.get("tools") or ()]
    if kind == "chat":
        names.extend(legacy_function_name(f) for f in body.get("functions") or ())
    return names


def legacy_function_name(function: Any) -> str:
    name = function.get("name") if isinstance(function, dict) else None
    return name if isinstance(name, str) else ""


def called_tools(kind: str, body: dict) -> list[str]:
    """Tool names a response (or one streamed chunk) calls."""
    names = []
    if kind == "messages":
        blocks = body.get("content") if body.get("type") == "message" else [body.get("content_block")]
        return [block["name"] for block in blocks or () if isinstance(block, dict)
                and block.get("type") == "tool_use" and isinstance(block.get("name"), str)]
    if kind == "responses":
        for item in body.get("output") or ([body.get("item")] if body.get("item") else []):
            if isinstance(item, dict) and item.get("type") == "function_call" and isinstance(item.get("name"), str):
                names.append(item["name"])
        return names
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
        legacy = legacy_function_name(message.get("function_call"))   # the deprecated `functions` API
        if legacy:                                      # later stream deltas carry arguments only
            names.append(legacy)
    return names
