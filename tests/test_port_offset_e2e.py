"""Two quickstarts side by side: `extproc up --port-offset N` moves every listener (Envoy,
the ext_proc admin, the console, the mocks, the MCP servers and aggregator) and Envoy's
admin socket, so each runs with its own state dir beside the other; a port already in use
is one line naming it and the flag that moves them all."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from openai import OpenAI
from warm_start import launch_extproc

from extproc.config.local_ports import PORT_OFFSET_ENV

# Below the ports tests/gateway_stack.py hands out (15000 and up), and away from the
# quickstart's own (9464-10131).
OFFSETS = (2000, 3100)


def up(workdir: Path, offset: int, name: str = "") -> tuple[subprocess.Popen, Path]:
    stderr = workdir / f"up-{offset}{name}.stderr"
    env = {k: v for k, v in os.environ.items() if k != PORT_OFFSET_ENV}
    process = launch_extproc(["up", "--port-offset", str(offset),
                              "--workers", "1", "--state-dir", str(workdir / f"state-{offset}")],
                             stdout=open(workdir / f"up-{offset}{name}.log", "wb"), stderr=open(stderr, "wb"),
                             env={**env, "PYTHONUNBUFFERED": "1"}, cwd=str(workdir))
    return process, stderr


def wait_ready(process: subprocess.Popen, stderr: Path, admin: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, f"extproc up exited:\n{stderr.read_text()[-3000:]}"
        try:
            if httpx.get(f"{admin}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"not ready:\n{stderr.read_text()[-3000:]}"
        time.sleep(0.2)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def two_quickstarts(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("offsets")
    started = []
    try:
        for offset in OFFSETS:           # one after the other: each start is CPU-heavy
            started.append(up(workdir, offset))
            wait_ready(*started[-1], f"http://127.0.0.1:{9464 + offset}")
        yield workdir
    finally:
        for process, _ in started:
            stop(process)


@pytest.mark.parametrize("offset", OFFSETS)
def test_each_quickstart_answers_on_its_own_ports(two_quickstarts, offset):
    client = OpenAI(base_url=f"http://127.0.0.1:{10000 + offset}/v1", api_key="sk-demo-alice", max_retries=0)
    reply = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"hello from {offset}"}])
    assert reply.headers["x-gateway-backend"] == "mock"
    assert reply.parse().choices[0].message.content == f"hello from {offset}"
    # A virtual model fails over between two moved mocks; Anthropic's and Google's mocks moved too.
    assert client.chat.completions.with_raw_response.create(
        model="smart", messages=[{"role": "user", "content": "x"}]).headers["x-gateway-backend"] == "mock-backup"
    for model in ("claude-sonnet-4-6", "gemini-2.5-flash", "bedrock/amazon.nova-micro-v1:0"):
        assert client.chat.completions.create(model=model, messages=[{"role": "user", "content": "y"}]).choices
    # The console and Envoy's read-only admin, each on its moved port.
    assert httpx.get(f"http://127.0.0.1:{9466 + offset}/login", timeout=5).status_code == 200
    assert httpx.get(f"http://127.0.0.1:{9901 + offset}/ready", timeout=5).status_code == 200
    # MCP: a single-server profile and the combined one (the aggregator moved too).
    for profile in ("demo", "workspace"):
        listed = httpx.post(f"http://127.0.0.1:{10000 + offset}/mcp/{profile}", timeout=10,
                            headers={"authorization": "Bearer sk-demo-alice", "content-type": "application/json",
                                     "accept": "application/json, text/event-stream"},
                            json={"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                  "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                                             "clientInfo": {"name": "t", "version": "0"}}})
        assert listed.status_code == 200, (profile, listed.text)
    # The banner names the moved Envoy admin socket, apart from the other quickstart's.
    banner = (two_quickstarts / f"up-{offset}.log").read_text()
    assert f"/tmp/llm-gateway-{offset}/envoy-admin.sock" in banner
    assert f"http://127.0.0.1:{10000 + offset}/v1" in banner


def test_a_port_in_use_is_one_line_naming_it_and_the_flag(two_quickstarts):
    process, stderr = up(two_quickstarts, OFFSETS[0], "-again")
    try:
        assert process.wait(timeout=60) != 0
    finally:
        stop(process)
    lines = [line for line in stderr.read_text().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert f"127.0.0.1:{10000 + OFFSETS[0]}" in lines[0] and "--port-offset" in lines[0]
    assert "Traceback" not in stderr.read_text()
