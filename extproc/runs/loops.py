"""What loop stopping counts: the tool calls a request carries back.

An agent's request ends with the tool calls the model made in its last answer and their
results (each dialect's codec finds them: `Codec.last_tool_calls`). A run that sends the
same call (same tool, same arguments) back again and again, with no new user turn in
between, is looping. Each call is counted by its digest, so the store holds 16 hex
characters per distinct call, never its arguments."""

from __future__ import annotations

import hashlib
from typing import NamedTuple

MAX_COUNTED = 8          # distinct tool calls of one request counted (a request with more: its first)
NAME_CHARS = 64          # of a tool's name, in messages and records


class ToolCall(NamedTuple):
    name: str
    arguments: str        # as the model wrote them (JSON text), or a canonical JSON of an object


def digest_of(call: ToolCall) -> str:
    material = call.name.encode("utf-8", "surrogateescape") + b"\0" + \
        call.arguments.encode("utf-8", "surrogateescape")
    return hashlib.blake2b(material, digest_size=8).hexdigest()


def counted(calls: list[ToolCall]) -> dict[str, str]:
    """digest -> tool name, for the distinct calls of one request (at most MAX_COUNTED)."""
    found: dict[str, str] = {}
    for call in calls:
        digest = digest_of(call)
        if digest not in found:
            found[digest] = call.name[:NAME_CHARS]
            if len(found) >= MAX_COUNTED:
                break
    return found
