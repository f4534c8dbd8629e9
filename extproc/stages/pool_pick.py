"""Request body, pool models only: the replica of a pool provider (config/pools.py) that
should answer, and the next best ones for Envoy's retries (extproc/pools/picker.py).

Runs after Route, which pointed the call at the pool's cluster: this adds the route of
pool calls and the replicas, in order, that the cluster's override_host policy reads
(config/envoy_pool.py). The prompt's prefix blocks are hashed from the texts the codec
reads off the already-parsed body. Every refusal here is in the caller's dialect: 503
when no replica serves the model or answers, 429 with retry-after when the pool sheds.
"""

from __future__ import annotations

import time

from ..config.envoy_contract import DESTINATION_HEADER, POOL_ROUTE, ROUTE_HEADER
from ..observability import metrics
from ..pipeline.call import Call
from ..pipeline.errors import GatewayError
from ..pipeline.stage import Stage
from ..pools.picker import NoEndpoint, pick
from ..pools.prefix import block_hashes, home_key
from ..pools.registry import signals_for
from ..pools.signals import FAILING_AFTER, PoolSignals

SHED_RETRY_AFTER_S = "1"


class PoolPick(Stage):
    name = "pool_pick"
    reads = frozenset({"backend", "body", "endpoint"})
    writes = frozenset({"log_fields"})

    def request_body(self, call: Call) -> None:
        backend = call.backend
        if backend is None or call.body is None:
            return
        pool = backend.provider.pool
        if pool is None:
            return
        signals = signals_for(backend.provider.name, pool, publish_endpoints)
        hashes: list[int] = []
        home = 0
        if pool.weights.prefix:
            texts, _ = call.codec.prompt_texts(call.body)
            hashes = block_hashes(texts, pool.block_chars)
            home = home_key(texts)
        try:
            chosen = pick(signals, backend.model, hashes, home=home)
        except NoEndpoint as refused:
            call.log_fields["pool_reason"] = "shed" if refused.shed else "unavailable"
            if refused.shed:
                raise GatewayError(429, "pool_saturated", refused.message + " Retry shortly.",
                                   headers={"retry-after": SHED_RETRY_AFTER_S}) from None
            raise GatewayError(503, "pool_unavailable", refused.message, type="api_error") from None
        reply = call.reply
        reply.set_headers[ROUTE_HEADER] = POOL_ROUTE
        if chosen.endpoints:
            reply.set_headers[DESTINATION_HEADER] = ",".join(chosen.endpoints)
            call.log_fields["pool_endpoint"] = chosen.endpoints[0]
        call.log_fields["pool_reason"] = chosen.reason
        if hashes:      # prefix blocks: the picked replica's and the most any replica held
            call.log_fields["pool_prefix_blocks"] = chosen.prefix_blocks
            call.log_fields["pool_best_blocks"] = chosen.best_blocks
        metrics.child(metrics.pool_picks, chosen.endpoints[0] if chosen.endpoints else "envoy", chosen.reason).inc()


# What this worker last published per pool replica: (waiting, running, KV use, counted,
# demoted), and each failure reason's count already added to the counter.
_published: dict[tuple[str, str], tuple] = {}
_failures_published: dict[tuple[str, str, str], int] = {}


def publish_endpoints(signals: PoolSignals) -> None:
    """Each replica as this worker's picker sees it, on /metrics: called by the scrape loop
    after each round (off the request path); a value unchanged is not written again. A
    replica gone from the pool has its gauges set to `GONE`, once: /metrics leaves them out."""
    pool, now = signals.name, time.monotonic()
    oldest = now - signals.pool.stale_after_ms / 1000
    seen = set()
    for address, endpoint in signals.endpoints.items():
        seen.add(address)
        load = endpoint.load
        demoted = endpoint.failures >= FAILING_AFTER or endpoint.scraped_at < oldest
        _set(pool, address, (load.waiting, load.running, load.kv_cache, endpoint.counted, float(demoted)))
        for reason, count in endpoint.scrape_failures.items():
            key = (pool, address, reason)
            added = count - _failures_published.get(key, 0)
            if added > 0:
                metrics.child(metrics.pool_scrape_failures, *key).inc(added)
                _failures_published[key] = count
    for gone in [key for key in _published if key[0] == pool and key[1] not in seen]:
        _set(pool, gone[1], (metrics.GONE,) * 5)
        del _published[gone]


def _set(pool: str, address: str, values: tuple) -> None:
    key = (pool, address)
    if _published.get(key) == values:
        return
    _published[key] = values
    for family, value in zip((metrics.pool_endpoint_waiting, metrics.pool_endpoint_running,
                              metrics.pool_endpoint_kv_cache, metrics.pool_endpoint_counted,
                              metrics.pool_endpoint_demoted), values):
        metrics.child(family, pool, address).set(value)
