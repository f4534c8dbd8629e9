"""A worker remembers a run's taint marks read on Redis (a check of a run it read lately
is no store round trip), and forgets them the moment any worker marks the run (the mark
is published), in process over a real redis-server."""

from __future__ import annotations

import asyncio
import time

from extproc.store import run_taint
from extproc.store.redis_store import RedisStore
from extproc.store.run_taint import RunTaint


class Counting:
    """The Redis store, counting the reads of marks."""

    def __init__(self, store: RedisStore) -> None:
        self.store, self.reads = store, 0

    async def get_records(self, kind, names):
        self.reads += 1
        return await self.store.get_records(kind, names)

    async def put_records(self, kind, items, expires):
        return await self.store.put_records(kind, items, expires)


def test_a_run_read_lately_is_remembered_until_a_mark_is_published(redis_url):
    async def main():
        store = RedisStore(redis_url)
        reader, marker = Counting(store), RunTaint(store)      # two workers' views, one listener here
        mine = RunTaint(reader)
        run = f"cache-{time.time_ns()}"
        assert await mine.flags(run) == {}
        deadline = time.monotonic() + 5
        while not run_taint._CLEAN.live:
            assert time.monotonic() < deadline, "never subscribed"
            await asyncio.sleep(0.01)
        assert await mine.flags(run) == {}
        reads = reader.reads
        for _ in range(50):
            assert await mine.flags(run) == {}
        assert reader.reads == reads                    # remembered: no store read
        await marker.mark(run, ["reads_private"], "lookup_contact", 60)
        deadline = time.monotonic() + 2
        while (found := await mine.flags(run)) != {"reads_private": "lookup_contact"}:
            assert time.monotonic() < deadline, found
            await asyncio.sleep(0.001)
        run_taint._CLEAN.task.cancel()
        await store.close()
    asyncio.run(main())
