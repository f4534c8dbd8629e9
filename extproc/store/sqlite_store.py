"""The embedded store: one SQLite file in WAL mode, shared by the worker processes.

Each reserve/settle is one IMMEDIATE transaction, so concurrent workers
serialize on the write lock and a budget can never be overshot.

A worker calls it on its event loop, where a transaction waits for another process's
write lock at most LOOP_BUSY_TIMEOUT; past that, the operation runs again on a thread
of its own that waits up to PATIENT_BUSY_TIMEOUT, and the caller awaits it: a slow
writer elsewhere never stalls every call of the worker.

A counter keeps what is spent and what live reservations hold, so checking a
budget reads one row however many requests are in flight. A reservation whose
worker died (its lease ran out) is swept at most a second later, and its amount
leaves `held`; a settle that comes after the sweep only adds to `spent`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
import time

from .base import ROOM_FACTOR, Admission, CounterRow, CutEntry, Exchange, Granted, StoreUnavailable
from .limits import Charge
from .sqlite_file import enable_wal, owner_only
from .trace_files import move_traces

SCHEMA_VERSION = 6
# WITHOUT ROWID: each table is one b-tree keyed by its primary key, so a reserve and
# a settle write two b-trees' pages to the WAL, not five.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (
    counter TEXT PRIMARY KEY, spent REAL NOT NULL DEFAULT 0, held REAL NOT NULL DEFAULT 0,
    expires REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reservations (
    rid TEXT NOT NULL, counter TEXT NOT NULL, amount REAL NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (rid, counter)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sent_bytes (
    cut_id TEXT PRIMARY KEY, status INTEGER NOT NULL, bytes INTEGER NOT NULL,
    first_event_at_us INTEGER NOT NULL, expires REAL NOT NULL, usage TEXT NOT NULL DEFAULT '') WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, expires REAL,
    PRIMARY KEY (kind, name)) WITHOUT ROWID;
"""
_EPSILON = 1e-9
_RETENTION = 40 * 86400          # closed windows stay readable by `extproc usage` this long
_SWEEP_EVERY = 1.0               # seconds between sweeps of expired leases (per worker)
LOOP_BUSY_TIMEOUT = 0.02         # on the event loop: how long to wait for another writer
PATIENT_BUSY_TIMEOUT = 10.0      # on the store's own thread, and for commands


# Names per `IN (...)` query of get_records (SQLite allows 32,766 parameters; fewer plan faster).
_NAMES_PER_QUERY = 500

class _Busy(Exception):
    """Another process held the write lock longer than this connection waits."""

# Adds to spent and held (creating the counter); `held` never goes below zero, so float
# rounding of add-then-subtract cannot leave a phantom reservation behind.
_ADD = ("INSERT INTO counters (counter, spent, held, expires) VALUES (?1, ?2, max(?3, 0), ?4) "
        "ON CONFLICT (counter) DO UPDATE SET spent = spent + excluded.spent, "
        "held = CASE WHEN held + ?3 < ?5 THEN 0 ELSE held + ?3 END RETURNING spent")


class SQLiteStore:
    def __init__(self, path: str, *, patient: bool = False, migrate: bool = True) -> None:
        """`patient`: wait for a busy write lock as long as it takes (commands, the thread
        behind a worker's store); else raise _Busy past LOOP_BUSY_TIMEOUT."""
        self.path = path
        self.patient = patient
        owner_only(path)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                   timeout=PATIENT_BUSY_TIMEOUT if patient else LOOP_BUSY_TIMEOUT)
        self._calls = 0
        self._swept = 0.0
        self._patient_twin: SQLiteStore | None = None
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        with self._patiently():                  # once, at start: WAL, and the tables there
            enable_wal(self._db)
            self._db.execute("PRAGMA synchronous=NORMAL")
            if migrate:
                self._migrate()

    @contextlib.contextmanager
    def _patiently(self):
        if self.patient:
            yield
            return
        self._db.execute(f"PRAGMA busy_timeout = {int(PATIENT_BUSY_TIMEOUT * 1000)}")
        self.patient = True
        try:
            yield
        finally:
            self.patient = False
            self._db.execute(f"PRAGMA busy_timeout = {int(LOOP_BUSY_TIMEOUT * 1000)}")

    def _run(self, operation: str, *args):
        """An operation at once; when the write lock stays busy, the same operation on the
        patient twin's thread, as an awaitable (callers: `maybe_await`)."""
        try:
            return getattr(self, operation)(*args)
        except _Busy:
            if self._thread is None:
                self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sqlite-store")
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:                 # no loop (a command): wait here
                return self._patiently_run(operation, *args)
            return loop.run_in_executor(self._thread, self._patiently_run, operation, *args)

    def _patiently_run(self, operation: str, *args):
        """On the store's thread: the operation on a connection of its own that waits."""
        if self._patient_twin is None:
            self._patient_twin = SQLiteStore(self.path, patient=True, migrate=False)
        return getattr(self._patient_twin, operation)(*args)

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
            if not self.patient and getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY:
                raise _Busy() from error
            raise StoreUnavailable(str(error)) from error

    def _add(self, counter: str, window_end: float, spent: float, held: float) -> float:
        """Adds to a counter's spent and held (creating it); returns the new spent."""
        return self._db.execute(_ADD, (counter, spent, held, window_end, _EPSILON)).fetchone()[0]

    def _used(self, counter: str) -> float:
        row = self._db.execute("SELECT spent + held FROM counters WHERE counter = ?",
                               (counter,)).fetchone()
        return row[0] if row else 0.0

    # --- the store's interface: each at once, or awaitable when the write lock is busy ---

    def reserve(self, rid: str, charges: list[Charge], now: float, lease_until: float):
        return self._run("_reserve", rid, charges, now, lease_until)

    def spent(self, counters: list[str]) -> dict[str, float]:
        """What each counter has spent (one indexed read, no write lock): the budget
        precheck's look at a caller's counters before its request is scanned."""
        marks = ",".join("?" * len(counters))
        try:
            rows = self._db.execute(f"SELECT counter, spent FROM counters WHERE counter IN ({marks})", counters)
            return dict(rows.fetchall())
        except sqlite3.Error as error:
            raise StoreUnavailable(str(error)) from error

    def settle(self, rid: str, charges: list[Charge], amounts: list[float]):
        """Release the reservations and add what was really used; returns spent per counter."""
        return self._run("_settle", rid, charges, amounts)

    def exchange(self, holder: str, items: list[Exchange], now: float, lease_until: float):
        return self._run("_exchange", holder, items, now, lease_until)

    def put_cut_entry(self, cut_id: str, entry: CutEntry, expires: float):
        """A cut stream's entry for the worker that waits for it (store/cut_streams.py)."""
        return self._run("_put_cut_entry", cut_id, entry, expires)

    def take_cut_entry(self, cut_id: str):
        return self._run("_take_cut_entry", cut_id)

    def put_record(self, kind: str, name: str, value: str, expires: float | None):
        """A small record (a stored response's owner, a key): `value` under (kind, name)."""
        return self._run("_put_record", kind, name, value, expires)

    def first_record(self, kind: str, name: str, value: str, expires: float):
        """The live record under (kind, name); when there is none, `value` is kept (until
        `expires`) and returned. Atomic: callers racing for a fresh record agree on one."""
        return self._run("_first_record", kind, name, value, expires)

    def get_record(self, kind: str, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM records WHERE kind = ? AND name = ? "
                               "AND (expires IS NULL OR expires > ?)", (kind, name, time.time())).fetchone()
        return row[0] if row else None

    def delete_record(self, kind: str, name: str):
        return self._run("_delete_record", kind, name)

    def get_records(self, kind: str, names: list[str]) -> dict[str, str]:
        """The live records of `names` under `kind` (those that have one)."""
        found: dict[str, str] = {}
        now = time.time()
        for start in range(0, len(names), _NAMES_PER_QUERY):
            chunk = names[start:start + _NAMES_PER_QUERY]
            rows = self._db.execute(
                f"SELECT name, value FROM records WHERE kind = ? AND name IN ({','.join('?' * len(chunk))}) "
                "AND (expires IS NULL OR expires > ?)", (kind, *chunk, now))
            found.update(rows.fetchall())
        return found

    def put_records(self, kind: str, items: list[tuple[str, str]], expires: float | None):
        """Several records under `kind` at once: (name, value) each."""
        return self._run("_put_records", kind, items, expires)

    def records(self, kind: str) -> list[tuple[str, str]]:
        rows = self._db.execute("SELECT name, value FROM records WHERE kind = ? AND "
                                "(expires IS NULL OR expires > ?) ORDER BY name", (kind, time.time()))
        return rows.fetchall()

    # --- the operations ------------------------------------------------------------

    def _reserve(self, rid: str, charges: list[Charge], now: float, lease_until: float) -> Admission:
        with self._transaction():
            if now - self._swept >= _SWEEP_EVERY:
                self._sweep(now)
            remaining = {}
            for charge in charges:
                used = self._used(charge.counter)
                after = used + charge.reserve + charge.count_now
                if after > charge.limit.limit + _EPSILON:
                    self._db.execute("ROLLBACK")
                    return Admission(False, charge, {charge.counter: charge.limit.limit - used})
                remaining[charge.counter] = charge.limit.limit - after
            for charge in charges:
                self._add(charge.counter, charge.window_end, charge.count_now, charge.reserve)
                if charge.reserve:
                    self._db.execute("INSERT INTO reservations VALUES (?, ?, ?, ?)",
                                     (rid, charge.counter, charge.reserve, lease_until))
        self._calls += 1
        if self._calls % 1000 == 0:
            self._prune(now)
        return Admission(True, None, remaining)

    def _settle(self, rid: str, charges: list[Charge], amounts: list[float]) -> dict[str, float]:
        spent = {}
        with self._transaction():
            for charge, amount in zip(charges, amounts):
                spent[charge.counter] = self._add(charge.counter, charge.window_end, amount,
                                                  -self._take_reservation(rid, charge.counter))
        return spent

    def _exchange(self, holder: str, items: list[Exchange], now: float,
                  lease_until: float) -> list[Granted]:
        """A worker's allotments, all in one transaction: each adds what its calls spent,
        lets go of what it held and takes back what it keeps [+ what it wants], and
        applies the settles that failed earlier. A transaction is all or nothing, so a
        failed one is retried as it was (`spent`, the settles)."""
        granted = []
        with self._transaction():
            if now - self._swept >= _SWEEP_EVERY:
                self._sweep(now)
            for item in items:
                for rid, amount in item.settles:
                    self._add(item.counter, item.window_end, amount, -self._take_reservation(rid, item.counter))
                self._add(item.counter, item.window_end, item.spent,
                          -self._take_reservation(holder, item.counter))
                room = item.limit - self._used(item.counter)
                grant = item.keep
                if item.want and room - item.keep >= item.want * ROOM_FACTOR:
                    grant += item.want
                spent = self._add(item.counter, item.window_end, 0.0, grant)
                if grant > 0:
                    self._db.execute("INSERT INTO reservations VALUES (?, ?, ?, ?)",
                                     (holder, item.counter, grant, lease_until))
                granted.append(Granted(grant, room, spent))
        return granted

    def _take_reservation(self, rid: str, counter: str) -> float:
        """Ends a live reservation; its amount (0 if already swept) is to leave `held`."""
        row = self._db.execute("DELETE FROM reservations WHERE rid = ? AND counter = ? "
                               "RETURNING amount", (rid, counter)).fetchone()
        return row[0] if row else 0.0

    def _sweep(self, now: float) -> None:
        """Leases that ran out (their worker died mid-call) stop holding budget."""
        self._swept = now
        expired = self._db.execute("DELETE FROM reservations WHERE expires <= ? RETURNING counter, amount",
                                   (now,)).fetchall()
        for counter, amount in expired:
            self._db.execute("UPDATE counters SET held = CASE WHEN held - ?2 < ?3 THEN 0 ELSE held - ?2 END "
                             "WHERE counter = ?1", (counter, amount, _EPSILON))

    def _put_cut_entry(self, cut_id: str, entry: CutEntry, expires: float) -> None:
        with self._transaction():
            self._db.execute("DELETE FROM sent_bytes WHERE expires < ?", (time.time(),))
            self._db.execute("INSERT OR REPLACE INTO sent_bytes (cut_id, status, bytes, first_event_at_us, "
                             "usage, expires) VALUES (?, ?, ?, ?, ?, ?)", (cut_id, *entry, expires))

    def _take_cut_entry(self, cut_id: str) -> CutEntry | None:
        try:         # polled while a call waits: a read first, the write lock only when found
            if self._db.execute("SELECT 1 FROM sent_bytes WHERE cut_id = ?", (cut_id,)).fetchone() is None:
                return None
        except sqlite3.Error as error:
            raise StoreUnavailable(str(error)) from error
        with self._transaction():
            row = self._db.execute("DELETE FROM sent_bytes WHERE cut_id = ? "
                                   "RETURNING status, bytes, first_event_at_us, usage", (cut_id,)).fetchone()
        return CutEntry(*row) if row else None

    def _put_record(self, kind: str, name: str, value: str, expires: float | None) -> None:
        with self._transaction():
            self._db.execute("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)", (kind, name, value, expires))
            self._calls += 1
            if self._calls % 1000 == 0:
                self._db.execute("DELETE FROM records WHERE expires < ?", (time.time(),))

    def _put_records(self, kind: str, items: list[tuple[str, str]], expires: float | None) -> None:
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)",
                                 [(kind, name, value, expires) for name, value in items])

    def _first_record(self, kind: str, name: str, value: str, expires: float) -> str:
        with self._transaction():
            row = self._db.execute("SELECT value FROM records WHERE kind = ? AND name = ? AND "
                                   "(expires IS NULL OR expires > ?)", (kind, name, time.time())).fetchone()
            if row:
                return row[0]
            self._db.execute("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)", (kind, name, value, expires))
        return value

    def _delete_record(self, kind: str, name: str) -> None:
        with self._transaction():
            self._db.execute("DELETE FROM records WHERE kind = ? AND name = ?", (kind, name))

    def rows(self, now: float | None = None) -> list[CounterRow]:
        """Every counter; `held` as checks see it (a dead worker's lease counts until swept)."""
        rows = self._db.execute("SELECT counter, spent, held, expires FROM counters ORDER BY counter")
        return [CounterRow(*row) for row in rows.fetchall()]

    def _prune(self, now: float) -> None:
        self._db.execute("DELETE FROM counters WHERE expires < ?", (now - _RETENTION,))

    def _migrate(self) -> None:
        """Creates the tables, or brings a file from an older version up to this schema."""
        if self._db.execute("PRAGMA user_version").fetchone()[0] < 6:
            try:
                move_traces(self._db, self.path, PATIENT_BUSY_TIMEOUT)
            except sqlite3.Error as error:
                raise StoreUnavailable(str(error)) from error
        with self._transaction():
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version >= SCHEMA_VERSION:
                return
            old = {name for (name,) in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            v1 = "counters" in old and version < 2
            if version < 5:     # sent_bytes gained `usage`; its entries live a minute
                self._db.execute("DROP TABLE IF EXISTS sent_bytes")
            if v1:
                # Version 1: no `held`; live reservations were summed on every check.
                self._db.execute("ALTER TABLE counters RENAME TO counters_v1")
                self._db.execute("ALTER TABLE reservations RENAME TO reservations_v1")
                self._db.execute("DROP INDEX IF EXISTS reservations_by_counter")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            if v1:
                now = time.time()
                self._db.execute("INSERT INTO reservations SELECT rid, counter, amount, expires "
                                 "FROM reservations_v1 WHERE expires > ?", (now,))
                self._db.execute(
                    "INSERT INTO counters SELECT c.counter, c.spent, COALESCE((SELECT SUM(amount) "
                    "FROM reservations r WHERE r.counter = c.counter), 0), c.expires FROM counters_v1 c")
                self._db.execute("DROP TABLE counters_v1")
                self._db.execute("DROP TABLE reservations_v1")
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()
        if self._thread is not None:
            self._thread.shutdown(wait=True)
        if self._patient_twin is not None:
            self._patient_twin.close()
