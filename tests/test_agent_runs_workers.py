"""Run limits and loop stopping across workers, in process: two RunLimits stages with a
ledger each (two workers) over one store, SQLite and Redis (as two replicas would share
it), calls of one run alternating between them. The run's call limit holds exactly, a
loop is stopped at max_repeats exactly (counted in the history the agent resends), and a
key starts at most its runs per hour."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest

from extproc.api.openai import find_endpoint
from extproc.api.usage import Usage
from extproc.config.filter_config import load_config
from extproc.config.runs import LoopSettings, RunLimit, RunSettings
from extproc.pipeline.call import Call
from extproc.pipeline.errors import GatewayError
from extproc.runs.ledger import RunLedger
from extproc.stages.runs.limits import RecogniseRun, RunLimits, RunSettle
from extproc.store.limits import Limit
from extproc.store.redis_store import RedisStore
from extproc.store.sqlite_store import SQLiteStore

ROOT = Path(__file__).resolve().parent.parent
CALLS = 10
REPEATS = 4


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path, redis_url):
    if request.param == "sqlite":
        yield SQLiteStore(str(tmp_path / "runs.sqlite3"))
    else:
        import redis
        redis.Redis.from_url(redis_url).flushall()
        yield RedisStore(redis_url)


def _config():
    config = load_config(str(ROOT / "config" / "quickstart.yaml"), strict_credentials=False)
    limit = RunLimit("ten", "key", None, None, (Limit("run.ten.requests", "run", None, "requests", CALLS, None),
                                                Limit("run.ten.usd", "run", None, "usd", 100.0, None)), None)
    return dataclasses.replace(config, runs=RunSettings(limits=(limit,), loops=LoopSettings(max_repeats=REPEATS)))


def _workers(config, store):
    workers = []
    for _ in range(2):
        limits = RunLimits(store, config.runs, 60)
        limits.ledger = RunLedger()                 # each worker process has its own
        workers.append((limits, RunSettle(store, None, config.runs)))
    return workers


async def _call(config, worker, run: str, tool_args: str | None, times: int = 1):
    limits, settle = worker
    key = next(k for k in config.keys_by_hash.values() if k.id == "alice")
    messages = [{"role": "user", "content": "go"}]
    for n in range(times if tool_args is not None else 0):      # the history the agent resends
        messages += [{"role": "assistant", "tool_calls": [{"id": str(n), "type": "function",
                                                           "function": {"name": "shell", "arguments": tool_args}}]},
                     {"role": "tool", "tool_call_id": str(n), "content": "x"}]
    call = Call(config)
    call.key, call.headers, call.request_id = key, {"x-gateway-run": run}, "r"
    call.endpoint = find_endpoint("/v1/chat/completions")[0]
    call.model = config.model("gpt-4o-mini")
    call.body = {"model": "gpt-4o-mini", "messages": messages, "max_tokens": 20}
    assert RecogniseRun().request_body(call) is None        # named by its header: no store read
    try:
        if (pending := limits.request_body(call)) is not None:
            await pending
    except GatewayError as refusal:
        return refusal
    call.usage, call.backend = Usage(20, 5), call.model.backends[0]
    if (pending := settle.done(call)) is not None:
        await pending
    return None


def test_a_runs_call_limit_holds_exactly_across_two_workers(store):
    config = _config()
    workers = _workers(config, store)

    async def run():
        return [await _call(config, workers[n % 2], "calls", json.dumps({"n": n})) for n in range(CALLS + 3)]

    refusals = asyncio.run(run())
    assert refusals[:CALLS] == [None] * CALLS
    assert all(r is not None and r.code == "budget_exceeded" and "'ten'" in r.message for r in refusals[CALLS:])


def test_a_loop_is_stopped_at_max_repeats_whichever_worker(store):
    config = _config()
    workers = _workers(config, store)

    async def run():
        repeated = [await _call(config, workers[n % 2], "loop", '{"cmd": "ls"}', n) for n in range(1, REPEATS + 4)]
        return repeated, await _call(config, workers[0], "loop", '{"cmd": "pwd"}')

    refusals, other = asyncio.run(run())
    assert refusals[:REPEATS] == [None] * REPEATS
    assert all(r is not None and r.code == "agent_loop" for r in refusals[REPEATS:])
    assert f"{REPEATS + 1} times" in refusals[REPEATS].message and "'shell'" in refusals[REPEATS].message
    assert other is None             # a different call of the same tool is not the loop


def test_a_key_starts_at_most_its_runs_per_hour(store):
    """A caller naming a new run on every call is bounded by the runs it may start."""
    config = _config()
    starts = RunLimit("few", "key", "alice", None, (), None,
                      Limit("run.few.starts", "run", None, "requests", 2, "hour"))
    config = dataclasses.replace(config, runs=dataclasses.replace(config.runs, limits=(starts,)))
    workers = _workers(config, store)

    async def run():
        return [await _call(config, workers[0], "one", None), await _call(config, workers[1], "two", None),
                await _call(config, workers[1], "one", None),          # not a new run: goes on
                await _call(config, workers[0], "three", None), await _call(config, workers[1], "three", None)]

    one, two, again, three, three_again = asyncio.run(run())
    assert one is None and two is None and again is None
    assert three is not None and three.code == "rate_limited" and "'few'" in three.message
    assert "start 2 agent runs an hour" in three.message and int(three.headers["retry-after"]) <= 3600
    assert three_again is not None and three_again.code == "rate_limited"     # never begun: still new


def test_a_run_past_its_minutes_is_over_on_every_worker(store):
    config = _config()
    clock = RunLimit("short", "key", None, None, (), 0.05)          # 50 ms from the run's first call
    config = dataclasses.replace(config, runs=dataclasses.replace(config.runs, limits=(clock,)))
    workers = _workers(config, store)

    async def run():
        first = await _call(config, workers[0], "timed", None)
        await asyncio.sleep(0.1)
        return first, await _call(config, workers[1], "timed", None)

    first, later = asyncio.run(run())
    assert first is None
    assert later is not None and later.code == "budget_exceeded" and "'short'" in later.message
    assert "minutes from its first call" in later.message and "run is over" in later.message
