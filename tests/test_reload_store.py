"""A config reload that changes the budget store's settings must close the old store,
but only once the calls that started under the old config have settled with it (a
stream may settle minutes after the reload). Real SQLite and a real redis-server."""

from __future__ import annotations

import asyncio
import sqlite3

import yaml
from gateway_stack import quickstart_config

from extproc.config.filter_config import load_config
from extproc.runtime.worker import Runtime, reloaded


def _config(tmp_path, name: str, store: dict):
    config = quickstart_config()
    config["store"] = store
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_config(str(path))


def _sqlite(tmp_path, name: str):
    return _config(tmp_path, name, {"kind": "sqlite", "path": str(tmp_path / f"{name}.sqlite3")})


def _is_open(store) -> bool:
    sqlite_store = getattr(store, "store", store)     # the SQLite store behind the allotments
    try:
        sqlite_store._db.execute("SELECT 1")
    except sqlite3.ProgrammingError:      # "Cannot operate on a closed database"
        return False
    return True


def test_the_old_store_closes_when_its_last_call_has_settled(tmp_path):
    first = Runtime(_sqlite(tmp_path, "a"))
    old = first.store
    old.call_started()                              # a stream in flight, as Processor counts it
    second = reloaded(first, _sqlite(tmp_path, "b"))
    assert second.store is not old and _is_open(second.store.store)
    assert _is_open(old.store), "closed under a call still using it"
    sqlite_store = old.store
    old.call_ended()
    assert not _is_open(sqlite_store)
    assert _is_open(second.store.store)


def test_a_store_shared_across_reloads_stays_open_for_every_calls_runtime(tmp_path):
    first = Runtime(_sqlite(tmp_path, "a"))
    first.store.call_started()                      # started under the first config
    second = reloaded(first, _sqlite(tmp_path, "a"))       # same settings: same store
    assert second.store is first.store
    shared = first.store.store
    third = reloaded(second, _sqlite(tmp_path, "c"))
    assert _is_open(shared), "the first runtime's call still settles with it"
    first.store.call_ended()
    assert not _is_open(shared)
    assert _is_open(third.store.store)


def test_an_idle_store_closes_at_once_and_a_config_without_budgets_still_has_one(tmp_path):
    """A config without budgets still opens its store: stored responses and cut streams'
    hand-offs live there."""
    first = Runtime(_sqlite(tmp_path, "a"))
    sqlite_store = first.store.store
    no_budgets = quickstart_config()
    no_budgets["budgets"] = []
    no_budgets["store"] = {"path": str(tmp_path / "none.sqlite3")}
    path = tmp_path / "none.yaml"
    path.write_text(yaml.safe_dump(no_budgets))
    second = reloaded(first, load_config(str(path)))
    assert not _is_open(sqlite_store)
    assert _is_open(second.store.store)
    third = reloaded(second, _sqlite(tmp_path, "d"))
    assert _is_open(third.store.store)


def test_a_replaced_redis_store_closes_its_connection(tmp_path, redis_url):
    import redis.asyncio as aioredis

    async def named_clients(observer) -> list[str]:
        return [client.get("name") for client in await observer.client_list()]

    async def scenario():
        first = Runtime(_config(tmp_path, "r", {"kind": "redis", "url": redis_url}))
        await first.store.store.store._redis.client_setname("reload-test")   # its one pooled connection
        observer = aioredis.Redis.from_url(redis_url, decode_responses=True)
        first.store.call_started()
        reloaded(first, _sqlite(tmp_path, "s"))
        await asyncio.sleep(0.05)
        assert "reload-test" in await named_clients(observer), "closed under a call"
        first.store.call_ended()
        await asyncio.sleep(0.05)               # the close runs on the loop
        assert "reload-test" not in await named_clients(observer)
        await observer.aclose()
    asyncio.run(scenario())


def test_shutting_down_closes_the_store_in_force(tmp_path):
    runtime = Runtime(_sqlite(tmp_path, "a"))
    sqlite_store = runtime.store.store
    runtime.store.retire()                      # what the worker does once its streams end
    assert not _is_open(sqlite_store)
    runtime.store.retire()                      # twice is harmless


def _cached(tmp_path, name: str, cache_on: bool):
    config = quickstart_config(response_cache=cache_on)
    config["store"] = {"kind": "sqlite", "path": str(tmp_path / "budgets.sqlite3")}
    if cache_on:
        config["cache"]["path"] = str(tmp_path / "cache.sqlite3")
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_config(str(path))


def test_a_reload_that_turns_the_cache_off_closes_its_store_after_the_calls_begun_before(tmp_path):
    """The old cache store stays open for the calls begun under the old config, then
    closes; a worker that stops first closes it at once, writing what was pending."""
    from extproc.runtime import worker
    from extproc.store.response_cache import SQLiteCache

    async def scenario() -> None:
        first = Runtime(_cached(tmp_path, "on", True))
        old = first.cache.store
        second = reloaded(first, _cached(tmp_path, "off", False))
        assert second.cache is not first.cache and second.cache.store is None
        worker.close_cache_later(first.cache, after_s=0.2)
        old.put("d-late", "team:research", "gpt-4o-mini", b"{}\n{}", 60)    # a call begun before
        assert _is_open(old)
        await asyncio.sleep(0.4)
        assert not _is_open(old) and first.cache.store is None
        third = Runtime(_cached(tmp_path, "again", True))
        assert third.cache.store.get("d-late") == b"{}\n{}"        # written on close
        again = third.cache.store
        reloaded(third, _cached(tmp_path, "off2", False))
        worker.close_cache_later(third.cache)                      # the worker's grace: minutes
        again.put("d-stop", "team:research", "gpt-4o-mini", b"{}\n{}", 60)
        await worker.close_unused_caches()                         # the worker stops
        assert not _is_open(again)
        reader = SQLiteCache(str(tmp_path / "cache.sqlite3"), 1 << 20, patient=True)
        assert reader.get("d-stop") == b"{}\n{}"                   # written on close
        reader.close()

    asyncio.run(scenario())
