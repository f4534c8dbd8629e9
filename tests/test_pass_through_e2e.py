"""Streams passed through (stages/pass_through.py), through real Envoy: which streams
are, that their clients get the provider's stream as it is produced, and that their
usage still settles the budget exactly (it comes with the trailers message, read by
Envoy's sse_to_metadata), or conservatively when the provider gives none; a client that
did not ask for the usage gets the stream it would have got without the gateway asking
(Envoy's Lua filter takes the usage out, wherever the provider's writes cut it)."""

from __future__ import annotations

import re
import socket
import struct
import time
import uuid

import httpx
import orjson
import pytest
import yaml
from gateway_stack import FIXTURES, GatewayStack, quickstart_config, settled_rows
from openai import OpenAI

from extproc.api.tokens import count_text
from extproc.store import CounterRow
from extproc.store.sqlite_store import SQLiteStore

PENNY = {"authorization": "Bearer sk-test-penny"}   # a token budget: every call settles
GUS = {"authorization": "Bearer sk-test-gus"}       # a guardrail reads his responses
ALICE = {"authorization": "Bearer sk-demo-alice"}
USAGE = {"include_usage": True}


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


def _penny_counter(stack) -> CounterRow:
    rows = settled_rows(SQLiteStore(str(stack.state_dir / "budgets.sqlite3")))
    return rows.get("penny-tokens|penny", CounterRow("penny-tokens|penny", 0.0, 0.0, 0.0))


def _assert_settled(stack, spent_before: float, record: dict) -> None:
    """penny's budget, once the call's settlement lands: charged what its log line says."""
    deadline = time.monotonic() + 5
    while _penny_counter(stack).spent == spent_before and time.monotonic() < deadline:
        time.sleep(0.05)
    counter = _penny_counter(stack)
    assert counter.held == 0
    assert counter.spent - spent_before == record["input_tokens"] + record["output_tokens"]


def _provider_usage(stack, rid: str) -> dict:
    """The usage the mock provider reported for this request (a failed attempt reports none)."""
    gateway_id = stack.wait_for_record(rid)["request_id"]           # what the provider was sent
    [usage] = [entry["usage"] for name in stack.mock_ports for entry in stack.received(name)
               if entry["headers"].get("x-request-id") == gateway_id and "usage" in entry]
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
    ("chat, usage not asked: Envoy takes its usage chunk out", PENNY, "/chat/completions",
     {"model": "gpt-4o-mini", "messages": CHAT}, True),
    ("legacy completions, usage not asked", PENNY, "/completions",
     {"model": "gpt-4o-mini", "prompt": "complete me now"}, True),
    ("usage asked as false", PENNY, "/chat/completions",
     {"model": "gpt-4o-mini", "messages": CHAT, "stream_options": {"include_usage": False}}, True),
    ("a guardrail reads this caller's responses", GUS, "/chat/completions",
     {"model": "gpt-4o-mini", "messages": CHAT, "stream_options": USAGE}, False),
]


@pytest.mark.parametrize("what,key,path,body,passed", STREAMS, ids=[s[0] for s in STREAMS])
def test_which_streams_pass_through_and_that_each_settles_exactly(stack, what, key, path, body, passed):
    rid = f"pass-{uuid.uuid4()}"
    spent_before = _penny_counter(stack).spent if key is PENNY else 0
    before = stack.phase_counts(flushed=True)
    with httpx.stream("POST", f"{stack.base_url}{path}", json={**body, "stream": True},
                      headers={**key, "x-request-id": rid, "x-mock-cached-tokens": "2"},
                      timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-gateway-backend"] == ("mock-backup" if body["model"] == "smart" else "mock")
        streamed = b"".join(response.iter_raw())
    # Passed through: one message for the whole response (headers and chunks go by).
    moved = stack.phases_moved(before, {"response_trailers": int(passed), "response_headers": int(not passed),
                                        "response_body": int(not passed)})
    assert moved["response_trailers"] == int(passed)
    assert moved["response_headers"] == int(not passed)
    assert (moved["response_body"] > 0) is not passed
    if path != "/responses":
        assert streamed.rstrip().endswith(b"data: [DONE]")
        # The client sees usage (a usage chunk, "usage":null in the others) exactly when
        # it asked for it.
        assert (b'"usage"' in streamed) is (body.get("stream_options") == USAGE)
        assert (b'"choices":[],"usage":{' in streamed) is (body.get("stream_options") == USAGE)

    record = stack.wait_for_record(rid)
    provider = _provider_usage(stack, rid)
    assert record["outcome"] == "ok" and record["status"] == 200 and not record["usage_estimated"]
    assert (record["input_tokens"], record["output_tokens"]) == (provider["prompt_tokens"],
                                                                  provider["completion_tokens"])
    # Prompt-cache reads are billed at the cached price, whichever way the usage came.
    assert record["cached_tokens"] == provider["cached_tokens"] == 2
    assert record["cost_usd"] == pytest.approx(stack.expected_cost(record))
    # Passed through, the service saw no chunk: Envoy's Lua filter stamped the first event.
    assert 0 < record["ttft_ms"] <= record["latency_ms"]
    if key is PENNY:
        counter = _penny_counter(stack)
        assert counter.held == 0
        assert counter.spent - spent_before == provider["prompt_tokens"] + provider["completion_tokens"]


def _stream_bytes(stack, model: str, headers: dict) -> bytes:
    with httpx.stream("POST", f"{stack.base_url}/chat/completions", timeout=30,
                      headers={**PENNY, **headers},
                      json={"model": model, "messages": CHAT, "stream": True}) as response:
        assert response.status_code == 200
        return b"".join(response.iter_raw())


def _without_ids(stream: bytes) -> bytes:
    return re.sub(rb'"(id|created|model)":("[^"]*"|\d+)', b"", stream)


@pytest.mark.parametrize("write_bytes", [1, 7, 120, 4096])
def test_the_unasked_usage_comes_out_wherever_the_provider_cuts_the_stream(stack, write_bytes):
    """The provider writes its stream N bytes at a time, so the usage chunk and the
    "usage":null of the others arrive cut anywhere. Passed through (Envoy's Lua filter)
    and chunk by chunk (the service; a virtual model) the client gets the same bytes."""
    cut = {"x-mock-write-bytes": str(write_bytes), "x-mock-chunk-delay-ms": "1"}
    before = stack.phase_counts(flushed=True)
    passed = _stream_bytes(stack, "gpt-4o-mini", cut)
    assert stack.phase_moved(before, "response_trailers", 1) == 1
    seen = _stream_bytes(stack, "smart", cut)
    assert b'"usage"' not in passed and passed.rstrip().endswith(b"data: [DONE]")
    assert _without_ids(passed) == _without_ids(seen)
    words = [orjson.loads(event[6:])["choices"][0]["delta"].get("content") or ""
             for event in passed.split(b"\n\n") if event.startswith(b"data: {")]
    assert "".join(words) == CHAT[0]["content"]


def test_a_recorded_openai_stream_loses_its_usage_like_on_the_chunk_path(stack):
    """Real OpenAI bytes (with `"usage":null,"obfuscation":...` in every chunk), replayed
    to a client that did not ask for usage: what it gets is the recording without the
    usage chunk and without the "usage":null, passed through and chunk by chunk alike,
    and the recorded usage is what is charged."""
    recording = yaml.safe_load((FIXTURES / "openai-recordings" / "chat-streaming-detailed-usage.yaml").read_text())
    recorded = recording["interactions"][0]["response"]["body"].encode()
    events = [event + b"\n\n" for event in recorded.split(b"\n\n") if event.strip()]
    expected = b"".join(event.replace(b',"usage":null', b"") for event in events
                        if b'"choices":[]' not in event)
    assert len(expected) < len(recorded) - 200                   # the usage chunk is a big one
    rid = f"pass-{uuid.uuid4()}"
    passed = _stream_bytes(stack, "gpt-4o-mini", {"x-mock-replay": "chat-streaming-detailed-usage",
                                                  "x-request-id": rid})
    assert passed == expected
    assert _stream_bytes(stack, "smart", {"x-mock-replay": "chat-streaming-detailed-usage"}) == expected
    record = stack.wait_for_record(rid)
    assert (record["input_tokens"], record["output_tokens"], record["reasoning_tokens"]) == (12, 100, 100)
    assert record["usage_estimated"] is False


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
    # 9 events 250 ms apart: ~2 s from the first to the last; held anywhere, they would
    # bunch. (On a busy host the first few can arrive together, late: the span still
    # holds most of the gaps.)
    assert arrivals[-1] - arrivals[0] > 1.0, arrivals


@pytest.mark.parametrize("body", [{"stream_options": USAGE}, {}], ids=["usage asked", "usage not asked"])
def test_a_passed_through_stream_has_its_time_to_first_token(stack, body):
    """The provider waits 400 ms before its first byte, then sends an event every
    100 ms: the record's ttft_ms is the wait, not the stream's end."""
    rid = f"pass-{uuid.uuid4()}"
    before = stack.phase_counts(flushed=True)
    with httpx.stream("POST", f"{stack.base_url}/chat/completions", timeout=30,
                      headers={**PENNY, "x-request-id": rid, "x-mock-delay-ms": "400",
                               "x-mock-chunk-delay-ms": "100"},
                      json={"model": "gpt-4o-mini", "messages": CHAT, "stream": True, **body}) as response:
        assert b"data: [DONE]" in b"".join(response.iter_raw())
    assert stack.phase_moved(before, "response_trailers", 1) == 1
    record = stack.wait_for_record(rid)
    assert 400 <= record["ttft_ms"] < 600 and record["latency_ms"] > record["ttft_ms"] + 300, record


def test_a_provider_that_reports_no_usage_is_charged_what_envoy_sent(stack):
    """Some OpenAI-compatible servers ignore include_usage: the answer's bytes that Envoy
    sent are charged (as for a stream cut short), not the 500-token cap it reserved."""
    rid = f"pass-{uuid.uuid4()}"
    text = " ".join(f"word{i}" for i in range(20))
    spent_before = _penny_counter(stack).spent
    with httpx.stream("POST", f"{stack.base_url}/chat/completions", timeout=30,
                      headers={**PENNY, "x-request-id": rid, "x-mock-no-usage": "1"},
                      json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}],
                            "max_tokens": 500, "stream": True, "stream_options": USAGE}) as response:
        assert b"data: [DONE]" in b"".join(response.iter_raw())
    record = stack.wait_for_record(rid)
    assert record["outcome"] == "ok" and record["usage_estimated"] is True
    sent = count_text(text, "o200k_base")
    assert sent / 2 <= record["output_tokens"] <= sent * 2, (record["output_tokens"], sent)
    counter = _penny_counter(stack)
    assert counter.held == 0 and counter.spent - spent_before == record["input_tokens"] + record["output_tokens"]


def test_a_provider_error_on_a_stream_that_would_pass_through(stack):
    rid = f"pass-{uuid.uuid4()}"
    before = stack.phase_counts(flushed=True)
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
    moved = stack.phases_moved(before, {"response_trailers": 1, "response_body": 0})
    assert (moved["response_trailers"], moved["response_body"]) == (1, 0)
    assert _penny_counter(stack).held == 0


WORDS = " ".join(f"word{i}" for i in range(150))      # the mock echoes it: ~300 tokens
# (what, usage asked, extra headers, events the client reads before it leaves)
# The client leaves after 12 events; what Envoy sends meanwhile, unread, is charged too.
# A chunk every 80 ms keeps that to an event or two when a loaded host is slow to close.
CUT_STREAMS = [
    ("the client leaves", True, {"x-mock-chunk-delay-ms": "80"}, 12),
    ("the client leaves, usage not asked", False, {"x-mock-chunk-delay-ms": "80"}, 12),
    ("the provider drops", True, {"x-mock-chunk-delay-ms": "5", "x-mock-cut-after": "15"}, None),
]


@pytest.mark.parametrize("what,usage,headers,leave_after", CUT_STREAMS, ids=[c[0] for c in CUT_STREAMS])
def test_a_stream_cut_short_is_charged_what_envoy_sent(stack, what, usage, headers, leave_after):
    """Its trailers never come: Envoy's gRPC access log brings the worker the bytes it
    sent (to whichever worker its log stream goes: the call's, or another one through
    the budget store), read as tokens at the ratio of the streams that completed, not
    the output cap (500 here). Neither an over-charge nor a way to stream for free."""
    # gpt-4o: the recorded stream above taught gpt-4o-mini a reasoning model's figures.
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": WORDS}], "max_tokens": 500,
            "stream": True, **({"stream_options": USAGE} if usage else {})}
    complete = httpx.post(f"{stack.base_url}/chat/completions", json=body, headers=PENNY, timeout=30)
    assert complete.text.endswith("data: [DONE]\n\n")                # teaches a worker the ratio
    rid = f"cut-{uuid.uuid4()}"
    spent_before = _penny_counter(stack).spent
    received = b""
    try:
        with httpx.stream("POST", f"{stack.base_url}/chat/completions", json=body, timeout=30,
                          headers={**PENNY, **headers, "x-request-id": rid}) as response:
            for chunk in response.iter_raw():
                received += chunk
                if leave_after and received.count(b"data: {") >= leave_after:
                    break
    except httpx.HTTPError:
        assert not leave_after                                      # the provider's drop reached the client
    assert b"[DONE]" not in received
    texts = re.findall(rb'"content":"([^"]*)"', received)
    seen = count_text(b"".join(texts).decode(), "o200k_base")
    record = stack.wait_for_record(rid, timeout=10)
    outcome = "cancelled" if leave_after else "provider_cut"     # (docs/observability.md#outcomes)
    assert record["outcome"] == outcome and record["usage_estimated"] is True and record["status"] == 200
    # Envoy may have sent an event or two the client did not read; the ratio a worker has
    # not learned yet (100 bytes a token) reads the mock's ~125 as more tokens, not fewer.
    assert seen >= 20 and 0.8 * seen <= record["output_tokens"] <= 1.5 * seen + 6, (seen, record)
    assert record["ttft_ms"] is not None                              # Envoy's stamp came with it
    _assert_settled(stack, spent_before, record)


# (dialect, path, headers, body, the last event)
LAST_EVENTS = [
    ("openai", "/v1/chat/completions", f"authorization: {PENNY['authorization']}\r\n",
     {"model": "gpt-4o", "stream_options": USAGE}, b"data: [DONE]"),
    ("anthropic", "/v1/messages", "x-api-key: sk-test-penny\r\nanthropic-version: 2023-06-01\r\n",
     {"model": "claude-sonnet-4-6"}, b"event: message_stop"),
]


@pytest.mark.parametrize("dialect,path,headers,body,last", LAST_EVENTS, ids=[e[0] for e in LAST_EVENTS])
def test_a_client_that_leaves_on_the_last_event_is_charged_the_providers_usage_exactly(
        stack, dialect, path, headers, body, last):
    """The openai SDK closes the connection once it reads `data: [DONE]` (other clients on
    Anthropic's `message_stop`). Envoy has sent the client the whole stream, but the
    trailers message may not have left yet: then the stream counts as cut. The usage that
    passed Envoy is the stream's last, so it is charged (the access log's entry carries
    it), never an estimate. Half the calls' provider ends its stream 0.5 s after its last
    event: the client leaves before that end reaches Envoy, so the dialect's rule decides."""
    body = orjson.dumps({**body, "messages": [{"role": "user", "content": "three words here"}],
                         "max_tokens": 50, "stream": True})
    host, port = httpx.URL(stack.base_url).host, httpx.URL(stack.base_url).port
    spent_before, rids = _penny_counter(stack).spent, []
    for n in range(12):
        rid = f"done-{uuid.uuid4()}"
        late_end = "x-mock-end-delay-ms: 500\r\n" if n % 2 else ""
        request = (f"POST {path} HTTP/1.1\r\nhost: {host}\r\n{headers}{late_end}content-type: application/json\r\n"
                   f"x-request-id: {rid}\r\ncontent-length: {len(body)}\r\n\r\n").encode() + body
        with socket.create_connection((host, port), timeout=10) as client:
            client.sendall(request)
            received = b""
            while last not in received:
                chunk = client.recv(65536)
                assert chunk, received
                received += chunk
            # Hang up at once, with a reset: before the response's end can arrive.
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        rids.append(rid)
    charged = 0
    for rid in rids:
        record, usage = stack.wait_for_record(rid, timeout=10), _provider_usage(stack, rid)
        assert record["usage_estimated"] is False, record
        assert (record["input_tokens"], record["output_tokens"]) == \
            (usage["prompt_tokens"], usage["completion_tokens"]), (record, usage)
        charged += record["input_tokens"] + record["output_tokens"]
    deadline = time.monotonic() + 5
    while _penny_counter(stack).spent < spent_before + charged and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _penny_counter(stack).spent == spent_before + charged and _penny_counter(stack).held == 0


# (dialect, path, headers, body, the running count in an event as {usage field: counted})
RUNNING_COUNTS = [
    ("anthropic", "/v1/messages", {"x-api-key": "sk-test-penny", "anthropic-version": "2023-06-01"},
     {"model": "claude-sonnet-4-6", "max_tokens": 500, "stream": True,
      "messages": [{"role": "user", "content": WORDS}]},
     lambda event: {}),
    ("gemini", "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", {"x-goog-api-key": "sk-test-penny"},
     {"contents": [{"role": "user", "parts": [{"text": WORDS}]}],
      "generationConfig": {"maxOutputTokens": 500, "thinkingConfig": {"thinkingBudget": 64}}},
     lambda event: {"output": event["usageMetadata"].get("candidatesTokenCount", 0)
                    + event["usageMetadata"].get("thoughtsTokenCount", 0)}),
]


@pytest.mark.parametrize("dialect,path,headers,body,running", RUNNING_COUNTS, ids=[c[0] for c in RUNNING_COUNTS])
def test_a_cut_stream_whose_provider_counts_as_it_goes_is_charged_its_count(
        stack, dialect, path, headers, body, running):
    """Anthropic's message_start counts the prompt (cache reads included), every Gemini
    chunk the prompt and the tokens so far (thoughts the caller never sees included): a
    client that leaves mid-stream is charged that input as the provider counted it, and
    an output no smaller than the provider's count at the last event it read."""
    rid = f"cut-{uuid.uuid4()}"
    spent_before = _penny_counter(stack).spent
    received, last = b"", None
    with httpx.stream("POST", f"http://127.0.0.1:{stack.port}{path}", json=body, timeout=30,
                      headers={**headers, "x-request-id": rid, "x-mock-cached-tokens": "2",
                               "x-mock-chunk-delay-ms": "30"}) as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            received += chunk
            events = re.findall(rb"^data: (.*)$", received, re.M)
            if len(events) >= 12:
                last = orjson.loads(events[-2])           # whole: a later one may be cut
                break
    assert last is not None
    record, provider = stack.wait_for_record(rid, timeout=10), _provider_usage(stack, rid)
    assert record["outcome"] == "cancelled" and record["usage_estimated"] is True, record
    assert (record["input_tokens"], record["cached_tokens"]) == \
        (provider["prompt_tokens"], provider["cached_tokens"]) and provider["cached_tokens"] == 2, (record, provider)
    assert record["output_tokens"] >= running(last).get("output", 1), (record, last)
    assert record["output_tokens"] < provider["completion_tokens"], (record, provider)     # cut, not the whole
    _assert_settled(stack, spent_before, record)


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_without_budgets_every_worker_still_gets_its_cut_streams_entry(tmp_path, redis_url, kind):
    """No budget, so no budget store: Envoy's log stream still reaches one worker of two,
    and the other's calls get their entries through a store opened for the hand-off
    (SQLite, the default; Redis, as in k8s/)."""
    config = quickstart_config()
    config["budgets"] = []
    if kind == "redis":
        config["store"] = {"kind": "redis", "url": redis_url}
    stack = GatewayStack(tmp_path, config, workers=2).start()
    try:
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": WORDS}], "max_tokens": 500,
                "stream": True}
        rids = [f"cut-{uuid.uuid4()}" for _ in range(8)]
        for rid in rids:
            with httpx.stream("POST", f"{stack.base_url}/chat/completions", json=body, timeout=30,
                              headers={**ALICE, "x-request-id": rid, "x-mock-chunk-delay-ms": "20"}) as response:
                received = b""
                for chunk in response.iter_raw():
                    received += chunk
                    if received.count(b"data: {") >= 6:
                        break
        records = [stack.wait_for_record(rid, timeout=10) for rid in rids]
        # Charged what was sent: at least the 6 events read, far from the ~300 tokens of the
        # whole answer or the cap (a loaded host closes late, and Envoy sends on meanwhile).
        seen = [(r["outcome"], r["output_tokens"]) for r in records]
        assert all(outcome == "cancelled" and 8 <= tokens < 150 for outcome, tokens in seen), seen
        charged = 'gateway_cut_streams_total{charged_on="bytes_sent"} 8.0'
        metrics = stack.metrics(charged)
        assert charged in metrics and 'charged_on="output_cap"' not in metrics
    finally:
        stack.stop()


@pytest.mark.parametrize("thinking", [False, True], ids=["plain", "thinking"])
def test_a_gemini_stream_passes_through_decided_from_its_path_and_settles_exactly(stack, thinking):
    """Google's Gemini API names the model and the stream in the path, so a Gemini caller
    on a Gemini model is passed through without the request reader's reading: Envoy reads
    the usageMetadata of the passing chunks, and the budget settles on it exactly."""
    rid = f"pass-{uuid.uuid4()}"
    spent_before = _penny_counter(stack).spent
    before = stack.phase_counts(flushed=True)
    body = {"contents": [{"role": "user", "parts": [{"text": "one two three four"}]}]}
    if thinking:
        body["generationConfig"] = {"thinkingConfig": {"thinkingBudget": 64, "includeThoughts": True}}
    with httpx.stream("POST", f"http://127.0.0.1:{stack.port}/v1beta/models/gemini-2.5-flash:streamGenerateContent",
                      params={"alt": "sse"}, json=body, timeout=30,
                      headers={"x-goog-api-key": "sk-test-penny", "x-request-id": rid,
                               "x-mock-cached-tokens": "2"}) as response:
        assert response.status_code == 200 and response.headers["x-gateway-backend"] == "gemini"
        streamed = b"".join(response.iter_raw())
    moved = stack.phases_moved(before, {"response_trailers": 1, "response_body": 0})
    assert (moved["response_trailers"], moved["response_body"]) == (1, 0)
    assert b'"usageMetadata"' in streamed
    record = stack.wait_for_record(rid)
    provider = _provider_usage(stack, rid)
    assert record["outcome"] == "ok" and not record["usage_estimated"]
    assert (record["input_tokens"], record["output_tokens"], record["cached_tokens"]) == \
        (provider["prompt_tokens"], provider["completion_tokens"], provider["cached_tokens"])
    assert 0 < record["ttft_ms"] <= record["latency_ms"]
    counter = _penny_counter(stack)
    assert counter.held == 0
    assert counter.spent - spent_before == provider["prompt_tokens"] + provider["completion_tokens"]
