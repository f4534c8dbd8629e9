"""A provider that stalls, through real Envoy: mid-stream, it sends a few events, then
nothing, its connection held open. Envoy's idle timeout ends the call (here shortened to
IDLE_S; 300 s in the shipped config); the caller's stream is cut where it stood (Envoy
cannot add an event to an answer already under way), the call is logged as the
provider's cut with the 200 the caller got, and charged what reached the caller, to the
token in the store. Before its answer, it sends nothing: the caller gets Envoy's 504 in its
dialect, the call is the provider's cut, charged nothing."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from gateway_stack import GatewayStack
from test_fault_books_e2e import KEY, PROMPT, _config, encoding, records_by_request, spend

from extproc.api.tokens import count_text

IDLE_S = 2.0
MODELS = {"passed": "gpt-4o-mini", "translated": "claude-sonnet-4-6"}


class ShortIdleStack(GatewayStack):
    """Envoy's idle timeouts (the routes' and the connection manager's) at IDLE_S."""

    def edit_envoy(self, envoy: dict) -> None:
        [manager] = [f["typed_config"] for f in envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]]
        manager["stream_idle_timeout"] = f"{IDLE_S:g}s"
        for route in manager["route_config"]["virtual_hosts"][0]["routes"]:
            if "idle_timeout" in route.get("route", {}):
                route["route"]["idle_timeout"] = f"{IDLE_S:g}s"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    gateway = ShortIdleStack(tmp_path_factory.mktemp("stall"), _config(), workers=1).start()
    yield gateway
    gateway.stop()


@pytest.mark.parametrize("kind", ["passed", "translated"])
def test_a_stream_the_provider_stalls_ends_at_the_idle_timeout_charged_what_reached_the_caller(stack, kind):
    request_id = f"stalled-{kind}"
    before_budget, before_metered = spend(stack)
    text, cut, status = "", False, 0
    started = time.monotonic()
    body = {"model": MODELS[kind], "messages": [{"role": "user", "content": PROMPT}], "stream": True,
            "stream_options": {"include_usage": True}}
    headers = {"authorization": f"Bearer {KEY}", "x-request-id": request_id,
               "x-mock-stall-after": "5", "x-mock-chunk-delay-ms": "20"}
    try:
        with httpx.stream("POST", f"{stack.base_url}/chat/completions", headers=headers, json=body,
                          timeout=30) as response:
            status = response.status_code
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    for choice in json.loads(line[6:]).get("choices") or ():
                        text += (choice.get("delta") or {}).get("content") or ""
    except httpx.HTTPError:
        cut = True                      # Envoy reset the stream: the caller sees it cut
    took = time.monotonic() - started
    assert status == 200 and cut and text, (status, cut, text)
    assert IDLE_S <= took < IDLE_S + 5, took
    record = records_by_request(stack, {request_id})[request_id]
    where = {k: record[k] for k in ("status", "outcome", "input_tokens", "output_tokens", "usage_estimated")}
    assert (record["outcome"], record["status"]) == ("provider_cut", 200), where
    assert record["input_tokens"] > 0 and record["usage_estimated"], where
    if kind == "translated":            # read chunk by chunk: the text the caller got
        assert record["output_tokens"] == count_text(text, encoding(stack, MODELS[kind])), where
    else:                               # passed through: what Envoy sent, in tokens
        assert 0 < record["output_tokens"] < 80, where
    charged = record["input_tokens"] + record["output_tokens"]
    budget, metered = spend(stack)
    assert (budget - before_budget, metered - before_metered) == (charged, charged), where


def test_a_json_answer_the_provider_stalls_ends_at_the_idle_timeout_in_the_callers_dialect(stack):
    """The provider sends nothing for longer than the idle timeout: the caller gets Envoy's
    504 in its dialect, within the idle time; the call is the provider's cut, charged
    nothing."""
    request_id = "stalled-json"
    before_budget, before_metered = spend(stack)
    started = time.monotonic()
    answer = httpx.post(f"{stack.base_url}/chat/completions", timeout=30, json={
        "model": MODELS["passed"], "messages": [{"role": "user", "content": PROMPT}]},
        headers={"authorization": f"Bearer {KEY}", "x-request-id": request_id,
                 "x-mock-delay-ms": str(int(IDLE_S * 1000) + 3000)})
    took = time.monotonic() - started
    assert IDLE_S <= took < IDLE_S + 2.5, took
    assert answer.status_code == 504 and answer.json()["error"]["code"] == "timeout", answer.text
    record = records_by_request(stack, {request_id})[request_id]
    assert (record["outcome"], record["status"], record["input_tokens"], record["output_tokens"]) == (
        "provider_cut", 504, 0, 0), record
    assert spend(stack) == (before_budget, before_metered)
