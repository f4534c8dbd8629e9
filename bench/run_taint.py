"""Micro-benchmark: reading an agent run's taint marks on Redis, per check, in process.

    flock /tmp/cpu.lock .venv/bin/python bench/run_taint.py [--checks 3000]

Starts a redis-server (the Debian package the tests use) on a free port. For a clean run
and a run with one mark: the worker's CPU per `RunTaint.flags` (time.process_time)
- read: every check is one MGET (a store that does not publish marks: as before the cache);
- remembered: the worker listens for marks (pub/sub) and remembers what it read;
- after a mark: a mark published on every check, so every check reads again (the worst case).
The figures go in docs/decisions/agent-runs.md."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from extproc.store.redis_store import RedisStore  # noqa: E402
from extproc.store.run_taint import _CLEAN, RunTaint  # noqa: E402


class _NoPublish:
    """The Redis store without publish/listen: every check reads."""

    def __init__(self, store) -> None:
        self.get_records, self.put_records = store.get_records, store.put_records


async def _per_check(taint: RunTaint, run: str, checks: int, mark_each: bool = False) -> float:
    await taint.flags(run)
    spent = 0.0
    for _ in range(checks):
        if mark_each:
            await taint.mark(run, ["reads_private"], "lookup_contact", 3600)
            await asyncio.sleep(0)
        started = time.process_time()
        await taint.flags(run)
        spent += time.process_time() - started
    return spent / checks * 1e6


async def main(port: int, checks: int) -> None:
    store = RedisStore(f"redis://127.0.0.1:{port}/0")
    await store.put_records("run_taint", [("one:p", "lookup_contact")], time.time() + 3600)
    plain = RunTaint(_NoPublish(store))
    read = {run: await _per_check(plain, run, checks) for run in ("clean", "one")}     # before listening
    cached = RunTaint(store)
    await cached.flags("warm")
    deadline = time.monotonic() + 5
    while not _CLEAN.live and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    print(f"{'run':<10} {'read (µs CPU)':>14} {'remembered':>12} {'after a mark':>14}")
    for run in ("clean", "one"):
        remembered = await _per_check(cached, run, checks)
        marked = await _per_check(cached, run + "-m", max(200, checks // 10), mark_each=True)
        print(f"{run:<10} {read[run]:>14.1f} {remembered:>12.1f} {marked:>14.1f}")
    _CLEAN.task.cancel()
    await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--checks", type=int, default=3000)
    args = parser.parse_args()
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        server = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", folder],
                                  stdout=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), 0.1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            asyncio.run(main(port, args.checks))
        finally:
            server.terminate()
            server.wait()
