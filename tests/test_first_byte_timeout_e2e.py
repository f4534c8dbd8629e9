"""A virtual model's first-byte timeout, through real Envoy: a streamed call whose first
backend sends nothing fails over to the next within the model's `first_byte_timeout_s`
(Envoy's per-try timeout on the failover route the config generates), not after the
30 s idle timeout; a model that sets none gets the default."""

from __future__ import annotations

import time

import httpx
import pytest
from gateway_stack import GatewayStack, quickstart_config

from extproc.config.envoy_contract import FIRST_BYTE_HEADER
from extproc.config.envoy_gen import generate
from extproc.config.filter_config import load_config
from extproc.config.models import DEFAULT_FIRST_BYTE_TIMEOUT_S

STALL_MS = 25_000           # the first backend's silence: less than the 30 s idle timeout
TIMEOUT_S = 2


def _config() -> dict:
    config = quickstart_config()
    config["mock_provider"]["listeners"].append({"name": "mock-stalled", "port": 10190, "api_key": "mock-provider-key"})
    config["providers"]["mock-stalled"] = {"url": "http://127.0.0.1:10190", "api_key": {"value": "mock-provider-key"}}
    config["models"]["interactive"] = {"strategy": "fallback", "first_byte_timeout_s": TIMEOUT_S, "backends": [
        {"provider": "mock-stalled", "model": "gpt-4o-mini"}, {"provider": "mock-backup", "model": "gpt-4o-mini"}]}
    return config


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = GatewayStack(tmp_path_factory.mktemp("first-byte"), _config()).start()
    try:
        yield stack
    finally:
        stack.stop()


def test_a_stalled_first_backend_fails_over_within_the_first_byte_timeout(stack):
    started = time.monotonic()
    with httpx.stream("POST", f"{stack.base_url}/chat/completions", timeout=60,
                      headers={"authorization": "Bearer sk-demo-alice", "x-mock-only": "mock-stalled",
                               "x-mock-delay-ms": str(STALL_MS)},
                      json={"model": "interactive", "stream": True,
                            "messages": [{"role": "user", "content": "are you there"}]}) as response:
        headers_after = time.monotonic() - started
        body = response.read().decode()
    assert response.status_code == 200, body
    assert response.headers["x-gateway-backend"] == "mock-backup"
    assert "there" in body
    assert TIMEOUT_S - 0.2 <= headers_after < TIMEOUT_S + 6, headers_after      # not the 30 s idle timeout


def test_the_generated_route_carries_each_models_timeout(tmp_path):
    import yaml
    path = tmp_path / "gateway.yaml"
    config = _config()
    config["models"]["smart"].pop("first_byte_timeout_s", None)
    path.write_text(yaml.safe_dump(config))
    envoy = generate(load_config(str(path), strict_credentials=False))
    manager = envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    timeouts = {}
    for route in manager["route_config"]["virtual_hosts"][0]["routes"]:
        match = {h["name"]: h["string_match"]["exact"] for h in route["match"].get("headers", [])
                 if "exact" in h.get("string_match", {})}
        if FIRST_BYTE_HEADER in match:
            timeouts[match[FIRST_BYTE_HEADER]] = route["route"]["retry_policy"]["per_try_timeout"]
            assert FIRST_BYTE_HEADER in route["request_headers_to_remove"]
    assert timeouts == {str(TIMEOUT_S * 1000): f"{TIMEOUT_S}s",
                        str(int(DEFAULT_FIRST_BYTE_TIMEOUT_S * 1000)): f"{DEFAULT_FIRST_BYTE_TIMEOUT_S:g}s"}


def test_a_stream_longer_than_the_timeout_is_not_cut(stack):
    """The timeout ends at the response's headers: a backend that answers at once and
    streams for longer than it is not given up."""
    started = time.monotonic()
    with httpx.stream("POST", f"{stack.base_url}/chat/completions", timeout=60,
                      headers={"authorization": "Bearer sk-demo-alice", "x-mock-chunk-delay-ms": "600"},
                      json={"model": "interactive", "stream": True,
                            "messages": [{"role": "user", "content": "one two three four five six seven"}]}) as response:
        body = response.read().decode()
    took = time.monotonic() - started
    assert response.status_code == 200 and response.headers["x-gateway-backend"] == "mock-stalled"
    assert took > TIMEOUT_S + 1 and "[DONE]" in body and "seven" in body, (took, body[-300:])
