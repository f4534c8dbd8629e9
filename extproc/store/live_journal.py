"""A worker's live journal: what dies with it if it is killed, in a memory-mapped file.

Beside its journal of what an unreachable store has not had (journal.py), each worker
keeps `pending-<holder>.live` in the state directory, written as it goes (no fsync: the
kernel keeps a killed process's pages):
  - its allotments' counters: name, limit, window end, the spend since the last exchange
    that succeeded and the running total (allotments.py updates them at each reserve,
    settle and meter add, a few hundred nanoseconds each);
  - its calls in flight: each call's identity for the log line (id, key, model, when it
    started), put at the call's start, its status and outcome noted once its answer is
    out (before its bookkeeping: settle, meters, log line), its usage and cost once they
    are in its counters (after the settle and the meters), cleared once its own log line
    has left the worker;
  - the reservations its calls hold in the store itself (those its allotments did not
    cover): the reservation's id and counters, put before the store's reserve and
    cleared once it is settled.
When the worker dies (its flock on `pending-<holder>.lock` goes with it), whoever takes the
lock (the supervisor at once, another worker's scan later) writes a log line for each call
left in flight and brings the counters to the store in the dead holder's name, which hands
its allotment back (and frees its calls' reservations, settled at nothing): the store's
exchange takes a holder's spend once (journal.py).
"""

from __future__ import annotations

import mmap
import os
import struct
import time

import orjson

MAGIC = b"LGWLIVE2"
MAGIC_BEFORE_CHARGES = b"LGWLIVE1"      # a file the version before calls' charges left: read too
COUNTER_SLOTS = 512
COUNTER_NAME_BYTES = 480
CALL_SLOTS = 2048
CALL_BYTES = 1024
RESERVATION_SLOTS = 1024
_HEADER = struct.Struct("<8s64s16sI")            # magic, holder, store digest, pid
_COUNTER = struct.Struct(f"<H{COUNTER_NAME_BYTES}sdd")   # name length, name, limit, window end
_NUMBERS = struct.Struct("<dd")                  # spent since the last exchange, total
# identity length (0: free), started (epoch s), status and outcome once answered (0: not
# yet), then once charged (its settle and meters done): a flag, its input, output, cached
# and reasoning tokens, whether they were estimated, and its cost
_CALL = struct.Struct("<HdH16s?qqqq?d")
_ANSWERED = struct.Struct("<H16s")
_ANSWERED_AT = 10
_CHARGED = struct.Struct("<?qqqq?d")
_CHARGED_AT = _CALL.size - _CHARGED.size
_CALL_BEFORE_CHARGES = struct.Struct("<HdH16s")
_NOT_CHARGED = (False, 0, 0, 0, 0, False, 0.0)
_OUTCOMES = {name: name.encode() for name in (
    "ok", "upstream_error", "refused", "error", "gateway_timeout", "provider_cut", "cancelled")}
_HEADER_BYTES = 128
_COUNTER_BYTES = _COUNTER.size + _NUMBERS.size
_COUNTERS_AT = _HEADER_BYTES
_CALLS_AT = _COUNTERS_AT + COUNTER_SLOTS * _COUNTER_BYTES
_RESERVATIONS_AT = _CALLS_AT + CALL_SLOTS * CALL_BYTES
SIZE = _RESERVATIONS_AT + RESERVATION_SLOTS * CALL_BYTES
_IDENTITY_BYTES = CALL_BYTES - _CALL.size


class LiveJournal:
    """This worker's file, mapped; every write is a store into shared memory."""

    def __init__(self, path: str, holder: str, store: str) -> None:
        self.path = path
        fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, SIZE)           # sparse: pages are touched as slots are used
            self._map = mmap.mmap(fd, SIZE)
        finally:
            os.close(fd)
        _HEADER.pack_into(self._map, 0, MAGIC, holder.encode()[:64], store.encode()[:16], os.getpid())
        self._free_counters = list(range(COUNTER_SLOTS - 1, -1, -1))
        self._free_calls = list(range(CALL_SLOTS - 1, -1, -1))
        self._free_reservations = list(range(RESERVATION_SLOTS - 1, -1, -1))

    # --- counters --------------------------------------------------------------------

    def add_counter(self, counter: str, limit: float, window_end: float) -> int:
        """A slot for a counter (-1 when none is left or its name is too long: its spend
        is then not journalled, and dies with the worker)."""
        name = counter.encode()
        if not self._free_counters or len(name) > COUNTER_NAME_BYTES:
            return -1
        slot = self._free_counters.pop()
        at = _COUNTERS_AT + slot * _COUNTER_BYTES
        _NUMBERS.pack_into(self._map, at + _COUNTER.size, 0.0, 0.0)
        _COUNTER.pack_into(self._map, at, len(name), name, limit, window_end)
        return slot

    def counter(self, slot: int, spent: float, total: float) -> None:
        if slot >= 0:
            _NUMBERS.pack_into(self._map, _COUNTERS_AT + slot * _COUNTER_BYTES + _COUNTER.size, spent, total)

    def drop_counter(self, slot: int) -> None:
        if slot >= 0:
            struct.pack_into("<H", self._map, _COUNTERS_AT + slot * _COUNTER_BYTES, 0)
            self._free_counters.append(slot)

    # --- calls in flight -------------------------------------------------------------

    def call_started(self, identity: dict) -> int:
        """A slot for a call in flight (-1 when none is left)."""
        if not self._free_calls:
            return -1
        body = orjson.dumps(identity)
        if len(body) > _IDENTITY_BYTES:
            body = orjson.dumps({k: identity[k] for k in ("request_id", "key_id", "config_version")
                                 if k in identity})
        slot = self._free_calls.pop()
        at = _CALLS_AT + slot * CALL_BYTES
        self._map[at + _CALL.size:at + _CALL.size + len(body)] = body
        _CALL.pack_into(self._map, at, len(body), time.time(), 0, b"", *_NOT_CHARGED)
        return slot

    def call_answered(self, slot: int, status: int, outcome: str) -> None:
        """The call's answer is out: what its caller got, should the worker die before its
        log line."""
        if slot >= 0:
            _ANSWERED.pack_into(self._map, _CALLS_AT + slot * CALL_BYTES + _ANSWERED_AT, status & 0xFFFF,
                                _OUTCOMES.get(outcome) or outcome.encode()[:16])

    def call_charged(self, slot: int, usage, cost: float) -> None:
        """The call's settle and meters are done: its usage (None: nothing) and cost are
        in the counters, and go on its line should the worker die before its own."""
        if slot < 0:
            return
        at = _CALLS_AT + slot * CALL_BYTES + _CHARGED_AT
        if usage is None:
            _CHARGED.pack_into(self._map, at, True, *_NOT_CHARGED[1:])
            return
        try:
            _CHARGED.pack_into(self._map, at, True, usage.input_tokens, usage.output_tokens, usage.cached_tokens,
                               usage.reasoning_tokens, usage.estimated, cost)
        except (struct.error, TypeError):     # a count past 64 bits: left as not charged
            pass

    def call_ended(self, slot: int) -> None:
        if slot >= 0:
            struct.pack_into("<H", self._map, _CALLS_AT + slot * CALL_BYTES, 0)
            self._free_calls.append(slot)

    # --- reservations in the store ---------------------------------------------------

    def reserving(self, rid: str, counters: list[tuple[str, float, float]]) -> int:
        """A slot for a reservation about to be made in the store: its id and (counter,
        limit, window end) each (-1 when none is left, or too long: its lease frees it)."""
        body = orjson.dumps([rid, counters])
        if not self._free_reservations or len(body) > _IDENTITY_BYTES:
            return -1
        slot = self._free_reservations.pop()
        at = _RESERVATIONS_AT + slot * CALL_BYTES
        self._map[at + _CALL.size:at + _CALL.size + len(body)] = body
        _CALL.pack_into(self._map, at, len(body), time.time(), 0, b"", *_NOT_CHARGED)
        return slot

    def settled(self, slot: int) -> None:
        if slot >= 0:
            struct.pack_into("<H", self._map, _RESERVATIONS_AT + slot * CALL_BYTES, 0)
            self._free_reservations.append(slot)

    def close(self, unlink: bool) -> None:
        self._map.close()
        if unlink:
            try:
                os.unlink(self.path)
            except OSError:
                pass


def read_live(path: str) -> tuple[str, str, list[tuple[str, float, float, float, float]],
                                  list[tuple[dict, float]], list[tuple[str, list]]]:
    """A gone worker's file: its holder, store digest, counters (name, limit, window end,
    spent, total), calls in flight (identity, started; with `answered`: [status, outcome]
    when its answer was out; with `charged`: {input_tokens, output_tokens, cached_tokens,
    reasoning_tokens, usage_estimated, cost_usd} once its counters had it) and
    reservations in the store (id, [(counter, limit, window end)]). ValueError when it is
    not one."""
    with open(path, "rb") as file:
        data = file.read()
    if len(data) != SIZE:
        raise ValueError("not a live journal")
    magic, holder, store, _pid = _HEADER.unpack_from(data, 0)
    if magic not in (MAGIC, MAGIC_BEFORE_CHARGES):
        raise ValueError("not a live journal")
    header = _CALL if magic == MAGIC else _CALL_BEFORE_CHARGES
    counters = []
    for slot in range(COUNTER_SLOTS):
        at = _COUNTERS_AT + slot * _COUNTER_BYTES
        length, name, limit, window_end = _COUNTER.unpack_from(data, at)
        if length:
            spent, total = _NUMBERS.unpack_from(data, at + _COUNTER.size)
            counters.append((name[:length].decode(), limit, window_end, spent, total))
    calls = _blobs(data, _CALLS_AT, CALL_SLOTS, header)
    reservations = [(rid, counters) for (rid, counters), _ in _blobs(data, _RESERVATIONS_AT, RESERVATION_SLOTS,
                                                                     header)]
    return holder.rstrip(b"\0").decode(), store.rstrip(b"\0").decode(), counters, calls, reservations


def _blobs(data: bytes, start: int, slots: int, header: struct.Struct) -> list[tuple]:
    found = []
    for slot in range(slots):
        at = start + slot * CALL_BYTES
        length, started, status, outcome, *charges = header.unpack_from(data, at)
        if length:
            charged, *usage, estimated, cost = charges or _NOT_CHARGED
            try:
                blob = orjson.loads(data[at + header.size:at + header.size + length])
            except orjson.JSONDecodeError:
                continue
            if status and isinstance(blob, dict):
                blob["answered"] = [status, outcome.rstrip(b"\0").decode(errors="replace")]
            if charged and isinstance(blob, dict):
                blob["charged"] = {"input_tokens": usage[0], "output_tokens": usage[1], "cached_tokens": usage[2],
                                   "reasoning_tokens": usage[3], "usage_estimated": estimated, "cost_usd": cost}
            found.append((blob, started))
    return found


def forget_calls(path: str) -> None:
    """The calls of a gone worker's file are logged: cleared, so no later taker logs them again."""
    try:
        with open(path, "r+b") as file:
            file.seek(_CALLS_AT)
            file.write(b"\0" * (CALL_SLOTS * CALL_BYTES))
    except OSError:
        pass
