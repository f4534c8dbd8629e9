"""What the stores and their users share: the results of reserve, exchange and settle,
the store's failure, and how a store's result is awaited."""

from __future__ import annotations

import inspect
import types
from dataclasses import dataclass, field
from typing import NamedTuple

from ..transport.eager import task_needed
from .limits import Charge, StoreSettings


_PLAIN_TYPES: set[type] = set()        # types of results found not awaitable


def is_awaitable(result) -> bool:
    """inspect.isawaitable, its answer kept per type: its ABC check costs ~180 ns, and a
    budgeted call asks it of ~6 results, nearly all plain values (SQLite's, the
    allotments'). A generator's answer depends on its code, so it is never kept."""
    kind = type(result)
    if kind in _PLAIN_TYPES:
        return False
    if inspect.isawaitable(result):
        return True
    if kind is not types.GeneratorType and len(_PLAIN_TYPES) < 256:
        _PLAIN_TYPES.add(kind)
    return False


async def maybe_await(result):
    """A store's result: SQLite's methods return it, Redis's are coroutines (run in a
    task: redis-py's timeouts need one, see transport/eager.py)."""
    if is_awaitable(result):
        await task_needed()
        return await result
    return result


class StoreUnavailable(Exception):
    """The store could not be reached; the configured fail mode decides."""


@dataclass(slots=True)
class Admission:
    admitted: bool
    refused: Charge | None = None
    # counter → remaining after this request's charges (for x-ratelimit-* headers)
    remaining: dict[str, float] = field(default_factory=dict)
    in_memory: bool = False    # admitted from the worker's allotments, not by the store


@dataclass(frozen=True, slots=True)
class Exchange:
    """One counter of a worker's allotment exchange (allotments.py): report what its
    calls spent, keep what its calls in flight hold, and ask for `want` more."""
    counter: str
    limit: float
    window_end: float
    spent: float               # spent since the last exchange that succeeded
    total: float               # spent since the allotment began (Redis: a retry after a
                               # lost reply must not add the same spend twice)
    keep: float                # held by the worker's calls in flight
    want: float                # headroom asked for; 0 hands the allotment back
    # Settles of the counter that failed (the store unreachable), retried here, each
    # (reservation id, amount): applied once, whichever of the tries reached the store.
    settles: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Granted:
    granted: float             # what the worker now holds in the store (keep [+ want])
    room: float                # the counter's room for this worker, its allotment included
    spent: float               # the counter's spent, all holders


# An allotment is granted only while the counter's room is at least this many times
# what it asks: near its end a budget goes back to one store reserve per call, and the
# allotments held elsewhere cannot take more than a small share of what is left.
ROOM_FACTOR = 50


@dataclass(frozen=True, slots=True)
class CounterRow:
    counter: str
    spent: float
    held: float
    expires: float


class CutEntry(NamedTuple):
    """What Envoy's access log says of a stream passed through and cut short (cut_streams.py)."""
    status: int                  # the status the client got (0: none)
    size: int                    # body bytes sent
    first_event_at_us: int       # when its first event passed (Envoy's Lua filter), 0: never
    # The usage Envoy read from the stream (its llm_gateway.stream numbers, as compact
    # JSON, with UPSTREAM_COMPLETE: 1 when the provider's answer came whole; "" when none):
    # a client that hangs up right after the last event (the openai SDK closes on
    # `[DONE]`) leaves before the trailers message, once its usage has passed.
    usage: str = ""


UPSTREAM_COMPLETE = "upstream_complete"
