"""A long request body parsed from the values it shares with earlier bodies: an agent
resends its whole history on every turn, and each turn's messages (a chat's `messages`,
Anthropic's, Responses' `input` items, Gemini's `contents`, the tools) come again byte
for byte. Imports nothing of the gateway.

orjson spends ~1 µs a KB making Python strings of non-ASCII text (a 400 KB history of
prose: 420-550 µs, 3x its time on ASCII). Here msgspec reads the body's top level, leaving
each array element and object member as its raw bytes (~100 µs for 400 KB: it only finds
where each ends); an element of 256 bytes or more that came before is found by its bytes
and handed out again (a copy of its containers; its strings, which nothing can change,
are the same objects); anything else is parsed by orjson, as the whole body would be.
A message resent again is then found by identity where the token counts and the
guardrails' digests look its text up (api/resent_texts.py).

The value is the one orjson gives the whole body, or None: the caller parses it with
orjson (and reports orjson's error). msgspec refuses all that orjson refuses at the top
level (lone surrogates, bytes that are not UTF-8, trailing content, NaN), and more (it
nests 996 deep, orjson 1023): what it refuses, or reads otherwise (an integer past 64
bits, which orjson reads as a float), gets None. Every raw value is parsed by orjson
once, when first seen, so a byte that orjson refuses inside a value is refused the same.
tests/test_resent_values.py holds both to it on any JSON and on broken bytes.

Values are kept per scope (the caller's team): one tenant's bodies never answer
another's, nor does a hit tell one tenant how fast another's text came back.
"""

from __future__ import annotations

import math
from typing import Union

import msgspec
import orjson

MIN_BODY_BYTES = 32_768     # a shorter body is parsed whole: splitting it saves nothing
MIN_VALUE_BYTES = 256       # a shorter value is parsed each time: looking it up costs as much
_ENDS = 48                  # bytes of each end in a value's key
_INT_RANGE = range(-(1 << 63), 1 << 64)     # the integers orjson reads as integers

_Raw = msgspec.Raw
# The top level: arrays and objects as the raw bytes of their items, scalars as values.
_TOP = msgspec.json.Decoder(dict[str, Union[list[_Raw], dict[str, _Raw], str, int, float, bool, None]])
_CONTAINERS = (dict, list)


def fresh(value):
    """A copy of a parsed JSON container's containers (its strings and numbers shared):
    stages change a body in place (a redaction writes a text back)."""
    if type(value) is dict:
        return {key: fresh(item) if type(item) in _CONTAINERS else item for key, item in value.items()}
    return [fresh(item) if type(item) in _CONTAINERS else item for item in value]


class _Refused(Exception):
    """Something msgspec read otherwise than orjson would: orjson parses the whole body."""


class ResentValues:
    """Parsed arrays and objects of 256 bytes or more, by scope and raw bytes, within
    `max_bytes`, counted as four times each value's raw bytes: the bytes, the strings they
    parse into (two bytes a character for text with a character past Latin-1), and the
    UTF-8 copy a string keeps once orjson has written it (a 400 KB history of prose holds
    3.2x its bytes, 4.1x once written). The oldest go first."""

    __slots__ = ("max_bytes", "held", "_kept", "bodies_held", "_bodies")

    def __init__(self, max_bytes: int = 24_000_000) -> None:
        self.max_bytes = max_bytes
        self.held = 0
        # (scope, length, first and last bytes) -> (bytes, parsed container, bytes held,
        # whether it holds no container)
        self._kept: dict[tuple[str, int, bytes, bytes], tuple[bytes, dict | list, int, bool]] = {}
        # Whole bodies, the same way, within a third of `max_bytes` of their own (twice
        # their bytes: the bytes, and containers whose strings are mostly the values';
        # a body seen once: its bytes), so that a session's growing bodies never crowd
        # out the values they share.
        self.bodies_held = 0
        self._bodies: dict[tuple[str, int, bytes, bytes], tuple[bytes, dict | None, int]] = {}

    def loads(self, raw: bytes, scope: str = "") -> dict | None:
        """`raw` parsed (a JSON object) as orjson parses it, or None: parse it with orjson."""
        if len(raw) < MIN_BODY_BYTES:
            return None
        # The same body again (a retry, an agent's parallel calls on one history): a
        # compare of its bytes (~20 µs for 400 KB) instead of msgspec's pass (~100 µs).
        # A body is kept parsed from its second time on: a session's bodies, each sent
        # once, cost no copy (their values are found again all the same).
        key = (scope, len(raw), raw[:_ENDS], raw[-_ENDS:])
        again = self._bodies.get(key)
        seen = again is not None and again[0] == raw
        if seen and again[1] is not None:
            return fresh(again[1])
        body = self._split(raw, scope)
        if body is None:
            return None
        if not seen:
            self._keep_body(key, raw, None)
            return body
        self._keep_body(key, raw, body)
        return fresh(body)

    def _split(self, raw: bytes, scope: str) -> dict | None:
        try:
            top = _TOP.decode(raw)
            body = {}
            for key, item in top.items():
                kind = type(item)
                if kind is list:
                    body[key] = [self._value(element, scope) for element in item]
                elif kind is dict:
                    body[key] = {name: self._value(member, scope) for name, member in item.items()}
                elif kind is int and item not in _INT_RANGE or kind is float and not math.isfinite(item):
                    raise _Refused
                else:
                    body[key] = item
            return body
        # (msgspec's errors, its UnicodeDecodeError on a key's bytes, orjson's: all ValueErrors)
        except (ValueError, msgspec.MsgspecError, RecursionError, _Refused):
            return None

    def _value(self, raw: _Raw, scope: str):
        if len(raw) < MIN_VALUE_BYTES:
            return orjson.loads(memoryview(raw))
        data = bytes(raw)
        key = (scope, len(data), data[:_ENDS], data[-_ENDS:])
        kept = self._kept.get(key)
        if kept is None or kept[0] != data:
            value = orjson.loads(data)
            if type(value) not in _CONTAINERS:
                return value
            kept = self._keep(key, data, value)
        # A message of strings (most of a history) is copied in C.
        return kept[1].copy() if kept[3] else fresh(kept[1])

    def _keep(self, key: tuple[str, int, bytes, bytes], data: bytes, value: dict | list) -> tuple:
        items = value.values() if type(value) is dict else value
        entry = (data, value, 4 * len(data), not any(type(item) in _CONTAINERS for item in items))
        if entry[2] > self.max_bytes // 4:
            return entry
        kept = self._kept
        replaced = kept.pop(key, None)      # same scope, length and ends: another value
        if replaced is not None:
            self.held -= replaced[2]
        while kept and self.held + entry[2] > self.max_bytes:
            self.held -= kept.pop(next(iter(kept)))[2]
        kept[key] = entry
        self.held += entry[2]
        return entry

    def _keep_body(self, key: tuple[str, int, bytes, bytes], raw: bytes, body: dict | None) -> None:
        size, bound = (2 if body is not None else 1) * len(raw), self.max_bytes // 3
        if size > bound // 4:
            return
        bodies = self._bodies
        replaced = bodies.pop(key, None)
        if replaced is not None:
            self.bodies_held -= replaced[2]
        while bodies and self.bodies_held + size > bound:
            self.bodies_held -= bodies.pop(next(iter(bodies)))[2]
        bodies[key] = (raw, body, size)
        self.bodies_held += size

    def clear(self) -> None:
        self._kept.clear()
        self._bodies.clear()
        self.held = self.bodies_held = 0

    def __len__(self) -> int:
        return len(self._kept)
