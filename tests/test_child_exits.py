"""The supervisor's loop waits for its children's exits rather than looking 20 times a
second (extproc/runtime/child_exits.py): it wakes at once when one exits or a signal comes.
The loop itself on real workers: tests/test_supervisor_replace.py."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from extproc.runtime.child_exits import ChildExits


@pytest.fixture
def exits():
    waiter = ChildExits()
    yield waiter
    waiter.close()


@pytest.fixture
def sleeper():
    """A child that lives through the test, then is killed."""
    child = subprocess.Popen(["sleep", "30"])
    yield child
    child.kill()
    child.wait()


def test_a_childs_exit_ends_the_wait_at_once(exits):
    child = subprocess.Popen(["sleep", "0.3"])
    started = time.monotonic()
    exits.wait([child], timeout=10, tick=0.05)
    assert 0.25 < time.monotonic() - started < 3
    child.wait()


def test_with_nothing_happening_the_wait_lasts_its_timeout(exits, sleeper):
    started = time.monotonic()
    exits.wait([sleeper], timeout=0.4, tick=0.05)
    assert 0.35 < time.monotonic() - started < 3


def test_a_signal_ends_the_wait(exits, sleeper):
    received = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: received.append(1))
    try:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        started = time.monotonic()
        exits.wait([sleeper], timeout=10, tick=0.05)
        assert received and time.monotonic() - started < 3
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_without_pidfds_it_sleeps_the_tick(exits, sleeper, monkeypatch):
    monkeypatch.delattr(os, "pidfd_open")
    started = time.monotonic()
    exits.wait([sleeper], timeout=10, tick=0.1)
    assert 0.08 < time.monotonic() - started < 1
