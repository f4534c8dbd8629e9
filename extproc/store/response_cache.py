"""The response cache's store: answers under their key's digest, each with its scope and
model (for stats and purges), its size and its end (TTL).

Two kinds, as the budget store's: an embedded SQLite file (WAL; `cache.path`, under the
state dir) for one node, Redis (the budget store's) for many replicas. Both keep the
total under `max_bytes`: past it, a put removes the entries nearest their end first.
A store that cannot be reached, or an SQLite write lock held elsewhere, is a miss or an
answer not kept: never a failed call (the stages count it, `gateway_cache_store_errors`).

An entry's value is opaque here: bytes the stages wrote (cache_entry.py)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time

from .base import StoreUnavailable
from .known_digests import KnownDigests
from .sqlite_file import enable_wal, owner_only

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT, digest TEXT NOT NULL UNIQUE, scope TEXT NOT NULL, model TEXT NOT NULL, value BLOB NOT NULL,
    size INTEGER NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS answers_by_end ON answers (expires);
CREATE TABLE IF NOT EXISTS totals (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
"""
# Answers are kept in a rowid table, appended in the order they come (`id` never reused:
# known_digests.py reads the rows added since), and found through a small index of their digests. Kept in the digest's own B-tree (WITHOUT ROWID), each
# ~1 KB answer lands on a random page: a put costs 48 µs and a get 11 µs, against 11 and
# 3 here (docs/decisions/response-cache.md). A table `entries` is that layout: it is
# dropped on open, with the totals, and the cache starts empty.
_OTHER_LAYOUT = "entries"
LOOP_BUSY_TIMEOUT = 0.02        # a worker's flush waits this long for another's write lock, then retries later
FLUSH_S = 0.25                  # a worker's pending entries are written this often
MAX_PENDING_BYTES = 8 * 1024 * 1024     # ...or at once past this many bytes

log = logging.getLogger("extproc.cache")
PATIENT_BUSY_TIMEOUT = 10.0     # commands (stats, purge)


def open_cache(settings, store_settings, *, patient: bool = False):
    """The cache store: Redis when the budget store is Redis (the same server), else SQLite."""
    if store_settings is not None and store_settings.kind == "redis":
        return RedisCache(store_settings.url, settings.max_bytes)
    return SQLiteCache(settings.path, settings.max_bytes, patient=patient)


class SQLiteCache:
    """Entries written behind: a put joins the worker's pending entries (read by `get`
    at once), written every FLUSH_S in one transaction: one transaction per put cost a
    miss ~115 µs of the worker's loop, one per batch a few µs an entry."""

    def __init__(self, path: str, max_bytes: int, *, patient: bool = False) -> None:
        self.path = path
        self.max_bytes = max_bytes
        owner_only(path)                   # answers: its owner's alone (and never a lock lost)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                   timeout=PATIENT_BUSY_TIMEOUT)
        enable_wal(self._db)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._drop_other_layout()
        # A worker skips the query for digests the file cannot hold; a command reads it all.
        self._known = None
        if not patient:
            self._db.execute(f"PRAGMA busy_timeout = {int(LOOP_BUSY_TIMEOUT * 1000)}")
            self._known = KnownDigests(self._db)
        self._pending: dict[str, tuple[str, str, bytes, int, float]] = {}
        self._pending_bytes = 0
        self._flush_due = None

    def _drop_other_layout(self) -> None:
        found = self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                 (_OTHER_LAYOUT,)).fetchone()
        if found:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(f"DROP TABLE IF EXISTS {_OTHER_LAYOUT}")
                self._db.execute("DELETE FROM totals")

    def get(self, digest: str) -> bytes | None:
        pending = self._pending.get(digest)
        if pending is not None and pending[4] > time.time():
            return pending[2]
        try:
            if self._known is not None and not self._known.may_hold(digest):
                return None
            row = self._db.execute("SELECT value FROM answers WHERE digest = ? AND expires > ?",
                                   (digest, time.time())).fetchone()
        except sqlite3.Error as error:
            raise StoreUnavailable(str(error)) from error
        return row[0] if row else None

    def put(self, digest: str, scope: str, model: str, value: bytes, ttl_s: float) -> bool:
        """Keeps an entry (written within FLUSH_S; at once without an event loop)."""
        size = len(value) + len(digest) + len(scope) + len(model)
        old = self._pending.pop(digest, None)
        if old is not None:
            self._pending_bytes -= old[3]
        self._pending[digest] = (scope, model, value, size, time.time() + ttl_s)
        self._pending_bytes += size
        if self._known is not None:
            self._known.add(digest)
        if self._pending_bytes > MAX_PENDING_BYTES:
            self.flush()
        elif self._flush_due is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:                      # a command: no loop to write later on
                return self.flush()
            self._flush_due = loop.call_later(FLUSH_S, self._flush_later)
        return True

    def _flush_later(self) -> None:
        self._flush_due = None
        try:
            self.flush()
        except StoreUnavailable as error:
            log.error("response cache: %d entries not kept: %s", len(self._pending), error)
            self._pending.clear()
            self._pending_bytes = 0

    def flush(self) -> bool:
        """Writes the pending entries in one transaction; False when another process held
        the write lock past LOOP_BUSY_TIMEOUT (they wait for the next flush, or are dropped
        past MAX_PENDING_BYTES: a worker's loop never waits longer)."""
        if not self._pending:
            return True
        now = time.time()
        try:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as error:
                if getattr(error, "sqlite_errorcode", None) != sqlite3.SQLITE_BUSY:
                    raise
                if self._pending_bytes > MAX_PENDING_BYTES:
                    self._pending.clear()
                    self._pending_bytes = 0
                elif self._flush_due is None:
                    self._flush_due = asyncio.get_running_loop().call_later(FLUSH_S, self._flush_later) \
                        if _loop_running() else None
                return False
            try:
                self._db.executemany("INSERT OR REPLACE INTO answers (digest, scope, model, value, size, expires) "
                                     "VALUES (?, ?, ?, ?, ?, ?)",
                                     [(digest, *entry) for digest, entry in self._pending.items()])
                # The total counts a replaced entry twice: past the cap it is summed exactly first.
                total = self._add_total(self._pending_bytes)
                if total > self.max_bytes:
                    total = self._db.execute("SELECT coalesce(sum(size), 0) FROM answers").fetchone()[0]
                    self._db.execute("UPDATE totals SET value = ? WHERE name = 'bytes'", (total,))
                    if total > self.max_bytes:
                        self._evict(total, now)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            raise StoreUnavailable(str(error)) from error
        self._pending.clear()
        self._pending_bytes = 0
        return True

    def _add_total(self, delta: int) -> int:
        return self._db.execute(
            "INSERT INTO totals VALUES ('bytes', max(?1, 0)) ON CONFLICT (name) DO UPDATE "
            "SET value = max(value + ?1, 0) RETURNING value", (delta,)).fetchone()[0]

    def _evict(self, total: int, now: float) -> int:
        """The expired entries, then those nearest their end, until the total fits (with a
        tenth of room, so that a full cache does not evict on every put)."""
        goal = self.max_bytes * 0.9
        freed = self._db.execute("DELETE FROM answers WHERE expires <= ? RETURNING size", (now,)).fetchall()
        total -= sum(size for (size,) in freed)
        while total > goal:
            rows = self._db.execute("SELECT digest, size FROM answers ORDER BY expires LIMIT 64").fetchall()
            if not rows:
                total = 0
                break
            for digest, size in rows:
                self._db.execute("DELETE FROM answers WHERE digest = ?", (digest,))
                total -= size
                if total <= goal:
                    break
        self._db.execute("UPDATE totals SET value = ? WHERE name = 'bytes'", (max(total, 0),))
        return total

    def _where(self, scope: str | None, model: str | None) -> tuple[str, list]:
        clauses, args = [], []
        if scope is not None:
            clauses.append("scope = ?")
            args.append(scope)
        if model is not None:
            clauses.append("model = ?")
            args.append(model)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def stats(self, scope: str | None = None, model: str | None = None) -> dict:
        where, args = self._where(scope, model)
        now = time.time()
        try:
            rows = self._db.execute(f"SELECT scope, model, count(*), sum(size), sum(expires > ?) FROM answers{where} "
                                    "GROUP BY scope, model ORDER BY scope, model", [now, *args]).fetchall()
        except sqlite3.Error as error:
            raise StoreUnavailable(str(error)) from error
        return _stats("sqlite", self.max_bytes, [(s, m, n, b, live) for s, m, n, b, live in rows])

    def purge(self, scope: str | None = None, model: str | None = None) -> int:
        where, args = self._where(scope, model)
        try:
            self._db.execute("BEGIN IMMEDIATE")
            gone = self._db.execute(f"DELETE FROM answers{where} RETURNING size", args).fetchall()
            self._add_total(-sum(size for (size,) in gone))
            self._db.execute("COMMIT")
        except sqlite3.Error as error:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise StoreUnavailable(str(error)) from error
        return len(gone)

    def close(self) -> None:
        if self._flush_due is not None:
            self._flush_due.cancel()
        try:
            self.flush()
        except StoreUnavailable:
            pass
        self._db.close()


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _stats(kind: str, max_bytes: int, rows: list[tuple]) -> dict:
    groups = [{"scope": s, "model": m, "entries": int(n), "live": int(live), "bytes": int(b or 0)}
              for s, m, n, b, live in rows]
    return {"store": kind, "max_bytes": max_bytes, "entries": sum(g["entries"] for g in groups),
            "bytes": sum(g["bytes"] for g in groups), "groups": groups}


# --- Redis ----------------------------------------------------------------------------

PREFIX = "{llmgw}:cache:"               # one hash tag with the budgets': one Redis Cluster slot
_ENTRY = PREFIX + "e:"                  # digest -> value (with its TTL)
_BY_END = PREFIX + "by_end"             # sorted set: digest by its end
_META = PREFIX + "meta"                 # hash: digest -> "size\tscope\tmodel"
_TOTAL = PREFIX + "bytes"

# KEYS: entry, by_end, meta, total; ARGV: digest, value, ttl, end, meta, size, max, now.
# Puts the entry, then (past the cap) removes the expired and those nearest their end.
_PUT = """
local function drop(digest)
  local meta = redis.call('HGET', KEYS[3], digest)
  redis.call('DEL', ARGV[9] .. digest)
  redis.call('ZREM', KEYS[2], digest)
  redis.call('HDEL', KEYS[3], digest)
  if meta then return tonumber(string.match(meta, '^(%d+)')) end
  return 0
end
local old = redis.call('HGET', KEYS[3], ARGV[1])
local delta = tonumber(ARGV[6])
if old then delta = delta - tonumber(string.match(old, '^(%d+)')) end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[5])
local total = redis.call('INCRBY', KEYS[4], delta)
local max = tonumber(ARGV[7])
if total > max then
  local goal = max * 0.9
  for _, digest in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[8])) do
    total = total - drop(digest)
  end
  while total > goal do
    local batch = redis.call('ZRANGE', KEYS[2], 0, 63)
    if #batch == 0 then total = 0 break end
    for _, digest in ipairs(batch) do
      total = total - drop(digest)
      if total <= goal then break end
    end
  end
  if total < 0 then total = 0 end
  redis.call('SET', KEYS[4], total)
end
return total
"""


class RedisCache:
    def __init__(self, url: str, max_bytes: int) -> None:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError
        self._errors = (RedisError, OSError)
        self.max_bytes = max_bytes
        # Short timeouts: a Redis that does not answer is a miss, soon.
        self._redis = aioredis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5,
                                              health_check_interval=30)
        self._put = self._redis.register_script(_PUT)

    async def get(self, digest: str) -> bytes | None:
        try:
            return await self._redis.get(_ENTRY + digest)
        except self._errors as error:
            raise StoreUnavailable(str(error)) from error

    async def put(self, digest: str, scope: str, model: str, value: bytes, ttl_s: float) -> bool:
        now = time.time()
        size = len(value) + len(digest) + len(scope) + len(model)
        try:
            await self._put(keys=[_ENTRY + digest, _BY_END, _META, _TOTAL],
                            args=[digest, value, max(1, int(ttl_s)), repr(now + ttl_s),
                                  f"{size}\t{scope}\t{model}", size, self.max_bytes, repr(now), _ENTRY])
        except self._errors as error:
            raise StoreUnavailable(str(error)) from error
        return True

    async def _entries(self, scope: str | None, model: str | None) -> list[tuple[str, int, str, str]]:
        found = []
        async for digest, meta in self._redis.hscan_iter(_META, count=500):
            size, entry_scope, entry_model = meta.decode().split("\t", 2)
            if (scope is None or entry_scope == scope) and (model is None or entry_model == model):
                found.append((digest.decode(), int(size), entry_scope, entry_model))
        return found

    async def stats(self, scope: str | None = None, model: str | None = None) -> dict:
        try:
            entries = await self._entries(scope, model)
            ends = await self._redis.zmscore(_BY_END, [d for d, *_ in entries]) if entries else []
        except self._errors as error:
            raise StoreUnavailable(str(error)) from error
        now = time.time()
        groups: dict[tuple[str, str], list] = {}
        for (digest, size, entry_scope, entry_model), end in zip(entries, ends):
            group = groups.setdefault((entry_scope, entry_model), [0, 0, 0])
            group[0] += 1
            group[1] += size
            group[2] += 1 if end is not None and end > now else 0
        return _stats("redis", self.max_bytes, [(s, m, n, b, live) for (s, m), (n, b, live) in sorted(groups.items())])

    async def purge(self, scope: str | None = None, model: str | None = None) -> int:
        try:
            entries = await self._entries(scope, model)
            for start in range(0, len(entries), 500):
                batch = entries[start:start + 500]
                digests = [d for d, *_ in batch]
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.delete(*[_ENTRY + d for d in digests])
                    pipe.zrem(_BY_END, *digests)
                    pipe.hdel(_META, *digests)
                    pipe.decrby(_TOTAL, sum(size for _, size, *_ in batch))
                    await pipe.execute()
        except self._errors as error:
            raise StoreUnavailable(str(error)) from error
        return len(entries)

    async def close(self) -> None:
        await self._redis.aclose()
