"""Replacing a worker (over `worker_max_rss_mb`) is a step of the supervisor's loop, not a
wait inside it: while a successor starts, the loop goes on restarting crashed workers
and answering signals. Real worker processes, no Envoy (the supervisor's serve mode);
the end-to-end replacement under traffic is in test_lifecycle_e2e. A worker that crashes
again and again soon after its start is restarted with a growing delay. Idle, the loop
sleeps until a child exits or a signal comes (runtime/child_exits.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from gateway_stack import free_port, quickstart_config

from extproc.config.envoy_mcp import AGGREGATOR_SECRET_ENV
from extproc.config.filter_config import load_config
from extproc.runtime.crash_loop import STABLE_AFTER_S, restart_delay
from extproc.runtime.processes import connectable as _connectable
from extproc.runtime.processes import exiting, serving
from extproc.runtime.supervisor import Supervisor


@pytest.fixture
def supervisor(tmp_path, monkeypatch):
    # As under `extproc serve`: the combined MCP profile's aggregator needs the secret it
    # shares with Envoy (the deployment's Secret), here one of the test's.
    monkeypatch.setenv(AGGREGATOR_SECRET_ENV, "aggregator-secret-of-the-test-0123456789")
    config = quickstart_config()
    config["server"] = {"workers": 1, "admin": f"127.0.0.1:{free_port()}"}
    config.pop("mock_provider", None)
    config.pop("console", None)            # its fixed port: one supervisor of the quickstart at a time
    for name in ("vertex", "azure"):       # their tokens come from the mock this test leaves out
        config["providers"].pop(name, None)
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    supervisor = Supervisor(load_config(str(path)), envoy=None, run_dir=tmp_path / "run")
    supervisor.start()
    yield supervisor
    supervisor.stop(grace=5)


def test_a_killed_process_is_not_serving_while_the_kernel_tears_it_down():
    """A killed worker's socket accepts for a moment after the kill (the kernel frees its
    memory before its descriptors): the supervisor reads the task's exiting flag rather
    than trusting the socket."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert serving(child) and not exiting(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while b") Z " not in Path(f"/proc/{child.pid}/stat").read_bytes():     # a zombie, not reaped
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert exiting(child.pid)
        assert not serving(child)
    finally:
        child.kill()
        child.wait()


def _advance_until_done(supervisor: Supervisor, index: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while index in supervisor.replacing and time.monotonic() < deadline:
        supervisor._advance_replacements()
        time.sleep(0.05)
    assert index not in supervisor.replacing


def test_a_replacement_returns_at_once_and_switches_envoys_path_once_the_successor_listens(supervisor):
    old = supervisor.workers[0]
    started = time.monotonic()
    supervisor.recycle(0)
    assert time.monotonic() - started < 0.5, "the loop waited for the successor"
    assert os.readlink(supervisor.socket_path(0)) == "extproc-0.0.sock"   # not yet switched
    _advance_until_done(supervisor, 0)
    assert os.readlink(supervisor.socket_path(0)) == "extproc-0.1.sock"
    assert supervisor.workers[0] is not old and supervisor.workers[0].poll() is None
    assert [process for process, _ in supervisor.retiring] == [old]      # told to stop later


def test_a_successor_that_cannot_start_leaves_the_old_worker_serving(supervisor, tmp_path):
    old = supervisor.workers[0]
    (tmp_path / "gateway.yaml").write_text("not: [a valid config")      # the successor dies at load
    supervisor.recycle(0)
    _advance_until_done(supervisor, 0)
    assert supervisor.workers[0] is old and old.poll() is None
    assert supervisor.generation[0] == 0
    assert os.readlink(supervisor.socket_path(0)) == "extproc-0.0.sock"
    assert supervisor.retiring == []


@pytest.mark.parametrize("crashes, delay", [(1, 0), (2, 0.5), (3, 1), (4, 2), (8, 30), (50, 30)])
def test_restart_delay_doubles_from_the_second_quick_crash_up_to_its_cap(crashes, delay):
    assert restart_delay(crashes) == delay


def _tick_until(supervisor: Supervisor, done, timeout: float) -> list[float]:
    """Runs the supervisor's restart step as its loop would; returns when each start happened."""
    starts: list[float] = []
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        before = supervisor.generation[0]
        supervisor.restart_crashed_workers()
        if supervisor.generation[0] != before:
            starts.append(time.monotonic())
        time.sleep(0.05)
    return starts


def test_a_worker_that_cannot_start_backs_off_then_comes_back_once_it_can(supervisor, tmp_path):
    path = tmp_path / "gateway.yaml"
    text = path.read_text()
    path.unlink()                          # gone: every new worker dies loading it
    supervisor.workers[0].kill()
    starts = _tick_until(supervisor, lambda: False, timeout=6)
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:])]
    # Without the back-off a worker dying in ~1 s would be started 6 times or more here.
    assert 3 <= len(starts) <= 5, gaps
    assert all(gap >= restart_delay(n + 2) for n, gap in enumerate(gaps)), gaps
    path.write_text(text)
    _tick_until(supervisor, lambda: _connectable(supervisor.socket_path(0)), timeout=30)
    assert _connectable(supervisor.socket_path(0)) and supervisor.workers[0].poll() is None


def test_a_worker_that_ran_a_while_is_restarted_at_once(supervisor):
    supervisor.crash_loops[0].quick_crashes = 6        # an old streak ...
    supervisor.crash_loops[0].started_at -= STABLE_AFTER_S + 1    # ... then a worker that ran past it
    supervisor.workers[0].kill()
    supervisor.workers[0].wait()
    supervisor.restart_crashed_workers()
    assert supervisor.generation[0] == 1 and supervisor.crash_loops[0].quick_crashes == 1


def test_an_aggregator_that_cannot_start_backs_off_then_comes_back_once_it_can(supervisor, tmp_path):
    path = tmp_path / "gateway.yaml"
    text = path.read_text()
    path.unlink()                          # gone: every new aggregator dies loading it
    supervisor.aggregator.kill()
    # Three starts, however long each aggregator takes to die (~1 s; ~2 s on a loaded
    # machine): the wait from each death to the next start is what the back-off sets.
    starts: list[float] = []
    waits: list[float] = []
    died_at = None
    deadline = time.monotonic() + 20
    while len(starts) < 3 and time.monotonic() < deadline:
        before = supervisor.aggregator
        if died_at is None and before.poll() is not None:
            died_at = time.monotonic()
        supervisor.restart_crashed_aggregator()
        if supervisor.aggregator is not before:
            starts.append(time.monotonic())
            if len(starts) > 1:
                waits.append(starts[-1] - died_at)
            died_at = None
        time.sleep(0.05)
    assert len(starts) == 3, waits
    # The first restart is at once; then 0.5 s, then 1 s after each quick death.
    assert all(wait >= restart_delay(n + 2) - 0.06 for n, wait in enumerate(waits)), waits
    assert waits[1] >= 0.9, waits
    path.write_text(text)
    address = supervisor.config.mcp.aggregator.address
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        supervisor.restart_crashed_aggregator()
        try:
            socket.create_connection(tuple(address.rsplit(":", 1)), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    assert supervisor.aggregator.poll() is None
    socket.create_connection(tuple(address.rsplit(":", 1)), timeout=1).close()


def _main_thread_wakeups() -> int:
    with open(f"/proc/self/task/{threading.main_thread().native_id}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("voluntary_ctxt_switches"))


def test_an_idle_supervisor_sleeps_and_a_crashed_worker_is_back_at_once(supervisor, monkeypatch):
    """run_forever on real workers: idle, its thread wakes a few times in 2 s (the tick
    woke it 40); a killed worker is restarted without waiting for a tick; one that dies
    again at once waits out its restart delay while the loop ticks (a dead child's pidfd
    stays readable: waiting on it would spin, and probe the living workers' sockets at
    each turn); SIGTERM stops it."""
    first = supervisor.workers[0].pid
    seen: dict = {}
    turns = [0]
    restart = supervisor.restart_crashed_workers
    monkeypatch.setattr(supervisor, "restart_crashed_workers", lambda: turns.__setitem__(0, turns[0] + 1) or restart())

    def restarted(pid: int) -> bool:
        deadline = time.monotonic() + 60
        while supervisor.workers[0].pid == pid and time.monotonic() < deadline:
            time.sleep(0.02)
        return supervisor.workers[0].pid != pid

    def drive() -> None:
        time.sleep(1.0)                                      # the loop has settled into its wait
        before = _main_thread_wakeups()
        time.sleep(2.0)
        seen["idle wake-ups"] = _main_thread_wakeups() - before
        os.kill(first, signal.SIGKILL)
        seen["restarted"] = restarted(first)
        second = supervisor.workers[0].pid
        os.kill(second, signal.SIGKILL)                      # a second quick crash: restarted after 0.5 s
        started, before = time.monotonic(), turns[0]
        seen["restarted again"] = restarted(second)
        seen["turns a second"] = (turns[0] - before) / (time.monotonic() - started)
        os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    driver = threading.Thread(target=drive)
    driver.start()
    try:
        assert supervisor.run_forever() == 0
    finally:
        driver.join(timeout=90)
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    assert seen["restarted"] and seen["restarted again"], seen
    assert seen["idle wake-ups"] <= 8, seen
    assert seen["turns a second"] <= 40, seen                # the tick's 20, not a spin
