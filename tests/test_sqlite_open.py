"""Processes that open a new SQLite store at once (the workers, the console, a command
as `extproc up` starts) all start: switching the file to WAL needs an exclusive lock,
which SQLite refuses at once rather than wait for, so the switch is tried again."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys

import pytest

from extproc.store.response_cache import SQLiteCache
from extproc.store.sqlite_store import SQLiteStore


def _open(path: str, barrier, results) -> None:
    barrier.wait()
    try:
        SQLiteStore(path)
        results.put("ok")
    except Exception as error:         # noqa: BLE001 - what each process met is the finding
        results.put(repr(error))


def test_processes_opening_a_new_store_at_once_all_start(tmp_path):
    context = multiprocessing.get_context("fork")
    for round_number in range(8):
        path = str(tmp_path / f"budgets-{round_number}.sqlite3")
        barrier, results = context.Barrier(4), context.Queue()
        processes = [context.Process(target=_open, args=(path, barrier, results)) for _ in range(4)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(30)
        assert [results.get(timeout=5) for _ in processes] == ["ok"] * 4


_CLOSE_ELSEWHERE = """
import sys
from extproc.store.response_cache import SQLiteCache
from extproc.store.sqlite_store import SQLiteStore
path, kind = sys.argv[1], sys.argv[2]
store = SQLiteStore(path, patient=True) if kind == "store" else SQLiteCache(path, 1 << 20, patient=True)
store.close()
"""
_READ_ELSEWHERE = """
import sqlite3, sys
path, kind = sys.argv[1], sys.argv[2]
db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
sql = "SELECT name FROM records ORDER BY name" if kind == "store" else "SELECT model FROM answers ORDER BY model"
print(" ".join(name for (name,) in db.execute(sql)))
"""


def _elsewhere(script: str, path: str, kind: str) -> str:
    done = subprocess.run([sys.executable, "-c", script, path, kind], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("kind", ["store", "cache"])
def test_a_second_connection_in_a_process_leaves_its_writes_seen_by_the_others(tmp_path, kind):
    """A worker opens its file again (the budget store's patient twin when the write lock
    was busy; a reloaded response cache beside the old one). Then another process (the
    console after a key change, `extproc cache stats`) closes the last connection it had.
    The worker's next write must reach the file every process reads: had opening the
    file again dropped the worker's locks, that close would have deleted the WAL the
    worker writes to, and the write would be lost to everyone else."""
    path = str(tmp_path / f"{kind}.sqlite3")
    if kind == "store":
        first = SQLiteStore(path)
        first.put_record("k", "a", "1", None)
        again = SQLiteStore(path, patient=True, migrate=False)

        def write_more():
            first.put_record("k", "b", "2", None)
    else:
        first = SQLiteCache(path, 1 << 20)
        first.put("digest-a", "scope", "a", b"answer", 60)
        again = SQLiteCache(path, 1 << 20)

        def write_more():
            first.put("digest-b", "scope", "b", b"answer", 60)
    assert _elsewhere(_READ_ELSEWHERE, path, kind) == "a"
    _elsewhere(_CLOSE_ELSEWHERE, path, kind)
    write_more()
    assert _elsewhere(_READ_ELSEWHERE, path, kind) == "a b"
    again.close()
    first.close()
