"""A worker killed under load, through real Envoy: the other workers serve the calls that
start after it died (its path is handed to a living worker within the supervisor's tick,
then back to its successor once that listens), and `/readyz` says ready only when a call
would succeed on every worker's path."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from gateway_stack import GatewayStack

# A call started this long after the kill must not fail (only calls in flight may).
GRACE_S = 0.3


def worker_pids(stack: GatewayStack) -> dict[int, int]:
    """The stack's live ext_proc workers: index -> pid."""
    found = {}
    for pid in stack.descendants():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").split()
        except OSError:
            continue
        if b"worker" in argv and b"--address" in argv:
            address = argv[argv.index(b"--address") + 1].decode()
            found[int(address.rsplit("/extproc-", 1)[1].split(".")[0])] = pid
    return found


def call(client: httpx.Client, stack: GatewayStack) -> int:
    try:
        return client.post(f"{stack.base_url}/chat/completions", headers={"authorization": "Bearer sk-demo-alice"},
                           json={"model": "gpt-4o-mini", "max_tokens": 5,
                                 "messages": [{"role": "user", "content": "hello"}]}, timeout=30).status_code
    except httpx.HTTPError:
        return 0


def _links(stack: GatewayStack) -> dict[str, str]:
    """Where each of Envoy's worker paths leads now (for a failure's message): the run
    folder is the one whose Envoy config the stack's Envoy was started with."""
    for pid in stack.descendants():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        config = [arg for arg in argv if arg.endswith(b"/envoy.yaml")]
        if config:
            folder = Path(config[0].decode()).parent
            return {link.name: os.readlink(link) if link.is_symlink() else "-"
                    for link in sorted(folder.glob("extproc-*.sock"))}
    return {}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    gateway = GatewayStack(tmp_path_factory.mktemp("faults"), workers=2).start()
    yield gateway
    gateway.stop()


def load_around(stack: GatewayStack, action, seconds: float = 4.0, clients: int = 6) -> tuple[float, list]:
    """Calls from `clients` threads for `seconds`, `action` run a second in; (when the
    action ran, [(start, status)])."""
    results: list[tuple[float, int]] = []
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def client_loop() -> None:
        with httpx.Client() as client:
            while time.monotonic() < stop:
                started = time.monotonic()
                status = call(client, stack)
                with lock:
                    results.append((started, status))

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(client_loop) for _ in range(clients)]
        time.sleep(1.0)
        acted = time.monotonic()
        action()
        for future in futures:
            future.result()
    return acted, results


def test_calls_started_after_a_worker_died_are_served_by_the_others(stack):
    pids = worker_pids(stack)
    assert sorted(pids) == [0, 1], pids
    acted, results = load_around(stack, lambda: os.kill(pids[0], signal.SIGKILL))
    late = [(round(start - acted, 3), status) for start, status in results if start > acted + GRACE_S]
    assert late and all(status == 200 for _, status in late), [r for r in late if r[1] != 200][:10]
    assert sum(1 for start, _ in results if start > acted) > 20         # the load went on
    # Its successor takes its path back: both workers serve again, under their own sockets.
    deadline = time.monotonic() + 60
    while sorted(worker_pids(stack)) != [0, 1] or httpx.get(f"{stack.admin_url}/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the killed worker did not come back"
        time.sleep(0.1)
    assert worker_pids(stack)[0] != pids[0]


def test_ready_only_once_a_call_would_succeed_after_every_worker_died(stack):
    for pid in worker_pids(stack).values():
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    saw_unready = False
    with httpx.Client() as client:
        while True:
            assert time.monotonic() < deadline, "not ready again within 60 s"
            ready = httpx.get(f"{stack.admin_url}/readyz", timeout=5).status_code == 200
            if not ready:
                saw_unready = True
            elif saw_unready:
                # Ready: every call from now on succeeds, whichever worker's path it takes.
                statuses = [call(client, stack) for _ in range(8)]
                assert statuses == [200] * 8, (statuses, worker_pids(stack), _links(stack),
                                               stack.stderr_path.read_text()[-3000:])
                break
            time.sleep(0.02)
