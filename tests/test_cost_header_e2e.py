"""`x-gateway-cost-usd` through real Envoy: a JSON answer carries what the call was
charged (the log line's cost) whether the service saw its response headers or not, in
both dialects; a stream carries the reservation's price basis in the header, and a stream
the gateway reads carries the final cost in its usage."""

from __future__ import annotations

import json
import uuid

import anthropic
import httpx
import pytest

ALICE = {"authorization": "Bearer sk-demo-alice", "content-type": "application/json"}
CHAT = [{"role": "user", "content": "one two three"}]


def _cost(headers) -> float:
    value = headers["x-gateway-cost-usd"]
    assert "e" not in value.lower()               # fixed point, never an exponent
    return float(value)


# (what, path, body): JSON answers of each kind, one message or two.
JSON_CALLS = [
    ("chat, one message", "/chat/completions", {"model": "gpt-4o-mini", "messages": CHAT}),
    ("responses API", "/responses", {"model": "gpt-4o", "input": "respond please"}),
    ("virtual model after a failover, two messages", "/chat/completions", {"model": "smart", "messages": CHAT}),
    ("OpenAI caller translated to Anthropic", "/chat/completions",
     {"model": "claude-sonnet-4-6", "messages": CHAT, "max_tokens": 50}),
    # (Google's answers say `application/json; charset=UTF-8`: held until the cost is known too)
    ("Gemini caller, one message", "/models/gemini-2.5-flash:generateContent",
     {"contents": [{"role": "user", "parts": [{"text": "one two three"}]}]}),
]


@pytest.mark.parametrize("what,path,body", JSON_CALLS, ids=[c[0] for c in JSON_CALLS])
def test_a_json_answer_carries_what_the_call_was_charged(gateway, what, path, body):
    rid = f"cost-{uuid.uuid4()}"
    response = httpx.post(f"{gateway.base_url}{path}", json=body, timeout=30,
                          headers={**ALICE, "x-request-id": rid, "x-mock-cached-tokens": "2"})
    assert response.status_code == 200, response.text
    record = gateway.wait_for_record(rid)
    assert record["cost_usd"] > 0
    assert _cost(response.headers) == pytest.approx(record["cost_usd"], abs=1e-8)
    if body.get("model", "gemini") not in ("claude-sonnet-4-6", "gemini"):     # priced from the shipped table
        assert record["cost_usd"] == pytest.approx(gateway.expected_cost(record))


def test_an_anthropic_caller_gets_the_cost_of_its_message(gateway):
    claude = anthropic.Anthropic(base_url=gateway.base_url.removesuffix("/v1"), api_key="sk-demo-alice",
                                 max_retries=0)
    rid = f"cost-{uuid.uuid4()}"
    raw = claude.messages.with_raw_response.create(
        model="claude-sonnet-4-6", max_tokens=100, messages=[{"role": "user", "content": "hello there"}],
        extra_headers={"x-request-id": rid})
    message = raw.parse()
    record = gateway.wait_for_record(rid)
    assert record["output_tokens"] == message.usage.output_tokens
    assert record["cost_usd"] > 0
    assert _cost(raw.headers) == pytest.approx(record["cost_usd"], abs=1e-8)


def test_a_provider_error_costs_nothing_and_says_so(gateway):
    rid = f"cost-{uuid.uuid4()}"
    response = httpx.post(f"{gateway.base_url}/chat/completions", timeout=30,
                          json={"model": "gpt-4o-mini", "messages": CHAT},
                          headers={**ALICE, "x-request-id": rid, "x-mock-status": "400"})
    assert response.status_code == 400
    record = gateway.wait_for_record(rid)
    assert _cost(response.headers) == 0.0 and record["cost_usd"] == 0


def test_a_refusal_before_any_provider_has_no_cost_header(gateway):
    response = httpx.post(f"{gateway.base_url}/chat/completions", timeout=30,
                          json={"model": "no-such-model", "messages": CHAT}, headers=ALICE)
    assert response.status_code == 404
    assert "x-gateway-cost-usd" not in response.headers


def test_a_stream_passed_through_carries_the_reservation_basis(gateway):
    rid = f"cost-{uuid.uuid4()}"
    body = {"model": "gpt-4o-mini", "messages": CHAT, "stream": True, "max_tokens": 40,
            "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", json=body, timeout=30,
                      headers={**ALICE, "x-request-id": rid}) as response:
        assert response.status_code == 200
        basis = _cost(response.headers)
        text = response.read().decode()
    record = gateway.wait_for_record(rid)
    # The prompt counted offline and the whole output cap, at the model's price: above
    # what the call spent (its answer is shorter than the cap), and the charge is logged.
    assert basis > record["cost_usd"] > 0
    assert basis >= 40 * 0.60 / 1e6
    assert "cost_usd" not in text                 # passed through unseen: the stream is the provider's


def test_a_stream_the_gateway_reads_carries_its_cost_in_the_usage_chunk(gateway):
    """A virtual model's stream is read chunk by chunk: its usage chunk gets the cost."""
    rid = f"cost-{uuid.uuid4()}"
    body = {"model": "smart", "messages": CHAT, "stream": True, "max_tokens": 40,
            "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", json=body, timeout=30,
                      headers={**ALICE, "x-request-id": rid}) as response:
        assert response.status_code == 200
        basis = _cost(response.headers)
        events = [json.loads(line[6:]) for line in response.iter_lines()
                  if line.startswith("data: {")]
    usage_chunks = [e for e in events if e.get("usage")]
    assert len(usage_chunks) == 1
    record = gateway.wait_for_record(rid)
    assert usage_chunks[0]["usage"]["cost_usd"] == pytest.approx(record["cost_usd"], abs=1e-8)
    assert record["cost_usd"] > 0 and basis >= record["cost_usd"]


def test_an_anthropic_stream_carries_the_reservation_basis(gateway):
    """An Anthropic caller's stream on the Anthropic provider passes through: the header
    carries the reservation's price basis, the charge is on the log line."""
    claude = anthropic.Anthropic(base_url=gateway.base_url.removesuffix("/v1"), api_key="sk-demo-alice",
                                 max_retries=0)
    rid = f"cost-{uuid.uuid4()}"
    with claude.messages.with_streaming_response.create(
            model="claude-sonnet-4-6", max_tokens=60, stream=True,
            messages=[{"role": "user", "content": "hello there"}],
            extra_headers={"x-request-id": rid}) as response:
        basis = _cost(response.headers)
        for _ in response.iter_lines():
            pass
    record = gateway.wait_for_record(rid)
    assert basis > record["cost_usd"] > 0


def test_a_stream_translated_to_the_callers_dialect_carries_its_cost_in_the_usage(gateway):
    """An OpenAI caller's stream from the Anthropic provider: the usage chunk the gateway
    writes in Chat Completions carries the call's cost, as a stream it reads untranslated."""
    rid = f"cost-{uuid.uuid4()}"
    body = {"model": "claude-sonnet-4-6", "messages": CHAT, "stream": True, "max_tokens": 40,
            "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", json=body, timeout=30,
                      headers={**ALICE, "x-request-id": rid}) as response:
        assert response.status_code == 200
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    [usage_chunk] = [e for e in events if e.get("usage")]
    record = gateway.wait_for_record(rid)
    assert record["cost_usd"] > 0
    assert usage_chunk["usage"]["cost_usd"] == pytest.approx(record["cost_usd"], abs=1e-8)


def test_an_anthropic_callers_stream_translated_from_openai_carries_its_cost(gateway):
    """An Anthropic caller's stream from an OpenAI model: its message_delta's usage
    carries the call's cost."""
    rid = f"cost-{uuid.uuid4()}"
    body = {"model": "gpt-4o-mini", "max_tokens": 40, "stream": True,
            "messages": [{"role": "user", "content": "hello there"}]}
    headers = {"x-api-key": "sk-demo-alice", "anthropic-version": "2023-06-01",
               "content-type": "application/json", "x-request-id": rid}
    with httpx.stream("POST", f"{gateway.base_url}/messages", json=body, timeout=30, headers=headers) as response:
        assert response.status_code == 200
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    [delta] = [e for e in events if e.get("type") == "message_delta"]
    record = gateway.wait_for_record(rid)
    assert record["cost_usd"] > 0
    assert delta["usage"]["cost_usd"] == pytest.approx(record["cost_usd"], abs=1e-8)
