"""Providers' JSON, read as their clients read it.

orjson refuses JSON that many clients accept: a lone surrogate escape (an emoji split
between two tokens, `"\\ud83d"`), `NaN` or `1e400` (Python's json takes both), bytes that
are not UTF-8 (a character split between two chunks by a local model server; a
browser's TextDecoder puts U+FFFD there and JSON.parse goes on). Text the gateway could
not read would reach those clients unread by the response guardrails, so what orjson
refuses is read again that lenient way, and written back as standard JSON when changed.
"""

from __future__ import annotations

import json

import orjson


def loads(raw: bytes) -> object | None:
    """`raw` parsed; None when no client could read it either."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return None


def dumps(value: object) -> bytes:
    """`value` written, lone surrogates kept as escapes (orjson refuses them)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":")).encode()
