"""A worker's view of its runs' counters, so most calls of a run need no store operation.

Run limits are counters in the budget store, but a run's calls come one
at a time, seconds apart, to whichever worker: the budgets' allotments (shares taken in
advance, handed back after a second idle) never form for them, and a store operation per
call would cost each agent call ~80 µs of the worker (SQLite) or a Redis round trip.
Instead each worker keeps, per counter:

- Run limits: what the store said the run had spent when this worker last asked
  (`synced`) and what this worker's calls spent since (`unsynced`, settled; `flying`,
  estimates of calls in flight). A call is admitted here while this worker's share of
  the room it last saw, SHARE of it, covers it; otherwise it goes to the store, carrying
  this worker's unsynced spend with it (one reserve, all or nothing), and the worker
  learns the run's spent again. So the store is asked about once per SHARE of the room
  left, and at every call near the end. The limit holds exactly as long as at most
  1/SHARE workers admit a run's calls between two of its store operations (one replica
  of up to four workers; more replicas each hold their share of what they last saw).

(Loops need no counter: a request carries the history they are counted in.)

Bounded: the oldest entries are forgotten past MAX_ENTRIES (a forgotten run counter is
asked about again)."""

from __future__ import annotations

from collections import OrderedDict

SHARE = 0.25
MAX_ENTRIES = 100_000


class RunCounter:
    __slots__ = ("synced", "unsynced", "flying")

    def __init__(self) -> None:
        self.synced = 0.0       # the run's spent, as the store last said (this call's reserve included)
        self.unsynced = 0.0     # settled here since, not yet in the store
        self.flying = 0.0       # estimates of calls admitted here, in flight


class RunLedger:
    __slots__ = ("counters",)

    def __init__(self) -> None:
        self.counters: OrderedDict[str, RunCounter] = OrderedDict()

    def counter(self, name: str) -> RunCounter:
        found = self.counters.get(name)
        if found is None:
            found = self.counters[name] = RunCounter()
            if len(self.counters) > MAX_ENTRIES:
                self.counters.popitem(last=False)
        else:
            self.counters.move_to_end(name)
        return found

    @staticmethod
    def admits_here(counter: RunCounter, limit: float, amount: float) -> bool:
        """Whether this worker's share of the room it last saw covers `amount`."""
        return counter.unsynced + counter.flying + amount <= (limit - counter.synced) * SHARE
