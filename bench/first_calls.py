"""A worker's first calls: the quickstart pipeline (bench/pipeline.py's config and
messages, no Envoy) answering, one at a time, a short chat call and then chat calls whose
last turn is 20 KB of this repository's code, new each call, in a process forked as a
worker is, from one that holds:

- `bare`: the config's detectors (made by its load) and its models' tokenizers, loaded;
- `preloaded`: besides, each tokenizer counted once and the request bodies' checkers
  compiled (api/schemas.py), as the fork server does (runtime/preloaded.py);
- `warmed`: besides, the corpus read through the detectors (extproc/guardrails/warm.py),
  as the fork server does.

The sides alternate, each round forking them anew.

    .venv/bin/python bench/first_calls.py [--rounds 3] [--corpus-kb 1024]

Prints per side the short call, then the code calls' first, the means of their first 10
and 100 and of all of them (ms of wall time), medians over the rounds; and what the
preparing cost the forking process.
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

from extproc.api.schemas import compile_all  # noqa: E402
from extproc.api.tokens import get_encoding  # noqa: E402
from extproc.config.filter_config import load_config  # noqa: E402
from extproc.guardrails import warm  # noqa: E402
from extproc.pipeline.call import Call  # noqa: E402
from extproc.pipeline.protocol import read_message  # noqa: E402
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
            await runtime.pipeline.handle(call, read_message(message))
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--corpus-kb", type=int, default=warm.CORPUS_BYTES // 1024)
    args = parser.parse_args()
    config = load_config(bench_pipeline.bench_config(True))
    encodings = {model.encoding for model in config.models.values()}
    for encoding in encodings:
        get_encoding(encoding)
    features = bench_pipeline.envoy_features()
    sequences = [bench_pipeline.messages(bench_pipeline.PROMPT)] + \
        [bench_pipeline.messages(turn) for turn in bench_pipeline.code_turns(20)]

    def worker() -> list[float]:
        sys.stdout = open(os.devnull, "w")       # the log lines
        logging.disable(logging.WARNING)         # the store's notes of the siblings gone before
        return asyncio.run(worker_calls(config, features, sequences))

    def preloaded(warmed: bool) -> list[float]:
        started = time.perf_counter()
        for encoding in encodings:
            get_encoding(encoding).count("warm")
        compile_all()
        if warmed:
            warm.warm(config.guardrails, warm.corpus(args.corpus_kb * 1024))
        return [time.perf_counter() - started, *in_child(worker)]

    sides: dict[str, list[list[float]]] = {"bare": [], "preloaded": [], "warmed": []}
    costs: dict[str, list[float]] = {"preloaded": [], "warmed": []}
    for _ in range(args.rounds):
        sides["bare"].append(in_child(worker))
        for side in ("preloaded", "warmed"):
            spent, *times = in_child(lambda: preloaded(side == "warmed"))
            sides[side].append(times)
            costs[side].append(spent)
    print(f"the quickstart pipeline: a short chat call, then {len(sequences) - 1} chat calls with a tool "
          f"result of 20 KB of code; {args.rounds} rounds; ms, medians over the rounds")
    print(f"{'side':<10}{'short call':>12}" + "".join(f"{name:>12}" for name, _ in SPANS)
          + f"{'all ' + str(len(sequences) - 1):>12}")
    for side, runs in sides.items():
        cells = [statistics.median(run[0] for run in runs) * 1000]
        cells += [statistics.median(statistics.fmean(run[1:1 + n]) for run in runs) * 1000 for _, n in SPANS]
        cells.append(statistics.median(statistics.fmean(run[1:]) for run in runs) * 1000)
        print(f"{side:<10}" + "".join(f"{cell:>12.2f}" for cell in cells))
    print(f"preparing in the forking process: {statistics.median(costs['preloaded']):.2f} s (tokenizers, checkers); "
          f"{statistics.median(costs['warmed']):.2f} s with the corpus ({args.corpus_kb} KB)")


if __name__ == "__main__":
    main()
