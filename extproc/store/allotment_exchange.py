"""The allotments' side of the budget store's exchange (allotments.py): which calls an
allotment covers, when to ask the store for one, and the exchange itself, one round trip
every FLUSH_SECONDS for every counter a worker holds. A mixin of `Allotments`, whose
state it shares; imports nothing of the gateway above the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from .base import Exchange, StoreUnavailable, maybe_await
from .limits import Charge
from .pending import adopt_orphans, waiting

log = logging.getLogger("extproc.allotments")

FLUSH_SECONDS = 0.5
IDLE_SECONDS = 1.0              # an allotment unused this long is handed back
LEASE_SECONDS = 60.0            # renewed at every exchange; frees a dead worker's share
CALLS_PER_ALLOTMENT = 16        # the least an allotment covers, in calls like the last
_EPSILON = 1e-9


@dataclass(slots=True, eq=False)
class Allotment:
    """One counter as this worker sees it between two exchanges."""
    counter: str
    limit: float
    window_end: float
    total: float = 0.0          # spent by this worker's calls since it first held it
    granted: float = 0.0        # held for this worker in the store
    room: float = 0.0           # the counter's room at the last exchange, granted included
    store_spent: float = 0.0    # the counter's spent (all holders) at the last exchange
    held: float = 0.0           # what its calls in flight hold
    spent: float = 0.0          # what its calls spent since the last exchange
    need: float = 0.0           # the largest charge since the last exchange
    calls: int = 0              # calls since the last exchange (local or not)
    flying: int = 0             # calls admitted here and not settled yet
    last_call: float = 0.0      # monotonic time of the last call that wanted it
    exchanging: bool = False    # no local admission while the store redoes its share
    slot: int = -1              # its place in the live journal (-1: none)

    def covers(self, amount: float) -> bool:
        return not self.exchanging and self.held + self.spent + amount <= self.granted + _EPSILON

    def remaining(self) -> float:
        return self.room - self.held - self.spent


class ExchangesAllotments:
    """How `Allotments` covers calls from its allotments and exchanges them with the store."""

    def _covering(self, charges: list[Charge]) -> list[Allotment] | None:
        if not self._grants:
            return None
        allotted = []
        for charge in charges:
            allotment = self._counters.get(charge.counter)
            if allotment is None or allotment.limit != charge.limit.limit \
                    or not allotment.covers(charge.reserve + charge.count_now):
                return None      # (a reload changed the limit: the store decides, resized next)
            allotted.append(allotment)
        return allotted

    def _ask(self, charges: list[Charge]) -> None:
        """A call the allotments did not cover: size an allotment on it, and exchange at
        once if one ran out or was never asked for (one refused waits for the tick)."""
        if not self._grants or any(charge.limit.kind == "concurrent" for charge in charges):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:         # called outside a loop (a tool, not a worker): no allotments
            return
        now_needed = False
        for charge in charges:
            allotment = self._counters.get(charge.counter)
            if allotment is None:
                allotment = self._new_counter(charge)
                now_needed = True
            elif allotment.granted > 0:
                now_needed = True
            allotment.limit = charge.limit.limit
            allotment.calls += 1
            allotment.last_call = time.monotonic()
            allotment.need = max(allotment.need, charge.reserve + charge.count_now)
        self._start_ticker(loop)
        if now_needed and self._exchange_task is None:
            self._start_exchange(loop)

    def _start_exchange(self, loop, final: bool = False) -> asyncio.Task:
        """One exchange at a time: two under way would both report the same spend."""
        self._exchange_task = task = loop.create_task(self._exchange(final))
        task.add_done_callback(self._exchanged)
        return task

    def _exchanged(self, _task) -> None:
        self._exchange_task = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            if self._counters and self._exchange_task is None:
                await asyncio.wait([self._start_exchange(loop)])
            if self._journal is not None:
                await self.adopt_orphans()
            if self._generation is not None:
                await self._generation.check(self.store)

    async def adopt_orphans(self) -> None:
        """Writes what gone workers of this store left in their journals (journal.py)."""
        await adopt_orphans(self._journal, self._orphans, self.store, self._lease, self._on_lost_calls)

    async def _exchange(self, final: bool = False) -> None:
        """One round trip for every counter: report the spend, keep what calls in flight
        hold, and ask for room for twice the calls since the last exchange (at least
        CALLS_PER_ALLOTMENT); the same room again if none came; nothing (the allotment
        handed back) once it went unused for IDLE_SECONDS, its window ended, or at close."""
        now, clock = time.time(), time.monotonic()
        due = list(self._counters.values())
        if not due:
            return
        items, calls_sized = [], []
        settles = self._settles.take([allotment.counter for allotment in due])
        for allotment in due:
            if final or now >= allotment.window_end or clock - allotment.last_call >= IDLE_SECONDS:
                want = 0.0
            elif allotment.calls:
                want = allotment.need * max(CALLS_PER_ALLOTMENT, 2 * allotment.calls)
            else:
                want = max(0.0, allotment.granted - allotment.held - allotment.spent)
            items.append(Exchange(allotment.counter, allotment.limit, allotment.window_end,
                                  allotment.spent, allotment.total, allotment.held, want,
                                  settles.get(allotment.counter, ())))
            calls_sized.append(allotment.calls)
            allotment.exchanging = True
        try:
            granted = await maybe_await(self.store.exchange(self.holder, items, now, now + self._lease))
        except StoreUnavailable as error:
            # Nothing changed in the store (or, Redis, it did and `total` says so): the
            # calls go on against what is held, and the next tick retries; what waits
            # goes in the journal, for a successor should this worker go first.
            self._on_unavailable()
            log.error("budget store unavailable on allotment exchange: %s", error)
            if self._journal is not None:
                self._journal.write(waiting(self._counters.values(), self._settles))
                if final:
                    self._journal.release()
                    self.live = None
            return
        finally:
            for allotment in due:
                allotment.exchanging = False
        for counter, carried in settles.items():
            self._settles.applied(counter, len(carried))
        if self._journal is not None:
            self._journal.clear()
            if final:
                self._journal.close()
                self.live = None
        for allotment, item, answer, sized in zip(due, items, granted, calls_sized):
            allotment.spent -= item.spent          # settled meanwhile: for the next exchange
            if self.live is not None:
                self.live.counter(allotment.slot, allotment.spent, allotment.total)
            allotment.granted, allotment.room = answer.granted, answer.room
            allotment.store_spent = answer.spent
            # Calls that came during the exchange (to the store) size the next one.
            allotment.calls -= sized
            if not allotment.calls:
                allotment.need = 0.0
            self._totals[allotment.counter] = (item.total, allotment.window_end)
            if not answer.granted and not allotment.flying and not allotment.spent \
                    and allotment.counter not in self._settles.by_counter:
                del self._counters[allotment.counter]
                if self.live is not None:
                    self.live.drop_counter(allotment.slot)
        self._forget_closed_windows(now)

    def _forget_closed_windows(self, now: float) -> None:
        if len(self._totals) > len(self._counters) + 1000:
            self._totals = {counter: entry for counter, entry in self._totals.items()
                            if entry[1] > now or counter in self._counters}
