"""The supervisor's Python children are forked from its preloaded fork server
(runtime/forked.py), or started as fresh interpreters with EXTPROC_CHILDREN=exec: either
way they serve, show their command, and go with the supervisor. (The suite's other
stacks take their fork server from a warm template, tests/warm_start.py; these start as
`extproc up` does in production.)"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from gateway_stack import GatewayStack, quickstart_config
from warm_start import COLD_ENV

ALICE = {"authorization": "Bearer sk-demo-alice"}


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _command(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


def _answers(stack: GatewayStack) -> int:
    return httpx.post(f"{stack.base_url}/chat/completions", headers=ALICE, timeout=30, json={
        "model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}).status_code


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    stack = GatewayStack(tmp_path_factory.mktemp("forked"), quickstart_config(), workers=2,
                         env={COLD_ENV: "1"}).start()
    yield stack
    stack.stop()


def test_the_workers_are_forked_from_the_fork_server_and_show_their_command(gateway):
    workers = gateway.worker_pids()
    assert len(workers) == 2
    servers = {_parent(pid) for pid in workers}
    assert len(servers) == 1 and servers != {gateway.process.pid}
    [server] = servers
    assert "multiprocessing.forkserver" in _command(server) and _parent(server) == gateway.process.pid
    for pid in workers:
        assert " -m extproc worker --config " in _command(pid)
    assert _answers(gateway) == 200
    # Each worker writes its metrics to a file of its own pid, not the fork server's
    # (values made before the fork move to the child's file: observability/metrics.py).
    argv = _command(workers[0]).split()
    metrics = Path(argv[argv.index("--address") + 1].removeprefix("unix:")).parent / "metrics"
    for pid in workers:
        assert (metrics / f"counter_{pid}.db").exists(), sorted(p.name for p in metrics.iterdir())


def test_exec_starts_each_child_as_a_fresh_interpreter(tmp_path):
    stack = GatewayStack(tmp_path, quickstart_config(), env={"EXTPROC_CHILDREN": "exec", COLD_ENV: "1"}).start()
    try:
        [worker] = stack.worker_pids()
        assert _parent(worker) == stack.process.pid
        assert not any("multiprocessing.forkserver" in _command(pid) for pid in stack.descendants())
        assert _answers(stack) == 200
    finally:
        stack.stop()


def test_stopped_it_leaves_neither_its_run_directory_nor_a_traceback(gateway):
    # (multiprocessing removes the fork server's folder, inside the run directory, as the
    # supervisor ends: the run directory goes after it)
    argv = _command(gateway.worker_pids()[0]).split()
    run_dir = Path(argv[argv.index("--address") + 1].removeprefix("unix:")).parent
    assert run_dir.is_dir()
    gateway.stop()
    assert gateway.process.returncode == 0
    assert not run_dir.exists()
    assert "Traceback" not in gateway.stderr_path.read_text()
