"""What an agent run has taken in, shared by every worker and replica: whether it has read
private data and whether it has taken in untrusted content (stages/mcp/taint.py decides
what a run so tainted may still do).

Two small records per run in the store's records (SQLite's table, Redis's keys), one per
flag, each only ever set (its expiry moved on by each mark): two workers marking the same
run at once need no transaction, and a flag, once set, stays set until it expires. Reading a run's
state is one query (one MGET on Redis). A run both flags have marked cannot become
clean again before they expire, so each worker remembers such runs (bounded) and asks
the store only about the others."""

from __future__ import annotations

import time
from collections import OrderedDict

from .base import maybe_await

KIND = "run_taint"
PRIVATE = "reads_private"
UNTRUSTED = "untrusted_content"
_SUFFIX = {PRIVATE: ":p", UNTRUSTED: ":u"}
MAX_REMEMBERED = 10_000          # fully tainted runs a worker remembers


class RunTaint:
    __slots__ = ("store", "_tainted")

    def __init__(self, store) -> None:
        self.store = store
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
        names = [run + _SUFFIX[PRIVATE], run + _SUFFIX[UNTRUSTED]]
        found = await maybe_await(self.store.get_records(KIND, names))
        flags = {flag: found[run + suffix] for flag, suffix in _SUFFIX.items() if run + suffix in found}
        if len(flags) == 2:
            self._remember(run, flags)
        return flags

    async def mark(self, run: str, flags, source: str, ttl_seconds: float) -> None:
        """Sets `flags` on the run (`source`: the tool that set them, for operators)."""
        items = [(run + _SUFFIX[flag], source[:128]) for flag in flags if flag in _SUFFIX]
        if items:
            await maybe_await(self.store.put_records(KIND, items, time.time() + ttl_seconds))

    def _remember(self, run: str, flags: dict[str, str]) -> None:
        # A minute at a time: a run's records may expire (ttl), and an operator may clear them.
        self._tainted[run] = (time.time() + 60.0, flags)
        self._tainted.move_to_end(run)
        while len(self._tainted) > MAX_REMEMBERED:
            self._tainted.popitem(last=False)
