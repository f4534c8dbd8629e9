"""Replacing a worker (over `worker_max_rss_mb`) is a step of the supervisor's loop, not a
wait inside it: while a successor starts, the loop goes on restarting crashed workers
and answering signals. Real worker processes, no Envoy (the supervisor's serve mode);
the end-to-end replacement under traffic is in test_lifecycle_e2e."""

from __future__ import annotations

import os
import time

import pytest
import yaml
from gateway_stack import free_port, quickstart_config

from extproc.config import load_config
from extproc.supervisor import Supervisor


@pytest.fixture
def supervisor(tmp_path):
    config = quickstart_config()
    config["server"] = {"workers": 1, "admin": f"127.0.0.1:{free_port()}"}
    config.pop("mock_provider", None)
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    supervisor = Supervisor(load_config(str(path)), envoy_path=None, run_dir=tmp_path / "run")
    supervisor.start()
    yield supervisor
    supervisor.stop(grace=5)


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
