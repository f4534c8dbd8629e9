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
import re

import orjson

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


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


def as_utf8(text: str) -> str:
    """`text` as UTF-8 can hold it: U+FFFD for each lone surrogate (what RE2 and protobuf
    need; Python's str, and so the rest of the gateway, holds them as they came)."""
    return text if text.isascii() else _LONE_SURROGATE.sub("\ufffd", text)
