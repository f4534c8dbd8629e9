"""The warm template (extproc/runtime/fork_template.py): a command forked from it is the
command a fresh interpreter would run (its arguments, environment, directory, streams and
exit status), and a gateway whose fork server it forked leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from gateway_stack import ROOT, GatewayStack, quickstart_config
from warm_start import COLD_ENV, fork_server_pids, launch_extproc, run_extproc, template_for

from extproc.credentials.google import DEMO_SERVICE_ACCOUNT_ENV, demo_service_account
from extproc.runtime.fork_template import TemplateChild


@pytest.fixture(autouse=True)
def _with_the_template(monkeypatch):
    """These test the template itself, in a suite run with it or without (EXTPROC_TESTS_COLD)."""
    monkeypatch.delenv(COLD_ENV, raising=False)


def test_a_command_gets_its_own_environment_directory_and_streams():
    without = {name: value for name, value in os.environ.items() if name != DEMO_SERVICE_ACCOUNT_ENV}
    argv = ["envoy-config", "--config", "config/quickstart.yaml"]        # relative: to the directory given
    fresh = subprocess.run([sys.executable, "-m", "extproc", *argv], capture_output=True, text=True, cwd=ROOT,
                           timeout=60, env=without)
    forked = run_extproc(argv, text=True, cwd=ROOT, timeout=60, env=without)
    assert template_for(without) is not None       # this one came from the template
    assert fresh.returncode == forked.returncode == 0, forked.stderr
    assert forked.stdout == fresh.stdout and "port_value: 10000" in forked.stdout
    assert forked.stderr == fresh.stderr and DEMO_SERVICE_ACCOUNT_ENV in forked.stderr    # what its environment lacks
    given = run_extproc(argv, text=True, cwd=ROOT, timeout=60, env={**without, DEMO_SERVICE_ACCOUNT_ENV: demo_service_account()})
    assert given.returncode == 0 and DEMO_SERVICE_ACCOUNT_ENV not in given.stderr


def test_a_failing_command_exits_with_its_status_and_says_why_on_its_stderr(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers: [1, 2]\n")
    checked = run_extproc(["check", "--config", str(bad)], text=True, timeout=60)
    assert checked.returncode != 0 and "providers" in checked.stderr and checked.stdout == ""


def test_a_killed_command_is_seen_killed(tmp_path):
    with open(tmp_path / "out", "wb") as out:
        child = launch_extproc(["mock-provider", "--config", str(ROOT / "config" / "quickstart.yaml")],
                               stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    try:
        assert isinstance(child, TemplateChild)
        assert child.poll() is None
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(0.2)
    finally:
        child.kill()
    assert child.wait(10) == -signal.SIGKILL


def test_start_time_settings_other_than_the_templates_start_fresh():
    assert template_for({**os.environ, "GRPC_EXPERIMENTS": "something-else"}) is None
    assert template_for({**os.environ, "MALLOC_TRIM_THRESHOLD_": "1"}) is None
    assert template_for({**os.environ, "EXTPROC_CHILDREN": "exec"}) is None
    assert template_for({**os.environ, "LLMGW_ANYTHING": "1"}) is not None


def test_a_program_that_imports_the_stacks_without_the_suite_starts_them_fresh():
    # The benches import gateway_stack.py: they measure production's own start and process tree.
    program = "import os, sys; sys.path.insert(0, 'tests'); import warm_start; print(warm_start.template_for(os.environ))"
    answer = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert (answer.returncode, answer.stdout) == (0, "None\n"), answer.stderr
    assert template_for(dict(os.environ)) is not None      # where the suite has turned it on


def test_a_gateway_forked_from_the_template_serves_and_leaves_no_process(tmp_path):
    stack = GatewayStack(tmp_path, quickstart_config(), workers=2).start()
    try:
        assert isinstance(stack.process, TemplateChild)
        servers = fork_server_pids(stack.process.pid)
        assert len(servers) == 1 and len(stack.worker_pids()) == 2
        everyone = [stack.process.pid, *stack.descendants()]
        assert set(servers) <= set(everyone)
        answered = stack.metrics()              # the workers' metrics reach the admin's /metrics
        assert "gateway_" in answered
    finally:
        stack.stop()
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{pid}") and "zombie" not in _state(pid) for pid in everyone):
        assert time.monotonic() < deadline, [(pid, _state(pid)) for pid in everyone if os.path.exists(f"/proc/{pid}")]
        time.sleep(0.05)
    assert "Traceback" not in stack.stderr_path.read_text()     # the fork server's end too


def _state(pid: int) -> str:
    try:
        status = open(f"/proc/{pid}/status").read()
    except OSError:
        return "gone"
    return next((line for line in status.splitlines() if line.startswith("State:")), "")
