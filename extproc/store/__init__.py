"""Budgets and rate limits and where they keep their counters: the limits and what a call
charges them (limits.py), the stores (SQLite, Redis, each worker's allotments), and the
hand-off of cut streams' sent bytes between workers. Never imports the pipeline, stages or runtime.

SQLite (WAL) is the single-node default: durable across restarts, safe across
worker processes. Redis (atomic Lua scripts) is for many replicas. Both give
the same all-or-nothing `reserve` and exactly-once-per-call `settle`.
"""

from __future__ import annotations

from .base import (  # noqa: F401 (the store's names, as callers import them)
    ROOM_FACTOR, Admission, CounterRow, CutEntry, Exchange, Granted, StoreUnavailable, maybe_await)
from .limits import StoreSettings


def open_store(settings: StoreSettings, *, patient: bool = False):
    """The store the settings name. `patient`: for commands and the admin endpoint, which
    may wait for SQLite's write lock (a worker's event loop must not: sqlite_store.py)."""
    if settings.kind == "redis":
        from .redis_store import RedisStore
        return RedisStore(settings.url)
    from .sqlite_store import SQLiteStore
    return SQLiteStore(settings.path, patient=patient)


def open_worker_store(settings: StoreSettings, on_unavailable=lambda: None):
    """The store as a worker's budget stages use it: behind its allotments, unless off.
    `on_unavailable` is called when an allotment exchange finds the store down (the store
    knows nothing of metrics: the worker passes what counts it)."""
    store = open_store(settings)
    if not settings.allotments:
        return store
    from .allotments import Allotments
    return Allotments(store, settings.lease_seconds, on_unavailable)
