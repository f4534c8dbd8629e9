"""What each admin listener serves, through a running gateway: the metrics endpoint
(`server.admin`, no authentication) serves /metrics, /healthz and /readyz only and
changes nothing (a POST, a browser's form included, is refused); spend per key, user and
team and the response cache's stats and purge are the admin API's, behind its token."""

from __future__ import annotations

import uuid

import httpx
import pytest
from gateway_stack import GatewayStack, free_port, quickstart_config

TOKEN = "admin-token-for-listener-tests-0123456789"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    config = quickstart_config(response_cache=True)
    config["cache"] = {"rules": [{"models": ["gpt-4o-mini"], "scope": "team", "ttl_s": 600}]}
    port = free_port()
    config.setdefault("identity", {})["admin_api"] = {"listen": f"127.0.0.1:{port}",
                                                      "token": {"env": "LLMGW_ADMIN_TOKEN"}}
    gateway = GatewayStack(tmp_path_factory.mktemp("admin-listeners"), config, env={"LLMGW_ADMIN_TOKEN": TOKEN})
    gateway.admin_api = f"http://127.0.0.1:{port}/admin"
    gateway.start()
    yield gateway
    gateway.stop()


def _chat(stack, prompt: str) -> httpx.Response:
    return httpx.post(f"{stack.base_url}/chat/completions", headers={"authorization": "Bearer sk-demo-alice"},
                      json={"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": prompt}]},
                      timeout=30)


def test_the_metrics_endpoint_serves_metrics_and_health_only(stack):
    metrics = stack.admin_url
    assert httpx.get(f"{metrics}/metrics", timeout=10).status_code == 200
    assert httpx.get(f"{metrics}/healthz", timeout=10).status_code == 200
    assert httpx.get(f"{metrics}/readyz", timeout=10).status_code == 200
    for path in ("/usage?by=team&window=day", "/usage", "/cache/stats", "/cache/stats?scope=team:research"):
        assert httpx.get(f"{metrics}{path}", timeout=10).status_code == 404, path
    # A state change, as a page's form would post it: refused, nothing purged.
    prompt = f"kept through a purge attempt {uuid.uuid4().hex[:10]}"
    assert _chat(stack, prompt).headers["x-gateway-cache"] == "miss"
    for path in ("/cache/purge", "/cache/purge?scope=team:research", "/metrics"):
        posted = httpx.post(f"{metrics}{path}", data={"scope": "team:research"}, timeout=10)
        assert posted.status_code in (404, 405), path
    assert _chat(stack, prompt).headers["x-gateway-cache"] == "hit"


def test_spend_and_the_cache_are_served_by_the_admin_api_with_its_token(stack):
    token = {"authorization": f"Bearer {TOKEN}"}
    prompt = f"purged by the admin api {uuid.uuid4().hex[:10]}"
    assert _chat(stack, prompt).headers["x-gateway-cache"] == "miss"

    for method, path in (("GET", "/usage?by=team&window=day"), ("GET", "/cache/stats"),
                         ("POST", "/cache/purge?scope=team:research")):
        assert httpx.request(method, f"{stack.admin_api}{path}", timeout=10).status_code == 401, path
        wrong = {"authorization": "Bearer not-the-admin-token-0123456789"}
        assert httpx.request(method, f"{stack.admin_api}{path}", headers=wrong, timeout=10).status_code == 401
    # A browser's form post carries no token.
    form = httpx.post(f"{stack.admin_api}/cache/purge", data={"scope": "team:research"}, timeout=10)
    assert form.status_code == 401
    assert _chat(stack, prompt).headers["x-gateway-cache"] == "hit"

    usage = httpx.get(f"{stack.admin_api}/usage", params={"by": "team", "window": "day"}, headers=token, timeout=30)
    assert usage.status_code == 200 and usage.json()["by"] == ["team"], usage.text[:300]
    assert httpx.get(f"{stack.admin_api}/usage", params={"window": "year"}, headers=token,
                     timeout=30).status_code == 400
    stats = httpx.get(f"{stack.admin_api}/cache/stats", params={"scope": "team:research"}, headers=token, timeout=30)
    assert stats.status_code == 200 and {g["scope"] for g in stats.json()["groups"]} == {"team:research"}
    assert httpx.get(f"{stack.admin_api}/cache/purge", headers=token, timeout=30).status_code == 405
    purged = httpx.post(f"{stack.admin_api}/cache/purge", params={"scope": "team:research"}, headers=token, timeout=30)
    assert purged.status_code == 200 and purged.json()["purged"] >= 1
    assert _chat(stack, prompt).headers["x-gateway-cache"] == "miss"
    audit = [line for line in stack.log_path.read_text().splitlines() if '"audit": "keys_admin"' in line]
    assert any('"cache_purge"' in line and '"status": 200' in line for line in audit)
    assert any('"usage"' in line and '"status": 401' in line for line in audit)
