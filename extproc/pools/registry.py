"""Each worker's pools' signals, by provider name: made, and their scraping (and, over a
Kubernetes Service, their EndpointSlices watch) started, by the first call to the pool."""

from __future__ import annotations

import time
from typing import Callable

from ..config.pools import Pool
from .homes import SharedHomes
from .kube_watch import watch_service
from .signals import PoolSignals

_pools: dict[str, PoolSignals] = {}


def signals_for(name: str, pool: Pool, observer: Callable[[PoolSignals], None] | None = None) -> PoolSignals:
    """This worker's signals of the pool provider `name`, scraping from the first call on
    (a reload that changes the pool starts them afresh); `observer` is called after each
    round of scrapes."""
    signals = _pools.get(name)
    if signals is None or signals.pool != pool:
        if signals is not None:
            signals.stop()
        signals = _pools[name] = PoolSignals(name, pool, homes=SharedHomes(name))
        signals.observer = observer
        if pool.service is not None:
            watch_service(signals)
    signals.used_at = time.monotonic()
    if signals.task is None:
        try:
            signals.start()
        except RuntimeError:                 # no event loop (a unit test's direct call)
            pass
    return signals
