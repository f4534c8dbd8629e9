"""The budget precheck's read of a caller's counters (`spent`), on SQLite and a real
Redis, and through a worker's allotments: what each counter spent, none for a counter
never charged."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from extproc.store import maybe_await
from extproc.store.allotments import Allotments
from extproc.store.limits import Limit, plan_charges

KEY = SimpleNamespace(id="alice", user="alice", team="research")


def test_spent_is_what_each_counter_spent(open_store):
    async def scenario():
        store = await open_store()
        limits = (Limit("rpm", "key", None, "requests", 5, "minute"), Limit("tok", "key", None, "tokens", 100, "hour"))
        now = time.time()
        charges = plan_charges(limits, KEY, 10, 0.0, now, 60)
        for n in range(3):
            admission = await maybe_await(store.reserve(f"r{n}", charges, now, now + 60))
            assert admission.admitted
        counters = [c.counter for c in charges]
        spent = await maybe_await(store.spent([*counters, "never-charged"]))
        assert spent[counters[0]] == 3 and "never-charged" not in spent
        await maybe_await(store.settle("r0", charges, [1, 7]))
        assert (await maybe_await(Allotments(store, 60).spent(counters)))[counters[1]] == 7
        await maybe_await(store.close())
    asyncio.run(scenario())
