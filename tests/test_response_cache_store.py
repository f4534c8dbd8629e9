"""The response cache's stores, SQLite and a real Redis: entries by digest, TTLs, the size
cap (the entries nearest their end evicted first), stats and purges by scope and model,
and a store that cannot be reached."""

from __future__ import annotations

import asyncio
import inspect
import time

import pytest

from extproc.store import StoreUnavailable
from extproc.store.response_cache import RedisCache, SQLiteCache


def _run(result):
    if inspect.isawaitable(result):
        return asyncio.get_event_loop().run_until_complete(result)
    return result


@pytest.fixture(params=["sqlite", "redis"])
def cache(request, tmp_path, redis_url):
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    if request.param == "sqlite":
        store = SQLiteCache(str(tmp_path / "cache.sqlite3"), 10_000)
    else:
        store = RedisCache(redis_url, 10_000)
        loop.run_until_complete(store._redis.flushdb())
    yield store
    _run(store.close())
    loop.close()


def test_an_entry_is_read_back_until_its_end(cache):
    assert _run(cache.put("d1", "team:a", "m", b'{"x":1}\n{"answer":true}', 1)) is True
    assert _run(cache.get("d1")) == b'{"x":1}\n{"answer":true}'
    assert _run(cache.get("other")) is None
    time.sleep(1.2)
    assert _run(cache.get("d1")) is None


def test_the_size_cap_evicts_the_entries_nearest_their_end(cache):
    value = b"v" * 900                                   # ~1 KB with its names; cap 10 KB
    for index in range(30):
        _run(cache.put(f"d{index:02}", "team:a", "m", value, 100 + index))   # later ones end later
    stats = _run(cache.stats())
    assert stats["bytes"] <= 10_000 and 0 < stats["entries"] < 30
    assert _run(cache.get("d29")) == value               # the newest is kept
    assert _run(cache.get("d00")) is None                # the one nearest its end went first


def test_stats_and_purge_by_scope_and_model(cache):
    for digest, scope, model in (("a", "team:a", "m1"), ("b", "team:a", "m2"), ("c", "team:b", "m1")):
        _run(cache.put(digest, scope, model, b"{}\n{}", 60))
    groups = {(g["scope"], g["model"]): g["entries"] for g in _run(cache.stats())["groups"]}
    assert groups == {("team:a", "m1"): 1, ("team:a", "m2"): 1, ("team:b", "m1"): 1}
    assert _run(cache.stats(scope="team:b"))["entries"] == 1
    assert _run(cache.purge(scope="team:a", model="m1")) == 1
    assert _run(cache.get("a")) is None and _run(cache.get("b")) is not None
    assert _run(cache.purge(model="m1")) == 1
    assert _run(cache.purge()) == 1
    assert _run(cache.stats())["entries"] == 0 and _run(cache.stats())["bytes"] == 0


def test_a_redis_that_cannot_be_reached_raises_store_unavailable():
    from gateway_stack import free_port
    loop = asyncio.new_event_loop()
    store = RedisCache(f"redis://127.0.0.1:{free_port()}/0", 10_000)
    try:
        with pytest.raises(StoreUnavailable):
            loop.run_until_complete(store.get("d"))
        with pytest.raises(StoreUnavailable):
            loop.run_until_complete(store.put("d", "global", "m", b"{}\n{}", 60))
    finally:
        loop.run_until_complete(store.close())
        loop.close()


def test_a_worker_s_entries_are_written_behind_and_read_at_once(tmp_path):
    from extproc.store.response_cache import FLUSH_S
    path = str(tmp_path / "cache.sqlite3")
    other = SQLiteCache(path, 10_000, patient=True)          # another process's view: the file

    async def worker() -> None:
        cache = SQLiteCache(path, 10_000)
        for index in range(5):
            assert cache.put(f"d{index}", "team:a", "m", b"{}\n{}", 60) is True
        assert cache.get("d3") == b"{}\n{}"                    # its own pending entries, at once
        assert other.get("d3") is None                          # not written yet
        await asyncio.sleep(FLUSH_S + 0.1)
        assert other.get("d3") == b"{}\n{}" and other.stats()["entries"] == 5
        cache.put("d9", "team:a", "m", b"{}\n{}", 60)
        cache.close()                                           # what is pending is written on close
        assert other.get("d9") == b"{}\n{}"

    asyncio.run(worker())
    other.close()


def test_a_worker_finds_another_worker_s_entries_without_querying_for_unknown_digests(tmp_path):
    """A worker queries the file only for digests it may hold: its own, and those another
    worker wrote, learned at once when the file changed since its last read (else within
    LEARN_S); a digest gone since is queried and not found."""
    path = str(tmp_path / "cache.sqlite3")
    first, second = SQLiteCache(path, 100_000), SQLiteCache(path, 100_000)
    queries: list[str] = []
    second._db.set_trace_callback(queries.append)
    try:
        second._known._read_at = time.monotonic()            # as if it had just read the file
        assert second.get("d-first") is None                  # nothing written: no query for it
        assert not [q for q in queries if "SELECT value" in q]
        first.put("d-first", "team:a", "m", b"{}\n{}", 60)
        first.flush()
        assert second.get("d-first") == b"{}\n{}"              # the file changed: learned at once, read
        assert second.get("never-written") is None
        assert sum("SELECT value" in q for q in queries) == 1  # the unknown digest cost no query
        first.purge(scope="team:a")
        assert second.get("d-first") is None                   # still in the set: queried, gone
        second._known.read_all()                               # a full read forgets it
        assert not second._known.may_hold("d-first")
    finally:
        first.close()
        second.close()
