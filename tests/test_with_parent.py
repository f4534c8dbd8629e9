"""The supervisor's children go when it goes, even when it is killed with SIGKILL: a
program (Envoy) started through the exec wrapper and a Python child asking for it at
start alike; a child whose parent is already gone exits at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from gateway_stack import free_port, quickstart_config, wait_for_port

from extproc.runtime.with_parent import PARENT_ENV, child_command

# A parent that starts one child as the supervisor does, prints its pid, and waits.
PARENT = """
import os, subprocess, sys
from extproc.runtime.with_parent import child_command
command, env = child_command(sys.argv[1:])
child = subprocess.Popen(command, env={**os.environ, **env})
print(child.pid, flush=True)
child.wait()
"""
# A Python child, as `python -m extproc ...` is: it asks at start.
PYTHON_CHILD = ("from extproc.runtime.with_parent import die_with_parent; die_with_parent(); "
                "print('asked', flush=True); import time; time.sleep(60)")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _kill_parent_of(argv: list[str]) -> tuple[int, str]:
    """Starts `argv` under a parent, SIGKILLs the parent; (the child's pid, what it ran as)."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT, *argv], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        deadline = time.monotonic() + 10
        # Until the wrapper has become the program (mid-exec, the command line reads empty).
        while (running := Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[0].decode()) \
                in (sys.executable, "") and time.monotonic() < deadline:
            time.sleep(0.05)
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        return child, running
    finally:
        parent.kill()


def test_a_program_started_through_the_wrapper_goes_when_the_parent_is_killed():
    child, running = _kill_parent_of(["/bin/sleep", "60"])
    assert running == "/bin/sleep"                   # the wrapper became the program: same pid
    assert _gone_within(child, 5), "the program outlived its parent"


def test_a_python_child_goes_when_the_parent_is_killed(tmp_path):
    # The mock provider, as the supervisor starts it (`python -m extproc ...`), on free ports.
    config = quickstart_config()
    for listener in [*config["mock_provider"]["listeners"], *config["mock_provider"].get("mcp_listeners", [])]:
        listener["port"] = free_port()
    config["mock_provider"].pop("vllm_pools", None)     # (its fixed ports: not what this tests)
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = [sys.executable, "-m", "extproc", "mock-provider", "--config", str(path)]
    command, env = child_command(argv)
    assert command == argv and env == {PARENT_ENV: str(os.getpid())}      # no wrapper: it asks itself
    parent = subprocess.Popen([sys.executable, "-c", PARENT, *argv], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        wait_for_port(config["mock_provider"]["listeners"][0]["port"])    # started: it has asked
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        assert _gone_within(child, 5), "the Python child outlived its parent"
    finally:
        parent.kill()


def test_a_child_whose_parent_is_already_gone_exits_at_once():
    gone = subprocess.run([sys.executable, "-c", PYTHON_CHILD], capture_output=True, text=True, timeout=30,
                          env={**os.environ, PARENT_ENV: "1"})          # not its parent
    assert gone.returncode == 1 and "asked" not in gone.stdout
    stays = subprocess.Popen([sys.executable, "-c", PYTHON_CHILD], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, PARENT_ENV: str(os.getpid())})
    try:
        assert stays.stdout.readline().strip() == "asked"
    finally:
        stays.kill()
        stays.wait()
