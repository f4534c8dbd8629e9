"""The books through a budget store outage, through real Envoy: Redis stopped under calls
(settles failing, meters failing, a worker killed meanwhile) then started again, and the
SQLite store's write lock held by another process past what a worker waits for it. Once
the store is back, what it holds is what the callers received, to the token (budgets
and meters), every reservation is freed, and no budget is exceeded. A store that lost its
counters is noticed (gateway_store_resets_total, the log, /readyz's text)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import sqlite3
import threading
import time
import uuid

import httpx
import pytest
from gateway_stack import GatewayStack, quickstart_config
from test_budgets_e2e import RestartableRedis

from extproc.store.redis_store import RedisStore
from extproc.store.sqlite_store import SQLiteStore

KIM_LIMIT = 20_000          # near enough its end that every call is reserved in the store
ERIN_LIMIT = 10**9          # far from it: admitted from the workers' allotments


def outage_config(url: str) -> dict:
    """The quickstart's mock and one model, without what this test does not need (MCP, the
    console, the providers whose tokens a worker mints before it serves): a quicker start."""
    config = quickstart_config()
    config["providers"] = {"mock": config["providers"]["mock"]}
    config["models"] = {"gpt-4o-mini": config["models"]["gpt-4o-mini"]}
    for section in ("mcp", "console", "runs"):
        config.pop(section, None)
    config["keys"] += [
        {"id": "kim", "key": "sk-test-kim", "user": "kim", "team": "books", "models": "*"},
        {"id": "erin", "key": "sk-test-erin", "user": "erin", "team": "books", "models": "*"},
    ]
    config["budgets"] = [
        {"name": "kim-tokens", "scope": "key", "match": "kim", "unit": "tokens", "limit": KIM_LIMIT,
         "window": "hour"},
        {"name": "erin-tokens", "scope": "key", "match": "erin", "unit": "tokens", "limit": ERIN_LIMIT,
         "window": "month"},
    ]
    config["store"] = {"kind": "redis", "url": url}
    return config


@pytest.fixture(scope="module")
def redis_stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("outage")
    redis = RestartableRedis(workdir)
    (workdir / "gw").mkdir()
    stack = GatewayStack(workdir / "gw", outage_config(redis.url), workers=1).start()
    yield stack, redis
    stack.stop()
    redis.stop()


def call(stack: GatewayStack, key: str, index: int, delay_ms: int = 0, task: str = "") -> httpx.Response:
    headers = {"authorization": f"Bearer sk-test-{key}" if key in ("kim", "erin") else f"Bearer sk-demo-{key}"}
    if delay_ms:
        headers["x-mock-delay-ms"] = str(delay_ms)
    if task:
        headers["x-gateway-tag-task"] = task
    try:
        return httpx.post(f"{stack.base_url}/chat/completions", headers=headers, timeout=60, json={
            "model": "gpt-4o-mini", "max_tokens": 30,
            "messages": [{"role": "user", "content": f"books call {index} " + "word " * (index % 7)}]})
    except httpx.HTTPError as error:              # the caller got nothing
        return httpx.Response(599, text=str(error))


def received(responses: list[httpx.Response]) -> tuple[int, int]:
    """(input, output) tokens of the answers callers received."""
    ok = [r for r in responses if r.status_code == 200]
    return (sum(r.json()["usage"]["prompt_tokens"] for r in ok),
            sum(r.json()["usage"]["completion_tokens"] for r in ok))


def metered(rows, dimension: str, value: str) -> tuple[float, float]:
    """(input, output) tokens the store's meters hold where `dimension` is `value`."""
    totals = {"input_tokens": 0.0, "output_tokens": 0.0}
    for row in rows:
        if not row.counter.startswith("meter:key,"):
            continue
        name, combination, _hour = row.counter.split("|")
        measure = name.rsplit(".", 1)[1]
        if measure in totals and f"{dimension}={value}" in combination.split(";"):
            totals[measure] += row.spent
    return totals["input_tokens"], totals["output_tokens"]


def store_rows(open_store) -> list:
    """Every counter row of the store `open_store()` opens (a Redis client per look: each
    look runs on an event loop of its own)."""
    async def read():
        store = open_store()
        rows = store.rows()
        rows = await rows if asyncio.iscoroutine(rows) else rows
        closing = store.close()
        if asyncio.iscoroutine(closing):
            await closing
        return rows
    return asyncio.run(read())


def wait_for_books(store, expected, timeout: float = 30) -> dict:
    """The store's rows (by counter, its window left out) once `expected(rows)` holds (the
    workers bring what waited at their exchanges, a gone worker's journal at its
    successor's first ticks), else the last ones read."""
    deadline = time.monotonic() + timeout
    while True:
        rows = store_rows(store)
        if expected(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.25)


def budget_rows(rows) -> dict:
    return {row.counter.rsplit("|", 1)[0]: row for row in rows if not row.counter.startswith("meter:")}


def test_a_redis_outage_under_calls_and_a_killed_worker_loses_and_doubles_no_token(redis_stack):
    stack, redis = redis_stack
    kim: list[httpx.Response] = []
    erin: list[httpx.Response] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        kim += pool.map(lambda i: call(stack, "kim", i), range(10))
        erin += pool.map(lambda i: call(stack, "erin", i), range(10))
        assert [r.status_code for r in kim + erin] == [200] * 20
        # Calls in flight (kim's reserved in the store) when Redis stops: they settle
        # during the outage.
        kim_flying = [pool.submit(call, stack, "kim", 100 + i, 2500) for i in range(6)]
        erin_flying = [pool.submit(call, stack, "erin", 100 + i, 2500) for i in range(6)]
        time.sleep(1.0)
        # A call of erin's right before: her allotment was used within IDLE_SECONDS, so no
        # exchange hands it back in the moment before Redis stops (on a busy host that
        # moment can be long).
        erin.append(call(stack, "erin", 150))
        assert erin[-1].status_code == 200, erin[-1].text
        redis.stop()
        kim += [future.result() for future in kim_flying]
        erin += [future.result() for future in erin_flying]
        # (A call that reached the worker only after Redis stopped fails closed.)
        assert {r.status_code for r in kim[10:]} <= {200, 500} and any(r.status_code == 200 for r in kim[10:])
        # Calls during the outage: kim's fail closed (nothing reserved, nothing charged);
        # erin's are admitted from the allotments while they last.
        kim_during = list(pool.map(lambda i: call(stack, "kim", 200 + i), range(10)))
        erin_during = list(pool.map(lambda i: call(stack, "erin", 200 + i), range(10)))
    kim += kim_during
    erin += erin_during
    assert all(r.status_code == 500 for r in kim_during)
    assert all("budget store is unavailable" in r.json()["error"]["message"] for r in kim_during)
    assert any(r.status_code == 200 for r in erin_during)
    # A worker killed outright during the outage: what it could not write is in its journal.
    time.sleep(1.2)                                   # its next exchange failed: journal written
    os.kill(stack.worker_pids()[0], signal.SIGKILL)
    time.sleep(0.5)
    redis.start()
    back = time.monotonic()         # (the killed worker's successor starts meanwhile)
    while True:
        response = call(stack, "kim", 300)
        kim.append(response)
        if response.status_code == 200:
            break
        assert time.monotonic() - back < 60, "calls did not recover once Redis was back"
        time.sleep(0.1)

    store = lambda: RedisStore(redis.url)     # noqa: E731
    kim_in, kim_out = received(kim)
    erin_in, erin_out = received(erin)

    def balanced(rows) -> bool:
        counters = budget_rows(rows)
        return all(counters.get(name) is not None and counters[name].held == 0
                   for name in ("kim-tokens|kim", "erin-tokens|erin")) \
            and metered(rows, "key", "erin") == (erin_in, erin_out) \
            and metered(rows, "key", "kim") == (kim_in, kim_out)

    rows = wait_for_books(store, balanced)
    counters = budget_rows(rows)

    assert counters["kim-tokens|kim"].held == 0 and counters["erin-tokens|erin"].held == 0, \
        "a reservation is still held"
    assert counters["kim-tokens|kim"].spent == kim_in + kim_out
    assert counters["erin-tokens|erin"].spent == erin_in + erin_out
    assert metered(rows, "key", "kim") == (kim_in, kim_out)
    assert metered(rows, "key", "erin") == (erin_in, erin_out)
    assert counters["kim-tokens|kim"].spent <= KIM_LIMIT
    # Redis kept its data (append-only): no reset was seen.
    assert "gateway_store_resets_total 0.0" in stack.metrics()


def test_a_store_that_lost_its_counters_is_noticed(redis_stack):
    stack, redis = redis_stack

    async def flush():
        store = RedisStore(redis.url)
        await store._redis.flushall()
        await store.close()
    asyncio.run(flush())
    assert call(stack, "erin", 400).status_code == 200
    text = stack.metrics("gateway_store_resets_total 1", timeout=15)
    assert "gateway_store_resets_total 1" in text or "gateway_store_resets_total 2" in text
    assert "the budget store lost its counters" in stack.stderr_path.read_text() + stack.log_path.read_text()
    ready = httpx.get(f"{stack.admin_url}/readyz", timeout=5)
    assert ready.status_code == 200 and "the budget store lost its counters" in ready.text


def test_an_sqlite_store_locked_past_a_workers_patience_loses_no_metered_token(gateway):
    """Another process holds the SQLite store's write lock for 11 s (a worker waits 10 s
    at most): the calls made meanwhile are answered, and their spend reaches the meters
    once the lock is let go, to the token."""
    task = f"locked-{uuid.uuid4().hex[:8]}"
    path = gateway.state_dir / "budgets.sqlite3"
    locker = sqlite3.connect(str(path), isolation_level=None, timeout=10, check_same_thread=False)
    locker.execute("BEGIN IMMEDIATE")
    unlocked = threading.Event()

    def unlock() -> None:
        locker.execute("ROLLBACK")
        locker.close()
        unlocked.set()
    timer = threading.Timer(11.0, unlock)
    timer.start()
    try:
        answers = [call(gateway, "alice", 500 + i, task=task) for i in range(6)]
    finally:
        unlocked.wait(20)
    assert [r.status_code for r in answers] == [200] * 6
    expected = received(answers)
    rows = wait_for_books(lambda: SQLiteStore(str(path)),
                          lambda rows: metered(rows, "tag:task", task) == expected, timeout=30)
    assert metered(rows, "tag:task", task) == expected
