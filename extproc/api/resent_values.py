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

A whole body met before also carries its facts: what the pipeline's stages found of
those very bytes (sound, clean by a policy, so many prompt tokens), each under a key that
names all it depends on, so the same bytes again (a client's retry, an agent's parallel
calls on one history) are not checked again. The facts go when the body does.
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


def _flat(value) -> bool:
    items = value.values() if type(value) is dict else value
    return not any(type(item) in _CONTAINERS for item in items)


def copy_plan(body: dict) -> tuple:
    """How to copy a kept body's top level as `fresh` would, worked out once: a member
    that is a list of flat objects (a history of messages of strings) is copied in C."""
    plan = []
    for key, value in body.items():
        kind = type(value)
        if kind is list and all(type(item) is dict and _flat(item) for item in value):
            plan.append((key, _flat_objects))
        elif kind in _CONTAINERS:
            plan.append((key, fresh))
        else:
            plan.append((key, None))
    return tuple(plan)


def _flat_objects(items: list) -> list:
    return list(map(dict.copy, items))


def fresh_by(body: dict, plan: tuple) -> dict:
    """`fresh(body)` by its copy plan."""
    return {key: body[key] if copy is None else copy(body[key]) for key, copy in plan}


class _Refused(Exception):
    """Something msgspec read otherwise than orjson would: orjson parses the whole body."""


class _Kept:
    """Entries (bytes, value, ...) by (scope, length, ends), within `max_bytes` counted by
    the size each is put with; one over a quarter of it is not kept; the oldest go first."""

    __slots__ = ("max_bytes", "held", "entries")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.held = max_bytes, 0
        self.entries: dict[tuple[str, int, bytes, bytes], tuple] = {}

    def find(self, key: tuple[str, int, bytes, bytes], data: bytes) -> tuple | None:
        entry = self.entries.get(key)
        return entry if entry is not None and entry[0] == data else None

    def keep(self, key: tuple[str, int, bytes, bytes], entry: tuple, size: int) -> None:
        if size > self.max_bytes // 4:
            return
        entries = self.entries
        replaced = entries.pop(key, None)       # same scope, length and ends: other bytes
        if replaced is not None:
            self.held -= replaced[-1]
        while entries and self.held + size > self.max_bytes:
            self.held -= entries.pop(next(iter(entries)))[-1]
        entries[key] = (*entry, size)
        self.held += size


def _key(scope: str, data: bytes) -> tuple[str, int, bytes, bytes]:
    return scope, len(data), data[:_ENDS], data[-_ENDS:]


class ResentValues:
    """Parsed arrays and objects of 256 bytes or more, by scope and raw bytes, within
    `max_bytes`, counted as four times each value's raw bytes: the bytes, the strings they
    parse into (two bytes a character for text with a character past Latin-1), and the
    UTF-8 copy a string keeps once orjson has written it (a 400 KB history of prose holds
    3.2x its bytes, 4.1x once written). Whole bodies are kept apart, within a third of
    that (twice their bytes: the bytes, and containers whose strings are mostly the
    values'; a body seen once: its bytes), so that a session's growing bodies never crowd
    out the values they share."""

    __slots__ = ("_values", "_bodies")

    def __init__(self, max_bytes: int = 24_000_000) -> None:
        self._values = _Kept(max_bytes)         # (bytes, parsed container, holds no container, size)
        # (bytes, (parsed body, its copy plan) or None: seen once, facts, size)
        self._bodies = _Kept(max_bytes // 3)

    @property
    def held(self) -> int:
        return self._values.held

    @property
    def bodies_held(self) -> int:
        return self._bodies.held

    def loads(self, raw: bytes, scope: str = "") -> dict | None:
        """`raw` parsed (a JSON object) as orjson parses it, or None: parse it with orjson."""
        return self.parse(raw, scope)[0]

    def parse(self, raw: bytes, scope: str = "") -> tuple[dict | None, dict | None]:
        """`raw` parsed as `loads` parses it, and the facts kept with its bytes (a dict the
        stages read and fill in, kept as long as the body is), or None when it is not kept."""
        if len(raw) < MIN_BODY_BYTES:
            return None, None
        # The same body again (a retry, an agent's parallel calls on one history): a
        # compare of its bytes (~20 µs for 400 KB) instead of msgspec's pass (~100 µs).
        # A body is kept parsed from its second time on: a session's bodies, each sent
        # once, cost no copy (their values are found again all the same).
        key = _key(scope, raw)
        again = self._bodies.find(key, raw)
        if again is not None and again[1] is not None:
            return fresh_by(*again[1]), again[2]
        body = self._split(raw, scope)
        if body is None:
            return None, None
        if again is None:
            facts: dict = {}
            self._bodies.keep(key, (raw, None, facts), len(raw))
            return body, facts
        plan = copy_plan(body)
        self._bodies.keep(key, (raw, (body, plan), again[2]), 2 * len(raw))
        return fresh_by(body, plan), again[2]

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
        key = _key(scope, data)
        kept = self._values.find(key, data)
        if kept is None:
            value = orjson.loads(data)
            if type(value) not in _CONTAINERS:
                return value
            kept = (data, value, _flat(value))
            self._values.keep(key, kept, 4 * len(data))
        # A message of strings (most of a history) is copied in C.
        return kept[1].copy() if kept[2] else fresh(kept[1])

    def __len__(self) -> int:
        return len(self._values.entries)
