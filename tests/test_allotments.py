"""Allotments (extproc/store/allotments.py) against real SQLite and a real redis-server:
far from its end a budget is admitted in memory and its spend still reaches the store
exactly; near its end every call goes to the store, and no limit is overshot."""

from __future__ import annotations

import asyncio
import random
import time
from types import SimpleNamespace

import pytest

from extproc.store import Exchange, StoreUnavailable
from extproc.store.allotments import CALLS_PER_ALLOTMENT, Allotments
from extproc.store.limits import Charge
from extproc.store.redis_store import RedisStore
from extproc.store.sqlite_store import SQLiteStore


def charge(counter: str, reserve: float, limit: float, kind: str = "tokens",
           count_now: float = 0) -> Charge:
    budget = SimpleNamespace(limit=limit, kind=kind, name=counter, window="month", scope="key")
    return Charge(budget, counter, reserve, count_now, time.time() + 86400)


async def resolved(result):
    return await result if asyncio.iscoroutine(result) else result


async def row(store, counter: str):
    rows = {r.counter: r for r in await resolved(store.rows())}
    return rows.get(counter, SimpleNamespace(spent=0.0, held=0.0))


async def reserve(allotments, rid, charges):
    now = time.time()
    return await resolved(allotments.reserve(rid, charges, now, now + 900))


def test_far_from_its_end_calls_are_admitted_in_memory_and_their_spend_lands_exactly(open_store):
    async def scenario():
        store = await open_store()
        allotments = Allotments(await open_store(), 900)
        limit = 10**9
        # The first call goes to the store, and asks for an allotment.
        assert (await reserve(allotments, "r0", [charge("c", 1000, limit)])).admitted
        await resolved(allotments.settle("r0", [charge("c", 1000, limit)], [700.0]))
        await allotments.flush()
        held = (await row(store, "c")).held
        assert held == pytest.approx(1000 * CALLS_PER_ALLOTMENT)     # its allotment
        # The next ones are admitted in memory: the store does not move.
        spent_before = (await row(store, "c")).spent
        for index in range(1, 11):
            admission = await reserve(allotments, f"r{index}", [charge("c", 1000, limit)])
            assert admission.admitted and admission.remaining["c"] < limit
            await resolved(allotments.settle(f"r{index}", [charge("c", 1000, limit)], [500.0]))
        assert (await row(store, "c")).spent == spent_before == pytest.approx(700)
        # The exchange brings the spend, exactly; handing back frees the allotment.
        await allotments.flush()
        assert (await row(store, "c")).spent == pytest.approx(700 + 10 * 500)
        await allotments.flush(hand_back=True)
        counter = await row(store, "c")
        assert counter.held == 0 and counter.spent == pytest.approx(5700)
        await resolved(allotments.close())
        await resolved(store.close())
    asyncio.run(scenario())


def test_near_its_end_every_call_goes_to_the_store_and_is_refused_at_the_limit(open_store):
    async def scenario():
        allotments = Allotments(await open_store(), 900)
        limit = 10_000             # room for 10 calls of 1000: far less than 50 allotments
        admitted = 0
        for index in range(12):
            admission = await reserve(allotments, f"r{index}", [charge("c", 1000, limit)])
            admitted += admission.admitted
            await allotments.flush()
            assert not allotments._local, "admitted in memory near the end of a budget"
        assert admitted == 10
        await resolved(allotments.close())
    asyncio.run(scenario())


def test_concurrency_limits_are_never_allotted(open_store):
    async def scenario():
        allotments = Allotments(await open_store(), 900)
        charges = [charge("tokens", 10, 10**9), charge("slots", 1, 10**6, kind="concurrent")]
        for index in range(3):
            assert (await reserve(allotments, f"r{index}", charges)).admitted
            await allotments.flush()
        assert not allotments._counters and not allotments._local
        await resolved(allotments.close())
    asyncio.run(scenario())


def test_many_holders_never_overshoot_and_every_settle_counts_once(open_store):
    """Three workers' allotments and random calls down to a budget's end: what was
    admitted never exceeds the limit, and the store ends with every settle, once."""
    async def scenario():
        store = await open_store()
        holders = [Allotments(await open_store(), 900) for _ in range(3)]
        rng = random.Random(11)
        limit = 100_000             # allotments while the room is over 50 of them
        live: list[tuple[Allotments, str, float]] = []
        settled_total = 0.0
        in_memory = refused = 0
        for step in range(6000):
            holder = rng.choice(holders)
            if live and rng.random() < 0.5:
                owner, rid, amount = live.pop(rng.randrange(len(live)))
                used = float(rng.randint(int(amount) // 2, int(amount)))
                await resolved(owner.settle(rid, [charge("c", amount, limit)], [used]))
                settled_total += used
            else:
                amount = float(rng.randint(10, 90))
                admission = await reserve(holder, f"r{step}", [charge("c", amount, limit)])
                if admission.admitted:
                    live.append((holder, f"r{step}", amount))
                    in_memory += f"r{step}" in holder._local
                else:
                    refused += 1
            if step % 25 == 0:
                await rng.choice(holders).flush()
            held = sum(amount for _, _, amount in live)
            assert settled_total + held <= limit + 1e-6, step
        for owner, rid, amount in live:
            await resolved(owner.settle(rid, [charge("c", amount, limit)], [amount]))
            settled_total += amount
        for holder in holders:
            await resolved(holder.close())
        counter = await row(store, "c")
        assert counter.held == 0
        assert counter.spent == pytest.approx(settled_total)
        assert in_memory > 500 and refused > 100, (in_memory, refused)
        assert settled_total > limit * 0.95, "refused while the budget had room"
        await resolved(store.close())
    asyncio.run(scenario())


def test_a_killed_workers_allotment_frees_what_it_held_when_its_lease_ends(open_store):
    async def scenario():
        store = await open_store()
        dead = Allotments(await open_store(), 2)       # its allotment's lease: 2 s
        await reserve(dead, "r0", [charge("c", 1000, 10**9)])      # in the store (900 s lease)
        await dead.flush()
        assert (await row(store, "c")).held == pytest.approx(1000 + 1000 * CALLS_PER_ALLOTMENT)
        # It never exchanges again. A check after the lease (and the sweep) frees its share.
        later = time.time() + 5
        await resolved(store.reserve("x", [charge("c", 1, 10**9)], later, later + 900))
        await resolved(store.settle("x", [charge("c", 1, 10**9)], [1.0]))
        assert (await row(store, "c")).held == pytest.approx(1000)
        await resolved(store.close())
    asyncio.run(scenario())


def test_a_redis_exchange_whose_reply_was_lost_is_not_counted_twice(redis_url):
    """The script ran, the reply timed out: the retry carries the same running total."""
    async def scenario():
        store = RedisStore(redis_url)
        await store._redis.flushdb()
        now = time.time()
        item = Exchange("c", 10**9, now + 86400, spent=300.0, total=300.0, keep=0.0, want=0.0)
        await store.exchange("allot:w", [item], now, now + 60)
        await store.exchange("allot:w", [item], now, now + 60)          # the retry
        later = Exchange("c", 10**9, now + 86400, spent=350.0, total=650.0, keep=0.0, want=0.0)
        await store.exchange("allot:w", [later], now, now + 60)
        assert (await row(store, "c")).spent == pytest.approx(650)
        await store.close()
    asyncio.run(scenario())


class InFront:
    """A store in front of a real one: what a subclass does not override goes through."""

    def __init__(self, store) -> None:
        self.store = store

    def __getattr__(self, name):
        return getattr(self.store, name)


class Down(InFront):
    """A store whose exchanges fail, as an unreachable one does."""
    down = True

    def exchange(self, *args):
        if self.down:
            raise StoreUnavailable("down")
        return self.store.exchange(*args)


def test_a_failed_exchange_keeps_the_spend_for_the_next_one(tmp_path):
    async def scenario():
        sqlite = SQLiteStore(str(tmp_path / "b.sqlite3"))
        flaky = Down(sqlite)
        flaky.down = False
        allotments = Allotments(flaky, 900)
        await reserve(allotments, "r0", [charge("c", 1000, 10**9)])
        await allotments.flush()
        await reserve(allotments, "r1", [charge("c", 1000, 10**9)])
        await resolved(allotments.settle("r1", [charge("c", 1000, 10**9)], [400.0]))
        flaky.down = True
        await allotments.flush()
        flaky.down = False
        await allotments.flush()
        assert (await row(sqlite, "c")).spent == pytest.approx(400)
        await resolved(allotments.settle("r0", [charge("c", 1000, 10**9)], [100.0]))
        await resolved(allotments.close())
        counter = await row(SQLiteStore(str(tmp_path / "b.sqlite3")), "c")
        assert counter.spent == pytest.approx(500) and counter.held == 0
    asyncio.run(scenario())


def test_a_limit_lowered_by_a_reload_goes_back_to_the_store_at_once(open_store):
    async def scenario():
        store = await open_store()
        allotments = Allotments(await open_store(), 900)
        await reserve(allotments, "r0", [charge("c", 1000, 10**9)])
        await resolved(allotments.settle("r0", [charge("c", 1000, 10**9)], [1000.0]))
        await allotments.flush()
        assert (await reserve(allotments, "r1", [charge("c", 1000, 10**9)])).in_memory
        await resolved(allotments.settle("r1", [charge("c", 1000, 10**9)], [1000.0]))
        # The new config's limit: the allotment taken under the old one admits nothing more.
        admission = await reserve(allotments, "r2", [charge("c", 1000, 25_000)])
        assert admission.admitted and not admission.in_memory
        await allotments.flush()
        assert not (await reserve(allotments, "r3", [charge("c", 1000, 25_000)])).in_memory
        await resolved(allotments.settle("r2", [charge("c", 1000, 25_000)], [1000.0]))
        await resolved(allotments.settle("r3", [charge("c", 1000, 25_000)], [1000.0]))
        await resolved(allotments.close())
        counter = await row(store, "c")
        assert counter.held == 0 and counter.spent == pytest.approx(4000)
        await resolved(store.close())
    asyncio.run(scenario())


class Gated(InFront):
    """A store whose exchanges wait for a gate, as a slow one does."""

    def __init__(self, store) -> None:
        super().__init__(store)
        self.gate = asyncio.Event()
        self.gate.set()

    async def exchange(self, *args):
        await self.gate.wait()
        return await resolved(self.store.exchange(*args))


def test_calls_that_come_during_an_exchange_size_the_next_allotment(open_store):
    async def scenario():
        store = await open_store()
        gated = Gated(await open_store())
        allotments = Allotments(gated, 900)
        await reserve(allotments, "r0", [charge("c", 1000, 10**9)])
        await resolved(allotments.settle("r0", [charge("c", 1000, 10**9)], [1000.0]))
        await allotments.flush()
        assert (await row(store, "c")).held == pytest.approx(1000 * CALLS_PER_ALLOTMENT)
        # 40 calls while an exchange waits on the store: they go to the store...
        gated.gate.clear()
        exchange = asyncio.create_task(allotments.flush())
        await asyncio.sleep(0.01)
        calls = 2 * CALLS_PER_ALLOTMENT + 8
        for index in range(calls):
            admission = await reserve(allotments, f"d{index}", [charge("c", 1000, 10**9)])
            assert admission.admitted and not admission.in_memory
            await resolved(allotments.settle(f"d{index}", [charge("c", 1000, 10**9)], [1000.0]))
        gated.gate.set()
        await exchange
        # ...and the next exchange sizes the allotment for twice as many.
        await allotments.flush()
        assert (await row(store, "c")).held == pytest.approx(1000 * 2 * calls)
        await resolved(allotments.close())
        counter = await row(store, "c")
        assert counter.held == 0 and counter.spent == pytest.approx(1000 * (calls + 1))
        await resolved(store.close())
    asyncio.run(scenario())
