"""A worker's memory under load: the gateway of bench/sides.py (the quickstart pipeline,
one worker), JSON and SSE calls for a while, then each Python process's resident set
read from /proc/PID/smaps_rollup:

    .venv/bin/python bench/memory.py [--seconds 15] [--modes json,sse] [--connections 16]

`--modes` takes bench/run.py's traffic names ("json 400KB fresh": an agent history of
400 KB whose every turn is new on every call), each for an equal share of the seconds.

RSS counts every page the process maps, those it shares with its siblings included (the
workers are forked from one preloaded server: modules, tokenizers, detectors); PSS
divides each shared page among the processes that map it; private is what the process
alone holds, what one more worker adds. The peak is the kernel's high-water mark."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench_run  # noqa: E402  (wrk, the request bodies)
import sides as bench_sides  # noqa: E402


def rollup(pid: int) -> dict[str, float]:
    """RSS, PSS and private MB of a process, and its peak RSS."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0]) / 1024
    return {"rss": fields["Rss"], "pss": fields["Pss"],
            "private": fields["Private_Clean"] + fields["Private_Dirty"],
            "peak": bench_sides.peak_rss_mb(pid)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15, help="of load, shared by the modes")
    parser.add_argument("--modes", default="json,sse", help="bench/run.py's traffic names, comma-separated")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    binary = bench_run.ensure_wrk()
    with contextlib.ExitStack() as cleanup:
        sides = bench_sides.start_sides(cleanup)
        url, key = sides.urls["gateway"], bench_sides.KEYS["gateway"]
        print("| process | when | RSS MB | PSS MB | private MB | peak RSS MB |")
        print("|---|---|---|---|---|---|")

        def show(when: str) -> None:
            up = sides.stack.process.pid
            named = {pid: bench_sides.cmdline(pid) for pid in bench_sides.children(up)}
            python = {pid: line for pid, line in named.items() if "python" in line.split(" ")[0]}
            for pid, line in sorted(python.items()) + [(sides.envoys[0], "envoy")]:
                what = "worker" if pid in sides.workers else "envoy" if pid in sides.envoys else \
                    " ".join(part for part in line.split(" ")[1:4] if not part.startswith("-"))[:40]
                memory = rollup(pid)
                print(f"| {what} | {when} | {memory['rss']:.0f} | {memory['pss']:.0f} | "
                      f"{memory['private']:.0f} | {memory['peak']:.0f} |")

        show("started")
        modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
        for mode in modes:
            bench_run.wrk(binary, url, key, bench_run.request_body(mode), max(1, args.seconds // len(modes)),
                          args.connections, fresh=mode.endswith("fresh"),
                          grown=bench_run.grown_session(400, mode.endswith("redacted"))
                          if mode in bench_run.GROWN_MODES else None)
            show(f"after {mode}")


if __name__ == "__main__":
    main()
