"""Agent runs' records: each run's totals and its calls in order, for `extproc runs`,
`extproc usage --by run` and the console. Limits are not kept here: a run's limits are
budget counters (stages/runs/limits.py), exact; this is the trace, written after the calls.

A worker's RunSettle stage appends one entry per call of a run (a deque append on the
call's path); FLUSH_SECONDS after the first entry of a batch the worker hands the batch
to the store in one write, off its event loop. SQLite: tables `runs` (one row per run,
totals merged in the write's transaction, so workers' batches add up) and `run_calls`
(trimmed to the newest MAX_CALLS_KEPT), in a file of their own beside the budget
store's (`runs_file`; sqlite_file.beside says why). Redis: a hash per run, a list of
its calls (each trimmed to MAX_CALLS_PER_RUN) and a sorted set of runs by last call,
each expiring with the run. A batch that cannot be written is dropped and logged (the log
line has every call and its run).

Never a prompt, an answer, a tool's arguments, a key or the caller's raw run value
(its display name is itself only when short and plain: runs/identity.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
import logging
import sqlite3
import time
from collections import deque

import orjson

from .limits import StoreSettings
from .sqlite_file import beside, open_part

log = logging.getLogger("extproc.runs")

FLUSH_SECONDS = 0.5
MAX_PENDING = 20_000
MAX_CALLS_KEPT = 200_000            # SQLite: run calls kept, all runs
MAX_CALLS_PER_RUN = 2_000           # Redis: per run
MAX_MODELS = 16                     # model names kept per run
MAX_DECISIONS = 50                  # policy decisions kept per run
STOPPED = ("stopped_loop", "stopped_limit")   # outcomes that stay once set
_REDIS_RUNS = "{llmgw}:runs"
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, name TEXT, source TEXT, client TEXT, key_id TEXT, user TEXT, team TEXT,
    first_ts REAL, last_ts REAL, calls INTEGER, mcp_calls INTEGER, refused INTEGER,
    input_tokens INTEGER, output_tokens INTEGER, cost_usd REAL, outcome TEXT, data TEXT);
CREATE INDEX IF NOT EXISTS runs_last ON runs (last_ts);
CREATE TABLE IF NOT EXISTS run_calls (id INTEGER PRIMARY KEY, run TEXT NOT NULL, ts REAL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS run_calls_run ON run_calls (run, id);
"""


def runs_file(store_path: str) -> str:
    """The SQLite file the runs' trace is kept in, beside the budget store's."""
    return beside(store_path, "runs")


_TOTALS = ("calls", "mcp_calls", "refused", "input_tokens", "output_tokens", "cost_usd")


def outcome_of(entry: dict) -> str:
    return entry.get("stopped") or ("refused" if (entry.get("status") or 0) >= 400 else "ok")


def merge(run: dict | None, entries: list[dict]) -> dict:
    """A run's record with a batch of its calls added (`run` None: a new run)."""
    first = entries[0]
    if run is None:
        run = {"id": first["run"], "name": first.get("run_name", ""), "source": first.get("run_source", ""),
               "inferred": bool(first.get("run_inferred")),     # no id named it: stages/runs/unnamed.py
               "client": first.get("client", ""), "key": first.get("key_id", ""), "user": first.get("user", ""),
               "team": first.get("team", ""), "first_ts": first["ts"], "last_ts": first["ts"],
               "calls": 0, "mcp_calls": 0, "refused": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0,
               "models": [], "outcome": "ok", "decisions": []}
    for entry in entries:
        run["first_ts"] = min(run["first_ts"], entry["ts"])
        run["last_ts"] = max(run["last_ts"], entry["ts"])
        run["mcp_calls" if entry.get("kind") == "mcp" else "calls"] += 1
        run["refused"] += 1 if (entry.get("status") or 0) >= 400 else 0
        run["input_tokens"] += entry.get("input_tokens") or 0
        run["output_tokens"] += entry.get("output_tokens") or 0
        run["cost_usd"] = round(run["cost_usd"] + (entry.get("cost_usd") or 0.0), 9)
        model = entry.get("model")
        if model and model not in run["models"] and len(run["models"]) < MAX_MODELS:
            run["models"].append(model)
        if run["outcome"] not in STOPPED and entry.get("stopped"):
            run["outcome"] = entry["stopped"]
        for decision in entry.get("decisions") or ():
            if len(run["decisions"]) < MAX_DECISIONS:
                run["decisions"].append(decision)
    return run


class RunLog:
    """A worker's run entries, on their way to the store."""

    def __init__(self) -> None:
        self._pending: deque[dict] = deque(maxlen=MAX_PENDING)
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="runs")
        self._sqlite: tuple[str, sqlite3.Connection] | None = None
        self._redis = None
        self._flushing: asyncio.Task | None = None
        # Told, on the event loop, what a write found: "started" for each new run, and the
        # outcome of each run it stopped (the worker's metric; the store knows no metrics).
        self.on_runs: Callable[[list[str]], None] = lambda events: None

    def add(self, entry: dict, store: StoreSettings, ttl_seconds: float) -> None:
        self._pending.append(entry)
        if self._flushing is None or self._flushing.done():
            try:
                self._flushing = asyncio.get_running_loop().create_task(self._flush_later(store, ttl_seconds))
            except RuntimeError:         # no loop (a test calling the stage directly): flushed by hand
                pass

    async def _flush_later(self, store: StoreSettings, ttl_seconds: float) -> None:
        # Until nothing is pending: entries added while a write was under way (add() starts
        # no second flush meanwhile) go in the next one, not with the worker's next call,
        # which may never come (an agent stopped on its loop makes no more).
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush(store, ttl_seconds)
            except Exception:      # noqa: BLE001 - the log line has every call; serving goes on
                log.exception("agent runs: a flush failed")
            if not self._pending:
                return

    async def flush(self, store: StoreSettings, ttl_seconds: float) -> None:
        if not self._pending:
            return
        batch = [self._pending.popleft() for _ in range(len(self._pending))]
        by_run: dict[str, list[dict]] = {}
        for entry in batch:
            by_run.setdefault(entry["run"], []).append(entry)
        try:
            if store.kind == "redis":
                events = await self._to_redis(store.url, by_run, ttl_seconds)
            else:
                events = await asyncio.get_running_loop().run_in_executor(self._thread, self._to_sqlite,
                                                                          store.path, by_run)
        except Exception as error:     # noqa: BLE001
            log.warning("agent runs: %d calls' records not kept, the store could not be written: %s",
                        len(batch), type(error).__name__)
            return
        if events:
            self.on_runs(events)

    def _to_sqlite(self, path: str, by_run: dict[str, list[dict]]) -> list[str]:
        connection = _connect(path, self)
        events: list[str] = []
        connection.execute("BEGIN IMMEDIATE")
        try:
            for run_id, entries in by_run.items():
                row = connection.execute("SELECT data FROM runs WHERE id = ?", (run_id,)).fetchone()
                before = orjson.loads(row[0]) if row else None
                run = merge(dict(before) if before else None, entries)
                _events(events, before, run)
                connection.execute(
                    "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run["id"], run["name"], run["source"], run["client"], run["key"], run["user"], run["team"],
                     run["first_ts"], run["last_ts"], *(run[t] for t in _TOTALS), run["outcome"],
                     orjson.dumps(run).decode()))
                connection.executemany("INSERT INTO run_calls (run, ts, data) VALUES (?, ?, ?)",
                                       [(run_id, e["ts"], orjson.dumps(_call_of(e)).decode()) for e in entries])
            connection.execute("DELETE FROM run_calls WHERE id <= (SELECT max(id) FROM run_calls) - ?",
                               (MAX_CALLS_KEPT,))
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return events

    async def _to_redis(self, url: str, by_run: dict[str, list[dict]], ttl_seconds: float) -> list[str]:
        if self._redis is None or self._redis[0] != url:
            from redis import asyncio as aioredis
            self._redis = (url, aioredis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0))
        client = self._redis[1]
        ttl = max(1, int(ttl_seconds))
        events: list[str] = []
        for run_id, entries in by_run.items():
            # One run's record read, merged and written back under WATCH: workers' batches add up.
            key = f"{{llmgw}}:run:{run_id}"
            async with client.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(key)
                        found = await pipe.get(key)
                        before = orjson.loads(found) if found else None
                        run = merge(dict(before) if before else None, entries)
                        pipe.multi()
                        pipe.set(key, orjson.dumps(run), ex=ttl)
                        pipe.rpush(key + ":calls", *[orjson.dumps(_call_of(e)) for e in entries])
                        pipe.ltrim(key + ":calls", -MAX_CALLS_PER_RUN, -1)
                        pipe.expire(key + ":calls", ttl)
                        pipe.zadd(_REDIS_RUNS, {run_id: run["last_ts"]})
                        pipe.zremrangebyscore(_REDIS_RUNS, 0, time.time() - ttl)
                        await pipe.execute()
                        _events(events, before, run)
                        break
                    except Exception as error:    # noqa: BLE001 - WatchError: another worker wrote it; again
                        if type(error).__name__ != "WatchError":
                            raise
        return events


def _events(events: list[str], before: dict | None, after: dict) -> None:
    if before is None:
        events.append("started")
    if after["outcome"] in STOPPED and (before is None or before["outcome"] not in STOPPED):
        events.append(after["outcome"])


def _connect(store_path: str, holder: RunLog) -> sqlite3.Connection:
    if holder._sqlite is None or holder._sqlite[0] != store_path:
        holder._sqlite = (store_path, open_part(store_path, "runs", SCHEMA))
    return holder._sqlite[1]


_CALL_FIELDS = ("ts", "kind", "request_id", "model", "backend", "profile", "method", "tool", "status", "outcome",
                "error_code", "stopped",
                "input_tokens", "output_tokens", "cost_usd", "latency_ms", "tool_calls", "decisions")


def _call_of(entry: dict) -> dict:
    return {name: entry[name] for name in _CALL_FIELDS if entry.get(name) not in (None, "", [])}


# --- reading them back (`extproc runs`, the console) -------------------------------------

def list_runs(store: StoreSettings, limit: int = 100, key_id: str = "", since: float = 0.0) -> list[dict]:
    """The runs with a call since `since`, the latest first."""
    if store.kind == "redis":
        import redis
        client = redis.Redis.from_url(store.url, socket_timeout=2.0, socket_connect_timeout=2.0)
        try:
            ids = client.zrevrangebyscore(_REDIS_RUNS, "+inf", since, start=0, num=limit * 4 if key_id else limit)
            runs = [orjson.loads(found) for found in client.mget([f"{{llmgw}}:run:{i.decode()}" for i in ids])
                    if found] if ids else []
        finally:
            client.close()
        return [run for run in runs if not key_id or run["key"] == key_id][:limit]
    rows = _sqlite(runs_file(store.path), "SELECT data FROM runs WHERE last_ts >= ? AND (? = '' OR key_id = ?) "
                   "ORDER BY last_ts DESC LIMIT ?", (since, key_id, key_id, limit))
    return [orjson.loads(data) for (data,) in rows]


def find_run(store: StoreSettings, wanted: str) -> dict | None:
    """A run by its id (or the start of it, or its name when one run has it), with its
    calls in order under `calls` (their count under `model_calls` and `mcp_calls`)."""
    if store.kind == "redis":
        candidates = [run for run in list_runs(store, limit=10_000)
                      if run["id"].startswith(wanted) or run["name"] == wanted]
    else:
        rows = _sqlite(runs_file(store.path), "SELECT data FROM runs WHERE id = ? OR id LIKE ? OR name = ? LIMIT 2",
                       (wanted, wanted.replace("%", "").replace("_", "") + "%" if len(wanted) >= 6 else wanted,
                        wanted))
        candidates = [orjson.loads(data) for (data,) in rows]
    exact = [run for run in candidates if run["id"] == wanted]
    if exact:
        candidates = exact
    if len(candidates) != 1:
        return None
    run = candidates[0]
    run["model_calls"] = run["calls"]
    if store.kind == "redis":
        import redis
        client = redis.Redis.from_url(store.url, socket_timeout=2.0, socket_connect_timeout=2.0)
        try:
            run["calls"] = sorted((orjson.loads(c) for c in client.lrange(f"{{llmgw}}:run:{run['id']}:calls", 0, -1)),
                                 key=lambda call: call.get("ts", 0.0))
        finally:
            client.close()
    else:
        run["calls"] = [orjson.loads(data) for (data,) in _sqlite(
            runs_file(store.path), "SELECT data FROM run_calls WHERE run = ? ORDER BY ts, id", (run["id"],))]
    return run


def _sqlite(path: str, sql: str, values: tuple) -> list[tuple]:
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error:
        return []
    try:
        return connection.execute(sql, values).fetchall()
    except sqlite3.OperationalError:       # no runs table yet: no run so far
        return []
    finally:
        connection.close()
