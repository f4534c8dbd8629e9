"""An SQLite file as the stores keep it (the budget store, the response cache, the recent
calls, the agent runs' trace, the semantic cache's vectors): readable by its owner only,
in WAL mode; never opened outside SQLite once it exists."""

from __future__ import annotations

import os
import sqlite3
import time

WAL_SWITCH_WAIT_S = 10.0


def beside(store_path: str, part: str) -> str:
    """The file of the store's `part` (its recent calls, its runs' trace), beside the
    budget store's file: `budgets.sqlite3` keeps its calls in `budgets.calls.sqlite3`.
    Each is a file of its own because a writer holds a file's write lock for its whole
    batch: in the budget store's file the budgets' writes (an allotment exchange, a
    call's reservation) waited behind it on the event loop
    (docs/decisions/traces-in-files-of-their-own.md)."""
    if store_path == ":memory:" or store_path.startswith("file:"):
        return store_path
    root, dot, extension = store_path.rpartition(".")
    if not dot or os.sep in extension or not os.path.basename(root):
        return f"{store_path}.{part}"
    return f"{root}.{part}.{extension}"


def enable_wal(db: sqlite3.Connection, wait: float = WAL_SWITCH_WAIT_S) -> None:
    """Puts the file in WAL mode. Processes opening a new file at once (the workers, the
    console, a command) may each hold a read lock while asking for the exclusive one the
    switch needs: SQLite answers one of them "locked" at once rather than wait (a wait
    could deadlock), so the switch is tried again, with a short sleep, until `wait`."""
    deadline = time.monotonic() + wait
    pause = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) and "busy" not in str(error) or time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.2)


def owner_only(path: str) -> None:
    """The database (keys' digests, budgets, who owns which stored response) is readable
    by its owner only: a directory the store makes is 0700, the file 0600 (SQLite gives
    its -wal and -shm files the database's mode).

    A file that exists is never opened here: closing any descriptor of a file drops every
    POSIX lock the process holds on it, its SQLite connections' included (SQLite's own
    warning, "How To Corrupt An SQLite Database File", 2.2). A process that lost its
    shared lock looks gone to the others: the last of them to close a connection deletes
    the WAL, and the writes this process makes next land in the deleted file, lost to
    every other process (a worker's counters and calls, vanished from the console)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    if path == ":memory:" or path.startswith("file:"):
        return
    try:                 # a new file: no connection of this process can hold a lock on it
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
    except FileExistsError:
        pass
    for name in (path, f"{path}-wal", f"{path}-shm"):
        try:
            found = os.stat(name)
        except FileNotFoundError:
            continue
        if found.st_mode & 0o077 and found.st_uid == os.getuid():
            os.chmod(name, 0o600)


def open_part(store_path: str, part: str, schema: str, timeout: float = 10.0) -> sqlite3.Connection:
    """A connection to the store's `part` file (`beside`), made if new (0600, WAL, synced
    as the budget store is: a crash loses nothing) with `schema`'s tables. The store's
    directory is the store's to make: without it, FileNotFoundError."""
    if not os.path.isdir(os.path.dirname(os.path.abspath(store_path))):
        raise FileNotFoundError(store_path)
    path = beside(store_path, part)
    owner_only(path)
    connection = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    enable_wal(connection)
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.executescript(schema)
    return connection
