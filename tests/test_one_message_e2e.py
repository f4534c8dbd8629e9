"""The one-message response (stages/one_message.py) through real Envoy: which calls
take it, that the client still gets everything the gateway adds to a response, and
that a body telling Envoy one thing and the service another is refused."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pytest

from extproc.metrics import FLUSH_INTERVAL

ALICE = {"authorization": "Bearer sk-demo-alice", "content-type": "application/json"}
CHAT = [{"role": "user", "content": "one two three"}]

# (what, path, body, whether the service gets a response-headers message)
CALLS = [
    ("JSON chat, concrete model", "/chat/completions", {"model": "gpt-4o-mini", "messages": CHAT}, False),
    ("stream: false said", "/chat/completions",
     {"model": "gpt-4o", "stream": False, "messages": CHAT}, False),
    ("embeddings", "/embeddings", {"model": "text-embedding-3-small", "input": ["a"]}, False),
    ("responses API", "/responses", {"model": "gpt-4o-mini", "input": "respond please"}, False),
    ("legacy completions", "/completions", {"model": "gpt-4o-mini", "prompt": "complete me"}, False),
    # (A concrete model's stream is passed through: test_pass_through_e2e.py.)
    ("streamed virtual model: the mode is chosen on its headers", "/chat/completions",
     {"model": "smart", "stream": True, "messages": CHAT}, True),
    ("virtual model: its headers name the backend that served", "/chat/completions",
     {"model": "smart", "messages": CHAT}, True),
]


def _phase_count(gateway, phase: str) -> float:
    text = httpx.get(f"{gateway.admin_url}/metrics").text
    found = re.search(rf'gateway_extproc_processing_seconds_count{{phase="{phase}"}} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def _settled_count(gateway, phase: str, before: float, expected: float) -> float:
    """The phase's count once both workers have flushed their metrics after the call."""
    deadline = time.monotonic() + 5
    time.sleep(3 * FLUSH_INTERVAL)
    count = _phase_count(gateway, phase)
    while count < before + expected and time.monotonic() < deadline:
        time.sleep(FLUSH_INTERVAL)
        count = _phase_count(gateway, phase)
    return count


@pytest.mark.parametrize("what,path,body,headers_message", CALLS, ids=[c[0] for c in CALLS])
def test_which_calls_take_one_message_and_what_they_still_get(gateway, what, path, body, headers_message):
    rid = f"one-{uuid.uuid4()}"
    before = {phase: _phase_count(gateway, phase) for phase in ("response_headers", "response_body")}
    response = httpx.post(f"{gateway.base_url}{path}", json=body, headers={**ALICE, "x-request-id": rid},
                          timeout=30)
    assert response.status_code == 200, response.text
    after = _settled_count(gateway, "response_headers", before["response_headers"], int(headers_message))
    assert after - before["response_headers"] == int(headers_message)
    assert _phase_count(gateway, "response_body") > before["response_body"]
    # What the service adds to a response reaches the client either way (one message:
    # Envoy adds it from the metadata the service set with the request body).
    assert response.headers["x-gateway-backend"] == ("mock-backup" if body["model"] == "smart" else "mock")
    assert response.headers["x-request-id"] == rid
    if not body.get("stream"):
        assert response.headers["content-type"] == "application/json"
        assert response.json()["usage"]
    record = gateway.wait_for_record(rid)
    assert record["outcome"] == "ok" and record["status"] == 200
    assert record["input_tokens"] > 0 and not record["usage_estimated"]


def test_other_calls_get_none_of_the_one_message_headers(gateway):
    """The headers Envoy adds from metadata must not appear, empty or stale, elsewhere."""
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", headers=ALICE, timeout=30,
                      json={"model": "gpt-4o-mini", "stream": True, "messages": CHAT}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-gateway-backend"] == "mock"
        assert "x-ratelimit-limit-tokens" not in response.headers     # alice has no token budget
        assert b"data: [DONE]" in response.read()


def test_a_repeated_stream_key_is_read_alike_by_envoy_and_the_service(gateway):
    """Envoy's json_to_metadata and the service both take a repeated key's last value, so
    a stream announced as not streamed still streams (were they to differ, the service
    refuses the call: tests/test_one_message.py)."""
    body = b'{"model":"gpt-4o-mini","stream":false,"messages":[{"role":"user","content":"hi"}],"stream":true}'
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", content=body, headers=ALICE,
                      timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert b"data: [DONE]" in response.read()
