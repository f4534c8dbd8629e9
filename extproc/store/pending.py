"""Settles the budget store did not take (it was unreachable), kept by a worker's allotments
(allotments.py) until an exchange carries them, and the journals of gone workers written
in their names (journal.py).

A settle is kept as (reservation id, amount) under its counter. The store applies it
once: while its reservation is live or was swept for its lease (Redis marks a swept one
`x:<id>`; SQLite's settle after a sweep only adds), and not when a settle of it already
reached the store (its reply lost). A reserve that failed is kept the same way with
nothing to add: if it reached the store after all, its reservation is freed at once
rather than at the end of its lease.
"""

from __future__ import annotations

import logging
import time

from .base import Exchange, StoreUnavailable, maybe_await
from .journal import Journal, Orphan, calls_logged

log = logging.getLogger("extproc.allotments")

MAX_PENDING_SETTLES = 100_000   # kept for a later exchange, all counters together
SETTLES_PER_EXCHANGE = 2_000    # the most one exchange carries (a short script)


class PendingSettles:
    def __init__(self) -> None:
        self.by_counter: dict[str, list[tuple[str, float]]] = {}
        self.count = 0
        self._dropped = 0

    def keep(self, counter: str, rid: str, amount: float, release_only: bool) -> bool:
        """False when the bound is reached (a settle is dropped: its lease frees its
        reservation; its spend is on the call's log line)."""
        if self.count >= (MAX_PENDING_SETTLES // 2 if release_only else MAX_PENDING_SETTLES):
            if not release_only and not self._dropped:
                log.error("%d settles wait for the budget store: later ones are dropped until it is back",
                          self.count)
            self._dropped += not release_only
            return False
        self.by_counter.setdefault(counter, []).append((rid, amount))
        self.count += 1
        return True

    def take(self, counters: list[str]) -> dict[str, tuple[tuple[str, float], ...]]:
        """The settles the next exchange carries, per counter (at most SETTLES_PER_EXCHANGE)."""
        carried, taken = 0, {}
        for counter in counters:
            settles = self.by_counter.get(counter)
            if not settles or carried >= SETTLES_PER_EXCHANGE:
                continue
            taken[counter] = tuple(settles[:SETTLES_PER_EXCHANGE - carried])
            carried += len(taken[counter])
        return taken

    def applied(self, counter: str, how_many: int) -> None:
        """The store has the first `how_many` of the counter's settles."""
        left = self.by_counter[counter][how_many:]
        self.count -= how_many
        if left:
            self.by_counter[counter] = left
        else:
            del self.by_counter[counter]
        if not self.count and self._dropped:
            log.error("%d settles were dropped while the budget store was unreachable", self._dropped)
            self._dropped = 0


async def adopt_orphans(journal: Journal, orphans: list[Orphan], store, lease_s: float,
                        on_lost_calls=None, now: bool = False) -> None:
    """Writes the journals of gone holders of this store, in their names (so what one of
    them had already written is not added again); `orphans`: those taken, kept until written.
    The calls a gone holder had in flight go to `on_lost_calls(calls)` first, once."""
    orphans += journal.orphans({orphan.holder for orphan in orphans}, now)
    await write_orphans(orphans, store, lease_s, on_lost_calls)


async def write_orphans(orphans: list[Orphan], store, lease_s: float, on_lost_calls=None) -> None:
    """Logs the taken holders' lost calls, then writes their spend (hands their allotments
    back); those the store did not take stay in `orphans`, for the next try."""
    for orphan in orphans:
        if orphan.lost_calls and on_lost_calls is not None:
            on_lost_calls(orphan.lost_calls)
            calls_logged(orphan)
    for orphan in list(orphans):
        now = time.time()
        try:
            await maybe_await(store.exchange(orphan.holder, orphan.items, now, now + lease_s))
        except StoreUnavailable:
            return                      # the next tick
        orphans.remove(orphan)
        Journal.adopted(orphan)
        log.warning("the spend a gone worker (%s) had not written is now in the budget store, "
                    "its allotments handed back (%d counters)", orphan.holder, len(orphan.items))


def waiting(counters, pending: PendingSettles) -> list[Exchange]:
    """What the store has not had, per counter: the spend and the kept settles (and every
    allotment held, which the holder's successor hands back at once)."""
    settles = pending.by_counter
    return [Exchange(a.counter, a.limit, a.window_end, a.spent, a.total, 0.0, 0.0,
                     tuple(settles.get(a.counter, ())))
            for a in counters if a.spent or a.granted or a.counter in settles]
