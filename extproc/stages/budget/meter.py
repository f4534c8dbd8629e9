"""Meters (store/meters.py): after a call that reached a provider (or was answered from
the response cache: a request, no tokens, its saving), its requests, tokens and cost added to every configured set of dimensions. A meter
never refuses a call, so it needs no admission: the worker's allotments keep its spend in
memory and bring it to the store at their next exchange (every 0.5 s); while the store
is unreachable it waits there (and in the worker's journal), and lands once when the
store is back (store/allotments.py)."""

from __future__ import annotations

import logging
import time

from ...observability import metrics
from ...observability.settings import BoundedLabel
from ...pipeline.call import Call
from ...store import StoreUnavailable, maybe_await
from ...store.limits import window_bounds
from ...store.meters import (OTHER, TAG_PREFIX, MeterCounter, charges_of, clean, meter_combinations, meter_counters,
                             settled_amounts)
from ...pipeline.stage import Stage
from ..cache.lookup import HIT
from ..accounting.cost import charged_cost

log = logging.getLogger("extproc.meter")

_COMBINATIONS_KEPT = 4096


class Meter(Stage):
    name = "meter"
    reads = frozenset({"backend", "body", "cache", "key", "model", "outcome", "request_id", "tags", "usage"})
    writes = frozenset()

    def __init__(self, store, metering) -> None:
        self.store = store
        self.metering = metering
        self._seen: dict[str, BoundedLabel] = {}
        dims = {d for s in metering.sets for d in s.dimensions}
        self._dimensions = tuple(sorted(dims))
        self._tags = tuple(d[len(TAG_PREFIX):] for d in self._dimensions if d.startswith(TAG_PREFIX))
        # The counters of the calls seen, by what names them (the key, the model, the
        # backend, the cache's result, the metered tags) and the hour: most calls repeat
        # one, and naming its counters (~10 names of ~150 characters, hashed as they are
        # looked up) was most of a call's metering. A value's capping never changes once
        # decided (BoundedLabel), so kept counters are those computed again. Bounded:
        # cleared when full.
        self._counters: dict[tuple, tuple[float, float, tuple[MeterCounter, ...]]] = {}

    def _capped(self, dimension: str, value: str) -> str:
        seen = self._seen.get(dimension)
        if seen is None:
            seen = self._seen[dimension] = BoundedLabel()
        capped = seen(value, self.metering.max_values_per_dimension)
        return value if capped == value else OTHER

    def values(self, call: Call) -> dict[str, str]:
        """The call's value of each metered dimension, capped."""
        key = call.key
        tags = call.tags
        known = {"key": key.id if key else "", "user": key.user if key else "",
                 "team": key.team if key else "", "model": call.model.name if call.model else "",
                 "backend": call.backend.name if call.backend else "",
                 "cache": call.cache.result if call.cache is not None else ""}
        values = {}
        for dimension in self._dimensions:
            if dimension.startswith(TAG_PREFIX):
                raw = tags.get(dimension[len(TAG_PREFIX):], "")
            else:
                raw = known[dimension] or ""
            values[dimension] = self._capped(dimension, clean(raw))
        return values

    def _counters_of(self, call: Call, now: float) -> tuple[MeterCounter, ...]:
        key, tags = call.key, call.tags
        named = (key.id, key.user, key.team) if key else None, \
            call.model.name if call.model else "", call.backend.name if call.backend else "", \
            call.cache.result if call.cache is not None else "", \
            tuple(tags.get(tag, "") for tag in self._tags) if self._tags else ()
        kept = self._counters.get(named)
        if kept is not None and kept[0] <= now < kept[1]:
            return kept[2]
        if len(self._counters) >= _COMBINATIONS_KEPT:
            self._counters.clear()
        start, end = window_bounds("hour", now)
        counters = meter_counters(self.metering.sets, meter_combinations(self.metering.sets, self.values(call)), now)
        self._counters[named] = (start, end, counters)
        return counters

    def done(self, call: Call):
        cached = call.cache
        if cached is not None and cached.result == HIT:     # answered from the response cache
            amounts = (1.0 if cached.rule.count_hits_as_requests else 0.0, 0.0, 0.0, 0.0, cached.saved_usd)
        elif call.backend is None or call.body is None or call.outcome == "refused":
            return None                           # never reached a provider
        else:
            usage = call.usage
            amounts = (1.0, float(usage.input_tokens if usage else 0), float(usage.output_tokens if usage else 0),
                       charged_cost(call), 0.0)
        now = time.time()
        counters = self._counters_of(call, now)
        add_metered = getattr(self.store, "add_metered", None)
        if add_metered is not None:               # the worker's allotments
            add_metered(counters, amounts)
            return None
        charges = charges_of(counters, amounts)
        if not charges:
            return None
        return self._to_store(call, charges, now)

    async def _to_store(self, call: Call, charges: list, now: float) -> None:
        rid = f"meter:{call.request_id}:{id(call)}"     # a bare store (a tool's pipeline)
        try:
            await maybe_await(self.store.reserve(rid, charges, now, now + 60))
            await maybe_await(self.store.settle(rid, charges, settled_amounts(charges)))
        except StoreUnavailable as error:
            metrics.child(metrics.store_errors, "meter").inc()
            log.error("budget store unavailable for the meters (request %s): %s", call.request_id, error)
