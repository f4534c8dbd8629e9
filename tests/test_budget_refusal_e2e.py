"""A budget's 429, through real Envoy: the message names the budget, what the request
needed of it (the estimate reserved: prompt plus the output it may write), what is left
and when the window resets, in each caller dialect's error shape."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from gateway_stack import GatewayStack
from warm_start import run_extproc


def create_key(stack: GatewayStack, *args: str) -> str:
    made = run_extproc(["keys", "create", "--json", "--user", "dana", "--team", "research",
      *args, "--config", str(stack.workdir / "gateway.yaml"), "--state-dir", str(stack.state_dir)],
     capture_output=True, text=True, timeout=60, check=True)
    return json.loads(made.stdout)["key"]


@pytest.fixture(scope="module")
def token_key(gateway) -> str:
    return create_key(gateway, "--budget-tokens", "1000/hour")


def _call(stack: GatewayStack, dialect: str, key: str, model: str, max_tokens: int) -> tuple[httpx.Response, str]:
    """One call in `dialect` with its own credential header; the error message from its shape."""
    root = f"http://127.0.0.1:{stack.port}"
    text = "hello there"
    if dialect == "openai":
        response = httpx.post(f"{root}/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, timeout=30,
                              json={"model": model, "max_tokens": max_tokens,
                                    "messages": [{"role": "user", "content": text}]})
        return response, response.json()["error"]["message"]
    if dialect == "anthropic":
        response = httpx.post(f"{root}/v1/messages", timeout=30,
                              headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                              json={"model": model, "max_tokens": max_tokens,
                                    "messages": [{"role": "user", "content": text}]})
        body = response.json()
        assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error", body
        return response, body["error"]["message"]
    response = httpx.post(f"{root}/v1beta/models/{model}:generateContent", headers={"x-goog-api-key": key},
                          timeout=30, json={"contents": [{"role": "user", "parts": [{"text": text}]}],
                                            "generationConfig": {"maxOutputTokens": max_tokens}})
    body = response.json()
    assert body["error"]["status"] == "RESOURCE_EXHAUSTED", body
    return response, body["error"]["message"]


@pytest.mark.parametrize("dialect", ["openai", "anthropic", "gemini"])
def test_a_token_budget_refusal_says_what_the_request_needed_and_what_is_left(gateway, token_key, dialect):
    response, message = _call(gateway, dialect, token_key, "gpt-4o-mini", 5000)
    assert response.status_code == 429, response.text
    needed = re.search(r"it needs an estimated ([\d,]+) tokens", message)
    assert needed, message
    assert 5000 < int(needed[1].replace(",", "")) < 5100, message       # the output cap and a short prompt
    assert "1,000 tokens left" in message, message
    assert re.search(r"the hour window resets in \d+m?\d*s \(at \d{4}-\d\d-\d\dT\d\d:00:00Z\)", message), message
    assert "sk-" not in message
    assert response.headers["x-ratelimit-remaining-tokens"] == "1000"
    assert int(response.headers["retry-after"]) >= 1


def test_a_usd_budget_refusal_names_dollars(gateway):
    key = create_key(gateway, "--budget-usd", "0.001/day")
    response, message = _call(gateway, "openai", key, "gpt-4o", 4000)
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "budget_exceeded"
    assert re.search(r"it needs an estimated \$0\.0\d+", message), message
    assert "$0.0010 left" in message and "the day window resets in" in message, message
