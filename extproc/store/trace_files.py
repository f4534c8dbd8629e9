"""Moves the recent calls and the agent runs' trace out of a budget store's SQLite file
into files of their own (sqlite_file.beside), once: files older than the store's
schema version 6 kept them in the budget store's file, where their batches' writes held
up the budgets'. Imports nothing of the gateway above the store."""

from __future__ import annotations

import sqlite3

from . import calls, runs
from .sqlite_file import beside, open_part

# (the part's file, its tables, the schema that makes them there)
PARTS = (("calls", ("calls",), calls.SCHEMA), ("runs", ("runs", "run_calls"), runs.SCHEMA))


def move_traces(db: sqlite3.Connection, path: str, busy_timeout: float) -> None:
    """Each part's tables that `db` (the budget store's connection, outside a
    transaction) still has: made in the part's file, their rows copied there unless it
    already has some (a move cut short before its drop), then dropped here, in one
    transaction over both files."""
    for part, tables, schema in PARTS:
        moving = _tables(db, "main").intersection(tables)
        if not moving:
            continue
        target = beside(path, part)
        if target == path:                      # (an in-memory store: nowhere else to go)
            continue
        open_part(path, part, schema, busy_timeout).close()      # its file and tables, made
        db.execute("ATTACH DATABASE ? AS moved", (target,))
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                for table in sorted(moving.intersection(_tables(db, "main"))):
                    db.execute(f"INSERT INTO moved.{table} SELECT * FROM main.{table} "
                               f"WHERE NOT EXISTS (SELECT 1 FROM moved.{table})")
                    db.execute(f"DROP TABLE main.{table}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        finally:
            db.execute("DETACH DATABASE moved")


def _tables(db: sqlite3.Connection, schema: str) -> set[str]:
    return {name for (name,) in db.execute(f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table'")}
