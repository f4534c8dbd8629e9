"""The largest request a provider accepts passes Envoy and the service; a larger one gets
413 in the caller's dialect, from the service when the model's providers would refuse it
(`max_request_bytes`, 32 MiB by default) and from Envoy above every provider's limit."""

from __future__ import annotations

import base64
import json
import os

import httpx
import pytest
from gateway_stack import GatewayStack, quickstart_config

ALICE = {"authorization": "Bearer sk-demo-alice"}
ANTHROPIC = {"x-api-key": "sk-demo-alice", "anthropic-version": "2023-06-01"}
SMALL = 1 << 20


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    config = quickstart_config()
    config["providers"]["mock-responses"]["max_request_bytes"] = SMALL
    gateway = GatewayStack(tmp_path_factory.mktemp("request-size"), config).start()
    yield gateway
    gateway.stop()


def image_message(size: int) -> dict:
    """A user turn carrying a PNG of about `size` bytes in base64 (what long-context
    agents send most of by volume: screenshots, PDFs)."""
    data = base64.b64encode(b"\x89PNG\r\n\x1a\n" + os.urandom(size * 3 // 4)).decode()
    return {"role": "user", "content": [
        {"type": "text", "text": "What is in this screenshot?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}]}


def test_a_request_past_envoys_old_8_mib_reaches_anthropic(stack):
    body = {"model": "claude-sonnet-4-6", "max_tokens": 16, "messages": [image_message(12 << 20)]}
    answer = httpx.post(f"{stack.base_url}/messages", headers=ANTHROPIC, json=body, timeout=120)
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["type"] == "message"
    seen = stack.received("mock-anthropic")[-1]
    assert json.loads(seen["body"])["messages"] == body["messages"]


def test_a_body_over_the_models_providers_limit_is_413_in_each_dialect(stack):
    stack.clear_received()
    filler = "x" * (SMALL + 1000)
    chat = httpx.post(f"{stack.base_url}/chat/completions", headers=ALICE, timeout=60, json={
        "model": "gpt-4o-mini-responses", "messages": [{"role": "user", "content": filler}]})
    assert chat.status_code == 413, chat.text[:300]
    error = chat.json()["error"]
    assert error["code"] == "request_too_large" and "max_request_bytes" in error["message"]
    assert "1,048,576" in error["message"]
    messages = httpx.post(f"{stack.base_url}/messages", headers=ANTHROPIC, timeout=60, json={
        "model": "gpt-4o-mini-responses", "max_tokens": 16, "messages": [{"role": "user", "content": filler}]})
    assert messages.status_code == 413, messages.text[:300]
    assert messages.json()["type"] == "error" and messages.json()["error"]["type"] == "request_too_large"
    assert stack.received() == []                   # nothing reached a provider
    # The same body to a model whose provider takes 32 MiB answers.
    fits = httpx.post(f"{stack.base_url}/chat/completions", headers=ALICE, timeout=60, json={
        "model": "gpt-4o-mini", "max_tokens": 8,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "describe it"}, {
            "type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * (SMALL + 1000)}}]}]})
    assert fits.status_code == 200, fits.text[:300]
    record = stack.wait_for_record(predicate=lambda r: r["status"] == 413 and r["model"] == "gpt-4o-mini-responses")
    assert record["error_code"] == "request_too_large"


def test_a_body_over_every_providers_limit_is_envoys_413(stack):
    body = b'{"model": "claude-sonnet-4-6", "max_tokens": 16, "messages": [{"role": "user", "content": "' + \
        b"x" * (33 << 20) + b'"}]}'
    answer = httpx.post(f"{stack.base_url}/messages", headers={**ANTHROPIC, "content-type": "application/json"},
                        content=body, timeout=120)
    assert answer.status_code == 413
    assert answer.json()["error"]["type"] == "request_too_large"


# --- the config and the Envoy config made from it ------------------------------------

def _load(tmp_path, **limits):
    import yaml

    from extproc.config.filter_config import load_config
    config = quickstart_config()
    for name, limit in limits.items():
        config["providers"][name.replace("_", "-")]["max_request_bytes"] = limit
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_config(str(path))


def test_the_listener_takes_the_largest_providers_limit(tmp_path):
    from extproc.config.envoy_gen import generate
    default = generate(_load(tmp_path))
    assert default["static_resources"]["listeners"][0]["per_connection_buffer_limit_bytes"] == 32 << 20
    raised = generate(_load(tmp_path, anthropic=48 << 20, mock=SMALL))
    assert raised["static_resources"]["listeners"][0]["per_connection_buffer_limit_bytes"] == 48 << 20
    clusters = {c["name"]: c for c in raised["static_resources"]["clusters"]}
    assert clusters["anthropic"]["per_connection_buffer_limit_bytes"] == (48 << 20) + (4 << 20)
    assert clusters["mock"]["per_connection_buffer_limit_bytes"] == 16 << 20


@pytest.mark.parametrize("limit,problem", [
    (1000, "at least 65536"), (65 << 20, "at most 67108864"), ("32MB", "must be an integer")])
def test_a_limit_out_of_range_is_named(tmp_path, limit, problem):
    from extproc.yamltree import ConfigError
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, mock=limit)
    assert any("max_request_bytes" in line and problem in line for line in error.value.problems), error.value.problems
