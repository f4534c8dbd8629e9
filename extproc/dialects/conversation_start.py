"""What tells one run of an agent that names no run from the next (stages/runs/unnamed.py):
how a request's conversation starts (its system prompt or instructions and its first user
turn, as sent) and its history (the turns the agent resends each call), per dialect.

Each function returns (head, history) or None when the request has no user turn: `head`
is the system prompt and the first user turn serialised as sent (digested by the caller,
never kept), `history` the list of turns in order."""

from __future__ import annotations

import orjson

_SYSTEM_ROLES = ("system", "developer")


def _head(system: object, first_user: object) -> bytes | None:
    try:
        return orjson.dumps([system, first_user])
    except TypeError:           # a body orjson cannot write (never from JSON): no start
        return None


def chat_start(body: dict) -> tuple[bytes, list] | None:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    system = [m for m in messages if isinstance(m, dict) and m.get("role") in _SYSTEM_ROLES][:4]
    first = next((m for m in messages if isinstance(m, dict) and m.get("role") == "user"), None)
    head = _head(system, first) if first is not None else None
    return (head, messages) if head is not None else None


def responses_start(body: dict) -> tuple[bytes, list] | None:
    items = body.get("input")
    if isinstance(items, str):
        items = [items]
    if not isinstance(items, list):
        return None
    first = next((i for i in items if isinstance(i, str)
                  or (isinstance(i, dict) and i.get("role") == "user")), None)
    head = _head(body.get("instructions"), first) if first is not None else None
    return (head, items) if head is not None else None


def messages_start(body: dict) -> tuple[bytes, list] | None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    first = next((m for m in messages if isinstance(m, dict) and m.get("role") == "user"), None)
    head = _head(body.get("system"), first) if first is not None else None
    return (head, messages) if head is not None else None


def gemini_start(body: dict) -> tuple[bytes, list] | None:
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return None
    first = next((c for c in contents if isinstance(c, dict) and c.get("role", "user") == "user"), None)
    system = body.get("systemInstruction", body.get("system_instruction"))
    head = _head(system, first) if first is not None else None
    return (head, contents) if head is not None else None
