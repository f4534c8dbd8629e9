"""The recent calls and the agent runs' trace keep SQLite files of their own beside the
budget store's (their batches' writes must not hold the budgets' write lock), and a
budget file from before moves them there once, rows and all."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
import time

from extproc.store import calls as calls_module, runs as runs_module
from extproc.store.calls import CallLog, calls_file, recent_calls
from extproc.store.limits import StoreSettings
from extproc.store.runs import find_run, list_runs, runs_file
from extproc.store.sqlite_file import beside
from extproc.store.sqlite_store import SCHEMA_VERSION, SQLiteStore


def settings(path: str) -> StoreSettings:
    return StoreSettings("sqlite", path, None, "closed", 900, 512)


def tables(path: str) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()


def test_each_part_is_named_beside_the_store_file():
    assert beside("/var/lib/gw/budgets.sqlite3", "calls") == "/var/lib/gw/budgets.calls.sqlite3"
    assert beside("/var/lib/gw/budgets", "runs") == "/var/lib/gw/budgets.runs"
    assert beside("/var/lib/g.w/budgets", "runs") == "/var/lib/g.w/budgets.runs"
    assert beside("/var/lib/gw/.budgets", "calls") == "/var/lib/gw/.budgets.calls"
    assert beside(":memory:", "calls") == ":memory:"
    assert calls_file("/s/b.db") == "/s/b.calls.db" and runs_file("/s/b.db") == "/s/b.runs.db"


def test_calls_are_written_to_their_own_file_readable_by_its_owner_alone(tmp_path):
    path = str(tmp_path / "budgets.sqlite3")
    SQLiteStore(path).close()
    log = CallLog()
    log.add({"ts": time.time(), "request_id": "r1", "key_id": "k1", "status": 200, "outcome": "ok"})
    asyncio.run(log.flush(settings(path), 10))
    assert [row["request_id"] for row in recent_calls(settings(path))] == ["r1"]
    assert "calls" in tables(calls_file(path)) and "calls" not in tables(path)
    assert stat.S_IMODE(os.stat(calls_file(path)).st_mode) == 0o600


def test_a_store_file_from_before_moves_its_calls_and_runs_out_once(tmp_path):
    path = str(tmp_path / "budgets.sqlite3")
    SQLiteStore(path).close()
    # The budget file as version 5 left it: the recent calls and the runs' trace inside.
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(calls_module.SCHEMA + runs_module.SCHEMA)
    db.execute("INSERT INTO calls (ts, kind, key_id, status, verdict, data) VALUES (?, '', 'k1', '200', '', ?)",
               (time.time(), '{"request_id": "old-call", "key_id": "k1", "status": 200}'))
    run = {"id": "run-1", "name": "triage", "source": "header", "client": "claude-code", "key": "k1", "user": "u",
           "team": "t", "first_ts": 1.0, "last_ts": time.time(), "calls": 1, "mcp_calls": 0, "refused": 0,
           "input_tokens": 3, "output_tokens": 4, "cost_usd": 0.0, "outcome": "ok"}
    db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (run["id"], run["name"], run["source"], run["client"], run["key"], run["user"], run["team"],
                run["first_ts"], run["last_ts"], 1, 0, 0, 3, 4, 0.0, "ok", json.dumps(run)))
    db.execute("INSERT INTO run_calls (run, ts, data) VALUES ('run-1', 1.0, '{\"model\": \"gpt-4o-mini\"}')")
    db.execute("PRAGMA user_version = 5")
    db.close()

    SQLiteStore(path).close()
    assert not {"calls", "runs", "run_calls"} & tables(path)
    assert [row["request_id"] for row in recent_calls(settings(path))] == ["old-call"]
    assert [found["id"] for found in list_runs(settings(path))] == ["run-1"]
    assert find_run(settings(path), "run-1")["calls"] == [{"model": "gpt-4o-mini"}]
    for moved in (calls_file(path), runs_file(path)):
        assert stat.S_IMODE(os.stat(moved).st_mode) == 0o600
    version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION

    SQLiteStore(path).close()                  # opened again: nothing moves twice
    assert len(recent_calls(settings(path))) == 1 and len(list_runs(settings(path))) == 1
