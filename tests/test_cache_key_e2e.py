"""The response cache's key covers what the provider receives, through real Envoy: two
calls that differ only in something the provider gets (a message's `name`, sent as it
is to a provider of the caller's dialect; an `anthropic-beta` or `openai-beta` header)
never share an entry, so no caller can plant an answer another receives; identical calls
still hit, and the SDKs' own headers (user-agent, x-stainless-*) and the request id do
not split entries."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from gateway_stack import GatewayStack, quickstart_config


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    config = quickstart_config(response_cache=True)
    config["cache"] = {"rules": [{"models": ["gpt-4o-mini", "claude-sonnet-4-6"], "scope": "team", "ttl_s": 600}]}
    stack = GatewayStack(tmp_path_factory.mktemp("cache-key"), config, workers=1).start()
    yield stack
    stack.stop()


def _calls_with(stack: GatewayStack, text: str, listener: str = "mock") -> int:
    return sum(text in json.dumps(entry) for entry in stack.received(listener))


def _chat(stack, prompt: str, name: str | None = None, headers: dict | None = None,
          key: str = "sk-demo-alice") -> httpx.Response:
    message = {"role": "user", "content": prompt, **({"name": name} if name is not None else {})}
    return httpx.post(f"{stack.base_url}/chat/completions", timeout=30,
                      headers={"authorization": f"Bearer {key}", **(headers or {})},
                      json={"model": "gpt-4o-mini", "max_tokens": 40, "messages": [message]})


def _messages(stack, prompt: str, headers: dict | None = None) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{stack.port}/v1/messages", timeout=30,
                      headers={"x-api-key": "sk-demo-alice", "anthropic-version": "2023-06-01", **(headers or {})},
                      json={"model": "claude-sonnet-4-6", "max_tokens": 40,
                            "messages": [{"role": "user", "content": prompt}]})


def _results(*answers: httpx.Response) -> list[str]:
    for answer in answers:
        assert answer.status_code == 200, answer.text[:300]
    return [answer.headers.get("x-gateway-cache") for answer in answers]


def test_a_message_name_the_provider_receives_is_part_of_the_key(stack):
    prompt = f"who am I speaking as {uuid.uuid4().hex[:12]}"
    assert _results(_chat(stack, prompt, name="alice")) == ["miss"]
    # Another name (or none) reaches the provider as it is: another question.
    assert _results(_chat(stack, prompt, name="mallory"), _chat(stack, prompt)) == ["miss", "miss"]
    assert _calls_with(stack, prompt) == 3
    # The same call again is a hit, whatever its SDK headers and request id say.
    again = _chat(stack, prompt, name="alice", headers={"user-agent": "another/1.0", "x-stainless-retry-count": "1",
                                                         "x-request-id": uuid.uuid4().hex})
    assert _results(again, _chat(stack, prompt)) == ["hit", "hit"]
    assert _calls_with(stack, prompt) == 3


def test_an_openai_beta_header_is_part_of_the_key(stack):
    prompt = f"which beta {uuid.uuid4().hex[:12]}"
    first = _chat(stack, prompt, headers={"openai-beta": "assistants=v2"})
    other = _chat(stack, prompt, headers={"openai-beta": "realtime=v1"})
    none = _chat(stack, prompt)
    assert _results(first, other, none) == ["miss", "miss", "miss"]
    assert _results(_chat(stack, prompt, headers={"openai-beta": "assistants=v2"})) == ["hit"]
    assert _calls_with(stack, prompt) == 3


def test_an_anthropic_beta_header_is_part_of_the_key(stack):
    prompt = f"which anthropic beta {uuid.uuid4().hex[:12]}"
    first = _messages(stack, prompt, {"anthropic-beta": "context-1m-2025-08-07"})
    other = _messages(stack, prompt, {"anthropic-beta": "interleaved-thinking-2025-05-14"})
    none = _messages(stack, prompt)
    assert _results(first, other, none) == ["miss", "miss", "miss"]
    assert _results(_messages(stack, prompt, {"anthropic-beta": "context-1m-2025-08-07"}), _messages(stack, prompt)) \
        == ["hit", "hit"]
    assert _calls_with(stack, prompt, "mock-anthropic") == 3
