"""The budget stores' bookkeeping, against real SQLite and a real redis-server.

Each counter keeps a running `held` (so a check reads one row, not every live
reservation); these tests hold it to the truth: the sum of live reservations.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from types import SimpleNamespace

import pytest

from extproc.store import CutEntry
from extproc.store.limits import Charge
from extproc.store.redis_store import RedisStore
from extproc.store.sqlite_store import SQLiteStore


def charge(counter: str, reserve: float, limit: float = 1e12, count_now: float = 0) -> Charge:
    budget = SimpleNamespace(limit=limit, kind="tokens", name=counter, window="month", scope="key")
    return Charge(budget, counter, reserve, count_now, time.time() + 86400)


class Sync:
    """One calling convention for both stores (Redis's methods are coroutines)."""

    def __init__(self, store) -> None:
        self.store = store
        self.loop = asyncio.new_event_loop()

    def __getattr__(self, name):
        method = getattr(self.store, name)

        def call(*args):
            result = method(*args)
            return self.loop.run_until_complete(result) if asyncio.iscoroutine(result) else result
        return call

    def held(self, counter: str) -> float:
        return {row.counter: row.held for row in self.rows()}.get(counter, 0.0)

    def spent(self, counter: str) -> float:
        return {row.counter: row.spent for row in self.rows()}.get(counter, 0.0)


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path, redis_url):
    if request.param == "sqlite":
        wrapped = Sync(SQLiteStore(str(tmp_path / "budgets.sqlite3")))
    else:
        wrapped = Sync(RedisStore(redis_url))
        wrapped.loop.run_until_complete(wrapped.store._redis.flushdb())
    yield wrapped
    wrapped.close()
    wrapped.loop.close()


def test_held_follows_live_reservations_through_random_traffic(store):
    rng = random.Random(7)
    live: dict[str, tuple[str, float]] = {}            # rid -> (counter, amount)
    spent = {"a": 0.0, "b": 0.0}
    now = time.time()
    for step in range(400):
        if live and rng.random() < 0.45:
            rid = rng.choice(sorted(live))
            counter, _ = live.pop(rid)
            used = float(rng.randint(0, 300))
            store.settle(rid, [charge(counter, 0)], [used])
            spent[counter] += used
        else:
            counter, amount = rng.choice("ab"), float(rng.randint(1, 500))
            rid = f"r{step}"
            assert store.reserve(rid, [charge(counter, amount)], now, now + 900).admitted
            live[rid] = (counter, amount)
        for counter in "ab":
            expected = sum(a for c, a in live.values() if c == counter)
            assert store.held(counter) == pytest.approx(expected), step
            assert store.spent(counter) == pytest.approx(spent[counter]), step


def test_a_dead_workers_lease_stops_holding_budget_and_a_late_settle_counts_once(store):
    now = time.time()
    assert store.reserve("dead", [charge("c", 600, limit=1000)], now, now + 5).admitted
    # Within the lease the reservation holds its share: 600 + 600 > 1000.
    assert not store.reserve("x", [charge("c", 600, limit=1000)], now + 1, now + 900).admitted
    # After the lease (and the once-a-second sweep) it no longer does.
    later = now + 10
    assert store.reserve("live", [charge("c", 600, limit=1000)], later, later + 900).admitted
    assert store.held("c") == pytest.approx(600)
    # The presumed-dead worker settles after all: the spend counts, the hold is not
    # released a second time.
    store.settle("dead", [charge("c", 0)], [100.0])
    assert store.held("c") == pytest.approx(600) and store.spent("c") == pytest.approx(100)
    store.settle("live", [charge("c", 0)], [50.0])
    assert store.held("c") == 0 and store.spent("c") == pytest.approx(150)


def test_refusal_leaves_nothing_behind(store):
    now = time.time()
    assert store.reserve("one", [charge("c", 700, limit=1000)], now, now + 900).admitted
    refused = store.reserve("two", [charge("d", 10), charge("c", 700, limit=1000)], now, now + 900)
    assert not refused.admitted and refused.refused.counter == "c"
    assert store.held("c") == pytest.approx(700) and store.held("d") == 0


def test_sqlite_file_of_the_previous_version_is_migrated(tmp_path):
    path = tmp_path / "budgets.sqlite3"
    now = time.time()
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE counters (counter TEXT PRIMARY KEY, spent REAL NOT NULL DEFAULT 0, expires REAL NOT NULL);
        CREATE TABLE reservations (rid TEXT NOT NULL, counter TEXT NOT NULL, amount REAL NOT NULL,
            expires REAL NOT NULL, PRIMARY KEY (rid, counter));
        CREATE INDEX reservations_by_counter ON reservations (counter, expires);""")
    old.execute("INSERT INTO counters VALUES ('c', 250, ?)", (now + 86400,))
    old.execute("INSERT INTO reservations VALUES ('live', 'c', 300, ?), ('dead', 'c', 999, ?)",
                (now + 900, now - 1))
    old.commit()
    old.close()

    store = SQLiteStore(str(path))
    [row] = store.rows()
    assert (row.counter, row.spent, row.held) == ("c", 250, 300)     # the expired lease is gone
    store.settle("live", [charge("c", 0)], [120.0])
    [row] = store.rows()
    assert (row.spent, row.held) == (370, 0)
    store.close()
    assert SQLiteStore(str(path)).rows()[0].spent == 370               # opening again changes nothing


_SENT_BYTES_V4 = ("CREATE TABLE sent_bytes (cut_id TEXT PRIMARY KEY, status INTEGER NOT NULL, bytes INTEGER NOT NULL, "
                  "first_event_at_us INTEGER NOT NULL, expires REAL NOT NULL) WITHOUT ROWID;")


@pytest.mark.parametrize("version,tables,entry", [
    # Version 3 added `sent_bytes` (cut streams handed between workers).
    (2, "", CutEntry(200, 2_450, 0)),
    # Version 5 keeps the usage Envoy read with a cut stream's entry.
    (4, _SENT_BYTES_V4, CutEntry(200, 2_450, 7, '{"output_tokens":3.0}')),
], ids=["version 2", "version 4"])
def test_an_older_sqlite_file_gains_the_cut_streams_table_and_keeps_its_counters(tmp_path, version, tables, entry):
    path = tmp_path / "budgets.sqlite3"
    store = SQLiteStore(str(path))
    store.reserve("r", [charge("c", 40)], time.time(), time.time() + 60)
    store.close()
    old = sqlite3.connect(path)
    old.executescript(f"DROP TABLE sent_bytes; {tables} PRAGMA user_version = {version};")
    old.close()

    store = SQLiteStore(str(path))
    [row] = store.rows()
    assert (row.counter, row.held) == ("c", 40)
    store.put_cut_entry("c-1", entry, time.time() + 60)
    assert store.take_cut_entry("c-1") == entry and store.take_cut_entry("c-1") is None
    store.close()


def test_records_are_kept_found_listed_expired_and_deleted(store):
    store.put_record("response", "resp_1", '{"backend": "a"}', time.time() + 60)
    store.put_record("response", "resp_2", '{"backend": "b"}', None)
    store.put_record("response", "resp_gone", "x", time.time() - 1)
    store.put_record("key", "k1", "y", None)
    assert store.get_record("response", "resp_1") == '{"backend": "a"}'
    assert store.get_record("response", "resp_gone") is None
    assert store.get_record("response", "missing") is None
    assert store.records("response") == [("resp_1", '{"backend": "a"}'), ("resp_2", '{"backend": "b"}')]
    store.delete_record("response", "resp_1")
    assert store.get_record("response", "resp_1") is None
    assert store.records("key") == [("k1", "y")]


def test_records_are_written_and_found_many_at_once(store):
    """Guardrail findings go to the store a batch at a time (stages/guard/shared_findings.py)."""
    names = [f"n{i}" for i in range(1200)]             # more than one SQLite query's names
    store.put_records("findings", [(name, f"v{name}") for name in names[::2]], time.time() + 60)
    store.put_records("findings", [("old", "x")], time.time() - 1)
    found = store.get_records("findings", [*names, "old", "missing"])
    assert found == {name: f"v{name}" for name in names[::2]}
    assert store.get_records("other", names[:4]) == {} and store.get_records("findings", []) == {}


def test_a_busy_sqlite_write_lock_never_stalls_the_event_loop(tmp_path):
    """Another process holding the write lock (a long transaction, a backup) makes a
    worker's reserve wait on a thread of its own, not on the event loop: the loop keeps
    answering, and the reserve lands once the lock is free."""
    path = str(tmp_path / "budgets.sqlite3")
    store = SQLiteStore(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")

    async def scenario():
        loop = asyncio.get_running_loop()
        lags = []

        async def ticker():
            while True:
                before = loop.time()
                await asyncio.sleep(0.01)
                lags.append(loop.time() - before - 0.01)

        ticking = asyncio.ensure_future(ticker())
        loop.call_later(0.6, holder.execute, "COMMIT")         # the lock goes after 0.6 s
        started = loop.time()
        result = store.reserve("r1", [charge("c|x", 5)], time.time(), time.time() + 60)
        assert asyncio.isfuture(result)                        # handed to the store's thread
        admission = await result
        waited = loop.time() - started
        ticking.cancel()
        return admission, waited, max(lags)

    admission, waited, worst_lag = asyncio.run(scenario())
    assert admission.admitted and waited >= 0.5
    assert worst_lag < 0.15, worst_lag                         # the loop went on meanwhile
    assert {row.counter: row.held for row in store.rows()}["c|x"] == 5
    store.close()
