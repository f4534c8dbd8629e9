"""`GET /v1/gateway/usage`, through real Envoy: a caller sees, with its own key in any
dialect's credential header, what it has spent of every budget that applies to it, what
is left and when each window resets; never another key's budgets; a wrong key gets the
401 of its client's dialect."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from gateway_stack import GatewayStack
from warm_start import run_extproc


def usage(stack: GatewayStack, headers: dict[str, str], query: str = "") -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{stack.port}/v1/gateway/usage{query}", headers=headers, timeout=30)


@pytest.fixture(scope="module")
def erin(gateway) -> str:
    """A run-time key with a token budget and a USD budget of its own."""
    made = run_extproc(["keys", "create", "--json", "--user", "erin", "--team", "research",
      "--budget-tokens", "50000/day", "--budget-usd", "5/month",
      "--config", str(gateway.workdir / "gateway.yaml"), "--state-dir", str(gateway.state_dir)],
     capture_output=True, text=True, timeout=60, check=True)
    return json.loads(made.stdout)["key"]


@pytest.mark.parametrize("header", ["authorization", "x-api-key", "x-goog-api-key", "api-key", "query"])
def test_a_key_sees_its_own_budgets_with_any_dialects_credential(gateway, erin, header):
    headers = {"authorization": f"Bearer {erin}"} if header == "authorization" else \
        {} if header == "query" else {header: erin}
    response = usage(gateway, headers, f"?key={erin}" if header == "query" else "")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["object"] == "gateway.usage"
    assert body["key"]["user"] == "erin" and body["key"]["team"] == "research"
    by_unit = {budget["unit"]: budget for budget in body["budgets"]}
    assert set(by_unit) == {"tokens", "usd"}, body
    assert by_unit["tokens"]["limit"] == 50000 and by_unit["tokens"]["window"] == "day"
    assert by_unit["usd"]["limit"] == 5 and by_unit["usd"]["window"] == "month"
    for budget in body["budgets"]:
        assert budget["scope"] == "key"
        assert budget["resets_at"].endswith("Z") and budget["resets_in_s"] > 0
        assert budget["remaining"] == pytest.approx(budget["limit"] - budget["spent"], abs=1e-6)
    assert erin not in response.text


def test_spend_shows_after_a_call(gateway, erin):
    answered = httpx.post(f"{gateway.base_url}/chat/completions", headers={"authorization": f"Bearer {erin}"},
                          timeout=30, json={"model": "gpt-4o-mini", "max_tokens": 5,
                                            "messages": [{"role": "user", "content": "count my tokens"}]})
    assert answered.status_code == 200, answered.text
    deadline = time.monotonic() + 10           # the workers hand spend to the store every 0.5 s
    while True:
        budgets = {b["unit"]: b for b in usage(gateway, {"authorization": f"Bearer {erin}"}).json()["budgets"]}
        if budgets["tokens"]["spent"] > 0 and budgets["usd"]["spent"] > 0:
            break
        assert time.monotonic() < deadline, budgets
        time.sleep(0.1)
    assert budgets["tokens"]["remaining"] == 50000 - budgets["tokens"]["spent"]


def test_only_the_budgets_that_apply_to_the_caller(gateway):
    bob = usage(gateway, {"authorization": "Bearer sk-demo-bob"}).json()
    assert [b["name"] for b in bob["budgets"]] == ["bob-hourly-tokens"]
    assert bob["budgets"][0]["limit"] == 2000 and bob["budgets"][0]["window"] == "hour"
    alice = usage(gateway, {"x-api-key": "sk-demo-alice"}).json()
    assert alice["key"]["id"] == "alice" and alice["budgets"] == []


def test_a_wrong_key_gets_its_dialects_401(gateway):
    openai = usage(gateway, {"authorization": "Bearer sk-wrong"})
    assert openai.status_code == 401 and openai.json()["error"]["code"] == "invalid_api_key"
    anthropic = usage(gateway, {"x-api-key": "sk-wrong", "anthropic-version": "2023-06-01"})
    assert anthropic.status_code == 401 and anthropic.json()["error"]["type"] == "authentication_error"
    google = usage(gateway, {"x-goog-api-key": "sk-wrong"})
    assert google.status_code == 401 and google.json()["error"]["status"] == "UNAUTHENTICATED"
    missing = usage(gateway, {})
    assert missing.status_code == 401
    assert httpx.post(f"http://127.0.0.1:{gateway.port}/v1/gateway/usage", timeout=30,
                      headers={"authorization": "Bearer sk-demo-alice"}).status_code == 405


def test_a_key_without_a_budget_sees_its_spend_today(gateway):
    """The quickstart meters each key alone (metering.dimensions: [key]): a key with no
    budget of its own (alice) still sees what it spent today, and it grows with a call."""
    alice = {"authorization": "Bearer sk-demo-alice"}
    before = usage(gateway, alice).json()["today"]
    assert set(before) == {"requests", "input_tokens", "output_tokens", "usd"}
    answered = httpx.post(f"{gateway.base_url}/chat/completions", headers=alice, timeout=30,
                          json={"model": "gpt-4o-mini", "max_tokens": 5,
                                "messages": [{"role": "user", "content": "what did I spend today?"}]})
    assert answered.status_code == 200, answered.text
    spent = answered.json()["usage"]
    deadline = time.monotonic() + 10           # the workers hand spend to the store every 0.5 s
    while True:
        after = usage(gateway, alice).json()["today"]
        if after["requests"] > before["requests"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert after["requests"] >= before["requests"] + 1
    assert after["input_tokens"] >= before["input_tokens"] + spent["prompt_tokens"]
    assert after["usd"] > before["usd"]
