"""Failover through real Envoy: virtual models fail over, each attempt rewritten for its backend."""

from __future__ import annotations

import collections
import concurrent.futures
import copy
import time
import uuid

import httpx
import pytest
from gateway_stack import GatewayStack, quickstart_config

ALICE = {"authorization": "Bearer sk-demo-alice"}
CHAT = {"model": "smart", "messages": [{"role": "user", "content": "fail over please"}]}


class FailoverStack(GatewayStack):
    def edit_envoy(self, envoy: dict) -> None:
        vhost = envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
            "typed_config"]["route_config"]["virtual_hosts"][0]
        # (The plain route: a streamed call's, with its first-byte timeout, is another.)
        [two] = [r for r in vhost["routes"] if [{"name": "x-gateway-route", "string_match": {"exact": "failover-2"}}]
                 == r["match"].get("headers", [])]
        # Shorter per-try idle timeout than shipped (30 s), so the stall test runs fast.
        two["route"]["retry_policy"]["per_try_idle_timeout"] = "1s"
        # The route a chain of four needs: three retries.
        four = copy.deepcopy(two)
        four["match"]["headers"][0]["string_match"]["exact"] = "failover-4"
        four["route"]["retry_policy"]["num_retries"] = 3
        vhost["routes"].insert(vhost["routes"].index(two), four)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    config = quickstart_config()
    # The "failing" listener is healthy here; tests make it fail per request.
    for listener in config["mock_provider"]["listeners"]:
        listener.pop("failure", None)
    # Three backends on the (failing) provider, then one on an Azure-style provider.
    config["providers"]["azure-mock"] = {"type": "azure", "cluster": "mock_backup", "api_version": "2024-10-21",
                                         "api_key": {"value": "mock-provider-key"}}
    config["models"]["chain4"] = {"backends": [
        *({"provider": "mock-failing", "model": "gpt-4o-mini", "name": f"failing-{i}"} for i in (1, 2, 3)),
        {"provider": "azure-mock", "model": "gpt-4o-deploy", "name": "azure",
         "price": {"input": 2.5, "output": 10}}]}
    config["models"]["split"] = {"strategy": "weighted", "backends": [
        {"provider": "mock-failing", "model": "gpt-4o-mini", "weight": 80, "name": "eighty"},
        {"provider": "mock-backup", "model": "gpt-4o", "weight": 20, "name": "twenty"}]}
    stack = FailoverStack(tmp_path_factory.mktemp("failover"), config, workers=2).start()
    yield stack
    stack.stop()


def _post(stack, extra_headers: dict, body: dict = CHAT, timeout: float = 30) -> httpx.Response:
    rid = f"test-{uuid.uuid4()}"
    response = httpx.post(f"{stack.base_url}/chat/completions", json=body,
                          headers={**ALICE, "x-request-id": rid, **extra_headers}, timeout=timeout)
    response.rid = response.headers.get("x-request-id", rid)    # the gateway's id: the provider's too
    return response


def _received(stack, listener: str, rid: str) -> list[dict]:
    return [r for r in stack.received(listener) if r["headers"].get("x-request-id") == rid]


@pytest.mark.parametrize("failure", [
    {"x-mock-status": "503"},
    {"x-mock-reset": "1"},
], ids=["503", "reset"])
def test_primary_fails_fallback_answers_with_its_own_model_and_key(stack, failure):
    response = _post(stack, {"x-mock-only": "mock-failing", **failure})
    assert response.status_code == 200, response.text
    assert response.headers["x-gateway-backend"] == "mock-backup"
    assert response.json()["model"] == "gpt-4o"
    [primary] = _received(stack, "mock-failing", response.rid)
    [fallback] = _received(stack, "mock", response.rid)
    assert '"model":"gpt-4o-mini"' in primary["body"]
    assert primary["headers"]["authorization"] == "Bearer mock-failing-key"
    assert '"model":"gpt-4o"' in fallback["body"] and "gpt-4o-mini" not in fallback["body"]
    assert fallback["headers"]["authorization"] == "Bearer mock-provider-key"
    assert "mock-failing-key" not in str(fallback)
    record = stack.wait_for_record(response.rid)
    assert record["backend"] == "mock-backup" and record["attempts"] == 2
    # Charged once, at the answering backend's price (gpt-4o: 2.50 / 10.00 per 1M).
    expected = (record["input_tokens"] * 2.50 + record["output_tokens"] * 10.00) / 1e6
    assert record["cost_usd"] == pytest.approx(expected)


def test_every_backend_of_a_long_chain_is_tried_each_attempt_made_for_its_provider(stack):
    """Four backends, the first three down: Envoy's retries reach the fourth (the route of a
    four-backend chain allows three), and that attempt goes to an Azure-style provider with
    the deployment's path, its api-version and its credential, as the upstream filter made it."""
    response = _post(stack, {"x-mock-only": "mock-failing", "x-mock-status": "503"}, {**CHAT, "model": "chain4"})
    assert response.status_code == 200, response.text
    assert response.headers["x-gateway-backend"] == "azure"
    assert len(_received(stack, "mock-failing", response.rid)) == 3
    [last] = _received(stack, "mock", response.rid)
    assert last["path"] == "/openai/deployments/gpt-4o-deploy/chat/completions"
    assert last["query"] == {"api-version": "2024-10-21"}
    assert last["headers"]["api-key"] == "mock-provider-key" and "authorization" not in last["headers"]
    assert '"model":"gpt-4o-deploy"' in last["body"]
    record = stack.wait_for_record(response.rid)
    assert record["attempts"] == 4 and record["backend"] == "azure"


def test_429_with_retry_after_is_honoured_then_fallback(stack):
    started = time.perf_counter()
    response = _post(stack, {"x-mock-only": "mock-failing", "x-mock-status": "429",
                             "x-mock-retry-after": "1"})
    elapsed = time.perf_counter() - started
    assert response.status_code == 200 and response.headers["x-gateway-backend"] == "mock-backup"
    assert elapsed >= 0.9, elapsed


def test_stall_before_first_byte_fails_over_after_idle_timeout(stack):
    started = time.perf_counter()
    response = _post(stack, {"x-mock-only": "mock-failing", "x-mock-delay-ms": "8000"})
    elapsed = time.perf_counter() - started
    assert response.status_code == 200 and response.headers["x-gateway-backend"] == "mock-backup"
    assert 0.9 <= elapsed < 5, elapsed


def test_streaming_failover(stack):
    with httpx.stream("POST", f"{stack.base_url}/chat/completions",
                      json={**CHAT, "stream": True},
                      headers={**ALICE, "x-mock-only": "mock-failing", "x-mock-status": "503"}) as r:
        assert r.headers["x-gateway-backend"] == "mock-backup"
        body = b"".join(r.iter_raw())
    assert b'"model":"gpt-4o"' in body and b"[DONE]" in body


def test_many_failovers_at_once_all_reach_the_fallback(stack):
    # Every request whose primary is down needs a retry, and retries wait out a backoff:
    # with Envoy's default retry circuit breaker (3 at once per cluster) the rest would get
    # the primary's 503 (flag UO).
    def one(_):
        return _post(stack, {"x-mock-only": "mock-failing", "x-mock-status": "503"})

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        responses = list(pool.map(one, range(96)))
    statuses = collections.Counter(r.status_code for r in responses)
    assert statuses == {200: 96}, statuses
    assert {r.headers["x-gateway-backend"] for r in responses} == {"mock-backup"}


def test_weighted_split_80_20(stack):
    counts = collections.Counter()
    body = {**CHAT, "model": "split"}
    with httpx.Client(headers=ALICE, timeout=30) as client:
        for _ in range(500):
            response = client.post(f"{stack.base_url}/chat/completions", json=body)
            assert response.status_code == 200
            counts[response.headers["x-gateway-backend"]] += 1
    # Binomial(500, 0.8): sd ≈ 8.9; allow 4 sd.
    assert abs(counts["eighty"] - 400) <= 36, counts


@pytest.mark.parametrize("failure,code", [
    ({"x-mock-status": "503"}, "mock_failure"),
    ({"x-mock-reset": "1"}, "upstream_unavailable"),
], ids=["all-503", "all-reset"])
def test_all_backends_down_one_clear_error_nothing_charged(stack, failure, code):
    response = _post(stack, failure)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    record = stack.wait_for_record(response.rid)
    assert record["status"] == 503 and record["cost_usd"] == 0
    assert record["input_tokens"] == 0 and record["output_tokens"] == 0


def test_failovers_are_counted_in_metrics(stack):
    _post(stack, {"x-mock-only": "mock-failing", "x-mock-status": "503"})
    assert stack.metric_reaches('gateway_failovers_total{backend="mock-backup",', 1) >= 1
