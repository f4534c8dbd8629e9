"""A worker's first calls on source code, what an agent's tool results hold: the
quickstart's request guardrails over a chat request whose last turn is 20 KB of this
repository's code, new each call (bench/guardrails.py's row), in a process forked as a
worker is, from one that made the detectors (cold) or from one that also read the corpus
through them first (extproc/guardrails/warm.py, as the fork server does). The sides
alternate, each round forking both anew.

    .venv/bin/python bench/first_calls.py [--rounds 3] [--corpus-kb 1024]

Prints per side the first call, the means of the first 10 and 100 calls and of all of
them (ms), medians over the rounds; and what the reading cost the forking process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from guardrails import quickstart_guards, source_code  # noqa: E402

from extproc.config.filter_config import load_config  # noqa: E402
from extproc.guardrails import warm  # noqa: E402
from extproc.guardrails.walk import request_slots  # noqa: E402
from extproc.pipeline.call import Call  # noqa: E402
from extproc.stages.guard.request import check_texts  # noqa: E402

SPANS = (("first call", 1), ("first 10", 10), ("first 100", 100))


def one_call(guards, code: str) -> None:
    body = {"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": "Read extproc/cli.py and explain it."},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "read", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": code}]}
    call, slots = Call(None), list(request_slots("chat", body))
    for guard in guards:
        try:
            check_texts(call, guard, slots, "request")
        except Exception:       # noqa: BLE001 - a block ends the request: that is its cost
            pass


def in_child(work) -> list[float]:
    """`work()`'s list of floats, computed in a forked child."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.write(write, " ".join(map(str, work())).encode())
        os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.close(read)
    os.waitpid(pid, 0)
    return [float(x) for x in data.split()]


def resident_mb() -> float:
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--corpus-kb", type=int, default=warm.CORPUS_BYTES // 1024)
    args = parser.parse_args()
    settings = load_config("config/quickstart.yaml", strict_credentials=False).guardrails
    guards = quickstart_guards()
    pieces = source_code()

    def worker() -> list[float]:
        times = []
        for code in pieces:
            started = time.perf_counter()
            one_call(guards, code)
            times.append(time.perf_counter() - started)
        return times

    def warmed_worker() -> list[float]:
        resident, started = resident_mb(), time.perf_counter()
        warm.warm(settings, warm.corpus(args.corpus_kb * 1024))
        spent, grown = time.perf_counter() - started, resident_mb() - resident
        return [spent, grown, *in_child(worker)]

    sides: dict[str, list[list[float]]] = {"cold": [], "warmed": []}
    costs = []
    for _ in range(args.rounds):
        sides["cold"].append(in_child(worker))
        spent, grown, *times = in_child(warmed_worker)
        sides["warmed"].append(times)
        costs.append((spent, grown))
    print(f"the quickstart's request rules, {len(pieces)} tool results of 20 KB of code, "
          f"{args.rounds} rounds; ms, medians over the rounds")
    print(f"{'side':<8}" + "".join(f"{name:>12}" for name, _ in SPANS) + f"{'all ' + str(len(pieces)):>12}")
    for side, runs in sides.items():
        cells = [statistics.median(statistics.fmean(run[:n]) for run in runs) * 1000 for _, n in SPANS]
        cells.append(statistics.median(statistics.fmean(run) for run in runs) * 1000)
        print(f"{side:<8}" + "".join(f"{cell:>12.2f}" for cell in cells))
    print(f"reading the corpus ({args.corpus_kb} KB) in the forking process: "
          f"{statistics.median(c[0] for c in costs):.2f} s, +{statistics.median(c[1] for c in costs):.1f} MB resident")


if __name__ == "__main__":
    main()
