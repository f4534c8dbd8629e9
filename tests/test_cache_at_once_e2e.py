"""The contract's "a second identical call is a hit", with no pause between the calls: the
entry is in the store before the first answer reaches its caller, so the very next call
finds it on whichever worker Envoy gives it to (SQLite, two workers; Redis, two
replicas)."""

from __future__ import annotations

import uuid

import httpx
import pytest
from gateway_stack import GatewayStack, quickstart_config, start_together


def ask(stack: GatewayStack, prompt: str) -> httpx.Response:
    return httpx.post(f"{stack.base_url}/chat/completions", headers={"authorization": "Bearer sk-demo-alice"},
                      json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]}, timeout=30)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    gateway = GatewayStack(tmp_path_factory.mktemp("cache-at-once"), quickstart_config(response_cache=True),
                           workers=2).start()
    yield gateway
    gateway.stop()


def test_the_very_next_identical_call_is_a_hit_on_any_worker(stack):
    for _ in range(12):
        prompt = f"Classify this diff: {uuid.uuid4()}"
        first, second = ask(stack, prompt), ask(stack, prompt)
        assert (first.headers["x-gateway-cache"], second.headers["x-gateway-cache"]) == ("miss", "hit")
        assert second.json()["choices"][0]["message"]["content"] == first.json()["choices"][0]["message"]["content"]


def test_the_next_call_is_a_hit_on_another_replica_sharing_redis(tmp_path, redis_url):
    config = quickstart_config(response_cache=True)
    config["store"] = {"kind": "redis", "url": redis_url}
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
    one, two = start_together(GatewayStack(tmp_path / "one", config), GatewayStack(tmp_path / "two", config))
    try:
        for _ in range(4):
            prompt = f"Classify this diff: {uuid.uuid4()}"
            assert ask(one, prompt).headers["x-gateway-cache"] == "miss"
            assert ask(two, prompt).headers["x-gateway-cache"] == "hit"
    finally:
        one.stop()
        two.stop()
