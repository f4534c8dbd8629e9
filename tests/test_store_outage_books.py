"""What a worker could not write to the budget store while it was unreachable lands once
it is back, exactly once (extproc/store/allotments.py, journal.py), against real SQLite
and a real redis-server: a failed settle is applied later (its reservation freed), one
whose reply was lost is not applied twice, one whose lease ran out meanwhile still adds
its spend; the meters' spend waits in memory; a worker gone during the outage leaves a
journal another worker writes, in its name (nothing twice); and a store that lost its
counters is noticed (generation.py)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from types import SimpleNamespace

import pytest

from extproc.store import StoreUnavailable
from extproc.store.allotments import Allotments
from extproc.store.generation import StoreGeneration, read_notice
from extproc.store.limits import Charge
from extproc.store.redis_store import RedisStore
from extproc.store.sqlite_store import SQLiteStore


def charge(counter: str, reserve: float, limit: float = 10**9) -> Charge:
    budget = SimpleNamespace(limit=limit, kind="tokens", name=counter, window="month", scope="key")
    return Charge(budget, counter, reserve, 0, time.time() + 86400)


async def resolved(result):
    return await result if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future) else result


async def row(store, counter: str):
    rows = {r.counter: r for r in await resolved(store.rows())}
    return rows.get(counter, SimpleNamespace(spent=0.0, held=0.0))


class Outage:
    """A real store behind a switch: `down` fails every operation before it reaches the
    store; `lose_replies` runs it, then fails (the reply lost on the way back)."""

    def __init__(self, store) -> None:
        self.store = store
        self.down = False
        self.lose_replies = False

    def __getattr__(self, name):
        operation = getattr(self.store, name)
        if name not in ("reserve", "settle", "exchange"):
            return operation

        async def guarded(*args):
            if self.down:
                raise StoreUnavailable("down")
            result = await resolved(operation(*args))
            if self.lose_replies:
                raise StoreUnavailable("reply lost")
            return result
        return guarded


async def settle_fails(allotments, rid, charges, amounts):
    with pytest.raises(StoreUnavailable):
        await resolved(allotments.settle(rid, charges, amounts))


def test_a_settle_that_failed_is_applied_once_when_the_store_is_back(open_store):
    """Store reservations (allotments off: every call in the store); the store goes down
    before their settles: nothing is lost, nothing stays held, once it is back."""
    async def scenario():
        store = await open_store()
        outage = Outage(await open_store())
        allotments = Allotments(outage, 900, grants=False)
        charges = [charge("c", 1000)]
        for index in range(3):
            now = time.time()
            assert (await resolved(allotments.reserve(f"r{index}", charges, now, now + 900))).admitted
        assert (await row(store, "c")).held == pytest.approx(3000)
        outage.down = True
        for index in range(3):
            await settle_fails(allotments, f"r{index}", charges, [400.0])
        await allotments.flush()                        # still down: kept
        assert (await row(store, "c")).spent == 0
        outage.down = False
        await allotments.flush()
        await allotments.flush()                        # again: nothing twice
        counter = await row(store, "c")
        assert counter.spent == pytest.approx(1200) and counter.held == 0
        await resolved(allotments.close())
        await resolved(store.close())
    asyncio.run(scenario())


def test_a_settle_whose_reply_was_lost_is_not_applied_twice(redis_url):
    """Redis: the script ran, its reply was lost (SQLite's transaction commits and says so,
    or does neither)."""
    async def scenario():
        store = RedisStore(redis_url)
        await store._redis.flushdb()
        outage = Outage(RedisStore(redis_url))
        allotments = Allotments(outage, 900, grants=False)
        charges = [charge("c", 1000)]
        now = time.time()
        await resolved(allotments.reserve("r0", charges, now, now + 900))
        outage.lose_replies = True                      # the settle reaches the store; its reply does not
        await settle_fails(allotments, "r0", charges, [700.0])
        assert (await row(store, "c")).spent == pytest.approx(700)
        await allotments.flush()                        # the retry's reply is lost too
        outage.lose_replies = False
        await allotments.flush()
        counter = await row(store, "c")
        assert counter.spent == pytest.approx(700) and counter.held == 0
        await resolved(allotments.close())
        await resolved(store.close())
    asyncio.run(scenario())


def test_a_settle_whose_lease_ran_out_during_the_outage_still_adds_its_spend_once(open_store):
    async def scenario():
        store = await open_store()
        outage = Outage(await open_store())
        allotments = Allotments(outage, 900, grants=False)
        charges = [charge("c", 1000)]
        now = time.time()
        await resolved(allotments.reserve("r0", charges, now, now + 0.5))     # a short lease
        outage.down = True
        await settle_fails(allotments, "r0", charges, [300.0])
        await asyncio.sleep(1.2)
        later = time.time()                             # a reserve sweeps the expired lease
        assert (await resolved(store.reserve("r1", [charge("c", 10)], later, later + 900))).admitted
        assert (await row(store, "c")).held == pytest.approx(10)
        outage.down = False
        await allotments.flush()
        await allotments.flush()
        counter = await row(store, "c")
        assert counter.spent == pytest.approx(300) and counter.held == pytest.approx(10)
        await resolved(allotments.close())
        await resolved(store.close())
    asyncio.run(scenario())


def test_a_redis_settle_sent_twice_adds_once(redis_url):
    """The same settle script sent again (its reply lost on the way back) changes nothing."""
    async def scenario():
        store = RedisStore(redis_url)
        await store._redis.flushdb()
        now = time.time()
        await store.reserve("r0", [charge("c", 1000)], now, now + 900)
        await store.settle("r0", [charge("c", 1000)], [400.0])
        await store.settle("r0", [charge("c", 1000)], [400.0])
        counter = await row(store, "c")
        assert counter.spent == pytest.approx(400) and counter.held == 0
        await store.close()
    asyncio.run(scenario())


def test_a_reserve_whose_reply_was_lost_frees_its_reservation_once_the_store_is_back(redis_url):
    """Redis took the reservation, the worker never heard (the call was refused): the
    reservation is let go at the next exchange, not held until its lease ends."""
    async def scenario():
        store = RedisStore(redis_url)
        await store._redis.flushdb()
        outage = Outage(RedisStore(redis_url))
        allotments = Allotments(outage, 900, grants=False)
        outage.lose_replies = True
        now = time.time()
        with pytest.raises(StoreUnavailable):
            await resolved(allotments.reserve("r0", [charge("c", 1000)], now, now + 900))
        assert (await row(store, "c")).held == pytest.approx(1000)
        outage.lose_replies = False
        await allotments.flush()
        counter = await row(store, "c")
        assert counter.held == 0 and counter.spent == 0
        await resolved(allotments.close())
        await store.close()
    asyncio.run(scenario())


def test_the_meters_spend_waits_for_the_store_and_lands_once(open_store):
    async def scenario():
        store = await open_store()
        outage = Outage(await open_store())
        allotments = Allotments(outage, 900)
        outage.down = True
        for _ in range(5):
            allotments.add([charge("meter:tokens", 40.0)])
        await allotments.flush()
        outage.down = False
        if isinstance(store, RedisStore):
            outage.lose_replies = True                  # it lands, its reply does not
            await allotments.flush()
            outage.lose_replies = False
        allotments.add([charge("meter:tokens", 40.0)])
        await allotments._exchange()                    # (awaited itself: it raises nothing)
        await allotments.flush()
        assert (await row(store, "meter:tokens")).spent == pytest.approx(240)
        await resolved(allotments.close())
        await resolved(store.close())
    asyncio.run(scenario())


def test_a_worker_gone_during_the_outage_leaves_a_journal_another_writes_once(open_store, tmp_path):
    """The first holder's exchanges fail (one of them reached the store, its reply lost),
    and it goes without a word; the second finds its journal and writes what the store
    has not had, in the first one's name: each token once."""
    async def scenario():
        store = await open_store()
        outage = Outage(await open_store())
        journals = tmp_path / "state"
        first = Allotments(outage, 900, grants=False, journal_dir=str(journals), store_name="the-store")
        charges = [charge("c", 1000)]
        now = time.time()
        await resolved(first.reserve("r0", charges, now, now + 900))
        first.add([charge("meter:tokens", 50.0)])
        # Redis: 50 reach the store, the worker does not know (SQLite: they just reach it).
        outage.lose_replies = isinstance(store, RedisStore)
        await first.flush()
        outage.lose_replies, outage.down = False, True
        first.add([charge("meter:tokens", 25.0)])
        await settle_fails(first, "r0", charges, [600.0])
        await first.flush()                             # fails: the journal is written
        written = [name for name in os.listdir(journals) if name.endswith(".json")]
        assert len(written) == 1
        body = json.loads((journals / written[0]).read_text())
        assert {item["counter"] for item in body["items"]} >= {"c"}
        assert "the-store" not in (journals / written[0]).read_text()      # named by a digest
        # A living holder's journal is not taken.
        second = Allotments(outage, 900, journal_dir=str(journals), store_name="the-store")
        outage.down = False
        await second.adopt_orphans()
        assert (await row(store, "c")).spent == 0
        first._journal.release()                        # the first worker is gone
        first._ticker and first._ticker.cancel()
        second._journal._scanned = -1e9
        await second.adopt_orphans()
        assert (await row(store, "meter:tokens")).spent == pytest.approx(75)
        counter = await row(store, "c")
        assert counter.spent == pytest.approx(600) and counter.held == 0
        assert not [name for name in os.listdir(journals) if name.endswith(".json")]
        # Another gateway's store: its journal is left alone.
        other = Allotments(outage, 900, journal_dir=str(journals), store_name="another-store")
        other._journal.write([])
        other._journal.release()
        second._journal._scanned = -1e9
        await second.adopt_orphans()
        assert len([name for name in os.listdir(journals) if name.endswith(".json")]) == 1
        await resolved(second.close())
        await resolved(store.close())
    asyncio.run(scenario())


def test_a_worker_stopped_during_the_outage_hands_its_spend_to_the_journal(open_store, tmp_path):
    async def scenario():
        store = await open_store()
        outage = Outage(await open_store())
        journals = tmp_path / "state"
        first = Allotments(outage, 900, journal_dir=str(journals), store_name="s")
        first.add([charge("meter:tokens", 30.0)])
        outage.down = True
        await resolved(first.close())                   # the hand-back fails: journal, lock let go
        outage.down = False
        second = Allotments(await open_store(), 900, journal_dir=str(journals), store_name="s")
        await second.adopt_orphans()
        assert (await row(store, "meter:tokens")).spent == pytest.approx(30)
        await resolved(second.close())
        await resolved(store.close())
    asyncio.run(scenario())


def test_a_store_that_lost_its_counters_is_noticed(redis_url, tmp_path):
    async def scenario():
        store = RedisStore(redis_url)
        await store._redis.flushdb()
        resets = []
        generation = StoreGeneration(lambda before, now: resets.append((before, now)), str(tmp_path))
        await generation.check(store, force=True)
        await generation.check(store, force=True)
        assert not resets and generation.known and read_notice(str(tmp_path)) is None
        await store._redis.flushdb()                    # a Redis restarted without persistence
        await generation.check(store, force=True)
        assert len(resets) == 1 and resets[0][0] != resets[0][1]
        assert "the budget store lost its counters" in read_notice(str(tmp_path))
        other = StoreGeneration(lambda before, now: resets.append((before, now)))
        await other.check(store, force=True)            # a worker that starts now knows the new one
        await generation.check(store, force=True)
        assert len(resets) == 1 and other.known == generation.known
        await store.close()
    asyncio.run(scenario())
