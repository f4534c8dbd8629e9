"""The one-message response (stages/one_message.py) through real Envoy: which calls
take it, that the client still gets everything the gateway adds to a response, and
that a body telling Envoy one thing and the service another is refused."""

from __future__ import annotations

import uuid

import httpx
import pytest
from gateway_stack import GatewayStack

ALICE = {"authorization": "Bearer sk-demo-alice", "content-type": "application/json"}
CHAT = [{"role": "user", "content": "one two three"}]

# (what, path, body, whether the service gets a response-headers message)
CALLS = [
    ("JSON chat, concrete model", "/chat/completions", {"model": "gpt-4o-mini", "messages": CHAT}, False),
    ("stream: false said", "/chat/completions",
     {"model": "gpt-4o", "stream": False, "messages": CHAT}, False),
    # (An embeddings answer may be too large to buffer: it streams by, chosen on its headers.)
    ("embeddings", "/embeddings", {"model": "text-embedding-3-small", "input": ["a"]}, True),
    ("responses API", "/responses", {"model": "gpt-4o-mini", "input": "respond please"}, False),
    ("legacy completions", "/completions", {"model": "gpt-4o-mini", "prompt": "complete me"}, False),
    # (A concrete model's stream is passed through: test_pass_through_e2e.py.)
    ("streamed virtual model: the mode is chosen on its headers", "/chat/completions",
     {"model": "smart", "stream": True, "messages": CHAT}, True),
    ("virtual model: its headers name the backend that served", "/chat/completions",
     {"model": "smart", "messages": CHAT}, True),
]


@pytest.mark.parametrize("what,path,body,headers_message", CALLS, ids=[c[0] for c in CALLS])
def test_which_calls_take_one_message_and_what_they_still_get(gateway, what, path, body, headers_message):
    rid = f"one-{uuid.uuid4()}"
    before = gateway.phase_counts(flushed=True)     # the shared gateway: earlier tests' calls counted
    response = httpx.post(f"{gateway.base_url}{path}", json=body, timeout=30,
                          headers={**ALICE, "x-request-id": rid, "x-mock-cached-tokens": "2"})
    assert response.status_code == 200, response.text
    assert gateway.phase_moved(before, "response_headers", int(headers_message)) == int(headers_message)
    assert gateway.phase_counts()["response_body"] > before["response_body"]
    # What the service adds to a response reaches the client either way (one message:
    # Envoy adds it from the metadata the service set with the request body).
    assert response.headers["x-gateway-backend"] == ("mock-backup" if body["model"] == "smart" else "mock")
    gateway_id = response.headers["x-request-id"]              # the gateway's own, not the caller's
    assert gateway_id != rid and str(uuid.UUID(gateway_id)) == gateway_id
    if not body.get("stream"):
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["usage"]
    record = gateway.wait_for_record(rid)
    assert (record["request_id"], record["client_request_id"]) == (gateway_id, rid)
    assert record["outcome"] == "ok" and record["status"] == 200
    assert record["input_tokens"] > 0 and not record["usage_estimated"]
    # Prompt-cache reads (embeddings have none) are billed at the cached price.
    assert record["cached_tokens"] == (0 if path == "/embeddings" else 2)
    assert record["cost_usd"] == pytest.approx(gateway.expected_cost(record))


def test_other_calls_get_none_of_the_one_message_headers(gateway):
    """The headers Envoy adds from metadata must not appear, empty or stale, elsewhere."""
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", headers=ALICE, timeout=30,
                      json={"model": "gpt-4o-mini", "stream": True, "messages": CHAT}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-gateway-backend"] == "mock"
        assert "x-ratelimit-limit-tokens" not in response.headers     # alice has no token budget
        assert b"data: [DONE]" in response.read()


def test_a_repeated_stream_key_is_refused_before_any_response_path_is_taken(gateway):
    """A parser may take a repeated key's last value, a provider the first: the call is
    refused at its body (400), whatever response path Envoy's metadata had set up
    (extproc/api/repeated_keys.py; Envoy's request reader reads nothing from it)."""
    gateway.clear_received()
    body = b'{"model":"gpt-4o-mini","stream":false,"messages":[{"role":"user","content":"hi"}],"stream":true}'
    response = httpx.post(f"{gateway.base_url}/chat/completions", content=body, headers=ALICE, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    assert "repeats the key 'stream'" in response.json()["error"]["message"]
    assert gateway.received() == []


class _NothingAnnounced(GatewayStack):
    """An operator's own Envoy config: the same filters, but its ext_proc filter announces
    nothing, so the service relies on none of them."""

    def edit_envoy(self, envoy: dict) -> None:
        manager = envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        [ext_proc] = [f["typed_config"] for f in manager["http_filters"]
                      if f["name"] == "envoy.filters.http.ext_proc"]
        del ext_proc["grpc_service"]["initial_metadata"]


@pytest.fixture(scope="module")
def unannounced(tmp_path_factory):
    gateway = _NothingAnnounced(tmp_path_factory.mktemp("nothing-announced")).start()
    yield gateway
    gateway.stop()


UNANNOUNCED_CALLS = [
    ("JSON chat", {"model": "gpt-4o-mini", "messages": CHAT}),
    ("stream, usage not asked", {"model": "gpt-4o-mini", "stream": True, "messages": CHAT}),
    ("stream, usage asked", {"model": "gpt-4o-mini", "stream": True, "messages": CHAT,
                             "stream_options": {"include_usage": True}}),
]


@pytest.mark.parametrize("what,body", UNANNOUNCED_CALLS, ids=[c[0] for c in UNANNOUNCED_CALLS])
def test_an_envoy_that_announces_nothing_gets_every_response_headers_message(unannounced, what, body):
    """JSON answers keep their two messages and streams go chunk by chunk (one message
    per chunk): the client gets the same answer, the gateway's headers and, for a stream,
    the usage exactly when it asked."""
    rid = f"unannounced-{uuid.uuid4()}"
    before = unannounced.phase_counts(flushed=True)
    response = httpx.post(f"{unannounced.base_url}/chat/completions", json=body,
                          headers={**ALICE, "x-request-id": rid}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["x-gateway-backend"] == "mock"
    if body.get("stream"):
        assert response.text.rstrip().endswith("data: [DONE]")
        asked = "stream_options" in body             # (then "usage":null is in every chunk, as OpenAI sends)
        assert ('"usage":{' in response.text) is asked and ('"usage":null' in response.text) is asked
    else:
        assert response.json()["usage"]["total_tokens"] > 0
    assert unannounced.phase_moved(before, "response_headers", 1) == 1
    assert unannounced.phase_counts()["response_trailers"] == before["response_trailers"]
    record = unannounced.wait_for_record(rid)
    assert record["outcome"] == "ok" and not record["usage_estimated"] and record["output_tokens"] > 0
