"""`extproc doctor` against a real stack (the suite's quickstart) and a real Prometheus
scraping its admin: one line per check, exit 0 when all pass; a refused key, an admin
that does not answer, a URL where nothing listens: a FAIL line naming it, exit 1. The
key never shows in its output."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import httpx
import pytest
from gateway_stack import GatewayStack, free_port, wait_for_port
from warm_start import run_extproc


def doctor(*args: str, key: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "EXTPROC_DOCTOR_KEY"}
    if key is not None:
        env["EXTPROC_DOCTOR_KEY"] = key
    return run_extproc(["doctor", *args], capture_output=True, text=True,
                       timeout=120, env=env)


def lines_by_check(output: str) -> dict[str, str]:
    return {line.split()[1]: line for line in output.splitlines() if line.strip()}


@pytest.fixture(scope="module")
def prometheus(gateway: GatewayStack, tmp_path_factory):
    """A real Prometheus (Debian's package) scraping the gateway's admin every 2 s (a scrape
    may take over a second on a host loaded by the rest of the suite)."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed (Debian package `prometheus`)")
    workdir = tmp_path_factory.mktemp("prometheus")
    admin = gateway.admin_url.removeprefix("http://")
    (workdir / "prometheus.yml").write_text(
        "global: {scrape_interval: 2s, scrape_timeout: 2s}\n"
        f"scrape_configs:\n- job_name: llm-gateway\n  static_configs: [{{targets: ['{admin}']}}]\n")
    port = free_port()
    process = subprocess.Popen([binary, f"--config.file={workdir / 'prometheus.yml'}",
                                f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=open(workdir / "prometheus.log", "wb"))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port, timeout=60, process=process)
        deadline = time.monotonic() + 60
        while True:               # ready (it answers 503 while it starts), then its first scrape of the admin
            try:
                targets = httpx.get(f"{url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            except (httpx.HTTPError, ValueError, KeyError):
                targets = []
            if targets and targets[0]["health"] == "up":
                break
            assert time.monotonic() < deadline, targets
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_every_check_passes_on_a_healthy_deployment(gateway, prometheus):
    done = doctor("--url", gateway.base_url, "--admin", gateway.admin_url, "--prometheus", prometheus,
                  key="sk-demo-alice")
    assert done.returncode == 0, done.stdout + done.stderr
    checks = lines_by_check(done.stdout)
    assert list(checks) == ["listener", "key", "model", "store", "config", "admin", "metrics", "prometheus"]
    assert all(line.startswith("ok ") for line in checks.values()), done.stdout
    assert "answered in" in checks["model"] and "quickstart@" in checks["config"]
    assert "sk-demo-alice" not in done.stdout + done.stderr


def test_a_refused_key_and_a_dead_admin_fail_with_a_line_each(gateway):
    dead_admin = f"http://127.0.0.1:{free_port()}"
    done = doctor("--url", f"http://127.0.0.1:{gateway.port}", "--key", "sk-not-a-key", "--admin", dead_admin)
    assert done.returncode == 1, done.stdout
    checks = lines_by_check(done.stdout)
    assert checks["listener"].startswith("ok ")
    assert checks["key"].startswith("FAIL") and "401" in checks["key"]
    assert checks["admin"].startswith("FAIL") and dead_admin in checks["admin"]
    assert "sk-not-a-key" not in done.stdout + done.stderr


def test_nothing_listening_is_one_failed_line():
    done = doctor("--url", f"http://127.0.0.1:{free_port()}", key="sk-demo-alice")
    assert done.returncode == 1
    assert lines_by_check(done.stdout)["listener"].startswith("FAIL")
    assert "Traceback" not in done.stderr
