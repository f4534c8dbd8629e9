"""The semantic cache's vectors: for each partition (a scope, a model and the conversation
before its last question; stages/cache/semantic.py), the embedding of each question
answered, with the digest of the answer's entry in the response cache (response_cache.py)
and the entry's end.

Beside the entries, in the same store: a table of the embedded SQLite file, or a Redis
stream per partition (the budget store's Redis). Both are read from a position on, so
a worker's index (semantic_index.py) reads only what it has not seen. A vector only
points at an entry: an answer evicted or purged leaves a vector that finds nothing (a
miss), removed at its end.
"""

from __future__ import annotations

import sqlite3
import time

from .base import StoreUnavailable
from .sqlite_file import enable_wal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    id INTEGER PRIMARY KEY AUTOINCREMENT, part TEXT NOT NULL, digest TEXT NOT NULL, scope TEXT NOT NULL,
    model TEXT NOT NULL, vector BLOB NOT NULL, expires REAL NOT NULL, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS vectors_by_part ON vectors (part, id);
CREATE INDEX IF NOT EXISTS vectors_by_end ON vectors (expires);
"""
LOOP_BUSY_TIMEOUT_MS = 20       # a put waits this long for another worker's write lock, then is dropped
READ_LIMIT = 10_000             # vectors read at once (a partition's newest past it: on the next lookups)
Row = tuple[object, str, bytes, float]      # (position, digest, vector as float32 bytes, end)


def open_vectors(settings, store_settings):
    if store_settings is not None and store_settings.kind == "redis":
        return RedisVectors(store_settings.url)
    return SQLiteVectors(settings.path)


class SQLiteVectors:
    def __init__(self, path: str) -> None:
        # The entries' file (response_cache.py made it, its owner's alone), a table of its own.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        enable_wal(self._db)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA busy_timeout = {LOOP_BUSY_TIMEOUT_MS}")
        self._swept = time.time()

    def since(self, part: str, position) -> list[Row]:
        try:
            return self._db.execute(
                "SELECT id, digest, vector, expires FROM vectors WHERE part = ? AND id > ? AND expires > ? "
                "ORDER BY id LIMIT ?", (part, position or 0, time.time(), READ_LIMIT)).fetchall()
        except sqlite3.Error as error:
            raise StoreUnavailable(str(error)) from error

    def add(self, part: str, digest: str, scope: str, model: str, vector: bytes, ttl_s: float) -> bool:
        """One short transaction (a semantic miss already waited for an embedding); at
        most once a minute, the vectors whose answers are gone are removed with it (so
        they are bounded by the entries' `max_bytes`, at `dimensions` x 4 bytes each)."""
        now = time.time()
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("INSERT INTO vectors (part, digest, scope, model, vector, expires, created) "
                                 "VALUES (?, ?, ?, ?, ?, ?, ?)", (part, digest, scope, model, vector, now + ttl_s, now))
                if now - self._swept > 60:
                    # Past their end, or their answer evicted, purged or never written (a
                    # minute on: answers are written behind, within a second): they find nothing.
                    self._swept = now
                    self._db.execute("DELETE FROM vectors WHERE expires <= ? OR (created < ? AND NOT EXISTS "
                                     "(SELECT 1 FROM answers WHERE answers.digest = vectors.digest))",
                                     (now, now - 60))
        except sqlite3.Error as error:
            raise StoreUnavailable(str(error)) from error
        return True

    def purge(self, scope: str | None = None, model: str | None = None) -> int:
        clauses = [c for c, v in (("scope = ?", scope), ("model = ?", model)) if v is not None]
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        try:
            with self._db:
                return self._db.execute(f"DELETE FROM vectors{where}",
                                        [v for v in (scope, model) if v is not None]).rowcount
        except sqlite3.Error as error:
            raise StoreUnavailable(str(error)) from error

    def close(self) -> None:
        self._db.close()


_STREAM = "{llmgw}:cache:v:"            # + partition: a stream of (digest, vector, end)
MAX_STREAM = 100_000                    # a partition's newest vectors kept (Redis trims the oldest)


class RedisVectors:
    """A stream per partition: XADD appends (trimmed past MAX_STREAM, the key ending with
    its newest vector's TTL), XRANGE reads on from a worker's last id."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError
        self._errors = (RedisError, OSError)
        self._redis = aioredis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5,
                                              health_check_interval=30)

    async def since(self, part: str, position) -> list[Row]:
        try:
            found = await self._redis.xrange(_STREAM + part, f"({position}" if position else "-", "+",
                                             count=READ_LIMIT)
        except self._errors as error:
            raise StoreUnavailable(str(error)) from error
        now = time.time()
        rows = []
        for entry_id, fields in found:
            end = float(fields[b"e"])
            if end > now:
                rows.append((entry_id.decode(), fields[b"d"].decode(), fields[b"v"], end))
        return rows

    async def add(self, part: str, digest: str, scope: str, model: str, vector: bytes, ttl_s: float) -> bool:
        key = _STREAM + part
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xadd(key, {"d": digest, "v": vector, "e": repr(time.time() + ttl_s), "s": scope, "m": model},
                          maxlen=MAX_STREAM, approximate=True)
                pipe.expire(key, max(1, int(ttl_s)))
                await pipe.execute()
        except self._errors as error:
            raise StoreUnavailable(str(error)) from error
        return True

    async def purge(self, scope: str | None = None, model: str | None = None) -> int:
        gone = 0
        wanted = {k: v.encode() for k, v in ((b"s", scope), (b"m", model)) if v is not None}
        try:
            async for key in self._redis.scan_iter(match=_STREAM + "*", count=500):
                entries = await self._redis.xrange(key)
                ids = [i for i, fields in entries if all(fields.get(k) == v for k, v in wanted.items())]
                if len(ids) == len(entries):
                    await self._redis.delete(key)
                elif ids:
                    await self._redis.xdel(key, *ids)
                gone += len(ids)
        except self._errors as error:
            raise StoreUnavailable(str(error)) from error
        return gone

    async def close(self) -> None:
        await self._redis.aclose()
