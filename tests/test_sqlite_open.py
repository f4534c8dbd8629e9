"""Processes that open a new SQLite store at once (the workers, the console, a command
as `extproc up` starts) all start: switching the file to WAL needs an exclusive lock,
which SQLite refuses at once rather than wait for, so the switch is tried again."""

from __future__ import annotations

import multiprocessing

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
