"""`GET /v1/gateway/usage`, answered by the gateway: what the caller's own key has spent
of every budget and rate limit that applies to it, what is left and when each window
resets, so a caller (an agent before a long run) can check without an operator.

Only the budgets that apply to the caller are shown: its key's own, and those of its
user, team or the whole gateway that count its calls (their spend is the scope's, as the
budget charges it). Never another key's. One indexed read of the caller's counters (the
budget precheck's read), plus what this worker spent since its last exchange with the
store: other workers' spend of the last half second may not be in it yet.
"""

from __future__ import annotations

import time

import orjson

from ..pipeline.call import Call
from ..pipeline.stage import ImmediateAnswer, Stage
from ..store import StoreUnavailable, maybe_await
from ..store.limits import plan_charges, window_bounds
from ..store.meters import NoMeter, clean, find_set
from ..pipeline.errors import GatewayError


_PROBE = "own-usage-probe"      # a counter no budget writes


def _spend_today(config, key_id: str, now: float) -> dict[str, list[str]] | None:
    """The hourly counters of today (UTC) that hold this key's spend, by measure: those of a
    metered set of the `key` dimension alone (metering.dimensions: [[key], ...]); None when
    the config meters no such set (a set that also has other dimensions holds the key's
    spend under values this endpoint cannot name without reading every counter)."""
    try:
        meter = find_set(config.metering.sets, ("key",))
    except NoMeter:
        return None
    if meter.dimensions != ("key",):
        return None
    start, _ = window_bounds("day", now)
    hours = range(int(start), int(now) + 1, 3600)
    return {limit.name.rsplit(".", 1)[-1]: [f"{limit.name}|key={clean(key_id)}|{hour}" for hour in hours]
            for limit in meter.limits}


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class OwnUsage(Stage):
    """Answers the caller's own usage (the endpoint Admission found, its key identified)."""

    name = "own_usage"
    reads = frozenset({"endpoint", "key"})
    writes = frozenset()

    def __init__(self, store=None) -> None:
        self.store = store

    def request_headers(self, call: Call, end_of_stream: bool):
        if call.endpoint is None or not call.codec.reports_own_usage:
            return None
        return self._answer(call)

    async def _answer(self, call: Call) -> None:
        raise ImmediateAnswer(200, await self.report(call, time.time()), {"content-type": "application/json"})

    async def report(self, call: Call, now: float) -> bytes:
        key = call.key
        limits = call.config.limits + tuple(key.limits or ())
        # Concurrency slots are not spend: a caller learns of them from a refusal's retry-after.
        charges = [charge for charge in plan_charges(limits, key, 0, 0.0, now, 0.0)
                   if charge.limit.kind != "concurrent"]
        spent: dict[str, float] = {}
        if self.store is not None:
            # Read even with no budget to read (a counter nobody has): the answer then also
            # says the store is reachable from this replica (`extproc doctor` asks).
            today = _spend_today(call.config, key.id, now)
            counters = [charge.counter for charge in charges] + \
                [counter for per_hour in (today or {}).values() for counter in per_hour] or [_PROBE]
            try:
                spent = await maybe_await(self.store.spent(counters))
            except StoreUnavailable:
                raise GatewayError(503, "gateway_error", type="api_error", message=
                                   "The budget store is unavailable; try again shortly.") from None
        budgets = []
        for charge in charges:
            limit = charge.limit
            used = spent.get(charge.counter, 0.0)
            usd = limit.kind == "usd"
            budgets.append({
                "name": limit.name, "scope": limit.scope, "unit": limit.kind, "window": limit.window,
                "limit": limit.limit,
                "spent": round(used, 6) if usd else int(round(used)),
                "remaining": round(max(0.0, limit.limit - used), 6) if usd else max(0, int(limit.limit - used)),
                "resets_at": _iso(charge.window_end), "resets_in_s": max(0, int(charge.window_end - now + 0.999)),
            })
        answer = {"object": "gateway.usage", "as_of": _iso(now), "config_version": call.config.version,
                  "store": "reachable" if self.store is not None else "none",
                  "key": {"id": key.id, "user": key.user, "team": key.team}, "budgets": budgets}
        today = _spend_today(call.config, key.id, now) if self.store is not None else None
        if today is not None:           # the key's own spend today, budget or none
            answer["today"] = {measure: round(total, 6) if measure == "usd" else int(round(total))
                               for measure, per_hour in today.items()
                               for total in [sum(spent.get(counter, 0.0) for counter in per_hour)]}
        return orjson.dumps(answer)
