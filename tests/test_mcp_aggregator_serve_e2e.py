"""The MCP aggregator beside `extproc serve` (the Kubernetes mode), with real Envoy run from
`extproc envoy-config`'s output as a pod runs it: with a combined profile, `serve` refuses
to start without the aggregator's secret; with it, a request to the aggregator that does
not carry the secret is refused, and Envoy's (its credential_injector reads the same
environment variable) works. Envoy without the secret does not start at all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from gateway_stack import GatewayStack, free_port, quickstart_config, wait_for_port
from test_mcp_e2e import ACCEPT, ALICE, INIT, post, tool_names

from extproc.config import envoy_config
from extproc.config.envoy_mcp import AGGREGATOR_SECRET_ENV
from extproc.credentials.google import DEMO_SERVICE_ACCOUNT_ENV, demo_service_account
from extproc.yamltree import safe_load    # libyaml: the Envoy config in a tenth of the time

SECRET = "aggregator-secret-for-this-test-0123456789"
OPS_AND_DEMO = {"demo_echo", "demo_get_time", "demo_fetch_note", "demo_lookup_contact", "demo_send_email", "ops_add",
                "ops_shout"}


class ServeStack:
    """`extproc serve`, the mock servers and Envoy, each its own process, on this test's ports."""

    def __init__(self, workdir: Path) -> None:
        config = quickstart_config()
        config["identity"].pop("jwt")                   # keys only
        config.pop("console", None)
        config.setdefault("server", {})["socket_dir"] = str(workdir / "run")
        layout = GatewayStack(workdir, config, workers=1)     # moves every port, writes both configs
        self.config_path, envoy_path = layout._write_configs()
        self.port, self.config = layout.port, layout.config
        self.admin = f"http://{self.config['server']['admin']}"
        self.aggregator = self.config["mcp"]["aggregator"]["address"]
        envoy = envoy_config.load(str(envoy_path))
        envoy = envoy_config.with_workers(envoy, [str(workdir / "run" / "extproc-0.sock")])
        self.envoy_path = envoy_config.write(envoy, workdir / "envoy-serve.yaml")
        self.workdir = workdir
        self.env = {key: value for key, value in os.environ.items() if key != AGGREGATOR_SECRET_ENV}
        self.env.update({DEMO_SERVICE_ACCOUNT_ENV: demo_service_account(), "PYTHONUNBUFFERED": "1"})
        self.processes: list[subprocess.Popen] = []

    def spawn(self, argv: list[str], name: str, env: dict | None = None) -> subprocess.Popen:
        process = subprocess.Popen(argv, env=env or self.env, cwd=self.workdir,
                                   stdout=open(self.workdir / f"{name}.out", "wb"),
                                   stderr=open(self.workdir / f"{name}.err", "wb"))
        self.processes.append(process)
        return process

    def serve(self, env: dict | None = None) -> subprocess.Popen:
        return self.spawn([sys.executable, "-m", "extproc", "serve", "--config", str(self.config_path)],
                          "serve", env)

    def envoy(self, env: dict) -> subprocess.Popen:
        return self.spawn([envoy_config.envoy_binary(), "-c", str(self.envoy_path), "--disable-hot-restart",
                           "--log-level", "warn", "--concurrency", "1"], "envoy", env)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture(scope="module")
def pod(tmp_path_factory):
    stack = ServeStack(tmp_path_factory.mktemp("aggregator-serve"))
    stack.spawn([sys.executable, "-m", "extproc", "mock-provider", "--config", str(stack.config_path)], "mock")
    yield stack
    stack.stop()


def _ready(pod: ServeStack, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, (pod.workdir / "serve.err").read_text()[-3000:]
        try:
            if httpx.get(f"{pod.admin}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "extproc serve did not become ready"
        time.sleep(0.2)


def test_serve_refuses_to_start_a_combined_profile_without_the_secret(pod):
    refused = pod.serve()
    assert refused.wait(timeout=60) != 0
    said = (pod.workdir / "serve.err").read_text().strip().splitlines()
    assert len(said) == 1 and AGGREGATOR_SECRET_ENV in said[0] and "extproc serve" in said[0], said
    short = pod.serve({**pod.env, AGGREGATOR_SECRET_ENV: "short"})
    assert short.wait(timeout=60) != 0
    assert "at least 16 characters" in (pod.workdir / "serve.err").read_text()


def test_envoy_without_the_secret_does_not_start(pod):
    envoy = pod.envoy(pod.env)
    assert envoy.wait(timeout=60) != 0
    assert AGGREGATOR_SECRET_ENV in (pod.workdir / "envoy.err").read_text()


def test_with_the_secret_only_envoys_requests_reach_the_aggregator(pod):
    with_secret = {**pod.env, AGGREGATOR_SECRET_ENV: SECRET}
    _ready(pod, pod.serve(with_secret))
    pod.envoy(with_secret)
    wait_for_port(pod.port, timeout=60)
    direct = f"http://{pod.aggregator}/mcp/workspace"
    for headers in ({}, {"x-gateway-aggregator-secret": "guess"}):
        answer = httpx.post(direct, headers={**ACCEPT, **headers}, content=json.dumps(INIT), timeout=10)
        assert answer.status_code == 403, answer.text
        assert SECRET not in answer.text
    assert tool_names(pod, ALICE, "workspace") == OPS_AND_DEMO
    forged = post(pod, ALICE, INIT, "workspace", headers={"x-gateway-aggregator-secret": "guess"})
    assert forged.status_code == 200, forged.text           # Envoy's value replaces the caller's
    rendered = safe_load(pod.envoy_path.read_text())
    assert SECRET not in pod.envoy_path.read_text()          # the config names the variable only
    assert rendered["static_resources"]["secrets"] == [{"name": "mcp_aggregator_secret", "generic_secret": {
        "secret": {"environment_variable": AGGREGATOR_SECRET_ENV}}}]
    logs = "".join((pod.workdir / name).read_text() for name in ("serve.out", "serve.err", "envoy.err"))
    assert SECRET not in logs
