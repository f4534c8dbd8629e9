"""The parts of a request a guardrail rule may be scoped to (`where:`), and how a dialect
tells which part a string of its request body lies in.

    system        the system prompt or instructions (an agent vendor's own text, mostly)
    tools         the tool definitions offered to the model
    user          the user's turns, and anything no part below claims
    assistant     the model's earlier turns, its tool calls included
    tool_results  what tools returned, sent back to the model

A string a dialect cannot place is `user`: a rule scoped to the user's turns still reads
it, so scoping never lets text past a rule that would have read it for the user.
"""

from __future__ import annotations

from typing import Any

SYSTEM, TOOLS, USER, ASSISTANT, TOOL_RESULTS = "system", "tools", "user", "assistant", "tool_results"
PARTS = (SYSTEM, TOOLS, USER, ASSISTANT, TOOL_RESULTS)


def item(body: dict, path: tuple, field: str) -> dict | None:
    """The object at body[field][path[1]] when the path goes through it, else None."""
    if len(path) < 2 or path[0] != field or not isinstance(path[1], int):
        return None
    items = body.get(field)
    if not isinstance(items, list) or not 0 <= path[1] < len(items) or not isinstance(items[path[1]], dict):
        return None
    return items[path[1]]


def block(message: dict, path: tuple, field: str) -> Any:
    """The content block at message[field][path[3]] when the path goes through it."""
    if len(path) < 4 or path[2] != field or not isinstance(path[3], int):
        return None
    blocks = message.get(field)
    if not isinstance(blocks, list) or not 0 <= path[3] < len(blocks):
        return None
    return blocks[path[3]]


def named(value: Any) -> str:
    """`value` when it is a name (a string), else ""."""
    return value if isinstance(value, str) else ""


def names_by_id(calls: list[tuple[Any, Any]]) -> dict[str, str]:
    """{call id: tool name} of (id, name) pairs, those that are strings."""
    return {call_id: name for call_id, name in calls if isinstance(call_id, str) and isinstance(name, str)}


def result_names(body: dict, paths: list[tuple], field: str, id_key: str, called: dict[str, str],
                 names_itself) -> list[str]:
    """For each path, the tool of the item of `field` it lies in: the item's own `name`
    when `names_itself(item)`, else the call its `id_key` names in `called` ("" if none)."""
    names = []
    for path in paths:
        found = item(body, path, field) or {}
        call_id = found.get(id_key)
        names.append(named(found.get("name")) if names_itself(found)
                     else called.get(call_id, "") if isinstance(call_id, str) else "")
    return names
