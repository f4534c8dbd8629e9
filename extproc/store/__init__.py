"""Where budgets and rate limits keep their counters.

SQLite (WAL) is the single-node default: durable across restarts, safe across
worker processes. Redis (atomic Lua scripts) is for many replicas. Both give
the same all-or-nothing `reserve` and exactly-once-per-call `settle`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..limits import Charge, StoreSettings


class StoreUnavailable(Exception):
    """The store could not be reached; the configured fail mode decides."""


@dataclass(slots=True)
class Admission:
    admitted: bool
    refused: Charge | None = None
    # counter → remaining after this request's charges (for x-ratelimit-* headers)
    remaining: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CounterRow:
    counter: str
    spent: float
    held: float
    expires: float


def open_store(settings: StoreSettings):
    if settings.kind == "redis":
        from .redis_store import RedisStore
        return RedisStore(settings.url)
    from .sqlite_store import SQLiteStore
    return SQLiteStore(settings.path)
