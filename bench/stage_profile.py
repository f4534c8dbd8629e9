"""Where a call's CPU goes in the pipeline: each stage's hooks timed per phase, and the
runner's own work around them (reading the message, building the reply), over the
quickstart pipeline as bench/pipeline.py runs it (no gRPC, no Envoy).

    .venv/bin/python bench/stage_profile.py [--history-kb N] [--rounds N] [--no-budget] [--unread]

`--unread`: a call whose policy reads nothing of its body (stages/body_unread.py): its
request headers and the trailers at its answer's end, the quickstart without its run
limits and loops, a key no guardrail applies to, whose token budget is reserved at its
headers (stages/budget/unread.py; `--no-budget`: none).

Each hook is wrapped in a timer (time.perf_counter_ns: ~0.1-0.2 µs, printed, inside each
cell; the thread's CPU clock costs a system call, 1-3 µs on a loaded host); the table gives
each stage's median and mean µs per call for each phase, medians so that a call preempted
by another process on a shared core does not move them. A whole message is timed in the
thread's CPU time (time.thread_time_ns: time spent preempted is not counted), median over
the calls; `runner` is a message's CPU outside the hooks (reading Envoy's message,
building the reply, the phase's histogram): the message's median less its hooks'. The
thread's CPU per call over the whole loop is printed beside the sum.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline as pipe  # noqa: E402  (bench/pipeline.py: the messages, the config)

from extproc.config.envoy_features import EXT_PROC, announced_features  # noqa: E402
from extproc.config.filter_config import load_config  # noqa: E402
from extproc.observability import metrics  # noqa: E402
from extproc.pipeline.call import Call  # noqa: E402
from extproc.pipeline.protocol import read_message  # noqa: E402
from extproc.pipeline.stage import HOOKS  # noqa: E402
from extproc.runtime.worker import Runtime  # noqa: E402

import yaml  # noqa: E402

PHASE_NAMES = {"request_headers": "req hdr", "request_body": "req body",
               "response_headers": "resp hdr (in the resp body message)", "response_body": "resp body",
               "response_trailers": "resp trailers", "done": "after reply"}
# A JSON answer comes in one message, its body (one_message.py): the response-headers
# hooks run inside it.
_MESSAGE_OF = {"response_headers": "response_body"}


def _timed(stage: str, phase: str, hook, is_async: bool, spent: dict):
    clock = time.perf_counter_ns
    if is_async:
        async def wrapped(*args):
            started = clock()
            try:
                return await hook(*args)
            finally:
                spent[(stage, phase)] += clock() - started
    else:
        def wrapped(*args):
            started = clock()
            try:
                return hook(*args)
            finally:
                spent[(stage, phase)] += clock() - started
    return wrapped


def instrument(pipeline, spent: dict) -> None:
    """Wraps every hook of `pipeline` in a timer adding to spent[(stage, phase)]."""
    for phase in HOOKS:
        wrapped = []
        for stage in pipeline.stages:
            hook = getattr(stage, phase, None)
            if hook is None:
                continue
            is_async = inspect.iscoroutinefunction(hook)
            # The runner awaits only hooks it knows to be coroutines: keep that.
            wrapped.append((_timed(stage.name, phase, hook, is_async, spent), is_async))
        pipeline._hooks[phase] = wrapped


async def profile(rounds: int, budget: bool, prompt, unread: bool = False) -> tuple[dict, dict, float, float]:
    config = load_config(pipe.bench_config(budget, unread))
    sys.stdout = open(os.devnull, "w")
    runtime = Runtime(config)
    metrics.batch_writes()
    sequence = pipe.unread_messages() if unread else pipe.messages(prompt)
    envoy = yaml.safe_load((pipe.ROOT / "envoy" / "quickstart.yaml").read_text())
    manager = envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    features = announced_features(next(f["typed_config"] for f in manager["http_filters"] if f["name"] == EXT_PROC))
    spent: dict = defaultdict(int)
    per_call: dict = defaultdict(list)          # (stage, phase) -> ns per call
    instrument(runtime.pipeline, spent)
    pipeline = runtime.pipeline
    for index in range(200 + rounds):
        if index == 200:
            per_call.clear()
            cpu_started, wall_started = time.thread_time(), time.perf_counter()
        spent.clear()
        call = Call(runtime.config, features)
        for message in sequence:
            started = time.thread_time_ns()
            request = read_message(message)
            phase = request.phase
            await pipeline.handle(call, request)
            spent[("(whole phase)", phase)] += time.thread_time_ns() - started
        started = time.thread_time_ns()
        await pipeline.run_done(call)
        spent[("(whole phase)", "done")] += time.thread_time_ns() - started
        await asyncio.sleep(0)
        if index % 100 == 0:
            metrics.flush()
        for key, value in spent.items():
            per_call[key].append(value)
    cpu = (time.thread_time() - cpu_started) / rounds * 1e6
    wall = (time.perf_counter() - wall_started) / rounds * 1e6
    sys.stdout = sys.__stdout__
    if unread:
        assert call.body_unread and call.status == 200 and call.usage, "not the unread path"
    else:
        assert call.response_in_body and call.status == 200 and call.usage, "not the one-message JSON path"
    return per_call, {stage.name: stage for stage in pipeline.stages}, cpu, wall


def table(per_call: dict, rounds: int) -> str:
    phases = [p for p in HOOKS if any(ph == p for _, ph in per_call)]
    stages = []
    for stage, _ in per_call:
        if stage not in stages and stage != "(whole phase)":
            stages.append(stage)
    med = {k: statistics.median(v) / 1000 for k, v in per_call.items()}
    mean = {k: sum(v) / len(v) / 1000 for k, v in per_call.items()}
    head = "| stage | " + " | ".join(PHASE_NAMES.get(p, p) for p in phases) + " | all phases |"
    rows = [head, "|---" * (len(phases) + 2) + "|"]

    def cell(key) -> str:
        return f"{med[key]:.1f} ({mean[key]:.1f})" if key in med else "-"

    for stage in stages:
        total_med = sum(med.get((stage, p), 0) for p in phases)
        rows.append(f"| `{stage}` | " + " | ".join(cell((stage, p)) for p in phases) + f" | {total_med:.1f} |")
    runner = []
    for p in phases:
        whole = ("(whole phase)", p)
        hooks = sum(med.get((s, q), 0) for s in stages for q in phases if _MESSAGE_OF.get(q, q) == p)
        runner.append(f"{med[whole] - hooks:.1f}" if whole in med else "-")
    rows.append("| runner (outside hooks, median phase − Σ medians) | " + " | ".join(runner) + " | |")
    wholes = [med.get(("(whole phase)", p), 0) for p in phases]
    rows.append("| **whole message** | " + " | ".join(f"**{w:.1f}**" if w else "-" for w in wholes)
                + f" | **{sum(wholes):.1f}** |")
    return "\n".join(rows)


def timer_cost() -> float:
    """µs a timed hook adds to its cell: a wrapped hook that does nothing."""
    spent: dict = defaultdict(int)
    empty = _timed("empty", "x", lambda *args: None, False, spent)
    samples = []
    for _ in range(5):
        started = time.perf_counter_ns()
        for _ in range(20000):
            empty(None)
        samples.append((time.perf_counter_ns() - started) / 20000 / 1000)
    return min(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3000)
    parser.add_argument("--history-kb", type=int, help="an agent's history of this size, resent every call")
    parser.add_argument("--no-budget", action="store_true", help="no budget applies to the caller")
    parser.add_argument("--unread", action="store_true", help="a call whose policy reads nothing of its body")
    args = parser.parse_args()
    prompt = pipe.guardrails_bench.history(args.history_kb) if args.history_kb else pipe.PROMPT
    per_call, _, cpu, wall = asyncio.run(profile(args.rounds, not args.no_budget, prompt, args.unread))
    what = f"{args.history_kb} KB history resent" if args.history_kb else "short chat message"
    if args.unread:
        what += ", its body unread (request headers and trailers)"
    print(f"quickstart pipeline, gpt-4o-mini JSON call, {what}, "
          f"{'no budget' if args.no_budget else 'token budget (SQLite, allotments)'}, {args.rounds} calls")
    print("µs per call: median (mean)\n")
    print(table(per_call, args.rounds))
    print(f"\nthread CPU per call over the loop: {cpu:.0f} µs (wall {wall:.0f} µs); "
          f"a timed hook that does nothing: {timer_cost():.2f} µs")


if __name__ == "__main__":
    main()
