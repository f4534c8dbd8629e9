"""A worker's first calls on source code, what an agent's tool results hold: the
quickstart pipeline (bench/pipeline.py's config and messages, no Envoy) answering chat
calls whose last turn is 20 KB of this repository's code, new each call, in a process
forked as a worker is, from one that made the config's detectors (cold) or from one that
also read the corpus through them first (extproc/guardrails/warm.py, as the fork server
does). The sides alternate, each round forking both anew.

    .venv/bin/python bench/first_calls.py [--rounds 3] [--corpus-kb 1024]

Prints per side the first call, the means of the first 10 and 100 calls and of all of
them (ms of wall time, one call at a time), medians over the rounds; and what the reading
cost the forking process.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline as bench_pipeline  # noqa: E402  (the config, the messages)

from extproc.api.tokens import get_encoding  # noqa: E402
from extproc.config.filter_config import load_config  # noqa: E402
from extproc.guardrails import warm  # noqa: E402
from extproc.pipeline.call import Call  # noqa: E402
from extproc.runtime.worker import Runtime  # noqa: E402

SPANS = (("first call", 1), ("first 10", 10), ("first 100", 100))


async def worker_calls(config, features, sequences: list) -> list[float]:
    """Each call's time in a runtime made here, as a worker makes its own after the fork."""
    runtime = Runtime(config)
    times = []
    for sequence in sequences:
        started = time.perf_counter()
        call = Call(runtime.config, features)
        for message in sequence:
            await runtime.pipeline.handle(call, message)
        await runtime.pipeline.run_done(call)
        times.append(time.perf_counter() - started)
        await asyncio.sleep(0)
    return times


def in_child(work) -> list[float]:
    """`work()`'s list of floats, computed in a forked child."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            os.write(write, " ".join(map(str, work())).encode())
        finally:
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
    # What the fork server holds before it forks (runtime/preloaded.py): the config's
    # detectors, made by its load, and its models' tokenizers.
    config = load_config(bench_pipeline.bench_config(True))
    for encoding in {model.encoding for model in config.models.values()}:
        get_encoding(encoding)
    features = bench_pipeline.envoy_features()
    sequences = [bench_pipeline.messages(turn) for turn in bench_pipeline.code_turns(20)]

    def worker() -> list[float]:
        sys.stdout = open(os.devnull, "w")       # the log lines
        logging.disable(logging.WARNING)         # the store's notes of the siblings gone before
        return asyncio.run(worker_calls(config, features, sequences))

    def warmed_worker() -> list[float]:
        resident, started = resident_mb(), time.perf_counter()
        warm.warm(config.guardrails, warm.corpus(args.corpus_kb * 1024))
        spent, grown = time.perf_counter() - started, resident_mb() - resident
        return [spent, grown, *in_child(worker)]

    sides: dict[str, list[list[float]]] = {"cold": [], "warmed": []}
    costs = []
    for _ in range(args.rounds):
        sides["cold"].append(in_child(worker))
        spent, grown, *times = in_child(warmed_worker)
        sides["warmed"].append(times)
        costs.append((spent, grown))
    print(f"the quickstart pipeline, {len(sequences)} chat calls with a tool result of 20 KB of code, "
          f"{args.rounds} rounds; ms, medians over the rounds")
    print(f"{'side':<8}" + "".join(f"{name:>12}" for name, _ in SPANS) + f"{'all ' + str(len(sequences)):>12}")
    for side, runs in sides.items():
        cells = [statistics.median(statistics.fmean(run[:n]) for run in runs) * 1000 for _, n in SPANS]
        cells.append(statistics.median(statistics.fmean(run) for run in runs) * 1000)
        print(f"{side:<8}" + "".join(f"{cell:>12.2f}" for cell in cells))
    print(f"reading the corpus ({args.corpus_kb} KB) in the forking process: "
          f"{statistics.median(c[0] for c in costs):.2f} s, +{statistics.median(c[1] for c in costs):.1f} MB resident")


if __name__ == "__main__":
    main()
