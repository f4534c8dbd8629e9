"""Allotments: a worker admits calls against a share of a budget it took in advance.

A budget costs every call two store round trips, a reserve before it and a settle
after (SQLite: two commits, ~80 µs of the worker; Redis: ~215 µs of redis-py). Far from
its end a budget does not need them. Each worker takes an allotment of the counter (a
reservation of its own in the store, sized for a few dozen calls like the ones it
sees), admits and settles its calls against it in memory, and every FLUSH_SECONDS
swaps it in one round trip for all its counters: what its calls spent goes into the
store's `spent`, and the allotment is renewed, resized or handed back. This is the
scheme of Envoy's rate limit quota service (RLQS), with the worker as the client.

What stays exact, and what does not:
- No limit is overshot: a worker admits only what its allotment covers, and the store
  grants one only while the counter's room is at least ROOM_FACTOR times it. Near its
  end a budget goes back to one store reserve per call, and what the allotments held
  elsewhere take from the room is small (each is handed back within FLUSH_SECONDS of
  going unused).
- The spend reaches the store within FLUSH_SECONDS, and when the worker stops or
  reloads its store. A worker given a live journal (live_journal.py) keeps what its
  calls spent since its last exchange in a memory-mapped file as it goes: killed
  outright, its spend is written in its name and its allotment handed back by whoever
  takes its journal (the supervisor, at once); without one, it is lost and the
  allotment's lease (at most LEASE_SECONDS) frees what it held.
- Concurrency limits are never allotted: a call with one goes to the store, with all
  its charges, as before.

While the store is unreachable nothing is lost: the spend waits here, and a settle that
fails (a call reserved in the store) is kept and applied at a later exchange, exactly
once (the store's exchange tells a settle already applied from one still due). The
meters (`add`) never need an admission: their spend is always kept here and exchanged.
A worker given a journal (journal.py) puts what waits in a file after each failed
exchange, for a successor to write if it dies before the store returns. The kept settles
are bounded (pending.py); past that a settle is dropped, logged, and its lease frees it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

from .allotment_exchange import (  # noqa: F401  (the constants: read from here too)
    CALLS_PER_ALLOTMENT, FLUSH_SECONDS, IDLE_SECONDS, LEASE_SECONDS, Allotment, ExchangesAllotments)
from .base import Admission, StoreUnavailable, is_awaitable, maybe_await
from .generation import StoreGeneration
from .journal import Journal, Orphan
from .limits import Charge
from .meters import MeterCounter
from .pending import PendingSettles


class Allotments(ExchangesAllotments):
    """The budget store's interface, in front of a store (SQLite or Redis)."""

    def __init__(self, store, lease_seconds: float,
                 on_unavailable: Callable[[], None] = lambda: None, *, grants: bool = True,
                 journal_dir: str | None = None, store_name: str = "",
                 generation: StoreGeneration | None = None, live: bool = False,
                 on_lost_calls: Callable[[list], None] | None = None) -> None:
        """`grants`: admit calls in memory (False: every reserve goes to the store, and
        only the meters' spend and failed settles wait here). `journal_dir`: where the
        journal of what waits is kept (none: memory only). `generation`: checked every
        few seconds (a store that lost its counters is told). `live`: keep the live
        journal too (a worker: its spend and calls in flight survive a kill);
        `on_lost_calls(calls)`: logs the calls a gone worker had in flight."""
        self.store = store
        self._on_unavailable = on_unavailable     # counts the failed exchange (the worker's metric)
        self.holder = f"allot:{uuid.uuid4().hex[:16]}"
        self._lease = min(lease_seconds, LEASE_SECONDS)
        self._grants = grants
        self._counters: dict[str, Allotment] = {}
        self._local: dict[str, list[tuple[Allotment, float]]] = {}   # rid -> (allotment, reserve)
        self._totals: dict[str, tuple[float, float]] = {}   # counter -> (total, window_end)
        self._settles = PendingSettles()         # settles (and reserves) the store did not take
        self._journal = Journal(journal_dir, self.holder, store_name, live) if journal_dir else None
        self.live = self._journal.live if self._journal is not None else None
        self._in_store: dict[str, int] = {}      # rid -> its slot in the live journal
        self._on_lost_calls = on_lost_calls
        self._orphans: list[Orphan] = []
        self._generation = generation
        self._exchange_task: asyncio.Task | None = None
        self._ticker: asyncio.Task | None = None
        if self._journal is not None or generation is not None:
            try:                      # a worker: gone holders' journals and the generation, from the start
                self._ticker = asyncio.get_running_loop().create_task(self._tick())
            except RuntimeError:
                pass

    # --- the store's interface --------------------------------------------------

    def reserve(self, rid: str, charges: list[Charge], now: float, lease_until: float):
        """In memory when every charge's allotment covers it; else the store's reserve
        (and an allotment asked for, for the calls after it)."""
        allotted = self._covering(charges)
        if allotted is None:
            self._ask(charges)
            reserved = [(c.counter, c.limit.limit, c.window_end) for c in charges if c.reserve]
            if self.live is not None and reserved:   # freed by whoever takes the journal, should this worker die
                slot = self.live.reserving(rid, reserved)
                if slot >= 0:
                    self._in_store[rid] = slot
            try:
                admission = self.store.reserve(rid, charges, now, lease_until)
            except StoreUnavailable:
                self._settled_in_store(rid)      # (kept to be released instead, below)
                self._settle_later(rid, charges, None)
                raise
            if is_awaitable(admission):
                return self._reserved_or_released(admission, rid, charges)
            if not admission.admitted:
                self._settled_in_store(rid)
            return admission
        remaining = {}
        for allotment, charge in zip(allotted, charges):
            allotment.held += charge.reserve
            allotment.spent += charge.count_now
            allotment.total += charge.count_now
            allotment.calls += 1
            allotment.last_call = time.monotonic()
            allotment.flying += 1
            allotment.need = max(allotment.need, charge.reserve + charge.count_now)
            remaining[charge.counter] = allotment.remaining()
            if self.live is not None:
                self.live.counter(allotment.slot, allotment.spent, allotment.total)
        self._local[rid] = [(allotment, charge.reserve) for allotment, charge in zip(allotted, charges)]
        return Admission(True, None, remaining, in_memory=True)

    def settle(self, rid: str, charges: list[Charge], amounts: list[float]):
        """In memory for a call admitted here; else the store's settle, kept for a later
        exchange when it fails (StoreUnavailable is still raised: the caller counts it)."""
        local = self._local.pop(rid, None)
        if local is None:
            # (Its slot in the live journal goes once the store answered: a worker killed
            # while the settle is on its way leaves the reservation for its taker to free.)
            try:
                settled = self.store.settle(rid, charges, amounts)
            except StoreUnavailable:
                self._settled_in_store(rid)
                self._settle_later(rid, charges, amounts)
                raise
            if is_awaitable(settled):
                return self._settled_or_kept(settled, rid, charges, amounts)
            self._settled_in_store(rid)
            return settled
        spent = {}
        for (allotment, reserve), charge, amount in zip(local, charges, amounts):
            allotment.held = max(0.0, allotment.held - reserve)
            allotment.flying -= 1
            allotment.spent += amount
            allotment.total += amount
            spent[charge.counter] = allotment.store_spent + allotment.spent
            if self.live is not None:
                self.live.counter(allotment.slot, allotment.spent, allotment.total)
        return spent

    async def _reserved_or_released(self, admission, rid: str, charges: list[Charge]) -> Admission:
        """A reserve that failed may have reached the store (Redis: its reply lost, the
        call refused): its reservation, if any, is released at a later exchange."""
        try:
            answer = await admission
        except StoreUnavailable:
            self._settled_in_store(rid)
            self._settle_later(rid, charges, None)
            raise
        if not answer.admitted:
            self._settled_in_store(rid)
        return answer

    def _settled_in_store(self, rid: str) -> None:
        """The call's reservation in the store is settled, refused or left to the kept
        settles: no longer the live journal's to free."""
        slot = self._in_store.pop(rid, None)
        if slot is not None and self.live is not None:
            self.live.settled(slot)

    async def _settled_or_kept(self, settled, rid: str, charges: list[Charge], amounts: list[float]):
        try:
            return await settled
        except StoreUnavailable:
            self._settle_later(rid, charges, amounts)
            raise
        finally:
            self._settled_in_store(rid)

    def _settle_later(self, rid: str, charges: list[Charge], amounts: list[float] | None) -> None:
        """Kept for the next exchanges; `amounts` None: a reserve that failed (released if
        it reached the store after all)."""
        loop = _running_loop()
        if loop is None:         # a tool, not a worker: nobody would retry it
            return
        for index, charge in enumerate(charges):
            if not charge.reserve:          # nothing was reserved, nothing to settle
                continue
            amount = 0.0 if amounts is None else float(amounts[index])
            if self._settles.keep(charge.counter, rid, amount, release_only=amounts is None):
                self._counter(charge).last_call = time.monotonic()
        self._start_ticker(loop)

    def add(self, charges: list[Charge]) -> None:
        """Spend that needs no admission: each charge's reserve and count_now, added in
        memory and brought to the store by the next exchange."""
        for charge in charges:
            self._add_spent(charge, charge.reserve + charge.count_now)
        self._ticking()

    def add_metered(self, counters: tuple[MeterCounter, ...], amounts: tuple[float, ...]) -> None:
        """The meters' spend of one call (store/meters.py): each counter's amount, as add()."""
        # (_add_spent's body, inlined: a call adds to ~16 counters, a Python call each.)
        found, live = self._counters.get, self.live
        for meter in counters:
            amount = amounts[meter.measure]
            if amount:
                allotment = found(meter.counter)
                if allotment is None:
                    allotment = self._new_counter(meter)
                allotment.spent += amount
                allotment.total += amount
                if live is not None:
                    live.counter(allotment.slot, allotment.spent, allotment.total)
        if self._ticker is None:
            self._ticking()

    def _add_spent(self, counted: Charge | MeterCounter, amount: float) -> None:
        allotment = self._counters.get(counted.counter)
        if allotment is None:
            allotment = self._new_counter(counted)
        allotment.spent += amount
        allotment.total += amount
        if self.live is not None:
            self.live.counter(allotment.slot, allotment.spent, allotment.total)

    def _ticking(self) -> None:
        if self._ticker is None:
            loop = _running_loop()
            if loop is not None:
                self._start_ticker(loop)

    def _counter(self, charge: Charge) -> Allotment:
        allotment = self._counters.get(charge.counter)
        if allotment is None:
            allotment = self._new_counter(charge)
        return allotment

    def _new_counter(self, charge: Charge | MeterCounter) -> Allotment:
        total = self._totals.get(charge.counter, (0.0, 0.0))[0]
        allotment = self._counters[charge.counter] = Allotment(
            charge.counter, charge.limit.limit, charge.window_end, total)
        if self.live is not None:
            allotment.slot = self.live.add_counter(charge.counter, charge.limit.limit, charge.window_end)
            self.live.counter(allotment.slot, 0.0, total)
        return allotment

    def _start_ticker(self, loop) -> None:
        if self._ticker is None:
            self._ticker = loop.create_task(self._tick())

    def put_cut_entry(self, *args):
        return self.store.put_cut_entry(*args)

    def take_cut_entry(self, *args):
        return self.store.take_cut_entry(*args)

    def rows(self, *args):
        return self.store.rows(*args)

    def spent(self, counters: list[str]):
        """The store's spent per counter, with what this worker's calls spent since its
        last exchange (not in the store yet)."""
        found = self.store.spent(counters)
        if is_awaitable(found):
            return self._with_local(found)
        return self._plus_local(found)

    async def _with_local(self, pending) -> dict[str, float]:
        return self._plus_local(await pending)

    def _plus_local(self, found: dict[str, float]) -> dict[str, float]:
        for counter in found.keys() & self._counters.keys():
            found[counter] += self._counters[counter].spent
        return found

    def put_record(self, *args):
        return self.store.put_record(*args)

    def get_record(self, *args):
        return self.store.get_record(*args)

    def first_record(self, *args):
        return self.store.first_record(*args)

    def get_records(self, *args):
        return self.store.get_records(*args)

    def put_records(self, *args):
        return self.store.put_records(*args)

    def delete_record(self, *args):
        return self.store.delete_record(*args)

    def records(self, *args):
        return self.store.records(*args)

    def close(self):
        """Hands every allotment back, with its spend, then closes the store (at once,
        as the store closes, when there is nothing to hand back)."""
        if self._ticker is not None:
            self._ticker.cancel()
        for orphan in self._orphans:          # not written yet: for the next worker to take
            Journal.let_go(orphan)
        self._orphans = []
        if not self._counters and self._exchange_task is None:
            if self._journal is not None:        # nothing left to write: no file stays
                self._journal.close()
                self.live = None
            return self.store.close()
        return self._hand_back_and_close()

    async def flush(self, hand_back: bool = False) -> None:
        """Exchanges now, after any exchange under way (the tick does this by itself)."""
        if self._exchange_task is not None:
            await asyncio.wait([self._exchange_task])
        await asyncio.wait([self._start_exchange(asyncio.get_running_loop(), final=hand_back)])

    async def _hand_back_and_close(self) -> None:
        await self.flush(hand_back=True)
        await maybe_await(self.store.close())


def _running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
