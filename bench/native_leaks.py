"""Native allocations a live worker keeps: memray (installed on first use) attached to
the one worker of a quickstart gateway under the soak's traffic, then what the window
allocated and never freed, grouped by size and the Python line that made it.

    .venv/bin/python bench/native_leaks.py [--kinds cancel] [--seconds 40]

Why memray (bench/README.md, Memory): tracemalloc sees only
Python's allocations; grpc-python's C core allocates below it. A kind that leaks shows
thousands of same-size allocations at one line (80 bytes: one gRPC op; 160-240 with a
message buffer). A handful is what was in flight when the window closed. The worker runs
slower while tracked, so compare counts per request, not RSS.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
from gateway_stack import GatewayStack  # noqa: E402
from sides import children, cmdline  # noqa: E402
from soak import MIX, Clients, chosen_kinds, soak_config  # noqa: E402


def memray() -> str:
    binary = Path(sys.executable).parent / "memray"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "memray"], check=True)
    return str(binary)


def kept(capture: Path, top: int) -> list[tuple[int, int, str]]:
    """(bytes each, count, where) of the allocations still live at the window's end."""
    from memray import FileReader

    count: collections.Counter = collections.Counter()
    for record in FileReader(str(capture)).get_leaked_allocation_records(merge_threads=True):
        frames = record.hybrid_stack_trace()
        python = [f"{function} ({Path(file).name}:{line})" for function, file, line in frames
                  if file.endswith(".py")][:2]
        where = " <- ".join(python) or next((f[0] for f in frames if f[0] != "<unknown>"), "?")
        count[(record.size // max(record.n_allocations, 1), where)] += record.n_allocations
    return [(size, n, where) for (size, where), n in count.most_common(top)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kinds", default=",".join(dict.fromkeys(MIX)),
                        help="the soak's kinds of request to send, comma-separated")
    parser.add_argument("--seconds", type=int, default=40, help="the tracked window")
    parser.add_argument("--top", type=int, default=6)
    args = parser.parse_args()
    kinds = chosen_kinds(parser, args.kinds)
    tracker = memray()
    workdir = Path(tempfile.mkdtemp(prefix="llmgw-leaks-"))
    stack = GatewayStack(workdir, soak_config(), workers=1).start()
    clients = None
    try:
        worker = next(p for p in children(stack.process.pid) if " worker " in cmdline(p))
        clients = Clients(stack.base_url, kinds, 8)
        time.sleep(10)                                   # warm-up: caches, pools, arenas
        capture = workdir / "worker.memray"
        # attach returns once tracking runs in the worker; the worker ends it after --duration.
        subprocess.run([tracker, "attach", "--native", "-f", "-o", str(capture),
                        "--duration", str(args.seconds), str(worker)],
                       stdout=subprocess.DEVNULL, check=True)
        first = len(clients.sent)
        time.sleep(args.seconds)
        requests = len(clients.sent) - first
        time.sleep(3)                                    # the worker writes the capture out
    finally:
        if clients is not None:
            clients.stop()
        stack.stop()
    print(f"{requests} requests ({', '.join(kinds)}) in the {args.seconds} s window; "
          f"native allocations still live at its end:")
    for size, n, where in kept(capture, args.top):
        print(f"{n:>8} x {size:>6} B  ({n / max(requests, 1):.3f} per request)  {where}")


if __name__ == "__main__":
    main()
