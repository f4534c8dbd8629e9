"""The store's generation: a marker written once in the budget store, so a worker notices
a store that lost its counters (a Redis restarted without persistence, flushed, or
replaced; an SQLite file deleted) instead of going on as if every budget were unspent.

The first worker to look writes a random marker (a record that never expires); every
worker reads it every CHECK_EVERY_S. A marker gone or changed since the worker last read
it means the store lost what it held: the worker logs an error, calls `on_reset` (the
worker counts `gateway_store_resets_total`), writes a notice beside the store's journal
(the state directory: `store-reset`, which /readyz shows until the gateway restarts),
writes a new marker if none is there, and goes on with the new one. What the budgets had spent before is not in the store any
more; the workers' spend not yet written (allotments, journals) still lands.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
import uuid
from collections.abc import Callable

from .base import StoreUnavailable, maybe_await

log = logging.getLogger("extproc.store")

KIND, NAME = "store", "generation"
CHECK_EVERY_S = 5.0
_FOREVER_S = 10 * 365 * 86400


NOTICE = "store-reset"


def notice_path(directory: str) -> str:
    return os.path.join(directory, NOTICE)


def read_notice(directory: str) -> str | None:
    """The last reset a worker saw, in a line (None: none since the gateway started)."""
    try:
        with open(notice_path(directory)) as file:
            return file.read().strip() or None
    except OSError:
        return None


def clear_notice(directory: str) -> None:
    try:
        os.unlink(notice_path(directory))
    except OSError:
        pass


class StoreGeneration:
    def __init__(self, on_reset: Callable[[str, str], None] = lambda before, now: None,
                 notice_dir: str | None = None) -> None:
        self.known: str | None = None
        self._on_reset = on_reset
        self._notice_dir = notice_dir
        self._checked = -CHECK_EVERY_S

    async def check(self, store, force: bool = False) -> None:
        clock = time.monotonic()
        if not force and clock - self._checked < CHECK_EVERY_S:
            return
        self._checked = clock
        try:
            found = await maybe_await(store.get_record(KIND, NAME))
            if found is None:
                marker = f"{uuid.uuid4().hex[:16]} {int(time.time())}"
                found = await maybe_await(store.first_record(KIND, NAME, marker, time.time() + _FOREVER_S))
        except StoreUnavailable:
            return                                  # counted by the operations that failed
        except Exception:                           # noqa: BLE001 - a look must never stop the worker
            log.exception("reading the budget store's generation")
            return
        if self.known is not None and found != self.known:
            log.error("the budget store lost its counters: its generation marker %r is gone (now %r); "
                      "every budget, rate limit and meter restarts from what the store holds now",
                      self.known, found)
            self._on_reset(self.known, found)
            self._write_notice()
        self.known = found

    def _write_notice(self) -> None:
        if self._notice_dir is None:
            return
        when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            with open(os.open(notice_path(self._notice_dir), os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600),
                      "w") as file:
                file.write(f"the budget store lost its counters (seen {when}): budgets restarted from "
                           f"what it holds; see gateway_store_resets_total\n")
        except OSError as error:
            log.error("the notice of the store's reset could not be written: %s", error)
