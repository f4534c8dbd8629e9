"""Any bytes in any string of a request, through real Envoy, are never a 5xx: bytes that
are not UTF-8 (a stray continuation byte, an overlong or truncated sequence, an encoded
surrogate, a code point past U+10FFFF), lone surrogates written as escapes (`"\\ud800"`),
and NULs (raw, which no JSON string may hold, or escaped) spliced into every string (keys
too) of a request of each dialect (OpenAI's chat, Responses, completions and embeddings,
Anthropic's Messages, Google's generateContent). Each answer is the request going on or a
4xx in the caller's dialect; never a 5xx (Envoy's request reader passes on no model name
that is not ASCII, and the service refuses a body that is not UTF-8 JSON with a 400)."""

from __future__ import annotations

import re

import httpx
import orjson
import pytest
from any_json import error_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from property_examples import examples

HEADERS = {"authorization": "Bearer sk-demo-alice", "anthropic-version": "2023-06-01",
           "content-type": "application/json"}
TOOL = {"type": "object", "properties": {"city": {"type": "string", "description": "Where"}}}
# (route, dialect, a request with strings in the places each dialect has them)
SEEDS = [
    ("/v1/chat/completions", "openai", {
        "model": "gpt-4o-mini", "user": "u1", "stop": ["END"], "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "hello there"}]},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {
                "name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather", "parameters": TOOL}}]}),
    ("/v1/responses", "openai", {"model": "gpt-4o-mini", "instructions": "Be brief.", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "hello there"}]},
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"}]}),
    ("/v1/completions", "openai", {"model": "gpt-4o-mini", "prompt": "hello there", "suffix": "end", "max_tokens": 5}),
    ("/v1/embeddings", "openai", {"model": "text-embedding-3-small", "input": ["hello there", "again"]}),
    ("/v1/messages", "anthropic", {
        "model": "claude-sonnet-4-6", "max_tokens": 20, "system": "Be brief.", "stop_sequences": ["END"],
        "messages": [{"role": "user", "content": "hello there"},
                     {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "weather",
                                                        "input": {"city": "Paris"}}]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}]}],
        "tools": [{"name": "weather", "description": "Weather", "input_schema": TOOL}]}),
    ("/v1beta/models/gemini-2.5-flash:generateContent", "google", {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [{"role": "user", "parts": [{"text": "hello there"}]},
                     {"role": "model", "parts": [{"functionCall": {"name": "weather", "args": {"city": "Paris"}}}]},
                     {"role": "user", "parts": [{"functionResponse": {"name": "weather",
                                                                       "response": {"sky": "sunny"}}}]}],
        "generationConfig": {"stopSequences": ["END"]},
        "tools": [{"functionDeclarations": [{"name": "weather", "description": "Weather", "parameters": TOOL}]}]}),
]
# Byte sequences no JSON text may hold, and escapes that are JSON but odd.
SPLICES = [
    b"\xc0",                    # a byte that never starts a UTF-8 sequence (the reported 500)
    b"\x80",                    # a continuation byte alone
    b"\xe2\x82",                # a sequence cut short
    b"\xc0\xaf",                # an overlong '/'
    b"\xed\xa0\x80",            # a surrogate, encoded
    b"\xf4\x90\x80\x80",        # past U+10FFFF
    b"\xff\xfe",
    b"\\ud800",                 # a lone high surrogate, escaped
    b"\\udfff x",               # a lone low surrogate
    b"\\ud800\\u0041",          # a high surrogate before a non-surrogate
    b"\x00",                    # a raw NUL (a control character: not JSON)
    b"\\u0000",                 # an escaped NUL (JSON)
]
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def _strings(raw: bytes) -> list[tuple[int, int]]:
    """Where each JSON string's content lies in `raw` (keys and values), as (start, end)."""
    return [(m.start() + 1, m.end() - 1) for m in _STRING.finditer(raw)]


def _spliced(raw: bytes, where: tuple[int, int], splice: bytes, at: float = 0.5) -> bytes:
    start, end = where
    cut = start + int((end - start) * at)
    return raw[:cut] + splice + raw[cut:]


def _check(gateway, route: str, dialect: str, body: bytes) -> None:
    done = httpx.post(f"http://127.0.0.1:{gateway.port}{route}", content=body, headers=HEADERS, timeout=30)
    assert done.status_code < 500, (done.status_code, done.text[:300], body[:200])
    if done.status_code >= 400:
        error_of(dialect, done.status_code, done.content)


@pytest.mark.parametrize("route,dialect,seed", SEEDS, ids=[s[0].rsplit("/", 1)[-1] for s in SEEDS])
def test_bad_bytes_in_every_string_are_a_4xx_in_the_callers_dialect(gateway, route, dialect, seed):
    raw = orjson.dumps(seed)
    _check(gateway, route, dialect, raw)                 # the seed itself goes on
    places = _strings(raw)
    for index, where in enumerate(places):
        # Every splice into the model's name (Envoy's request reader reads it), and into
        # the other strings one splice after another, each string meeting several.
        splices = SPLICES if raw[where[0]:where[1]] in (b"model", b"gpt-4o-mini", b"claude-sonnet-4-6",
                                                         b"text-embedding-3-small") \
            else [SPLICES[(index + k) % len(SPLICES)] for k in range(4)]
        for splice in splices:
            _check(gateway, route, dialect, _spliced(raw, where, splice))


@pytest.mark.parametrize("route", ["/v1/responses", "/v1/completions", "/v1/chat/completions"])
def test_a_model_name_not_in_utf8_is_a_400_saying_so(gateway, route):
    """The reported case: a 400 naming the problem, not Envoy's 500."""
    body = b'{"model": "gpt-4o-m\xc0ni", "input": "hello there", "prompt": "hi", "messages": []}'
    done = httpx.post(f"http://127.0.0.1:{gateway.port}{route}", content=body, headers=HEADERS, timeout=30)
    assert done.status_code == 400, done.text[:300]
    assert "UTF-8" in error_of("openai", 400, done.content)["message"]


@settings(max_examples=examples(60), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.sampled_from(SEEDS), place=st.floats(0, 1, exclude_max=True), at=st.floats(0, 1),
       splice=st.binary(min_size=1, max_size=6) | st.sampled_from(SPLICES))
def test_any_bytes_in_any_string_are_never_a_5xx(gateway, seed, place, at, splice):
    route, dialect, body = seed
    raw = orjson.dumps(body)
    places = _strings(raw)
    _check(gateway, route, dialect, _spliced(raw, places[int(place * len(places))], splice, at))
