"""A call that sets no output cap, through real Envoy: a budget with room for the model's
whole answer leaves the body as the caller sent it; one without gets a cap no larger than
what it has left, and the caller is told (x-gateway-output-capped, the log line)."""

from __future__ import annotations

import json
import subprocess

import httpx
import orjson
import pytest
from gateway_stack import GatewayStack, quickstart_config
from warm_start import run_extproc

CAP_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
BOB_BUDGET = 2000          # config/quickstart.yaml: bob-hourly-tokens
PROMPT = "Write a long essay about the history of the printing press, please."


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = GatewayStack(tmp_path_factory.mktemp("output-cap"), quickstart_config()).start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def carol(stack) -> str:
    """A run-time key whose budget has room for any model's whole answer."""
    made = run_extproc(["keys", "create", "--json", "--user", "carol",
                        "--team", "research", "--budget-tokens", "1000000/day",
                        "--config", str(stack.workdir / "gateway.yaml"), "--state-dir", str(stack.state_dir)],
                       capture_output=True, text=True, check=True)
    key = json.loads(made.stdout)["key"]
    for _ in range(100):                    # the workers take new keys up within a moment
        if post(stack, key, "/v1/chat/completions", {"model": "gpt-4o-mini", "max_tokens": 5,
                                                      "messages": [{"role": "user", "content": "hi"}]}
                ).status_code == 200:
            return key
        subprocess.run(["sleep", "0.05"])
    raise AssertionError("the run-time key was not taken up")


def post(stack: GatewayStack, key: str, path: str, body: dict, raw: bytes | None = None) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{stack.port}{path}", timeout=30, content=raw or orjson.dumps(body),
                      headers={"authorization": f"Bearer {key}", "content-type": "application/json",
                               "anthropic-version": "2023-06-01"} if path == "/v1/messages" else
                      {"authorization": f"Bearer {key}", "content-type": "application/json"})


def received_once(stack: GatewayStack) -> bytes:
    [received] = stack.received()
    return received["body"].encode() if isinstance(received["body"], str) else received["body"]


# Each dialect's call that sets no output cap, on gpt-4o-mini (at the mock's OpenAI listener:
# a Messages call is translated to chat), and the field the provider gets the cap in.
CALLS = {
    "chat": ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]},
             "max_completion_tokens"),
    "chat stream": ("/v1/chat/completions", {"model": "gpt-4o-mini", "stream": True,
                                             "stream_options": {"include_usage": True},
                                             "messages": [{"role": "user", "content": PROMPT}]},
                    "max_completion_tokens"),
    "responses": ("/v1/responses", {"model": "gpt-4o-mini", "input": PROMPT}, "max_output_tokens"),
    "messages": ("/v1/messages", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]},
                 "max_completion_tokens"),
}


@pytest.mark.parametrize("kind", list(CALLS))
def test_a_budget_with_room_for_the_whole_answer_adds_no_cap(stack, carol, kind):
    path, body, _ = CALLS[kind]
    sent = orjson.dumps(body)
    stack.clear_received()
    response = post(stack, carol, path, body, sent)
    assert response.status_code == 200, response.text
    assert "x-gateway-output-capped" not in response.headers
    assert response.headers["x-ratelimit-limit-tokens"] == "1000000"
    got = received_once(stack)
    if kind == "messages":                  # translated: the chat body the provider reads
        assert not set(CAP_FIELDS) & set(orjson.loads(got))
    else:                                   # the caller's bytes, untouched
        assert got == sent
    record = stack.wait_for_record(response.headers["x-request-id"])
    assert "output_cap_added" not in record


@pytest.mark.parametrize("kind", list(CALLS))
def test_a_budget_without_room_caps_at_what_is_left_and_says_so(stack, kind):
    """bob's 2,000 tokens an hour are less than gpt-4o-mini's 16,384: his call is capped at
    what his budget has left after the prompt, and the header says at what."""
    path, body, field = CALLS[kind]
    stack.clear_received()
    response = post(stack, "sk-demo-bob", path, body)
    assert response.status_code == 200, response.text
    cap = int(response.headers["x-gateway-output-capped"])
    sent = orjson.loads(received_once(stack))
    assert sent[field] == cap
    assert 0 < cap < BOB_BUDGET
    # The reservation took all bob had left: prompt + cap.
    assert response.headers["x-ratelimit-remaining-tokens"] == "0"
    record = stack.wait_for_record(response.headers["x-request-id"])
    assert record["output_cap_added"] == cap and record["output_cap_reason"] == "budget"
    assert record["input_tokens"] + cap <= BOB_BUDGET


def test_a_caller_that_sets_its_own_cap_keeps_it(stack):
    body = {"model": "gpt-4o-mini", "max_tokens": 30, "messages": [{"role": "user", "content": PROMPT}]}
    sent = orjson.dumps(body)
    stack.clear_received()
    response = post(stack, "sk-demo-bob", "/v1/chat/completions", body, sent)
    assert response.status_code == 200, response.text
    assert "x-gateway-output-capped" not in response.headers
    assert received_once(stack) == sent


def test_uncapped_calls_in_a_flood_never_take_a_budget_over(tmp_path):
    """40 calls at once without an output cap, JSON and streams, on a 600-token budget:
    each is reserved what was left when it came, capped at it, and the spent total is
    exactly the usage reported, never over the limit."""
    from concurrent.futures import ThreadPoolExecutor

    from gateway_stack import settled_rows
    from test_budgets_e2e import BUDGET, CAROL, budget_config

    from extproc.store.sqlite_store import SQLiteStore
    stack = GatewayStack(tmp_path, budget_config({"default_output_tokens": 20}), workers=2).start()
    try:
        def one(i: int) -> tuple[httpx.Response, int]:
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"flood {i} " * 8}]}
            if i % 2:
                body |= {"stream": True, "stream_options": {"include_usage": True}}
            response = httpx.post(f"{stack.base_url}/chat/completions", headers=CAROL, json=body, timeout=60)
            used = 0
            if response.status_code == 200:
                if i % 2:
                    events = [orjson.loads(line[6:]) for line in response.text.splitlines()
                              if line.startswith("data: {")]
                    used = next(e["usage"]["total_tokens"] for e in events if e.get("usage"))
                else:
                    used = response.json()["usage"]["total_tokens"]
            return response, used
        with ThreadPoolExecutor(max_workers=40) as pool:
            results = list(pool.map(one, range(40)))
        ok = [(r, used) for r, used in results if r.status_code == 200]
        refused = [r for r, _ in results if r.status_code == 429]
        assert ok and len(ok) + len(refused) == 40, [r.status_code for r, _ in results]
        for response, _ in ok:
            assert 20 <= int(response.headers["x-gateway-output-capped"]) < BUDGET
        counter = settled_rows(SQLiteStore(str(stack.state_dir / "budgets.sqlite3")))["carol-tokens|carol"]
        assert counter.held == 0
        assert counter.spent == sum(used for _, used in ok) <= BUDGET
    finally:
        stack.stop()
