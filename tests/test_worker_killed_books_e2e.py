"""A worker killed outright (SIGKILL) under concurrent calls, Redis up, through real Envoy:
every call leaves a log line (those in flight on the dead worker one the supervisor writes
from its live journal: the gateway's failure, or what the caller got when the worker died
after its answer left, charged what its settle had put in the store), the store's spend
equals the tokens the lines charge, to the token (the dead worker's spend since its last
exchange included), and its allotment is handed back at once, not
when its lease ends (60 s)."""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import signal
import threading
import time

import httpx
import pytest
from gateway_stack import GatewayStack
from test_budgets_e2e import RestartableRedis
from test_fault_books_e2e import Received, _config, call, records_by_request
from test_store_outage_books_e2e import budget_rows, store_rows

from extproc.store.redis_store import RedisStore

KINDS = ("passed", "translated", "json")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("killed")
    redis = RestartableRedis(workdir)
    (workdir / "gw").mkdir()
    config = _config()
    config["store"] = {"kind": "redis", "url": redis.url}
    gateway = GatewayStack(workdir / "gw", config, workers=2).start()
    gateway.redis = redis
    yield gateway
    gateway.stop()
    redis.stop()


def books(stack) -> tuple[float, float, float]:
    """The key's budget spent and held, and its metered tokens, in Redis."""
    rows = store_rows(lambda: RedisStore(stack.redis.url))
    counter = budget_rows(rows).get("carol-tokens|carol")
    metered = sum(row.spent for row in rows if row.counter.startswith(
        ("meter:key.input_tokens|key=carol|", "meter:key.output_tokens|key=carol|")))
    return (counter.spent if counter else 0.0), (counter.held if counter else 0.0), metered


def settled_books(stack, expected: float, timeout: float = 10) -> tuple[float, float, float]:
    """The books once the budget and the meters hold `expected` tokens and nothing is
    held (the workers exchange every 0.5 s), else as they stand at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        spent, held, metered = books(stack)
        if (spent, metered, held) == (expected, expected, 0) or time.monotonic() > deadline:
            return spent, held, metered
        time.sleep(0.1)


def test_a_killed_workers_calls_are_logged_and_its_spend_and_allotment_reach_the_store(stack):
    with httpx.Client() as client:           # both workers hold allotments of carol's budget
        warm = [call(client, stack, f"warm-{n}", KINDS[n % 3]) for n in range(6)]
    assert all(got.usage is not None for got in warm)
    before = sum(got.usage["total_tokens"] for got in warm)
    assert settled_books(stack, before) == (before, 0, before)
    results: list[Received] = []
    lock = threading.Lock()
    numbers = itertools.count()
    stop_at = time.monotonic() + 4.0

    def client_loop() -> None:
        with httpx.Client() as client:
            while time.monotonic() < stop_at:
                n = next(numbers)
                got = call(client, stack, f"killed-{n}", KINDS[n % 3], {"x-mock-chunk-delay-ms": "30"})
                with lock:
                    results.append(got)

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(client_loop) for _ in range(6)]
        time.sleep(1.5)
        os.kill(stack.worker_pids()[0], signal.SIGKILL)
        for future in futures:
            future.result()
    ended = time.monotonic()

    records = records_by_request(stack, {got.request_id for got in results})
    lost = [got for got in results if records[got.request_id].get("worker_lost")]
    assert lost, "no call was in flight on the killed worker"
    owed = 0
    for got in results:
        record = records[got.request_id]
        charged = record["input_tokens"] + record["output_tokens"]
        where = (got.request_id, got.kind, got.status, got.cut, record["status"], record["outcome"], charged)
        if record.get("worker_lost"):
            if record["outcome"] == "error":     # Envoy answered 500 or cut the stream: charged nothing
                assert (record["error_code"], record["status"], charged) == ("gateway_error", 500, 0), where
                # Its answer may have left whole in the moment before the worker noted it (a
                # turn of its loop), or a stream passed through may have, cut only before its
                # trailers: as documented (docs/observability.md), charged nothing all the same.
                assert got.usage is None or got.status == 200, where
            else:                                # the answer was out: the worker died in its bookkeeping,
                assert record["status"] == got.status, where      # charged once its settle was done
                assert charged in (0, got.usage["total_tokens"] if got.usage else 0), where
            owed += charged
            continue
        if got.usage is not None:                # a whole answer: charged exactly its usage
            assert charged == got.usage["total_tokens"], where
        owed += charged
    assert owed == sum(got.usage["total_tokens"] for got in results if got.usage is not None and (
        not records[got.request_id].get("worker_lost") or records[got.request_id]["input_tokens"]))

    # Counted in the metrics, as a worker counts a call (the supervisor, for a dead worker's).
    failed = sum(1 for got in lost if records[got.request_id]["outcome"] == "error")
    if failed:
        text = stack.metrics("", timeout=0)
        counted = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                      if line.startswith("gateway_call_outcomes_total{") and 'outcome="error"' in line)
        assert counted >= failed, text[-2000:]
    # The dead worker's spend and allotment, at once (its lease would hold it 60 s).
    spent, held, metered_now = settled_books(stack, before + owed)
    assert (spent - before, metered_now - before) == (owed, owed)
    assert held == 0, f"{held} tokens still held {time.monotonic() - ended:.1f} s after the last call"
    assert time.monotonic() - ended < 5
