"""Spend caps through real Envoy: a call whose reservation costs more than its key's or
team's per-call cap is refused in the caller's dialect before any provider sees it; a
session (the `x-gateway-session` header) is stopped once its budget has no room, while
other sessions and calls without one go on."""

from __future__ import annotations

import anthropic
import openai
import pytest
from gateway_stack import GatewayStack, quickstart_config

CHAT = [{"role": "user", "content": "hello there"}]
SESSION_USD = 0.0004


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    config = quickstart_config()
    config["caps"] = {
        "per_call": [{"scope": "team", "match": "support", "max_cost_usd_per_call": 0.0003},
                     {"scope": "key", "match": "alice", "max_cost_usd_per_call": 0.01}],
        "session": {"ttl_s": 3600, "max_cost_usd": SESSION_USD},
    }
    config["budgets"] = []
    gateway = GatewayStack(tmp_path_factory.mktemp("caps"), config).start()
    yield gateway
    gateway.stop()


def test_a_call_dearer_than_its_teams_cap_is_refused_before_the_provider(stack):
    bob = openai.OpenAI(base_url=stack.base_url, api_key="sk-demo-bob", max_retries=0)
    cheap = bob.chat.completions.create(model="gpt-4o-mini", messages=CHAT, max_tokens=100)
    assert cheap.choices[0].message.content
    stack.clear_received()
    with pytest.raises(openai.BadRequestError) as refused:
        bob.chat.completions.create(model="gpt-4o-mini", messages=CHAT, max_tokens=1000)   # $0.0006 of output
    error = refused.value.body
    assert refused.value.status_code == 400 and error["code"] == "cost_cap_exceeded"
    assert "0.0003" in error["message"] and "max_tokens" in error["message"]
    assert stack.received() == []
    record = stack.wait_for_record(predicate=lambda r: r.get("error_code") == "cost_cap_exceeded")
    assert record["outcome"] == "refused" and record["key_id"] == "bob"


def test_an_anthropic_caller_is_refused_in_its_own_dialect(stack):
    claude = anthropic.Anthropic(base_url=stack.base_url.removesuffix("/v1"), api_key="sk-demo-alice", max_retries=0)
    small = claude.messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=CHAT)
    assert small.content[0].text
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.create(model="claude-sonnet-4-6", max_tokens=4000, messages=CHAT)   # $0.06 at $15/M
    body = refused.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "0.01" in body["error"]["message"]


def test_a_runaway_session_is_stopped_and_others_go_on(stack):
    alice = openai.OpenAI(base_url=stack.base_url, api_key="sk-demo-alice", max_retries=0)
    session = {"x-gateway-session": "run-42"}
    spent, answered = 0.0, 0
    with pytest.raises(openai.RateLimitError) as stopped:
        for _ in range(40):
            raw = alice.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=CHAT, max_tokens=20, extra_headers=session)
            spent += float(raw.headers["x-gateway-cost-usd"])
            answered += 1
    assert 1 < answered < 40
    assert spent <= SESSION_USD + 1e-9                     # the reservation kept it under its budget
    error = stopped.value
    assert error.body["code"] == "budget_exceeded" and "x-gateway-session" in error.body["message"]
    # The window began with the session's first call, moments ago: it ends ~ttl_s from then.
    assert 3500 < int(error.response.headers["retry-after"]) <= 3600
    # Another session, and a call without one, are not held by it.
    other = alice.chat.completions.create(model="gpt-4o", messages=CHAT, max_tokens=20,
                                          extra_headers={"x-gateway-session": "run-43"})
    assert other.choices[0].message.content
    assert alice.chat.completions.create(model="gpt-4o", messages=CHAT, max_tokens=20).choices
