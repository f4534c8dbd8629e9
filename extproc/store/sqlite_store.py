"""The embedded store: one SQLite file in WAL mode, shared by the worker processes.

Each reserve/settle is one IMMEDIATE transaction, so concurrent workers
serialize on the write lock and a budget can never be overshot.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time

from ..limits import Charge
from . import Admission, CounterRow, StoreUnavailable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (
    counter TEXT PRIMARY KEY, spent REAL NOT NULL DEFAULT 0, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS reservations (
    rid TEXT NOT NULL, counter TEXT NOT NULL, amount REAL NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (rid, counter));
CREATE INDEX IF NOT EXISTS reservations_by_counter ON reservations (counter, expires);
"""
_EPSILON = 1e-9
_RETENTION = 40 * 86400          # closed windows stay readable by `extproc usage` this long


class SQLiteStore:
    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._calls = 0

    @contextlib.contextmanager
    def _transaction(self):
        """One IMMEDIATE transaction: takes the write lock first, so check-then-write is atomic
        across worker processes. Any SQLite failure surfaces as StoreUnavailable."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                if self._db.in_transaction:
                    self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            raise StoreUnavailable(str(error)) from error

    def _add_spent(self, charge: Charge, amount: float) -> float:
        """Adds to a counter (creating it) and returns its new total, in one statement."""
        return self._db.execute(
            "INSERT INTO counters (counter, spent, expires) VALUES (?, ?, ?) "
            "ON CONFLICT (counter) DO UPDATE SET spent = spent + excluded.spent RETURNING spent",
            (charge.counter, amount, charge.window_end)).fetchone()[0]

    def _held(self, counter: str, now: float) -> float:
        return self._db.execute("SELECT COALESCE(SUM(amount), 0) FROM reservations "
                                "WHERE counter = ? AND expires > ?", (counter, now)).fetchone()[0]

    def _used(self, counter: str, now: float) -> float:
        """Spent plus what live reservations hold (expired leases no longer count)."""
        return self._db.execute(
            "SELECT COALESCE((SELECT spent FROM counters WHERE counter = ?1), 0) + "
            "COALESCE((SELECT SUM(amount) FROM reservations WHERE counter = ?1 AND expires > ?2), 0)",
            (counter, now)).fetchone()[0]

    def reserve(self, rid: str, charges: list[Charge], now: float, lease_until: float) -> Admission:
        with self._transaction():
            remaining = {}
            for charge in charges:
                used = self._used(charge.counter, now)
                after = used + charge.reserve + charge.count_now
                if after > charge.limit.limit + _EPSILON:
                    self._db.execute("ROLLBACK")
                    return Admission(False, charge, {charge.counter: charge.limit.limit - used})
                remaining[charge.counter] = charge.limit.limit - after
            for charge in charges:
                if charge.count_now:
                    self._add_spent(charge, charge.count_now)
                if charge.reserve:
                    self._db.execute("INSERT OR REPLACE INTO reservations VALUES (?, ?, ?, ?)",
                                     (rid, charge.counter, charge.reserve, lease_until))
        self._calls += 1
        if self._calls % 1000 == 0:
            self._prune(now)
        return Admission(True, None, remaining)

    def settle(self, rid: str, charges: list[Charge], amounts: list[float]) -> dict[str, float]:
        """Release the reservations and add what was really used; returns spent per counter."""
        spent = {}
        with self._transaction():
            for charge, amount in zip(charges, amounts):
                self._db.execute("DELETE FROM reservations WHERE rid = ? AND counter = ?",
                                 (rid, charge.counter))
                spent[charge.counter] = self._add_spent(charge, amount)
        return spent

    def rows(self, now: float | None = None) -> list[CounterRow]:
        now = now or time.time()
        rows = self._db.execute("SELECT counter, spent, expires FROM counters ORDER BY counter").fetchall()
        return [CounterRow(c, s, self._held(c, now), e) for c, s, e in rows]

    def _prune(self, now: float) -> None:
        self._db.execute("DELETE FROM reservations WHERE expires <= ?", (now,))
        self._db.execute("DELETE FROM counters WHERE expires < ?", (now - _RETENTION,))

    def close(self) -> None:
        self._db.close()
