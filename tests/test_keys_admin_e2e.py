"""The admin API for keys, through a running gateway: off unless configured, on localhost,
refused without its token or with a wrong one, one audit line per call (never a key);
`extproc keys --admin URL` drives it, and what it makes works through real Envoy."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import httpx
import pytest
from any_json import JSON, KEYS, WRONG_TYPE, inserted, paths, replaced
from gateway_stack import GatewayStack, free_port, quickstart_config
from warm_start import run_extproc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extproc.config.filter_config import load_config

TOKEN = "admin-token-for-tests-0123456789"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    config = quickstart_config()
    port = free_port()
    config["identity"] = {"admin_api": {"listen": f"127.0.0.1:{port}", "token": {"env": "LLMGW_ADMIN_TOKEN"}}}
    gateway = GatewayStack(tmp_path_factory.mktemp("keys-admin"), config,
                           env={"LLMGW_ADMIN_TOKEN": TOKEN})
    gateway.keys_admin_url = f"http://127.0.0.1:{port}"
    gateway.start()
    yield gateway
    gateway.stop()


def audit_lines(stack) -> list[dict]:
    lines = []
    for line in stack.log_path.read_text().splitlines():
        if '"audit"' in line:
            lines.append(json.loads(line))
    return lines


def keys_cli(stack, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess:
    env = {**os.environ}
    env.pop("LLMGW_ADMIN_TOKEN", None)
    if token is not None:
        env["LLMGW_ADMIN_TOKEN"] = token
    return run_extproc(["keys", *args, "--admin", stack.keys_admin_url],
                       capture_output=True, text=True, timeout=60, env=env)


def test_refused_without_the_token_and_with_a_wrong_one(stack):
    url = f"{stack.keys_admin_url}/admin/keys"
    for headers in ({}, {"authorization": "Bearer wrong-token-wrong-token"}, {"authorization": f"Basic {TOKEN}"},
                    {"authorization": f"Bearer {TOKEN}x"}):
        listed = httpx.get(url, headers=headers)
        assert listed.status_code == 401 and listed.json()["error"]["code"] == "invalid_admin_token"
        made = httpx.post(url, headers=headers, json={"user": "x", "team": "y"})
        assert made.status_code == 401 and "sk-" not in made.text
    assert httpx.get(url, headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
    refused = keys_cli(stack, "list", token="wrong-token-wrong-token")
    assert refused.returncode == 2 and "401" in refused.stderr
    time.sleep(0.2)
    statuses = [line["status"] for line in audit_lines(stack) if line["action"] in ("list", "create")]
    assert statuses.count(401) >= 8


def test_keys_made_through_the_api_work_through_envoy_and_revoke(stack):
    made = keys_cli(stack, "create", "--user", "kim", "--team", "support", "--models", "gpt-4o-mini",
                    "--budget-tokens", "5000/day", "--json")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    key, key_id = created["key"], created["id"]
    deadline = time.monotonic() + 3          # the workers look every 0.25 s (a loaded host: a few times)
    while True:
        answer = httpx.post(f"{stack.base_url}/chat/completions", headers={"authorization": f"Bearer {key}"},
                            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "via admin"}]})
        if answer.status_code == 200:
            break
        assert time.monotonic() < deadline
        time.sleep(0.02)
    listed = keys_cli(stack, "list")
    assert key_id in listed.stdout and key not in listed.stdout
    revoked = keys_cli(stack, "revoke", key_id)
    assert revoked.returncode == 0 and "Revoked" in revoked.stdout
    time.sleep(1.0)
    refused = httpx.post(f"{stack.base_url}/chat/completions", headers={"authorization": f"Bearer {key}"},
                         json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
    assert refused.status_code == 401
    missing = keys_cli(stack, "revoke", "no-such-key")
    assert missing.returncode == 2 and "404" in missing.stderr
    time.sleep(0.2)
    audits = audit_lines(stack)
    assert {(a["action"], a["key_id"], a["status"]) for a in audits} >= {
        ("create", key_id, 201), ("revoke", key_id, 200), ("list", None, 200), ("revoke", "no-such-key", 404)}
    everything = stack.log_path.read_text() + stack.stderr_path.read_text()
    assert key not in everything and TOKEN not in everything


def test_listens_on_localhost_only_by_default(stack, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    path = tmp_path / "c.yaml"
    path.write_text("models: {m: {backends: [{provider: p}]}}\nproviders: {p: {url: 'http://127.0.0.1:1', "
                    f"api_key: {{value: x}}}}}}\nidentity: {{admin_api: {{token: {{file: {token_file}}}}}}}\n")
    assert load_config(str(path)).identity.admin_api.listen == "127.0.0.1:9465"
    outside = [address for address in _own_addresses() if not address.startswith("127.")]
    if not outside:
        pytest.skip("this machine has no address beyond loopback to try")
    port = int(stack.keys_admin_url.rsplit(":", 1)[1])
    for address in outside:
        with pytest.raises(OSError):
            socket.create_connection((address, port), timeout=1).close()


def _own_addresses() -> list[str]:
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout
    except OSError:
        return []
    return [a for a in out.split() if "." in a]


def test_a_token_in_the_config_file_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("models: {m: {backends: [{provider: p}]}}\nproviders: {p: {url: 'http://127.0.0.1:1', "
                    "api_key: {value: x}}}\nidentity: {admin_api: {token: {value: 'abcdefabcdefabcdef'}}}\n")
    checked = run_extproc(["check", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert checked.returncode != 0 and "identity.admin_api.token" in checked.stderr


CREATE = {"user": "dora", "team": "research", "models": "gpt-4o-mini,claude-*", "budget_usd": "5/day",
          "budget_tokens": "1000/hour", "expires": "30d", "metadata": {"ticket": "T-1"}}


@pytest.fixture(scope="module")
def rotated_key(stack) -> str:
    made = httpx.post(f"{stack.keys_admin_url}/admin/keys", json={**CREATE, "id": "dora-rotated"},
                      headers={"authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert made.status_code == 201, made.text
    return "dora-rotated"


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.booleans(), st.data())
def test_any_json_in_a_key_operation_is_done_or_a_400_naming_the_field(stack, rotated_key, create, data):
    """The admin API's body is any JSON its caller sends: each call is answered, with the
    operation done or a 400 that says what is wrong; never a dropped connection or a 5xx."""
    path, body = ("/admin/keys", CREATE) if create else (f"/admin/keys/{rotated_key}/rotate", {"overlap": "1h"})
    if data.draw(st.booleans()):
        body = replaced(body, data.draw(st.sampled_from(list(paths(body)))), data.draw(WRONG_TYPE))
    else:
        body = inserted(body, (), data.draw(KEYS), data.draw(JSON))
    done = httpx.post(f"{stack.keys_admin_url}{path}", content=json.dumps(body), timeout=30,   # NaN too
                      headers={"authorization": f"Bearer {TOKEN}"})
    assert done.status_code in (200, 201, 400), (done.status_code, done.text[:300])
    if done.status_code == 400:
        error = done.json()["error"]
        assert error["code"] == "invalid_request" and error["message"], error
    else:
        assert done.json()["key"].startswith("sk-")
