"""Streams passed through that end early: what Envoy sent of them, in tokens.

A stream Envoy passes through (stages/pass_through.py) brings its usage with the
trailers message at its end. One that ends without it (the client left, the provider
dropped) would be charged the output cap: the service never saw its text. Envoy knows
what it sent. Its gRPC access log (envoy/quickstart.yaml) sends an entry for such a
stream only, with the body bytes and the status, to *a* worker
(runtime/cut_stream_log.py); the worker that had the call waits for that entry
(`SentBytes`): here, or through the budget store when another worker got it (with no
budget configured, a store of the same settings opened for this alone). Bytes become
tokens by a ratio each worker learns from the streams that complete (`BytesPerToken`:
`response.size` with their usage). No work per chunk: Envoy counts the bytes anyway.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import math
import secrets
import sqlite3
import time

from ..transport.eager import task_needed
from . import CutEntry, StoreUnavailable, maybe_await, open_store
from .limits import StoreSettings

log = logging.getLogger("extproc.cut_streams")

# How long a call that ended early waits for its entry. Envoy flushes the log every
# 0.2 s (envoy/quickstart.yaml); a worker polls the store at this pace while it waits.
WAIT_SECONDS = 3.0
_POLL_SECONDS = 0.1
# An entry nobody took (its worker gave up or died) stays this long (store or memory).
KEEP_SECONDS = 60.0

# Unique across workers and restarts: a random prefix per process (made again in a
# forked worker: runtime/forked.py).
_PREFIX = secrets.token_hex(4)


def _new_prefix() -> None:
    global _PREFIX
    _PREFIX = secrets.token_hex(4)


os.register_at_fork(after_in_child=_new_prefix)
_NUMBERS = itertools.count()


def new_cut_id() -> str:
    return f"{_PREFIX}-{next(_NUMBERS)}"


class SentBytes:
    """Where a cut stream's entry meets the call waiting for it."""

    def __init__(self, wait_seconds: float = WAIT_SECONDS, settings: StoreSettings | None = None) -> None:
        self.wait_seconds = wait_seconds
        self.settings = settings           # for a hand-off store when no budget store is open
        self._own_store = None
        self._own_store_failed = False
        self._waiting: dict[str, asyncio.Future] = {}
        self._arrived: dict[str, tuple[CutEntry, float]] = {}   # no store: kept here a while

    def _store(self, store):
        """The budget store in force, else one opened for the hand-off alone, on first
        use: a config without budgets still runs several workers, and its records and
        cost metrics still count what a cut stream was sent."""
        if store is not None or self.settings is None or self._own_store_failed:
            return store
        if self._own_store is None:
            try:
                self._own_store = open_store(self.settings)
            except (OSError, sqlite3.Error) as error:
                log.error("no store to hand cut streams' entries between workers: %s", error)
                self._own_store_failed = True
        return self._own_store

    async def arrived(self, cut_id: str, entry: CutEntry, store) -> None:
        store = self._store(store)
        waiter = self._waiting.get(cut_id)
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(entry)
            return
        if store is None:
            self._keep(cut_id, entry)
            return
        try:           # its call is in another worker (or has not ended here yet)
            await maybe_await(store.put_cut_entry(cut_id, entry, time.time() + KEEP_SECONDS))
        except StoreUnavailable as error:
            log.error("budget store unavailable for a cut stream's entry: %s", error)
            self._keep(cut_id, entry)

    def _keep(self, cut_id: str, entry: CutEntry) -> None:
        now = time.monotonic()
        if len(self._arrived) > 1000:          # entries whose call is elsewhere: let them go
            for stale in [k for k, (_, at) in self._arrived.items() if now - at > KEEP_SECONDS]:
                del self._arrived[stale]
        self._arrived[cut_id] = (entry, now)

    async def wait(self, cut_id: str, store) -> CutEntry | None:
        """A cut stream's entry, or None when none came in time."""
        store = self._store(store)
        kept = self._arrived.pop(cut_id, None)
        if kept is not None:
            return kept[0]
        await task_needed()                  # timeouts and store round trips (transport/eager.py)
        loop = asyncio.get_running_loop()
        waiter = self._waiting[cut_id] = loop.create_future()
        deadline = loop.time() + self.wait_seconds
        try:
            while True:
                if store is not None:
                    try:
                        found = await maybe_await(store.take_cut_entry(cut_id))
                    except StoreUnavailable as error:
                        # Once per call: from here on, only an entry that comes to this worker.
                        log.error("budget store unavailable for a cut stream's entry: %s", error)
                        found = store = None
                    if found is not None:
                        return found
                left = deadline - loop.time()
                if left <= 0:
                    return None
                try:
                    return await asyncio.wait_for(asyncio.shield(waiter),
                                                  min(left, _POLL_SECONDS) if store is not None else left)
                except TimeoutError:
                    continue
        finally:
            del self._waiting[cut_id]


class BytesPerToken:
    """What the streams that completed teach about reading a cut one's bytes as output
    tokens, per stream shape (model, backend, endpoint, usage in the stream or not):
    body bytes per visible output token, and the reasoning tokens a stream spends
    unseen (billed as output, never streamed: a cut stream has spent them too).

    A completed stream's ratio includes its few fixed events (role, finish, [DONE]), so it
    reads a little high for a long stream and a cut stream comes out a little under:
    streams with fewer than MIN_TOKENS visible tokens, where those events weigh most, do
    not teach the ratio. Until a shape has completed once, DEFAULT: under what providers
    send (OpenAI's chat chunks carry ~280 bytes a token, the mock's ~125), so a cut
    stream is charged more, never less, than it was sent.
    """

    DEFAULT = 100.0
    MIN_TOKENS = 16
    WEIGHT = 0.2               # of each new stream in the running figures

    def __init__(self) -> None:
        self._ratios: dict[tuple, float] = {}
        self._reasoning: dict[tuple, float] = {}

    def learn(self, shape: tuple, size: int, output_tokens: int, reasoning_tokens: int = 0) -> None:
        _blend(self._reasoning, shape, reasoning_tokens)
        visible = output_tokens - reasoning_tokens
        if visible >= self.MIN_TOKENS and size > 0:
            _blend(self._ratios, shape, size / visible)

    def tokens(self, shape: tuple, size: int) -> int:
        return math.ceil(size / self._ratios.get(shape, self.DEFAULT)) + round(self._reasoning.get(shape, 0.0))


def _blend(running: dict, shape: tuple, value: float) -> None:
    old = running.get(shape)
    running[shape] = value if old is None else old + BytesPerToken.WEIGHT * (value - old)


class WorkerCutStreams:
    """What a worker keeps about cut streams across config reloads (the hand-off store,
    when it opens one, keeps the settings of the config the worker started with)."""

    def __init__(self, settings: StoreSettings | None = None) -> None:
        self.sent = SentBytes(settings=settings)
        self.ratios = BytesPerToken()
