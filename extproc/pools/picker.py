"""The pick: each replica that serves the call's model scored from its load and what it
holds, best first, then the next best as the fallbacks Envoy's retries take.

  score = prefix * (leading blocks it holds / the prompt's blocks
                   + 1 if it is the conversation's home: where any worker last sent it,
                        else a hash ring's pick from the conversation's start)
        + adapter * (the call's LoRA adapter is loaded there)
        - queue * (waiting + running/4, between the least (0) and most (1) loaded)
        - kv_cache * (KV-cache use)

Only fresh replicas (a good scrape within `stale_after_ms`) are scored; stale ones come
after them, failing ones never. A replica is saturated at `saturated_queue` waiting
requests or `saturated_kv_cache`: when every fresh one is, the pool sheds (429) or takes
the least loaded, as configured. Calls this worker sent a replica since its last scrape
count as waiting there, so a burst between two scrapes does not all go to one replica."""

from __future__ import annotations

import bisect
import heapq
import math
import time
import zlib
from dataclasses import dataclass

from .homes import address_crc
from .signals import FAILING_AFTER, PoolSignals

# What being a conversation's home replica (chosen by its prefix's key, the same in every
# worker) is worth, as a share of the prefix weight: a whole prompt held is worth 1.
HOME_BONUS = 1.0
# Bounded loads: a replica is within its bound up to BOUND x the pool's mean calls in
# flight, plus one; a conversation's recorded home (homes.py: where its history is) up to
# RECORDED_BOUND x. Placing a new conversation costs nothing anywhere, so it goes where the
# load is even; moving one costs its whole history's prefill. Measured on the pools bench's
# conversations (one bound of 1.25 for all: 360 output tokens/s, 83% from cache; 1.25 and
# 2: 393, 86%; 1 and 2: 409, 86%, picks within 8% of even; the oracle: 429).
BOUND = 1.0
RECORDED_BOUND = 2.0
RING_POINTS = 64           # points per replica on the ring of homes: each gets its share ±~15%

# Reasons on the log line and in gateway_pool_picks_total (bounded).
PREFIX, ADAPTER, LEAST_LOADED, ONLY, FALLBACK, SATURATED, UNSCRAPED = (
    "prefix", "adapter", "least_loaded", "only", "fallback", "saturated", "unscraped")


@dataclass(slots=True)
class Pick:
    endpoints: list[str]       # the pick, then its fallbacks; empty: let Envoy balance
    reason: str
    prefix_blocks: int = 0     # leading blocks the picked replica was thought to hold
    best_blocks: int = 0       # the most any replica serving the model was thought to hold


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
    endpoints = signals.endpoints
    if not endpoints and pool.service is not None:
        return Pick([], UNSCRAPED)             # the Service's first list is under way: Envoy balances
    whole_pool = model in pool.models
    candidates = list(endpoints.values()) if whole_pool else [endpoints[a] for a in serving(signals, model)]
    if not candidates:
        raise NoEndpoint(f"No replica of the pool serves the model '{model[:100]}'.")
    # Fresh replicas with their queue (waiting + calls sent since its scrape), running calls,
    # load and KV-cache use, in one pass.
    fresh, stale, unscraped = [], [], 0
    queues, running, loads, kv_use = [], [], [], []
    oldest = now - pool.stale_after_ms / 1000
    for endpoint in candidates:
        if endpoint.failures >= FAILING_AFTER:
            continue
        scraped_at = endpoint.scraped_at
        if scraped_at >= oldest:
            fresh.append(endpoint)
            load = endpoint.load
            queued, busy = load.waiting + endpoint.sent, load.running
            queues.append(queued)
            running.append(busy)
            loads.append(queued + 0.25 * busy)
            kv_use.append(load.kv_cache)
        elif scraped_at == 0:
            unscraped += 1
        else:
            stale.append(endpoint)
    wanted = 1 + pool.fallbacks
    if not fresh:
        if not stale:
            if not unscraped:
                raise NoEndpoint("No replica of the pool is answering.")
            order = [e.address for e in candidates]      # this worker's first scrape is under way:
            home_address = _home(signals, home, math.inf, math.inf, -math.inf, set(order))[0] if home else ""
            if home_address:                             # the conversation's home (as another
                turn = order.index(home_address)         # worker would place its next turn),
            else:                                        # else the serving ones in turn
                signals.unscraped_turn += 1
                turn = signals.unscraped_turn % len(order)
            chosen = _padded((order[turn:] + order[:turn])[:wanted], wanted)
            return _picked(signals, chosen, UNSCRAPED, hashes, {}, home)
        chosen = [e.address for e in heapq.nsmallest(wanted, stale, key=_waiting)]
        depth = signals.prefixes.matched(hashes) if hashes and pool.weights.prefix else {}
        return _picked(signals, _padded(chosen, wanted), FALLBACK, hashes, depth, home)
    weights = pool.weights
    w_prefix = weights.prefix
    depth = signals.prefixes.matched(hashes) if hashes and w_prefix else {}
    # One past `cap` (the pool's mean in flight, plus one) is over its bound and comes after
    # those within it, whatever its prefixes (consistent hashing with bounded loads), but for
    # the conversation's recorded home, within RECORDED_BOUND.
    mean = (sum(queues) + sum(running)) / len(fresh)
    cap = BOUND * mean + 1
    low = min(loads)
    queue_scale = weights.queue / ((max(loads) - low) or 1.0)
    queue_cap, kv_cap, w_kv = pool.saturated_queue, pool.saturated_kv_cache, weights.kv_cache
    # Each one's sort key: its score negated (lower is better) plus a rank that outweighs
    # any score: 0 open and within its bound, 1 over its bound, 2 saturated, 3 both.
    rank = weights.queue + w_kv + w_prefix * (1 + HOME_BONUS) + weights.adapter + 1.0
    keys = [rank * (2 * (queued >= queue_cap or kv >= kv_cap) + (queued + busy > cap))
            + queue_scale * (load_now - low) + w_kv * kv
            for queued, busy, load_now, kv in zip(queues, running, loads, kv_use)]
    # The prefix share of the few that hold some of the prompt, or are its home, by position
    # (the reason reads it); the others' is 0. Sparse: a pass over 256 replicas is ~40 µs.
    prefixes: dict[int, float] = {}
    home_address, recorded = _home(signals, home, cap, RECORDED_BOUND * mean + 1, oldest,
                                   None if whole_pool else {e.address for e in fresh}) if home else ("", False)
    if depth or home_address:
        position = {endpoint.address: i for i, endpoint in enumerate(fresh)}
        blocks = len(hashes)
        for address, held in depth.items():
            at = position.get(address)
            if at is not None and held:
                prefixes[at] = held / blocks
                keys[at] -= w_prefix * prefixes[at]
        if home_address:
            at = position[home_address]
            prefixes[at] = prefixes.get(at, 0.0) + HOME_BONUS
            keys[at] -= w_prefix * HOME_BONUS
            if recorded and queues[at] + running[at] > cap:     # within the looser bound
                keys[at] -= rank
    adapter = "" if whole_pool else model
    if adapter:
        for at, endpoint in enumerate(fresh):
            if adapter in endpoint.load.running_adapters:
                keys[at] -= weights.adapter
    best = sorted(range(len(fresh)), key=keys.__getitem__)[:wanted]     # C's sort: < heapq's at 256
    reason = ""
    if queues[best[0]] >= queue_cap or kv_use[best[0]] >= kv_cap:     # the best saturated: all are
        if pool.when_saturated == "shed":
            raise NoEndpoint("Every replica of the pool is saturated.", shed=True)
        best = heapq.nsmallest(wanted, range(len(fresh)), key=lambda i: queues[i] + running[i])
        reason = SATURATED
    chosen = [fresh[i].address for i in best]
    if len(chosen) < wanted and stale:
        chosen += [e.address for e in heapq.nsmallest(wanted - len(chosen), stale, key=_waiting)]
    if not reason:
        first = best[0]
        if len(candidates) == 1:
            reason = ONLY
        elif prefixes.get(first, 0.0) > 0 and any(prefixes.get(i, 0.0) < prefixes[first]
                                                  for i in (best[1:] or range(len(fresh)))):
            reason = PREFIX
        elif adapter and adapter in fresh[first].load.running_adapters:
            reason = ADAPTER
        else:
            reason = LEAST_LOADED
    return _picked(signals, _padded(chosen, wanted), reason, hashes, depth, home)


def _home(signals: PoolSignals, key: int, cap: float, recorded_cap: float, oldest: float,
          allowed: set[str] | None) -> tuple[str, bool]:
    """The conversation's home, and whether it was recorded: where its latest turn went, as
    any worker of this gateway recorded it (homes.py), if that replica is fresh, serves the
    model and is within `recorded_cap`; else from its key clockwise on a hash ring of the
    pool's replicas (the same in every worker and every gateway replica, as the key is),
    the first that is within `cap`. A few ring steps, not a hash per replica."""
    endpoints = signals.endpoints
    recorded = signals.by_crc.get(signals.homes.get(key), "")
    if recorded and _can_be_home(endpoints.get(recorded), recorded, recorded_cap, oldest, allowed):
        return recorded, True
    ring = signals.home_ring
    if ring is None:
        ring = signals.home_ring = _ring(signals.endpoints)
    points, addresses = ring
    count = len(points)
    start = bisect.bisect_left(points, key & 0xFFFFFFFF)
    for step in range(count):
        address = addresses[(start + step) % count]
        if _can_be_home(endpoints.get(address), address, cap, oldest, allowed):
            return address, False
    return "", False


def _can_be_home(endpoint, address: str, cap: float, oldest: float, allowed: set[str] | None) -> bool:
    """Fresh, serving the model, and with no more than `cap` calls in flight."""
    if endpoint is None or endpoint.failures >= FAILING_AFTER or endpoint.scraped_at < oldest \
            or (allowed is not None and address not in allowed):
        return False
    load = endpoint.load
    return load.waiting + endpoint.sent + load.running <= cap


def _ring(endpoints) -> tuple[list[int], list[str]]:
    """RING_POINTS points per replica (CRC-32 of its address and the point's number), sorted."""
    points = sorted((zlib.crc32(f"{address}#{i}".encode()), address)
                    for address in endpoints for i in range(RING_POINTS))
    return [point for point, _ in points], [address for _, address in points]


def _waiting(endpoint) -> float:
    """A stale replica's load as last seen, with the calls sent it since: a burst after an
    idle spell (scraping stopped) spreads over them rather than piling on one."""
    load = endpoint.load
    return load.waiting + endpoint.sent + 0.25 * load.running


def _picked(signals: PoolSignals, chosen: list[str], reason: str, hashes: list[int],
            depth: dict[str, int], home: int) -> Pick:
    """The pick made: its first replica counts one more call queued, now holds the prompt,
    and is the conversation's home for every worker. What it held against the most any
    replica held goes on the log line: a pick short of the best paid a prefill that
    placement could have saved."""
    signals.endpoints[chosen[0]].sent += 1
    if hashes:
        signals.prefixes.record(chosen[0], hashes)
    if home:
        signals.homes.put(home, address_crc(chosen[0]))
    return Pick(chosen, reason, depth.get(chosen[0], 0), max(depth.values(), default=0))


def _padded(chosen: list[str], wanted: int) -> list[str]:
    """The list repeated up to one entry per attempt: past its end, Envoy's override_host
    would balance over every replica, some of which may not serve the model."""
    distinct = len(chosen)
    while len(chosen) < wanted:
        chosen.append(chosen[len(chosen) % distinct])
    return chosen
