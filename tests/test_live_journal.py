"""A worker's live journal (extproc/store/live_journal.py), against real SQLite and a real
redis-server: a worker that dies with the store up leaves its spend since the last
exchange, its allotments, its calls in flight and their reservations in the store in a
memory-mapped file; whoever takes it logs the calls once, writes the spend once in the
dead worker's name and frees everything it held at once."""

from __future__ import annotations

import asyncio
import os
import time

from test_store_outage_books import charge, resolved, row

from extproc.store.allotments import Allotments
from extproc.store.journal import Journal, gone_holders, store_digest
from extproc.store.pending import write_orphans


def test_a_killed_workers_spend_calls_and_holds_are_taken_once(open_store, tmp_path):
    async def scenario():
        store = await open_store()
        journals = tmp_path / "state"
        worker = Allotments(await open_store(), 900, journal_dir=str(journals), store_name="the-store", live=True)
        budget = [charge("b", 10.0)]
        now = time.time()
        await resolved(worker.reserve("r0", budget, now, now + 900))       # asks for an allotment
        await worker.flush()
        await resolved(worker.reserve("r1", budget, now, now + 900))       # in memory now
        assert worker.settle("r1", budget, [7.0])
        worker.add([charge("meter:tokens", 5.0)])
        await worker.flush()                                 # 7 and 5 reach the store
        await resolved(worker.reserve("r2", budget, now, now + 900))
        worker.settle("r2", budget, [3.0])                   # in memory only: the worker dies before its exchange
        worker.add([charge("meter:tokens", 2.0)])
        # A call reserved in the store itself (its allotment did not cover it), in flight.
        await resolved(worker.reserve("r3", [charge("b", 10**6)], now, now + 900))
        worker.live.call_started({"request_id": "lost-1", "key_id": "alice", "config_version": "v"})
        done = worker.live.call_started({"request_id": "done-1"})
        worker.live.call_ended(done)
        answered = worker.live.call_started({"request_id": "answered-1"})
        worker.live.call_answered(answered, 200, "ok")          # killed in its bookkeeping
        assert (await row(store, "b")).held > 10**6
        worker._ticker and worker._ticker.cancel()
        worker._journal.release()                            # killed: its lock goes, its files stay
        assert any(name.endswith(".live") for name in os.listdir(journals))

        lost: list = []
        for _ in range(2):                                   # a second taker finds nothing
            orphans = gone_holders(str(journals), store_digest("the-store"), set())
            await write_orphans(orphans, store, 900, lost.extend)
            for orphan in orphans:
                Journal.let_go(orphan)
        assert sorted((identity["request_id"], identity.get("answered")) for identity, _started in lost) == [
            ("answered-1", [200, "ok"]), ("lost-1", None)]
        budget_row = await row(store, "b")
        assert (budget_row.spent, budget_row.held) == (10.0, 0.0)     # r0 settled nothing: 7 + 3
        assert (await row(store, "meter:tokens")).spent == 7.0
        assert os.listdir(journals) == []
        await resolved(store.close())
    asyncio.run(scenario())
