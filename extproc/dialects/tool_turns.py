"""The tool calls a request carries back: those of the model's last answer, whose results
follow it, with no user turn after them (loop stopping counts them: extproc/runs/loops.py).

Each reader walks back from the end of the request's turns and stops at the first turn
that is neither a tool result nor the answer that called the tools, so it reads a few
items whatever the history's length. Arguments are kept as the model wrote them (JSON
text), or as a canonical JSON of an object; (name, arguments) pairs."""

from __future__ import annotations

from typing import Any

import orjson

_MOST = 16          # tool calls read from one answer


def _text(arguments: Any) -> str:
    if isinstance(arguments, str):
        return arguments
    try:
        return orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return repr(arguments)


def chat_last_tool_calls(body: dict) -> list[tuple[str, str]]:
    """Chat Completions: `role: tool` messages after an assistant message's `tool_calls`."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    i = len(messages) - 1
    while i >= 0 and isinstance(messages[i], dict) and messages[i].get("role") in ("tool", "function"):
        i -= 1
    if i == len(messages) - 1 or i < 0 or not isinstance(messages[i], dict) or messages[i].get("role") != "assistant":
        return []
    found = []
    for call in (messages[i].get("tool_calls") or ())[:_MOST]:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            found.append((function["name"], _text(function.get("arguments", ""))))
    return found


_RESPONSES_RESULTS = frozenset({"function_call_output", "custom_tool_call_output", "local_shell_call_output",
                                "mcp_call_output", "computer_call_output", "reasoning"})
_RESPONSES_CALLS = {"function_call": "arguments", "custom_tool_call": "input", "local_shell_call": "action"}


def responses_last_tool_calls(body: dict) -> list[tuple[str, str]]:
    """Responses API: `*_call` items followed by their outputs at the end of `input`."""
    items = body.get("input")
    if not isinstance(items, list):
        return []
    i = len(items) - 1
    saw_result = False
    while i >= 0 and isinstance(items[i], dict) and items[i].get("type") in _RESPONSES_RESULTS:
        saw_result = saw_result or items[i].get("type") != "reasoning"
        i -= 1
    found = []
    while saw_result and i >= 0 and len(found) < _MOST and isinstance(items[i], dict):
        item = items[i]
        field = _RESPONSES_CALLS.get(item.get("type"))
        if field is None and item.get("type") != "reasoning":
            break
        if field is not None:
            found.append((str(item.get("name") or item.get("type")), _text(item.get(field, ""))))
        i -= 1
    found.reverse()
    return found


def messages_last_tool_calls(body: dict) -> list[tuple[str, str]]:
    """Anthropic Messages: a last user turn of `tool_result` blocks after an assistant turn's `tool_use`."""
    messages = body.get("messages")
    if not isinstance(messages, list) or len(messages) < 2:
        return []
    last, before = messages[-1], messages[-2]
    if not isinstance(last, dict) or not isinstance(before, dict) or before.get("role") != "assistant":
        return []
    content = last.get("content")
    if not isinstance(content, list) or not any(isinstance(b, dict) and b.get("type") == "tool_result"
                                                for b in content):
        return []
    blocks = before.get("content")
    if not isinstance(blocks, list):
        return []
    return [(block["name"], _text(block.get("input", {}))) for block in blocks[:_MOST * 4]
            if isinstance(block, dict) and block.get("type") == "tool_use" and isinstance(block.get("name"), str)
            ][:_MOST]


def gemini_last_tool_calls(body: dict) -> list[tuple[str, str]]:
    """Gemini: a last turn of `functionResponse` parts after a model turn's `functionCall` parts."""
    contents = body.get("contents")
    if not isinstance(contents, list) or len(contents) < 2:
        return []
    last, before = contents[-1], contents[-2]
    if not isinstance(last, dict) or not isinstance(before, dict) or before.get("role") != "model":
        return []
    parts = last.get("parts")
    if not isinstance(parts, list) or not any(isinstance(p, dict) and "functionResponse" in p for p in parts):
        return []
    found = []
    for part in before.get("parts") or ():
        call = part.get("functionCall") if isinstance(part, dict) else None
        if isinstance(call, dict) and isinstance(call.get("name"), str):
            found.append((call["name"], _text(call.get("args", {}))))
            if len(found) >= _MOST:
                break
    return found
