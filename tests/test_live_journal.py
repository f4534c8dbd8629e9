"""A worker's live journal (extproc/store/live_journal.py), against real SQLite and a real
redis-server: a worker that dies with the store up leaves its spend since the last
exchange, its allotments, its calls in flight and their reservations in the store in a
memory-mapped file; whoever takes it logs the calls once, writes the spend once in the
dead worker's name and frees everything it held at once."""

from __future__ import annotations

import asyncio
import io
import os
import struct
import time
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
from test_store_outage_books import charge, resolved, row

from extproc.api.usage import Usage
from extproc.config.filter_config import load_config
from extproc.observability import metrics
from extproc.pipeline.call import Call
from extproc.runtime.lost_calls import log_lost_calls
from extproc.stages.accounting.in_flight import CallsInFlight, InFlightSlot
from extproc.stages.accounting.log_lines import LogLines
from extproc.stages.accounting.record import Record
from extproc.store import live_journal
from extproc.store.allotments import Allotments
from extproc.store.journal import Journal, gone_holders, store_digest
from extproc.store.pending import write_orphans


async def _store_and_worker(open_store, tmp_path):
    """The store, the state directory, and a worker's allotments with a live journal there."""
    journals = tmp_path / "state"
    worker = Allotments(await open_store(), 900, journal_dir=str(journals), store_name="the-store", live=True)
    return await open_store(), journals, worker


async def _take_journals(journals, store, lost: list) -> None:
    """What a taker does with the gone workers' journals: their calls to `lost`, their spend written."""
    orphans = gone_holders(str(journals), store_digest("the-store"), set())
    await write_orphans(orphans, store, 900, lost.extend)
    for orphan in orphans:
        Journal.let_go(orphan)


def test_a_killed_workers_spend_calls_and_holds_are_taken_once(open_store, tmp_path):
    async def scenario():
        store, journals, worker = await _store_and_worker(open_store, tmp_path)
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
            await _take_journals(journals, store, lost)
        assert sorted((identity["request_id"], identity.get("answered")) for identity, _started in lost) == [
            ("answered-1", [200, "ok"]), ("lost-1", None)]
        budget_row = await row(store, "b")
        assert (budget_row.spent, budget_row.held) == (10.0, 0.0)     # r0 settled nothing: 7 + 3
        assert (await row(store, "meter:tokens")).spent == 7.0
        assert os.listdir(journals) == []
        await resolved(store.close())
    asyncio.run(scenario())


def test_a_call_charged_before_its_worker_died_has_a_line_that_charges_what_the_store_holds(
        open_store, tmp_path, capfd):
    """Killed after a call's settle and meters but before its own line left the worker (the
    lines of a loop's turn leave together at its end): the line the taker writes charges the
    call's usage and cost, as the store holds them; a call killed before its settle is
    charged nothing, as the store holds nothing of it."""
    config = load_config(str(Path(__file__).resolve().parent.parent / "config" / "quickstart.yaml"))
    model = config.models["gpt-4o-mini"]

    async def scenario():
        store, journals, worker = await _store_and_worker(open_store, tmp_path)
        budget = [charge("b", 100.0)]
        now = time.time()
        await resolved(worker.reserve("r0", budget, now, now + 900))      # asks for an allotment
        await resolved(worker.settle("r0", budget, [0.0]))
        await worker.flush()
        out = io.BytesIO()
        lines = LogLines(out)
        record, in_flight = Record(lines=lines), CallsInFlight(worker, lines)

        def started(request_id: str, usage: Usage) -> Call:
            call = Call(config)
            call.request_id, call.model, call.model_name = request_id, model, model.name
            call.backend, call.endpoint, call.usage = model.backends[0], None, usage
            call.key = SimpleNamespace(id="alice", user="alice", team="t")
            in_flight.request_body(call)
            return call

        charged = started("charged-1", Usage(input_tokens=30, output_tokens=12, cached_tokens=4))
        unsettled = started("unsettled-1", Usage(input_tokens=50, output_tokens=50))
        await resolved(worker.reserve("r1", budget, now, now + 900))
        await resolved(worker.reserve("r2", budget, now, now + 900))
        for call in (charged, unsettled):                        # both answers out
            worker.live.call_answered(call.owned(InFlightSlot).slot, 200, "ok")
        assert worker.settle("r1", budget, [charged.usage.total])
        record.done(charged)
        in_flight.done(charged)          # its line waits for the loop's turn to end: killed now
        assert out.getvalue() == b""
        worker._ticker and worker._ticker.cancel()
        worker._journal.release()

        lost: list = []
        await _take_journals(journals, store, lost)
        capfd.readouterr()
        spent_before = _cost_counted("gpt-4o-mini", "t")
        log_lost_calls(lost)
        written = {line["request_id"]: line for line in map(orjson.loads, capfd.readouterr().out.splitlines())}
        assert set(written) == {"charged-1", "unsettled-1"}
        cost = model.cost(model.backends[0], charged.usage)
        assert cost > 0
        assert {k: written["charged-1"][k] for k in ("input_tokens", "output_tokens", "cached_tokens",
                                                       "usage_estimated", "cost_usd", "status", "outcome",
                                                       "worker_lost")} == {
            "input_tokens": 30, "output_tokens": 12, "cached_tokens": 4, "usage_estimated": False,
            "cost_usd": round(cost, 8), "status": 200, "outcome": "ok", "worker_lost": True}
        assert (written["unsettled-1"]["input_tokens"], written["unsettled-1"]["cost_usd"]) == (0, 0.0)
        budget_row = await row(store, "b")
        # The books and the lines agree: the store holds the charged call's tokens alone.
        assert (budget_row.spent, budget_row.held) == (42.0, 0.0)
        assert sum(line["input_tokens"] + line["output_tokens"] for line in written.values()) == 42
        # The metrics' spend counts it too, as the worker's own line would have.
        assert _cost_counted("gpt-4o-mini", "t") - spent_before == pytest.approx(round(cost, 8))
        await resolved(store.close())
    asyncio.run(scenario())


def _cost_counted(model: str, team: str) -> float:
    metrics.flush()
    return metrics.cost_usd.labels(model, team)._value.get()


def test_a_file_left_by_the_version_before_calls_charges_is_still_read(tmp_path):
    """A worker killed before an upgrade left the shorter slot header: its calls are read."""
    path = tmp_path / "pending-old.live"
    data = bytearray(live_journal.SIZE)
    live_journal._HEADER.pack_into(data, 0, b"LGWLIVE1", b"old-holder", b"digest", 1)
    body = orjson.dumps({"request_id": "old-1"})
    at = live_journal._CALLS_AT + 5 * live_journal.CALL_BYTES
    struct.pack_into("<HdH16s", data, at, len(body), 1.5, 200, b"ok")
    data[at + 28:at + 28 + len(body)] = body
    path.write_bytes(bytes(data))
    holder, _store, _counters, calls, _reservations = live_journal.read_live(str(path))
    assert (holder, calls) == ("old-holder", [({"request_id": "old-1", "answered": [200, "ok"]}, 1.5)])
