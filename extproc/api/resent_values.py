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
calls on one history) are not checked again. The facts go when the body does. A body
under 32 KB is not split (orjson parses it in a few µs), but it keeps facts too, from its
second time on (a retry, a batch's repeated prompt): only a reference to its bytes is
kept the first time, since most short bodies come once. A body
that is a kept one grown (an agent's next turn: items added at the end of its history)
is read from it, only its new items parsed (api/grown_bodies.py), and says what it grew
from, so that the checks read only what is new.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import msgspec
import orjson

from .grown_bodies import TOP, Record, growth, spans_of
from .repeated_keys import repeated_key

MIN_BODY_BYTES = 32_768     # a shorter body is parsed whole: splitting it saves nothing
MIN_VALUE_BYTES = 256       # a shorter value is parsed each time: looking it up costs as much
_ENDS = 48                  # bytes of each end in a value's key
# A body that may grow an earlier one is looked for among the latest bodies that start as
# it does: sessions of one team and model mostly do (an agent's system prompt and
# preamble), so several are tried, each a compare up to where the two part.
HEAD = 128
_BODIES_PER_HEAD = 16
_INT_RANGE = range(-(1 << 63), 1 << 64)     # the integers orjson reads as integers

_Raw = msgspec.Raw
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


class Grown(NamedTuple):
    """What a body grew from: the kept body's facts, the array that grew, how many of its
    items it kept, the new items written as one array (their bytes as sent), whether the
    members after the array are the kept body's (False: the new body's own, read), and
    where the new body's arrays lie (grown_bodies.Span by key; None: not known)."""
    facts: dict
    key: str
    kept: int
    listed: bytes
    after_kept: bool = True
    spans: dict | None = None


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


def _handout(source):
    """A value from what it came from, to hand out: a copy of a kept container's
    containers (a message of strings copied in C), a short value parsed again."""
    kind = type(source)
    if kind is tuple:
        return source[1].copy() if source[2] else fresh(source[1])
    if kind is bytes:
        return orjson.loads(source)
    return source


def _whole(members: tuple) -> dict:
    """A body from its members' sources (Record.members)."""
    body = {}
    for key, sources, lengths in members:
        kind = type(sources)
        if kind is list:
            body[key] = [_handout(source) for source in sources]
        elif kind is dict:
            body[key] = {name: _handout(source) for name, source in sources.items()}
        else:
            body[key] = sources
    return body


def _layout(record: Record):
    """Where the record's arrays lie, when its bytes are orjson's writing of its value;
    False otherwise."""
    body = _whole(record.members)
    try:
        if orjson.dumps(body) != record.raw:
            return False
    except orjson.JSONEncodeError:          # nested deeper than orjson writes
        return False
    return spans_of(record.members, body, len(record.raw))


class ResentValues:
    """Parsed arrays and objects of 256 bytes or more, by scope and raw bytes, within
    `max_bytes`, counted as four times each value's raw bytes: the bytes, the strings they
    parse into (two bytes a character for text with a character past Latin-1), and the
    UTF-8 copy a string keeps once orjson has written it (a 400 KB history of prose holds
    3.2x its bytes, 4.1x once written). Whole bodies are kept apart, within half of that,
    each with what its values came from (the values' own objects, and the bytes of those
    under 256 bytes), counted as twice its bytes (a body seen twice: its containers too,
    whose strings are mostly the values'), so that a session's growing bodies never crowd
    out the values they share. A body is found again by its bytes, or grown from one
    that starts as it does (api/grown_bodies.py)."""

    __slots__ = ("_values", "_bodies", "_heads", "_short")

    def __init__(self, max_bytes: int = 24_000_000) -> None:
        self._values = _Kept(max_bytes)         # (bytes, parsed container, holds no container, size)
        # (bytes, (parsed body, its copy plan) or None: seen once, facts, Record, size)
        self._bodies = _Kept(max_bytes // 2)
        # A short body's bytes (a reference: no copy) and its facts, None while seen once.
        self._short = _Kept(max_bytes // 12)
        # (scope, a body's first bytes) -> the keys of the latest bodies that start so
        self._heads: dict[tuple[str, bytes], list] = {}

    @property
    def held(self) -> int:
        return self._values.held

    @property
    def bodies_held(self) -> int:
        return self._bodies.held

    def loads(self, raw: bytes, scope: str = "") -> dict | None:
        """`raw` parsed (a JSON object) as orjson parses it, or None: parse it with orjson."""
        return self.parse(raw, scope)[0]

    def parse(self, raw: bytes, scope: str = "") -> tuple[dict | None, dict | None, Grown | None]:
        """`raw` parsed as `loads` parses it; the facts kept with its bytes (a dict the
        stages read and fill in, kept as long as the body is), or None when it is not kept;
        and, for a body read as a kept one grown, what it grew from."""
        if len(raw) < MIN_BODY_BYTES:
            return None, self._short_facts(raw, scope), None
        # The same body again (a retry, an agent's parallel calls on one history): a
        # compare of its bytes (~20 µs for 400 KB) instead of msgspec's pass (~100 µs).
        # A body is kept parsed from its second time on: a session's bodies, each sent
        # once, cost no copy (their values are found again all the same).
        key = _key(scope, raw)
        again = self._bodies.find(key, raw)
        if again is not None:
            if again[1] is not None:
                return fresh_by(*again[1]), again[2], None
            record = again[3]
            body = _whole(record.members)
            plan = copy_plan(body)
            self._bodies.keep(key, (raw, (body, plan), again[2], record), 2 * len(raw))
            return fresh_by(body, plan), again[2], None
        read = self._grown(raw, scope) or self._split(raw, scope)
        if read is None:
            return None, None, None
        body, record, grown = read
        facts: dict = {}
        self._bodies.keep(key, (raw, None, facts, record), 2 * len(raw))
        heads = self._heads
        if len(heads) >= 4096:
            heads.clear()
        latest = heads.setdefault((scope, raw[:HEAD]), [])
        latest.insert(0, key)
        del latest[_BODIES_PER_HEAD:]
        return body, facts, grown

    def _short_facts(self, raw: bytes, scope: str) -> dict | None:
        """The facts kept with a short body's bytes from its second time on (a retry, an
        agent's parallel calls, a batch's repeated prompt), for the stages to read and fill
        in: found sound, passed by a policy, its prompt tokens. Parsed again each time
        (orjson: a few µs); only the bytes are looked up, by their length and ends and
        compared. Its first time only a reference to its bytes is kept: most short bodies
        come once, and the stages fill in facts for none of those."""
        key = _key(scope, raw)
        short = self._short
        entry = short.find(key, raw)
        if entry is None:
            short.keep(key, (raw, None), len(raw))
            return None
        facts = entry[1]
        if facts is None:
            facts = {}
            short.keep(key, (raw, facts), len(raw))
        return facts

    def _split(self, raw: bytes, scope: str) -> tuple[dict, Record, None] | None:
        try:
            members = tuple(self._members(TOP.decode(raw), scope))
            return _whole(members), Record(raw, members), None
        # (msgspec's errors, its UnicodeDecodeError on a key's bytes, orjson's: all ValueErrors)
        except (ValueError, msgspec.MsgspecError, RecursionError, _Refused):
            return None

    def _members(self, top: dict, scope: str) -> list[tuple]:
        """A top level read by msgspec as Record.members: (key, what its value comes from,
        each item's length for an array)."""
        members = []
        for key, item in top.items():
            kind = type(item)
            if kind is list:
                members.append((key, [self._source(element, scope) for element in item], [len(e) for e in item]))
            elif kind is dict:
                members.append((key, {name: self._source(member, scope) for name, member in item.items()}, None))
            elif kind is int and item not in _INT_RANGE or kind is float and not math.isfinite(item):
                raise _Refused
            else:
                members.append((key, item, None))
        return members

    def _grown(self, raw: bytes, scope: str) -> tuple[dict, Record, Grown] | None:
        """`raw` read as a body kept before, grown (api/grown_bodies.py), or None."""
        latest = self._heads.get((scope, raw[:HEAD]))
        if not latest:
            return None
        entries = self._bodies.entries
        for key in latest:
            entry = entries.get(key)
            if entry is None:
                continue
            record = entry[3]
            if record.spans is None:
                record.spans = _layout(record)
            if record.spans is False:
                continue
            try:
                grown = growth(record, raw)
                if grown is None:
                    continue
                array, kept, items = grown.key, grown.kept, grown.items
                members, listed = [], grown.listed
                for name, sources, lengths in record.members:
                    if name != array:
                        members.append((name, sources, lengths))
                        continue
                    members.append((name, sources[:kept] + [self._source(item, scope) for item in items],
                                    lengths[:kept] + [len(item) for item in items]))
                    if grown.after is None:
                        continue
                    # The members after the array are the new body's own: read, and checked
                    # for a repeated key here (the rest's, or one of the members before).
                    after = self._members(grown.after, scope)
                    if repeated_key(listed, orjson.loads(listed)) is not None or \
                            {name for name, _, _ in members} & {name for name, _, _ in after}:
                        return None
                    members += after
                    listed = b"[" + b",".join(map(bytes, items)) + b"]"
                    break
                members = tuple(members)
                return _whole(members), Record(raw, members, grown.spans), \
                    Grown(entry[2], array, kept, listed, grown.after is None,
                          grown.spans if isinstance(grown.spans, dict) else None)
            except (ValueError, msgspec.MsgspecError, RecursionError, _Refused):
                return None
        return None

    def _source(self, raw: _Raw, scope: str):
        """What a value is handed out from (`_handout`): a kept container, the bytes of a
        short value, or a long value that is no container (a text) itself."""
        if len(raw) < MIN_VALUE_BYTES:
            return bytes(raw)               # (refused, as orjson refuses it, when handed out)
        data = bytes(raw)
        key = _key(scope, data)
        kept = self._values.find(key, data)
        if kept is None:
            value = orjson.loads(data)
            if type(value) not in _CONTAINERS:
                return value
            kept = (data, value, _flat(value))
            self._values.keep(key, kept, 4 * len(data))
        return kept

    def __len__(self) -> int:
        return len(self._values.entries)
