"""The supervisor's loop waits for its children's exits rather than looking 20 times a
second (extproc/runtime/child_exits.py): it wakes at once when one exits or a signal comes,
and an idle gateway's supervisor stays asleep."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest
from test_supervisor_replace import supervisor  # noqa: F401  (the fixture: real workers, no Envoy)

from extproc.runtime.child_exits import ChildExits


@pytest.fixture
def exits():
    waiter = ChildExits()
    yield waiter
    waiter.close()


def test_a_childs_exit_ends_the_wait_at_once(exits):
    child = subprocess.Popen(["sleep", "0.3"])
    started = time.monotonic()
    exits.wait([child], timeout=10, tick=0.05)
    assert 0.25 < time.monotonic() - started < 3
    child.wait()


def test_with_nothing_happening_the_wait_lasts_its_timeout(exits):
    child = subprocess.Popen(["sleep", "30"])
    try:
        started = time.monotonic()
        exits.wait([child], timeout=0.4, tick=0.05)
        assert 0.35 < time.monotonic() - started < 3
    finally:
        child.kill()
        child.wait()


def test_a_signal_ends_the_wait(exits):
    received = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: received.append(1))
    child = subprocess.Popen(["sleep", "30"])
    try:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        started = time.monotonic()
        exits.wait([child], timeout=10, tick=0.05)
        assert received and time.monotonic() - started < 3
    finally:
        signal.signal(signal.SIGUSR1, previous)
        child.kill()
        child.wait()


def test_without_pidfds_it_sleeps_the_tick(exits, monkeypatch):
    monkeypatch.delattr(os, "pidfd_open")
    child = subprocess.Popen(["sleep", "30"])
    try:
        started = time.monotonic()
        exits.wait([child], timeout=10, tick=0.1)
        assert 0.08 < time.monotonic() - started < 1
    finally:
        child.kill()
        child.wait()


def _main_thread_wakeups() -> int:
    with open(f"/proc/self/task/{threading.main_thread().native_id}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("voluntary_ctxt_switches"))


def test_an_idle_supervisor_sleeps_and_a_crashed_worker_is_back_at_once(supervisor):  # noqa: F811
    """run_forever on real workers: idle, its thread wakes a few times in 2 s (the tick
    woke it 40); a killed worker is restarted without waiting for a tick; SIGTERM stops it."""
    first = supervisor.workers[0].pid
    seen: dict = {}

    def drive() -> None:
        time.sleep(1.0)                                      # the loop has settled into its wait
        before = _main_thread_wakeups()
        time.sleep(2.0)
        seen["idle wake-ups"] = _main_thread_wakeups() - before
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while supervisor.workers[0].pid == first and time.monotonic() < deadline:
            time.sleep(0.02)
        seen["restarted"] = supervisor.workers[0].pid != first
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
    assert seen["restarted"]
    assert seen["idle wake-ups"] <= 8, seen
