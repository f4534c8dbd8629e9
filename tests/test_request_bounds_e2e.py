"""A request's arrays are bounded (api/request_bounds.py), through real Envoy: 100,000
messages, contents, input items, parts, stop sequences or embedding inputs are a prompt
400 in the caller's dialect naming the field and the limit, not a worker held past
Envoy's message timeout (a 504); a long conversation within the limits still goes on."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest
from any_json import error_of

from extproc.api.request_bounds import MAX_ITEMS, MAX_PARTS, MAX_STOPS

HEADERS = {"authorization": "Bearer sk-demo-alice", "anthropic-version": "2023-06-01",
           "content-type": "application/json"}
GEMINI = "/v1beta/models/gemini-2.5-flash:generateContent"
MANY = 100_000
TURN = {"role": "user", "content": "hi"}
PART = {"type": "text", "text": "hi"}
CLAUDE = {"model": "claude-sonnet-4-6", "max_tokens": 5}
# (what, the field the refusal names, its limit, route, dialect, body)
CASES = [
    ("chat messages", "messages", MAX_ITEMS, "/v1/chat/completions", "openai",
     {"model": "gpt-4o-mini", "messages": [TURN] * MANY}),
    ("chat parts", "messages[0].content", MAX_PARTS, "/v1/chat/completions", "openai",
     {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [PART] * MANY}]}),
    ("chat stop sequences", "stop", MAX_STOPS, "/v1/chat/completions", "openai",
     {"model": "gpt-4o-mini", "messages": [TURN], "stop": ["x"] * MANY}),
    ("responses input items", "input", MAX_ITEMS, "/v1/responses", "openai",
     {"model": "gpt-4o-mini", "input": [TURN] * MANY}),
    ("completions prompts", "prompt", MAX_ITEMS, "/v1/completions", "openai",
     {"model": "gpt-4o-mini", "prompt": ["hi"] * MANY}),
    ("embeddings inputs", "input", MAX_ITEMS, "/v1/embeddings", "openai",
     {"model": "text-embedding-3-small", "input": ["hi"] * MANY}),
    ("anthropic messages", "messages", MAX_ITEMS, "/v1/messages", "anthropic", {**CLAUDE, "messages": [TURN] * MANY}),
    ("anthropic blocks", "messages[0].content", MAX_PARTS, "/v1/messages", "anthropic",
     {**CLAUDE, "messages": [{"role": "user", "content": [PART] * MANY}]}),
    ("anthropic stop sequences", "stop_sequences", MAX_STOPS, "/v1/messages", "anthropic",
     {**CLAUDE, "messages": [TURN], "stop_sequences": ["x"] * MANY}),
    ("gemini contents", "contents", MAX_ITEMS, GEMINI, "google",
     {"contents": [{"role": "user", "parts": [{"text": "hi"}]}] * MANY}),
    ("gemini parts", "contents[0].parts", MAX_PARTS, GEMINI, "google",
     {"contents": [{"role": "user", "parts": [{"text": "hi"}] * MANY}]}),
    ("gemini stop sequences", "generationConfig.stopSequences", MAX_STOPS, GEMINI, "google",
     {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "generationConfig": {"stopSequences": ["x"] * MANY}}),
]


def _post(gateway, route: str, body: dict) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{gateway.port}{route}", content=orjson.dumps(body), headers=HEADERS,
                      timeout=30)


@pytest.mark.parametrize("what,field,limit,route,dialect,body", CASES, ids=[case[0] for case in CASES])
def test_a_hundred_thousand_items_are_a_prompt_400_naming_the_limit(gateway, what, field, limit, route, dialect,
                                                                     body):
    started = time.monotonic()
    done = _post(gateway, route, body)
    assert done.status_code == 400, (done.status_code, done.text[:300])
    message = error_of(dialect, 400, done.content)["message"]
    assert message == f"'{field}' holds more than {limit} items, the gateway's limit.", message
    assert time.monotonic() - started < 2, "refused only after Envoy's message timeout would have passed"


@pytest.mark.parametrize("route,body", [
    ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [TURN] * 1000, "stop": ["x"] * 4}),
    (GEMINI, {"contents": [{"role": "user", "parts": [{"text": "hi"}] * 50}] * 100}),
])
def test_a_long_conversation_within_the_limits_goes_on(gateway, route, body):
    done = _post(gateway, route, body)
    assert done.status_code == 200, done.text[:300]
