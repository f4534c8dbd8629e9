"""The console's config page through a running gateway (`extproc up`: Envoy, the workers,
the console), signed in as the admin role with httpx: credentials written inside URLs
never show, neither a store URL's password (`redis://:password@`, a real Redis that
requires it), nor an OTLP endpoint's `user:token@` written without a scheme, nor a
credential-named query parameter; the rest of each URL stays readable."""

from __future__ import annotations

import re
import shutil
import subprocess

import httpx
import pytest
from gateway_stack import GatewayStack, free_port, quickstart_config, wait_for_port

ADMIN = "console-demo-admin-token"                # the quickstart's demo admin token
REDIS_PASSWORD = "redis-pw-Kq93xZ1mV0"
OTLP_TOKEN = "otlp-token-Hh27Lw4"
TRACES_TOKEN = "traces-access-Pp55Qa1"


@pytest.fixture(scope="module")
def redis_with_password(tmp_path_factory):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (tests/run.sh installs it)")
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--requirepass", REDIS_PASSWORD,
                                "--dir", str(tmp_path_factory.mktemp("redis-pw"))],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process=process)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_with_password):
    config = quickstart_config()
    config["store"] = {**config.get("store", {}), "kind": "redis",
                       "url": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_with_password}/0"}
    config["store"].pop("path", None)
    config.setdefault("observability", {})["tracing"] = {
        "otlp_endpoint": f"otlp-user:{OTLP_TOKEN}@127.0.0.1:{free_port()}", "sampling_percent": 0,
        "traces_url": f"https://traces.example/trace/{{trace_id}}?view=waterfall&access_token={TRACES_TOKEN}"}
    gateway = GatewayStack(tmp_path_factory.mktemp("console-masking"), config)
    gateway.start()
    yield gateway
    gateway.stop()


def signed_in(stack) -> httpx.Client:
    client = httpx.Client(base_url=f"http://127.0.0.1:{stack.console_port}", timeout=30)
    form = client.get("/login")
    csrf = re.search(r'name="csrf" value="([0-9a-f]{32})"', form.text)
    assert form.status_code == 200 and csrf, form.text[:500]
    signed = client.post("/login", data={"csrf": csrf[1], "name": "tester", "token": ADMIN})
    assert signed.status_code in (302, 303), signed.status_code
    return client


def test_the_config_page_masks_credentials_inside_urls(stack):
    # The store's password is real: a call is metered through the Redis that requires it.
    answer = httpx.post(f"{stack.base_url}/chat/completions", headers={"authorization": "Bearer sk-demo-alice"},
                        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    assert answer.status_code == 200, answer.text[:300]

    client = signed_in(stack)
    try:
        page = client.get("/config")
    finally:
        client.close()
    assert page.status_code == 200
    text = page.text
    for secret in (REDIS_PASSWORD, OTLP_TOKEN, TRACES_TOKEN, "otlp-user"):
        assert secret not in text, f"{secret[:6]}... shows on the config page"
    # What is not a credential stays readable: scheme, host, port, path, other parameters.
    assert f"redis://***@127.0.0.1:{stack.config['store']['url'].rsplit(':', 1)[1]}" in text
    assert "***@127.0.0.1:" in text
    assert "view=waterfall&amp;access_token=***" in text or "view=waterfall&access_token=***" in text
