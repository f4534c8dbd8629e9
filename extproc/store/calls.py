"""Recent calls: the fields of each call's log line, kept in the store for the console.

Only when the config's `console.calls.keep` is above zero. A worker's Record stage, once
the call's answer is out, appends the row's columns and its JSON to a bounded list in
memory (~3 µs); every FLUSH_SECONDS the worker hands what gathered to the
store in one write, off its event loop: SQLite, a `calls` table written on a thread of
its own and trimmed to the newest `keep` rows; Redis, a list pushed and trimmed in one
pipeline. A worker that cannot write drops the batch (the log line has every call).

The SQLite table lives in a file of its own beside the budget store's (`calls_file`,
sqlite_file.beside says why).

What is kept of a model call is its log line as written: ids, the key's user and team,
model and backend, status, tokens, cost, latency, tags, guardrail verdicts (the rule,
never the text it matched), the trace id and the line's other notes, none of them a
secret (stages/accounting/record.py). Of an MCP call, the listed fields of its line
(CALL_FIELDS: never its session's id). Never a prompt, an answer, a key or a credential.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from .limits import StoreSettings
from .sqlite_file import beside, open_part

log = logging.getLogger("extproc.calls")

FLUSH_SECONDS = 0.5
MAX_PENDING = 20_000             # calls waiting for a flush; older ones are dropped past this
REDIS_LIST = "{llmgw}:calls"    # beside the store's other keys (redis_store.py), in their hash slot
WARN_EVERY = 60.0                # seconds between two warnings of batches not kept
CALL_FIELDS = ("ts", "kind", "request_id", "key_id", "user", "team", "model", "served_model", "backend", "status",
               "outcome", "error_code", "stream", "api", "input_tokens", "output_tokens", "cached_tokens",
               "usage_estimated", "cost_usd", "latency_ms", "ttft_ms", "attempts", "tags", "guardrails",
               "trace_id", "trace_url", "config_version", "cache", "cache_saved_usd", "cache_similarity",
               # an MCP call's (stages/mcp/record.py): where, what, how big; never the arguments
               "profile", "server", "method", "tool", "argument_bytes")
MCP = "mcp"                      # the `kind` of an MCP call's record; a model call's has none
SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL DEFAULT '', key_id TEXT, team TEXT, model TEXT,
    backend TEXT, status TEXT, verdict TEXT, latency_ms REAL, data TEXT NOT NULL);
"""


def calls_file(store_path: str) -> str:
    """The SQLite file the recent calls are kept in, beside the budget store's."""
    return beside(store_path, "calls")


_KEPT = frozenset(CALL_FIELDS)


def call_row(record: dict) -> dict:
    """What the store keeps of a log record: its listed fields only (in the record's order:
    a look-up in a set per field it has, not one per listed field)."""
    return {name: value for name, value in record.items() if name in _KEPT}


def _verdicts(row: dict) -> str:
    """"blocked redacted": the verdicts a call had, for filtering by one."""
    if not row.get("guardrails"):
        return ""
    return " ".join(sorted({str(v.get("verdict")) for v in row.get("guardrails") or () if isinstance(v, dict)}))


def _status(row: dict) -> str:
    """A call's status as the table keeps it: its HTTP status, else its outcome."""
    return str(row.get("status") or row.get("outcome") or "")


def _columns(row: dict, data: str) -> tuple:
    """The `calls` table's columns of a call's row (`data`: its JSON), in SCHEMA's order."""
    get = row.get
    return (get("ts") or time.time(), get("kind") or "", get("key_id"), get("team"), get("model"), get("backend"),
            _status(row), _verdicts(row), get("latency_ms"), data)


class CallLog:
    """A worker's recent calls, on their way to the store."""

    def __init__(self) -> None:
        self._pending: deque[tuple] = deque(maxlen=MAX_PENDING)   # each call's _columns
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="calls")
        self._sqlite: tuple[str, sqlite3.Connection] | None = None
        self._redis = None
        self._warned_at = 0.0
        self._lost = 0

    def add(self, record: dict, line: bytes | None = None) -> None:
        """The call's columns and its JSON, made now (after its answer is out): made at the
        flush, 1,500 rows a flush under load held the event loop ~2 ms at a time. Only
        those are kept until the flush, not the row: a dict held that long is one more
        container for every pass of Python's collector until then. `line`: a model call's
        log line as written (a newline last), kept whole as its JSON rather than its
        listed fields written again (3.7% of a short call's instructions:
        bench/instructions.py); without it, the record's listed fields."""
        if line is not None:
            self._pending.append(_columns(record, line[:-1].decode()))
            return
        row = call_row(record)
        self._pending.append(_columns(row, orjson.dumps(row).decode()))

    async def keep_flushing(self, settings: Callable[[], tuple[StoreSettings, int]]) -> None:
        """Every FLUSH_SECONDS, what gathered goes to the store `settings()` names (read at
        each flush: a reload may change it), keeping its newest `keep` calls."""
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush(*settings())
            except Exception:       # noqa: BLE001 - the next flush tries again; serving goes on
                log.exception("recent calls: a flush failed")

    async def flush(self, store: StoreSettings, keep: int) -> None:
        if not self._pending:
            return
        batch = [self._pending.popleft() for _ in range(len(self._pending))]
        if keep <= 0:
            return
        try:
            if store.kind == "redis":
                await self._to_redis(store.url, batch, keep)
            else:
                await asyncio.get_running_loop().run_in_executor(self._thread, self._to_sqlite, store.path,
                                                                 batch, keep)
        except Exception as error:     # noqa: BLE001 - the log line has every call; never fail serving
            self._lost += len(batch)
            if time.monotonic() - self._warned_at >= WARN_EVERY:      # a store down is one warning a minute
                self._warned_at = time.monotonic()
                log.warning("recent calls: %d not kept, the store could not be written: %s", self._lost,
                            type(error).__name__)
                self._lost = 0

    def _to_sqlite(self, path: str, batch: list[tuple], keep: int) -> None:
        if self._sqlite is None or self._sqlite[0] != path:
            self._sqlite = (path, open_part(path, "calls", SCHEMA))
        connection = self._sqlite[1]
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.executemany(
                "INSERT INTO calls (ts, kind, key_id, team, model, backend, status, verdict, latency_ms, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", batch)
            connection.execute("DELETE FROM calls WHERE id <= (SELECT max(id) FROM calls) - ?", (keep,))
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    async def _to_redis(self, url: str, batch: list[tuple], keep: int) -> None:
        if self._redis is None or self._redis[0] != url:
            from redis import asyncio as aioredis
            self._redis = (url, aioredis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0))
        pipe = self._redis[1].pipeline(transaction=True)
        pipe.lpush(REDIS_LIST, *[columns[-1] for columns in batch])
        pipe.ltrim(REDIS_LIST, 0, keep - 1)
        await pipe.execute()


# --- reading them back (the console) ----------------------------------------------------

@dataclass(frozen=True, slots=True)
class CallFilter:
    key_id: str = ""
    team: str = ""
    model: str = ""
    status: str = ""        # "200", "429", or "error" (any status of 400 and above)
    verdict: str = ""       # blocked | redacted | flagged
    tag: str = ""           # NAME=VALUE
    kind: str = ""          # "" model calls, MCP: MCP calls, "*": both

    def matches(self, row: dict) -> bool:
        if self.kind != "*" and (row.get("kind") or "") != self.kind:
            return False
        if self.key_id and row.get("key_id") != self.key_id or self.team and row.get("team") != self.team:
            return False
        if self.model and row.get("model") != self.model:
            return False
        status = _status(row)
        if self.status == "error":
            if not (status.isdigit() and int(status) >= 400 or not status.isdigit()):
                return False
        elif self.status and status != self.status:
            return False
        if self.verdict == "any" and not set(_verdicts(row).split()) - {"passed"}:
            return False
        if self.verdict and self.verdict != "any" and self.verdict not in _verdicts(row).split():
            return False
        if self.tag:
            name, _, value = self.tag.partition("=")
            if (row.get("tags") or {}).get(name) != value:
                return False
        return True


def recent_calls(store: StoreSettings, wanted: CallFilter = CallFilter(), limit: int = 100,
                 since: float = 0.0) -> list[dict]:
    """The newest calls that match, newest first (at most `limit`; none older than `since`)."""
    if store.kind == "redis":
        return [row for row in _redis_rows(store.url) if row.get("ts", 0) >= since and wanted.matches(row)][:limit]
    clauses, values = ["ts >= ?"], [since]
    if wanted.kind != "*":
        clauses.append("kind = ?")
        values.append(wanted.kind)
    for column, value in (("key_id", wanted.key_id), ("team", wanted.team), ("model", wanted.model)):
        if value:
            clauses.append(f"{column} = ?")
            values.append(value)
    if wanted.status == "error":
        clauses.append("(status NOT GLOB '[0-9]*' OR CAST(status AS INTEGER) >= 400)")
    elif wanted.status:
        clauses.append("status = ?")
        values.append(wanted.status)
    if wanted.verdict == "any":            # any verdict but "passed"
        clauses.append("verdict != '' AND verdict != 'passed'")
    elif wanted.verdict:
        clauses.append("(' ' || verdict || ' ') LIKE ?")
        values.append(f"% {wanted.verdict} %")
    sql = f"SELECT data FROM calls WHERE {' AND '.join(clauses)} ORDER BY id DESC"
    return _sqlite_query(calls_file(store.path), sql, values, limit, wanted)


@dataclass(frozen=True, slots=True)
class CallStats:
    """Of the kept calls since a time, by (model, backend, answered from the response
    cache): how many, how many failed, and the latencies of the newest `sample` of them
    (sorted). A call with no backend was either a cache hit or refused before one."""
    calls: dict[tuple[str, str, bool], int]
    errors: dict[tuple[str, str, bool], int]
    latencies: dict[tuple[str, str, bool], list[float]]


CACHE_HIT = "hit"                # a record's `cache` when the response cache answered it
# A call kept without a backend that succeeded: answered from the cache? (its JSON read for
# those rows alone; a call refused before a backend failed, and is not one)
_SUCCEEDED = "status GLOB '[0-9]*' AND CAST(status AS INTEGER) < 400"
_HIT = (f"CASE WHEN backend IS NULL AND {_SUCCEEDED} "
        f"THEN coalesce(json_extract(data, '$.cache') = '{CACHE_HIT}', 0) ELSE 0 END")


def _failed(status: str) -> bool:
    return not status.isdigit() or int(status) >= 400


def call_stats(store: StoreSettings, since: float, sample: int = 20_000) -> CallStats:
    """For the overview: counts over every kept call since `since` (SQLite counts them
    itself), latency percentiles from the newest `sample`."""
    stats = CallStats({}, {}, {})
    if store.kind == "redis":
        rows = [row for row in _redis_rows(store.url) if row.get("ts", 0) >= since and not row.get("kind")]
        for n, row in enumerate(rows):
            group = (row.get("model") or "", row.get("backend") or "",
                     not row.get("backend") and row.get("cache") == CACHE_HIT)
            stats.calls[group] = stats.calls.get(group, 0) + 1
            if _failed(_status(row)):
                stats.errors[group] = stats.errors.get(group, 0) + 1
            if n < sample:
                stats.latencies.setdefault(group, []).append(float(row.get("latency_ms") or 0.0))
    else:
        try:
            connection = sqlite3.connect(f"file:{calls_file(store.path)}?mode=ro", uri=True, timeout=5.0)
        except sqlite3.Error:
            return stats
        try:
            for model, backend, calls, errors in connection.execute(
                    "SELECT coalesce(model, ''), coalesce(backend, ''), count(*), "
                    "sum(CASE WHEN status GLOB '[0-9]*' AND CAST(status AS INTEGER) < 400 THEN 0 ELSE 1 END) "
                    "FROM calls WHERE ts >= ? AND kind = '' GROUP BY 1, 2", (since,)):
                stats.calls[(model, backend, False)] = calls
                stats.errors[(model, backend, False)] = errors
            # The hits apart, in a query of their own: grouping by whether a call was one
            # would carry every call's record through the GROUP BY's sort (twice the time).
            for model, hits in connection.execute(
                    "SELECT coalesce(model, ''), count(*) FROM calls WHERE ts >= ? AND kind = '' AND backend IS NULL "
                    f"AND {_SUCCEEDED} AND json_extract(data, '$.cache') = '{CACHE_HIT}' GROUP BY 1", (since,)):
                stats.calls[(model, "", True)] = hits            # (a hit succeeded: no error to move)
                left = stats.calls.pop((model, "", False), hits) - hits   # (a batch written in between: 0)
                if left > 0:
                    stats.calls[(model, "", False)] = left
                elif not stats.errors.get((model, "", False)):
                    stats.errors.pop((model, "", False), None)
            for model, backend, hit, took in connection.execute(
                    f"SELECT coalesce(model, ''), coalesce(backend, ''), {_HIT}, coalesce(latency_ms, 0) FROM calls "
                    "WHERE ts >= ? AND kind = '' ORDER BY id DESC LIMIT ?", (since, sample)):
                stats.latencies.setdefault((model, backend, bool(hit)), []).append(took)
        except sqlite3.OperationalError:       # no calls table yet
            return stats
        finally:
            connection.close()
    for times in stats.latencies.values():
        times.sort()
    return stats


def _sqlite_query(path: str, sql: str, values: list, limit: int | None, wanted: CallFilter) -> list[dict]:
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error:
        return []
    try:
        found = []
        for (data,) in connection.execute(sql, values):
            row = json.loads(data)
            if wanted.tag and not wanted.matches(row):
                continue
            found.append(row)
            if limit is not None and len(found) >= limit:
                break
        return found
    except sqlite3.OperationalError:       # no calls table yet: nothing kept so far
        return []
    finally:
        connection.close()


def _redis_rows(url: str) -> list[dict]:
    import redis
    client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        return [json.loads(item) for item in client.lrange(REDIS_LIST, 0, -1)]
    finally:
        client.close()
