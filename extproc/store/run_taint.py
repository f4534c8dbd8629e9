"""What an agent run has taken in, shared by every worker and replica: whether it has read
private data and whether it has taken in untrusted content (stages/mcp/taint.py decides
what a run so tainted may still do).

Two small records per run in the store's records (SQLite's table, Redis's keys), one per
flag, each only ever set (its expiry moved on by each mark): two workers marking the same
run at once need no transaction, and a flag, once set, stays set until it expires. Reading a run's
state is one query (one MGET on Redis). A run both flags have marked cannot become
clean again before they expire, so each worker remembers such runs (bounded) and asks
the store only about the others.

On Redis, where that query costs ~190 µs of the client's CPU, a worker also remembers
what it read of runs not fully tainted (clean, or one flag) for CLEAN_SECONDS, bounded,
invalidated by the store: a mark is published on a Redis channel before the result
that set it goes back, and every worker listening drops that run at once. A worker
remembers such runs only while it is subscribed (its listener, one connection per
worker, started on its first read); a subscription lost forgets them all. SQLite's
read (15-35 µs, one host) is not cached."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

from .base import StoreUnavailable, maybe_await

log = logging.getLogger("extproc.store")

KIND = "run_taint"
PRIVATE = "reads_private"
UNTRUSTED = "untrusted_content"
_SUFFIX = {PRIVATE: ":p", UNTRUSTED: ":u"}
MAX_REMEMBERED = 10_000          # fully tainted runs a worker remembers
CLEAN_SECONDS = 10.0             # how long a run not fully tainted is remembered (between invalidations)
MAX_CLEAN = 10_000
CHANNEL = "run_taint"


class _Invalidated:
    """The worker's runs not fully tainted, as last read, kept while subscribed to marks."""

    def __init__(self) -> None:
        self.runs: OrderedDict[str, tuple[float, dict[str, str]]] = OrderedDict()
        self.live = False
        self.task: asyncio.Task | None = None
        self.loop = None

    def follow(self, store) -> None:
        """Starts listening for marks, once per event loop, if the store publishes them."""
        if not hasattr(store, "listen"):
            return
        loop = asyncio.get_running_loop()
        if self.loop is loop and self.task is not None and not self.task.done():
            return
        self.loop, self.live = loop, False
        self.runs.clear()
        self.task = loop.create_task(store.listen(CHANNEL, self.drop, self.subscribed))

    def subscribed(self, live: bool) -> None:
        self.live = live
        self.runs.clear()

    def drop(self, run: str) -> None:
        self.runs.pop(run, None)

    def get(self, run: str) -> dict[str, str] | None:
        if not self.live:
            return None
        found = self.runs.get(run)
        if found is None:
            return None
        if found[0] > time.monotonic():
            return found[1]
        del self.runs[run]
        return None

    def keep(self, run: str, flags: dict[str, str]) -> None:
        if self.live:
            self.runs[run] = (time.monotonic() + CLEAN_SECONDS, flags)
            self.runs.move_to_end(run)
            if len(self.runs) > MAX_CLEAN:
                self.runs.popitem(last=False)


_CLEAN = _Invalidated()          # the worker's, shared by every RunTaint of it


class RunTaint:
    __slots__ = ("store", "_tainted", "_publisher")

    def __init__(self, store) -> None:
        self.store = store
        # The Redis store under the worker's wrapper of it (allotments), which publishes marks.
        self._publisher = getattr(store, "store", store)
        # run -> (until when it is remembered, its flags and the tools that set them)
        self._tainted: OrderedDict[str, tuple[float, dict[str, str]]] = OrderedDict()

    async def flags(self, run: str) -> dict[str, str]:
        """The run's flags (PRIVATE, UNTRUSTED), each with the tool that set it; raises
        StoreUnavailable."""
        remembered = self._tainted.get(run)
        if remembered is not None:
            if remembered[0] > time.time():
                return remembered[1]
            del self._tainted[run]
        clean = _CLEAN.get(run)
        if clean is not None:
            return clean
        _CLEAN.follow(self._publisher)
        names = [run + _SUFFIX[PRIVATE], run + _SUFFIX[UNTRUSTED]]
        found = await maybe_await(self.store.get_records(KIND, names))
        flags = {flag: found[run + suffix] for flag, suffix in _SUFFIX.items() if run + suffix in found}
        if len(flags) == 2:
            self._remember(run, flags)
        else:
            _CLEAN.keep(run, flags)
        return flags

    async def mark(self, run: str, flags, source: str, ttl_seconds: float) -> None:
        """Sets `flags` on the run (`source`: the tool that set them, for operators)."""
        items = [(run + _SUFFIX[flag], source[:128]) for flag in flags if flag in _SUFFIX]
        if items:
            await maybe_await(self.store.put_records(KIND, items, time.time() + ttl_seconds))
            _CLEAN.drop(run)
            publisher = self._publisher
            if hasattr(publisher, "publish"):       # every worker's remembered state of the run goes
                try:
                    await publisher.publish(CHANNEL, run)
                except StoreUnavailable as error:
                    log.error("a run's taint mark was not published to the other workers: %s", error)

    def _remember(self, run: str, flags: dict[str, str]) -> None:
        # A minute at a time: a run's records may expire (ttl), and an operator may clear them.
        self._tainted[run] = (time.time() + 60.0, flags)
        self._tainted.move_to_end(run)
        while len(self._tainted) > MAX_REMEMBERED:
            self._tainted.popitem(last=False)
