"""The tool calls a request carries back: those of the model's last answer, whose results
follow it, each with how many times the model made that same call (same tool, same
arguments) since the caller's last user turn. Loop stopping reads them
(stages/runs/limits.py): an agent resends its history each turn, so the count is in the
request itself, whichever worker or replica reads it.

Each reader walks back from the end of the request's turns to the last user turn (at
most MAX_TURNS_READ turns), so it reads what the agent did since its user last spoke,
whatever the history's length before. Arguments are kept as the model wrote them (JSON
text), or as a canonical JSON of an object. (name, arguments, count) triples."""

from __future__ import annotations

from typing import Any

import orjson

_MOST = 16              # tool calls read from one answer
MAX_TURNS_READ = 512    # turns read back looking for the last user turn


def _text(arguments: Any) -> str:
    if isinstance(arguments, str):
        return arguments
    try:
        return orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return repr(arguments)


def _counted(trailing: list[tuple[str, str]], earlier: list[tuple[str, str]]) -> list[tuple[str, str, int]]:
    """The distinct trailing calls, each with its count among the trailing and earlier ones."""
    found: dict[tuple[str, str], int] = {}
    for call in trailing:
        found[call] = found.get(call, 0) + 1
    for call in earlier:
        if call in found:
            found[call] += 1
    return [(name, arguments, count) for (name, arguments), count in found.items()]


def _chat_calls(message: dict) -> list[tuple[str, str]]:
    found = []
    for call in (message.get("tool_calls") or ())[:_MOST]:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            found.append((function["name"], _text(function.get("arguments", ""))))
    return found


def chat_last_tool_calls(body: dict) -> list[tuple[str, str, int]]:
    """Chat Completions: `role: tool` messages after an assistant message's `tool_calls`."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    i = len(messages) - 1
    while i >= 0 and isinstance(messages[i], dict) and messages[i].get("role") in ("tool", "function"):
        i -= 1
    if i == len(messages) - 1 or i < 0 or not isinstance(messages[i], dict) or messages[i].get("role") != "assistant":
        return []
    trailing, earlier = _chat_calls(messages[i]), []
    for message in messages[max(0, i - MAX_TURNS_READ):i][::-1]:
        if not isinstance(message, dict) or message.get("role") == "user":
            break
        if message.get("role") == "assistant":
            earlier.extend(_chat_calls(message))
    return _counted(trailing, earlier)


_RESPONSES_RESULTS = frozenset({"function_call_output", "custom_tool_call_output", "local_shell_call_output",
                                "mcp_call_output", "computer_call_output", "reasoning"})
_RESPONSES_CALLS = {"function_call": "arguments", "custom_tool_call": "input", "local_shell_call": "action"}


def _responses_call(item: dict) -> tuple[str, str] | None:
    field = _RESPONSES_CALLS.get(item.get("type"))
    return None if field is None else (str(item.get("name") or item.get("type")), _text(item.get(field, "")))


def responses_last_tool_calls(body: dict) -> list[tuple[str, str, int]]:
    """Responses API: `*_call` items followed by their outputs at the end of `input`."""
    items = body.get("input")
    if not isinstance(items, list):
        return []
    i = len(items) - 1
    saw_result = False
    while i >= 0 and isinstance(items[i], dict) and items[i].get("type") in _RESPONSES_RESULTS:
        saw_result = saw_result or items[i].get("type") != "reasoning"
        i -= 1
    trailing: list[tuple[str, str]] = []
    while saw_result and i >= 0 and len(trailing) < _MOST and isinstance(items[i], dict):
        call = _responses_call(items[i])
        if call is None and items[i].get("type") != "reasoning":
            break
        if call is not None:
            trailing.append(call)
        i -= 1
    if not trailing:
        return []
    earlier = []
    for item in items[max(0, i - MAX_TURNS_READ):i + 1][::-1]:
        if not isinstance(item, dict) or item.get("role") == "user":
            break
        call = _responses_call(item)
        if call is not None:
            earlier.append(call)
    return _counted(trailing, earlier)


def _tool_uses(message: dict) -> list[tuple[str, str]]:
    blocks = message.get("content")
    if not isinstance(blocks, list):
        return []
    return [(block["name"], _text(block.get("input", {}))) for block in blocks[:_MOST * 4]
            if isinstance(block, dict) and block.get("type") == "tool_use" and isinstance(block.get("name"), str)
            ][:_MOST]


def _tool_results(message: dict) -> bool:
    content = message.get("content")
    return isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)


def messages_last_tool_calls(body: dict) -> list[tuple[str, str, int]]:
    """Anthropic Messages: a last user turn of `tool_result` blocks after an assistant turn's
    `tool_use`; a user turn without a `tool_result` is the user's."""
    messages = body.get("messages")
    if not isinstance(messages, list) or len(messages) < 2:
        return []
    last, before = messages[-1], messages[-2]
    if not isinstance(last, dict) or not isinstance(before, dict) or before.get("role") != "assistant" \
            or not _tool_results(last):
        return []
    trailing, earlier = _tool_uses(before), []
    for message in messages[max(0, len(messages) - 2 - MAX_TURNS_READ):-2][::-1]:
        if not isinstance(message, dict) or message.get("role") == "user" and not _tool_results(message):
            break
        if message.get("role") == "assistant":
            earlier.extend(_tool_uses(message))
    return _counted(trailing, earlier)


def _function_calls(content: dict) -> list[tuple[str, str]]:
    found = []
    for part in content.get("parts") or ():
        call = part.get("functionCall") if isinstance(part, dict) else None
        if isinstance(call, dict) and isinstance(call.get("name"), str):
            found.append((call["name"], _text(call.get("args", {}))))
            if len(found) >= _MOST:
                break
    return found


def _function_responses(content: dict) -> bool:
    parts = content.get("parts")
    return isinstance(parts, list) and any(isinstance(p, dict) and "functionResponse" in p for p in parts)


def gemini_last_tool_calls(body: dict) -> list[tuple[str, str, int]]:
    """Gemini: a last turn of `functionResponse` parts after a model turn's `functionCall` parts."""
    contents = body.get("contents")
    if not isinstance(contents, list) or len(contents) < 2:
        return []
    last, before = contents[-1], contents[-2]
    if not isinstance(last, dict) or not isinstance(before, dict) or before.get("role") != "model" \
            or not _function_responses(last):
        return []
    trailing, earlier = _function_calls(before), []
    for content in contents[max(0, len(contents) - 2 - MAX_TURNS_READ):-2][::-1]:
        if not isinstance(content, dict) or content.get("role") != "model" and not _function_responses(content):
            break
        if content.get("role") == "model":
            earlier.extend(_function_calls(content))
    return _counted(trailing, earlier)
