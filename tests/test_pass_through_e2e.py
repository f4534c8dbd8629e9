"""Streams passed through (stages/pass_through.py), through real Envoy: which streams
are, that their clients get the provider's stream as it is produced, and that their
usage still settles the budget exactly (it comes with the trailers message, read by
Envoy's sse_to_metadata), or conservatively when the provider gives none."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pytest
from openai import OpenAI

from extproc.metrics import FLUSH_INTERVAL
from extproc.store import CounterRow
from extproc.store.sqlite_store import SQLiteStore
from gateway_stack import GatewayStack, quickstart_config, settled_rows

PENNY = {"authorization": "Bearer sk-test-penny"}   # a token budget: every call settles
GUS = {"authorization": "Bearer sk-test-gus"}       # a guardrail reads his responses
USAGE = {"include_usage": True}
PHASES = ("response_headers", "response_body", "response_trailers")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    config = quickstart_config()
    config["keys"] += [
        {"id": "penny", "key": "sk-test-penny", "user": "penny", "team": "metered", "models": "*"},
        {"id": "gus", "key": "sk-test-gus", "user": "gus", "team": "guarded", "models": "*"}]
    config["budgets"] = [{"name": "penny-tokens", "scope": "key", "match": "penny", "unit": "tokens",
                          "limit": 10**9, "window": "month"}]
    config["guardrails"]["rules"].append({"name": "response-pii", "type": "pii", "action": "redact",
                                          "directions": ["response"], "entities": ["email"]})
    config["guardrails"]["policies"] = {"default": ["pii", "prompt-injection"],
                                        "teams": {"guarded": ["pii", "response-pii"]}}
    gateway = GatewayStack(tmp_path_factory.mktemp("pass-through"), config, workers=2).start()
    yield gateway
    gateway.stop()


def _counts(stack) -> dict[str, float]:
    text = httpx.get(f"{stack.admin_url}/metrics").text
    counts = {}
    for phase in PHASES:
        found = re.search(rf'gateway_extproc_processing_seconds_count{{phase="{phase}"}} (\S+)', text)
        counts[phase] = float(found.group(1)) if found else 0.0
    return counts


def _counts_now(stack) -> dict[str, float]:
    """The counts once the workers have flushed what earlier calls did."""
    time.sleep(3 * FLUSH_INTERVAL)
    return _counts(stack)


def _moved(stack, before: dict[str, float], phase: str, at_least: float) -> float:
    """How much a phase's count moved, once both workers have flushed their metrics."""
    deadline = time.monotonic() + 5
    time.sleep(3 * FLUSH_INTERVAL)
    moved = _counts(stack)[phase] - before[phase]
    while moved < at_least and time.monotonic() < deadline:
        time.sleep(FLUSH_INTERVAL)
        moved = _counts(stack)[phase] - before[phase]
    return moved


def _penny_counter(stack) -> CounterRow:
    rows = settled_rows(SQLiteStore(str(stack.state_dir / "budgets.sqlite3")))
    return rows.get("penny-tokens|penny", CounterRow("penny-tokens|penny", 0.0, 0.0, 0.0))


def _provider_usage(stack, rid: str) -> dict:
    """The usage the mock provider reported for this request (a failed attempt reports none)."""
    [usage] = [entry["usage"] for name in stack.mock_ports for entry in stack.received(name)
               if entry["headers"].get("x-request-id") == rid and "usage" in entry]
    return usage


CHAT = [{"role": "user", "content": "one two three four"}]
# (what, key, path, body, passed through)
STREAMS = [
    ("chat, usage asked", PENNY, "/chat/completions",
     {"model": "gpt-4o-mini", "messages": CHAT, "stream_options": USAGE}, True),
    ("legacy completions, usage asked", PENNY, "/completions",
     {"model": "gpt-4o-mini", "prompt": "complete me now", "stream_options": USAGE}, True),
    ("Responses API: its streams always carry usage", PENNY, "/responses",
     {"model": "gpt-4o-mini", "input": "respond to me"}, True),
    ("virtual model: its headers name the backend that served", PENNY, "/chat/completions",
     {"model": "smart", "messages": CHAT, "stream_options": USAGE}, False),
    ("usage not asked: its usage chunk must come out", PENNY, "/chat/completions",
     {"model": "gpt-4o-mini", "messages": CHAT}, False),
    ("a guardrail reads this caller's responses", GUS, "/chat/completions",
     {"model": "gpt-4o-mini", "messages": CHAT, "stream_options": USAGE}, False),
]


@pytest.mark.parametrize("what,key,path,body,passed", STREAMS, ids=[s[0] for s in STREAMS])
def test_which_streams_pass_through_and_that_each_settles_exactly(stack, what, key, path, body, passed):
    rid = f"pass-{uuid.uuid4()}"
    spent_before = _penny_counter(stack).spent if key is PENNY else 0
    before = _counts_now(stack)
    with httpx.stream("POST", f"{stack.base_url}{path}", json={**body, "stream": True},
                      headers={**key, "x-request-id": rid}, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-gateway-backend"] == ("mock-backup" if body["model"] == "smart" else "mock")
        streamed = b"".join(response.iter_raw())
    # Passed through: one message for the whole response (headers and chunks go by).
    assert _moved(stack, before, "response_trailers", int(passed)) == int(passed)
    assert _moved(stack, before, "response_headers", int(not passed)) == int(not passed)
    assert (_moved(stack, before, "response_body", 1) > 0) is not passed
    if path != "/responses":
        assert streamed.rstrip().endswith(b"data: [DONE]")
        # The client sees a usage chunk exactly when it asked for one.
        assert (b'"choices":[],"usage":{' in streamed) is ("stream_options" in body)

    record = stack.wait_for_record(rid)
    provider = _provider_usage(stack, rid)
    assert record["outcome"] == "ok" and record["status"] == 200 and not record["usage_estimated"]
    assert (record["input_tokens"], record["output_tokens"]) == (provider["prompt_tokens"],
                                                                  provider["completion_tokens"])
    assert (record["ttft_ms"] is None) is passed         # the service saw no chunk of it
    if key is PENNY:
        counter = _penny_counter(stack)
        assert counter.held == 0
        assert counter.spent - spent_before == provider["prompt_tokens"] + provider["completion_tokens"]


def test_a_passed_through_stream_reaches_the_client_as_produced(stack):
    client = OpenAI(base_url=stack.base_url, api_key="sk-test-penny", max_retries=0)
    arrivals, started = [], time.perf_counter()
    stream = client.chat.completions.create(
        model="gpt-4o-mini", stream=True, stream_options=USAGE,
        messages=[{"role": "user", "content": "w0 w1 w2 w3 w4 w5"}],
        extra_headers={"x-mock-chunk-delay-ms": "250"})
    words, usage = [], None
    for chunk in stream:
        arrivals.append(time.perf_counter() - started)
        if chunk.choices and chunk.choices[0].delta.content:
            words.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    assert "".join(words) == "w0 w1 w2 w3 w4 w5"
    assert usage is not None and usage.completion_tokens == 12
    # 9 events 250 ms apart: ~2 s from the first to the last; held anywhere, they would bunch.
    assert arrivals[-1] - arrivals[0] > 1.5 and arrivals[0] < 1.0, arrivals


def test_a_provider_that_reports_no_usage_is_charged_the_output_cap(stack):
    rid = f"pass-{uuid.uuid4()}"
    spent_before = _penny_counter(stack).spent
    with httpx.stream("POST", f"{stack.base_url}/chat/completions", timeout=30,
                      headers={**PENNY, "x-request-id": rid, "x-mock-no-usage": "1"},
                      json={"model": "gpt-4o-mini", "messages": CHAT, "max_tokens": 7, "stream": True,
                            "stream_options": USAGE}) as response:
        assert b"data: [DONE]" in b"".join(response.iter_raw())
    record = stack.wait_for_record(rid)
    assert record["outcome"] == "ok" and record["usage_estimated"] is True
    assert record["output_tokens"] == 7 and record["input_tokens"] > 0   # the text went by unseen
    counter = _penny_counter(stack)
    assert counter.held == 0 and counter.spent - spent_before == record["input_tokens"] + 7


def test_a_provider_error_on_a_stream_that_would_pass_through(stack):
    rid = f"pass-{uuid.uuid4()}"
    before = _counts_now(stack)
    response = httpx.post(f"{stack.base_url}/chat/completions", timeout=30,
                          headers={**PENNY, "x-request-id": rid, "x-mock-status": "400"},
                          json={"model": "gpt-4o-mini", "messages": CHAT, "stream": True,
                                "stream_options": USAGE})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "mock_failure"
    record = stack.wait_for_record(rid)
    assert record["outcome"] == "upstream_error" and record["status"] == 400
    assert record["input_tokens"] == record["output_tokens"] == 0     # nothing billed, nothing charged
    # Its status came with the trailers message (Envoy's response.code); the body went by.
    assert _moved(stack, before, "response_trailers", 1) == 1
    assert _moved(stack, before, "response_body", 0) == 0
    assert _penny_counter(stack).held == 0


def test_a_client_leaving_a_passed_through_stream_leaves_nothing_held(stack):
    rid = f"pass-{uuid.uuid4()}"
    with httpx.stream("POST", f"{stack.base_url}/chat/completions", timeout=30,
                      headers={**PENNY, "x-request-id": rid, "x-mock-chunk-delay-ms": "200"},
                      json={"model": "gpt-4o-mini", "messages": CHAT, "max_tokens": 9, "stream": True,
                            "stream_options": USAGE}) as response:
        next(response.iter_raw())                                    # the first event, then leave
    record = stack.wait_for_record(rid)
    assert record["outcome"] == "cancelled" and record["usage_estimated"] is True
    assert record["output_tokens"] == 9                               # the cap: the text went unseen
    assert _penny_counter(stack).held == 0
