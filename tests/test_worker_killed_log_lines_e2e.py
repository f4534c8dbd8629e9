"""A worker killed outright under heavy load, through real Envoy: every call whose answer
reached its caller has a log line of its own, once. The lines of the calls that ended in
one turn of a worker's loop leave together at its end; a call's place in the live journal,
from which the supervisor writes the line of a call a dead worker left, goes only once its
line has left (stages/accounting/log_lines.py). With the place given up first, a worker
killed while busy took the turn's lines with it: in 2 runs of 3, 2 calls answered 200,
charged, and never logged.

A call the dead worker had not yet journalled (its request body not yet read) is Envoy's:
Envoy answers it 500 and its own access log has it (docs/observability.md)."""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import signal
import threading
import time

import httpx
import pytest
from gateway_stack import GatewayStack
from test_fault_books_e2e import Received, _config, call

CLIENTS = 24


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    gateway = GatewayStack(tmp_path_factory.mktemp("killed-lines"), _config(), workers=2).start()
    yield gateway
    gateway.stop()


def _lines_by_call(stack: GatewayStack, sent: set[str], answered: set[str]) -> dict[str, list[dict]]:
    """Each call's log lines, once every answered call has one (or 30 s have passed)."""
    deadline = time.monotonic() + 30
    while True:
        lines: dict[str, list[dict]] = {}
        for record in stack.log_records():
            rid = record.get("client_request_id") or record["request_id"]
            if rid in sent:
                lines.setdefault(rid, []).append(record)
        if answered <= lines.keys() or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


def test_a_worker_killed_while_busy_leaves_every_answered_call_one_line_of_its_own(stack):
    results: list[Received] = []
    lock, numbers = threading.Lock(), itertools.count()
    stop_at = time.monotonic() + 3.0

    def client_loop(headers: dict[str, str] | None) -> None:
        with httpx.Client() as client:
            while time.monotonic() < stop_at:
                got = call(client, stack, f"busy-{next(numbers)}", "json", headers)
                with lock:
                    results.append(got)

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        # A quarter of the clients' calls wait 50 ms at the provider: each worker holds some
        # journalled call whenever it dies, while the others' calls keep it busy answering.
        futures = [pool.submit(client_loop, {"x-mock-delay-ms": "50"} if n % 4 == 0 else None)
                   for n in range(CLIENTS)]
        time.sleep(1.5)                      # both workers busy
        os.kill(stack.worker_pids()[0], signal.SIGKILL)
        for future in futures:
            future.result()
    sent = {got.request_id for got in results}
    answered = {got.request_id for got in results if got.status != 500}
    lines = _lines_by_call(stack, sent, answered)
    unlogged = [(got.request_id, got.status, got.usage) for got in results if got.request_id in answered - lines.keys()]
    assert not unlogged, f"{len(unlogged)} of {len(answered)} answered calls without a log line: {unlogged[:5]}"
    # Those without a line are Envoy's 500s: calls the worker died before journalling.
    assert all(got.status == 500 and got.usage is None for got in results if got.request_id not in lines)
    assert any(record.get("worker_lost") for records in lines.values() for record in records), "no call was lost"
    # A call's own line and the supervisor's may both be there only if the worker died in
    # the microseconds between the line's write and its place's end (the supervisor's
    # charges nothing): never two of its own.
    own = {rid: [r for r in records if not r.get("worker_lost")] for rid, records in lines.items()}
    assert all(len(records) <= 1 for records in own.values()), [rid for rid, r in own.items() if len(r) > 1][:5]
