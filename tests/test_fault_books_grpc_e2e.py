"""The books under a hung worker on the grpc.aio transport (`server.transport: grpc`), as
test_fault_books_e2e.py holds them on the workers' own HTTP/2: a worker stopped past Envoy's
message timeout, while its calls wait for their provider, gets their callers Envoy's 504;
once it resumes it logs those calls as the gateway's timeout and charges them nothing.

(A call that reached a stopped grpc.aio worker before it read anything of it is never
handed to the service by grpc-python once Envoy resets it: it leaves no log line of the
service's, only Envoy's access log. The workers' own HTTP/2 reads and logs those too.)"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time

import httpx
import pytest
from gateway_stack import GatewayStack, quickstart_config
from test_fault_books_e2e import records_by_request

KEY = "sk-fault-books-grpc"
HUNG_S = 4.0                     # longer than Envoy's message timeout (2 s): callers get 504


def _config() -> dict:
    """The quickstart with its OpenAI mock only, on grpc.aio, one worker."""
    config = quickstart_config()
    config["server"]["transport"] = "grpc"
    config["providers"] = {"mock": config["providers"]["mock"]}
    config["models"] = {"gpt-4o-mini": config["models"]["gpt-4o-mini"]}
    config["mock_provider"]["listeners"] = [listener for listener in config["mock_provider"]["listeners"]
                                            if listener["name"] == "mock"]
    config["mock_provider"].pop("mcp_listeners", None)
    for section in ("mcp", "console", "runs", "budgets", "virtual_models"):
        config.pop(section, None)
    config["identity"].pop("jwt", None)
    config["keys"].append({"id": "grpc-carol", "key": KEY, "user": "carol", "team": "research", "models": "*"})
    return config


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    gateway = GatewayStack(tmp_path_factory.mktemp("fault-books-grpc"), _config(), workers=1).start()
    yield gateway
    gateway.stop()


def _call(request_id: str, provider_delay_ms: int = 0) -> int:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "say something"}]}
    headers = {"authorization": f"Bearer {KEY}", "x-request-id": request_id,
               "x-mock-delay-ms": str(provider_delay_ms)}
    try:
        return httpx.post(f"{_call.base_url}/chat/completions", json=body, timeout=30,
                          headers=headers).status_code
    except httpx.HTTPError:
        return 0


def test_a_hung_grpc_worker_logs_envoy_s_504_as_its_timeout_and_charges_nothing(stack):
    _call.base_url = stack.base_url
    assert _call("grpc-warm") == 200
    [worker] = stack.worker_pids()
    before = len(stack.received())
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        # The worker has read each call's request and sent it on; the provider takes 1.5 s.
        futures = {f"grpc-hung-{n}": pool.submit(_call, f"grpc-hung-{n}", 1500) for n in range(4)}
        deadline = time.monotonic() + 20
        while len(stack.received()) < before + 4:
            assert time.monotonic() < deadline, "the calls never reached the provider"
            time.sleep(0.05)
        os.kill(worker, signal.SIGSTOP)
        try:
            time.sleep(HUNG_S)
        finally:
            os.kill(worker, signal.SIGCONT)
        statuses = {request_id: future.result() for request_id, future in futures.items()}
    assert set(statuses.values()) == {504}, statuses
    records = records_by_request(stack, set(statuses) | {"grpc-warm"})
    assert records["grpc-warm"]["outcome"] == "ok"
    for request_id in statuses:
        record = records[request_id]
        assert (record["status"], record["outcome"], record["input_tokens"] + record["output_tokens"]) == \
            (504, "gateway_timeout", 0), record
    assert _call("grpc-after") == 200               # the resumed worker serves again
