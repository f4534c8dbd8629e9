"""The pick: each replica that serves the call's model scored from its load and what it
holds, best first, then the next best as the fallbacks Envoy's retries take.

  score = prefix * (leading blocks it holds / the prompt's blocks)
        + adapter * (the call's LoRA adapter is loaded there)
        - queue * (waiting + running/4, between the least (0) and most (1) loaded)
        - kv_cache * (KV-cache use)

Only fresh replicas (a good scrape within `stale_after_ms`) are scored; stale ones come
after them, failing ones never. A replica is saturated at `saturated_queue` waiting
requests or `saturated_kv_cache`: when every fresh one is, the pool sheds (429) or takes
the least loaded, as configured. Calls this worker sent a replica since its last scrape
count as waiting there, so a burst between two scrapes does not all go to one replica."""

from __future__ import annotations

import heapq
import time
import zlib
from dataclasses import dataclass

from .signals import FAILING_AFTER, PoolSignals

# What being a conversation's home replica (chosen by its prefix's key, the same in every
# worker) is worth, as a share of the prefix weight: a whole prompt held is worth 1.
HOME_BONUS = 1.0

# Reasons on the log line and in gateway_pool_picks_total (bounded).
PREFIX, ADAPTER, LEAST_LOADED, ONLY, FALLBACK, SATURATED, UNSCRAPED = (
    "prefix", "adapter", "least_loaded", "only", "fallback", "saturated", "unscraped")


@dataclass(slots=True)
class Pick:
    endpoints: list[str]       # the pick, then its fallbacks; empty: let Envoy balance
    reason: str
    prefix_blocks: int = 0     # leading blocks the picked replica was thought to hold


class NoEndpoint(Exception):
    """No replica can take the call: `shed` (every one saturated, the pool sheds) or none
    serves the model / none answers (503)."""

    def __init__(self, message: str, shed: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.shed = shed


def serving(signals: PoolSignals, model: str) -> list[str]:
    """The replicas that serve `model` (a base model, or an adapter: the config's list
    and what /v1/models says)."""
    pool = signals.pool
    if model in pool.models:
        return list(signals.endpoints)
    named = set(pool.adapters.get(model, ()))
    return [a for a, e in signals.endpoints.items() if a in named or model in e.served]


def pick(signals: PoolSignals, model: str, hashes: list[int], now: float | None = None, home: int = 0) -> Pick:
    pool = signals.pool
    now = time.monotonic() if now is None else now
    stale_s = pool.stale_after_ms / 1000
    candidates = serving(signals, model)
    if not signals.endpoints and pool.service is not None:
        return Pick([], UNSCRAPED)             # the Service's first list is under way: Envoy balances
    if not candidates:
        raise NoEndpoint(f"No replica of the pool serves the model '{model[:100]}'.")
    endpoints = signals.endpoints
    fresh, stale, unscraped = [], [], 0
    oldest = now - stale_s
    for address in candidates:
        endpoint = endpoints[address]
        if endpoint.failures >= FAILING_AFTER:
            continue
        if endpoint.scraped_at >= oldest:
            fresh.append(endpoint)
        elif endpoint.scraped_at == 0:
            unscraped += 1
        else:
            stale.append(endpoint)
    if not fresh and not stale:
        if unscraped:                          # this worker's first scrape is under way: the
            turn = signals.unscraped_turn = signals.unscraped_turn + 1     # replicas that serve
            order = candidates[turn % len(candidates):] + candidates[:turn % len(candidates)]   # it, in turn
            return Pick(_padded(order[:1 + pool.fallbacks], 1 + pool.fallbacks), UNSCRAPED)
        raise NoEndpoint("No replica of the pool is answering.")
    weights = pool.weights
    depth = signals.prefixes.matched(hashes) if hashes and weights.prefix else {}
    blocks = len(hashes) or 1
    adapter = model if model not in pool.models else ""
    queue_cap, kv_cap = pool.saturated_queue, pool.saturated_kv_cache
    w_prefix, w_adapter, w_kv = weights.prefix, weights.adapter, weights.kv_cache
    w_queue = weights.queue
    # Calls in flight per replica; one past `cap` (a quarter over the pool's mean, plus one)
    # is over its bound and comes after those within it, whatever its prefixes
    # (consistent hashing with bounded loads).
    inflight = [e.load.waiting + e.sent + e.load.running for e in fresh]
    cap = 1.25 * sum(inflight) / len(inflight) + 1 if inflight else 0.0
    loads = [e.load.waiting + e.sent + 0.25 * e.load.running for e in fresh]
    low = min(loads, default=0.0)
    spread = (max(loads, default=0.0) - low) or 1.0
    # The conversation's home: the replica within its bound ranked first for its key, the
    # same in every worker (the key and the rank are process-independent), so a turn that
    # reaches a worker which never saw the conversation still goes where it lives.
    home_address = ""
    if home:
        within = [e.address for e, n in zip(fresh, inflight) if n <= cap]
        if within:
            home_address = max(within, key=lambda a: zlib.crc32(a.encode(), home))
    scored = []
    open_count = 0
    for endpoint, load_now, calls in zip(fresh, loads, inflight):
        load = endpoint.load
        waiting = load.waiting + endpoint.sent
        saturated = waiting >= queue_cap or load.kv_cache >= kv_cap
        if not saturated:
            open_count += 1
        address = endpoint.address
        prefix = depth.get(address, 0) / blocks if depth else 0.0
        if address == home_address:
            prefix += HOME_BONUS
        loaded = 1.0 if adapter and adapter in load.running_adapters else 0.0
        score = (w_prefix * prefix + w_adapter * loaded - w_queue * (load_now - low) / spread
                 - w_kv * load.kv_cache)
        scored.append(((saturated, calls > cap), -score, waiting + load.running, address, prefix, loaded))
    wanted = 1 + pool.fallbacks
    if fresh and not open_count:
        if pool.when_saturated == "shed":
            raise NoEndpoint("Every replica of the pool is saturated.", shed=True)
        best = heapq.nsmallest(wanted, scored, key=lambda row: row[2])
        reason = SATURATED
    else:
        best = heapq.nsmallest(wanted, scored, key=lambda row: (row[0], row[1]))
        reason = ""
    chosen = [row[3] for row in best]
    if len(chosen) < wanted and stale:
        chosen += [e.address for e in heapq.nsmallest(wanted - len(chosen), stale, key=lambda e: e.load.waiting)]
    if not reason:
        if not fresh:
            reason = FALLBACK
        elif len(candidates) == 1:
            reason = ONLY
        else:
            prefix, loaded = best[0][4], best[0][5]
            reason = PREFIX if prefix > 0 and any(row[4] < prefix for row in best[1:] or scored) \
                else ADAPTER if loaded else LEAST_LOADED
    chosen = _padded(chosen, wanted)
    first = endpoints[chosen[0]]
    first.sent += 1
    if hashes:
        signals.prefixes.record(first.address, hashes)
    return Pick(chosen, reason, depth.get(first.address, 0))


def _padded(chosen: list[str], wanted: int) -> list[str]:
    """The list repeated up to one entry per attempt: past its end, Envoy's override_host
    would balance over every replica, some of which may not serve the model."""
    distinct = len(chosen)
    while len(chosen) < wanted:
        chosen.append(chosen[len(chosen) % distinct])
    return chosen
