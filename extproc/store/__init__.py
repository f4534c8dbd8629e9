"""Budgets and rate limits and where they keep their counters: the limits and what a call
charges them (limits.py), the stores (SQLite, Redis, each worker's allotments), and the
hand-off of cut streams' sent bytes between workers. Never imports the pipeline, stages or runtime.

SQLite (WAL) is the single-node default: durable across restarts, safe across
worker processes. Redis (atomic Lua scripts) is for many replicas. Both give
the same all-or-nothing `reserve` and exactly-once-per-call `settle`.
"""

from __future__ import annotations

from .base import (  # noqa: F401 (the store's names, as callers import them)
    ROOM_FACTOR, Admission, CounterRow, CutEntry, Exchange, Granted, StoreUnavailable, is_awaitable, maybe_await)
from .limits import StoreSettings


def open_store(settings: StoreSettings, *, patient: bool = False):
    """The store the settings name. `patient`: for commands and the admin endpoint, which
    may wait for SQLite's write lock (a worker's event loop must not: sqlite_store.py)."""
    if settings.kind == "redis":
        from .redis_store import RedisStore
        return RedisStore(settings.url)
    from .sqlite_store import SQLiteStore
    return SQLiteStore(settings.path, patient=patient)


def open_worker_store(settings: StoreSettings, on_unavailable=lambda: None, on_reset=None, on_lost_calls=None):
    """The store as a worker's stages use it: behind its allotments (which admit calls in
    memory unless `allotments: false`, and always keep what the store could not take, in
    a journal beside the SQLite file's default place, the state directory, until it can).
    `on_unavailable` is called when an exchange finds the store down, `on_reset(before,
    now)` when the store's generation changed (generation.py), `on_lost_calls(calls)`
    with the calls a killed worker had in flight (live_journal.py): the store knows
    nothing of metrics or log lines, the worker passes what writes them."""
    from .allotments import Allotments
    from .generation import StoreGeneration
    store = open_store(settings)
    directory = state_dir(settings)
    return Allotments(store, settings.lease_seconds, on_unavailable, grants=settings.allotments,
                      journal_dir=directory, store_name=settings.url or settings.path or "",
                      generation=StoreGeneration(on_reset, directory) if on_reset is not None else None,
                      live=directory is not None, on_lost_calls=on_lost_calls)


def state_dir(settings: StoreSettings) -> str | None:
    """Where a worker keeps its journal and the store's reset notice: beside the SQLite
    file's place (by default the state directory, whichever store is used)."""
    import os
    return os.path.dirname(os.path.abspath(settings.path)) if settings.path else None
