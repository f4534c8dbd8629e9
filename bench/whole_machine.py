"""The whole machine: Envoy alone and the gateway each given every core, as deployed,
nothing pinned. Envoy alone runs one Envoy worker thread per core; the gateway runs
`extproc up` with one ext_proc worker per core (and Envoy with as many threads, as it
starts it). The mock provider and the load generator share the same cores: on a
two-core VM nothing else is available, so the ratios here are the whole host's, load
generator included, for both sides alike.

    .venv/bin/python bench/whole_machine.py [--seconds 8] [--rounds 2] [--rate 500] [--unread]

Per side, in interleaved rounds, JSON chat completions (bench/run.py's body):
- the most it answers, 64 connections, closed loop: req/s and its ratio to Envoy alone;
- a fixed rate (`--rate`, arrivals spread at random over 32 connections, each pausing the
  interval less the latency a short first run measured): p50 and p99, and what the gateway
  adds to each;
- one request at a time (one connection, closed loop): p50 and p99 added.
The CPU each request cost, per process group, from /proc. Medians of the rounds.
`--unread`: two more sides, the same gateway's calls from a key no policy applies to, and
from a key with a token budget and no guardrail, routed at their headers with their body
unread (stages/body_unread.py, stages/budget/unread.py; both keys of a team whose callers
are not agents, so the quickstart's run limits and loop stopping, `runs.teams`, do not
read their bodies).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import tempfile
from pathlib import Path

from body_unread import BUDGETED_KEY, UNREAD_KEY, with_unread_key
from run import PROMPT, ensure_wrk, wrk
from sides import KEYS, children, cmdline, cpu_seconds, envoy_alone

from gateway_stack import GatewayStack, quickstart_config

CORES = os.cpu_count() or 1
LOADS = ("most", "rate", "one")       # as many as it answers; the fixed rate; one at a time
RATE_CONNECTIONS = 32                 # for the fixed rate: each pauses ~64 ms between requests at 500 req/s


UNREAD = "gateway, body unread"
BUDGETED = "gateway, unread, budgeted"


def start(cleanup: contextlib.ExitStack, unread: bool = False) -> tuple[dict[str, str], dict[str, dict[str, list[int]]]]:
    """Both sides on every core: their URLs, and their process groups (for CPU per request)."""
    workdir = Path(tempfile.mkdtemp(prefix="llmgw-whole-"))
    config = quickstart_config()
    config["budgets"].append({"name": "bench-team-tokens", "scope": "team", "match": "research",
                              "unit": "tokens", "limit": 10**12, "window": "month"})
    if unread:
        with_unread_key(config)
    stack = GatewayStack(workdir, config, workers=CORES)
    cleanup.callback(stack.stop)
    stack.start()
    up = stack.process.pid
    workers = [p for p in children(up) if " worker " in cmdline(p)]
    envoys = [p for p in children(up) if "envoy" in cmdline(p).split(" ")[0]]
    alone, port = envoy_alone(workdir, stack.mock_ports["mock"], concurrency=CORES)
    cleanup.callback(alone.send_signal, signal.SIGTERM)
    urls = {"envoy alone": f"http://127.0.0.1:{port}/v1/chat/completions",
            "gateway": f"{stack.base_url}/chat/completions"}
    groups = {"envoy alone": {"envoy": [alone.pid]}, "gateway": {"worker": workers, "envoy": envoys}}
    if unread:
        for side in (UNREAD, BUDGETED):
            urls[side], groups[side] = urls["gateway"], groups["gateway"]
    return urls, groups


def measure(binary: str, url: str, key: str, body: str, load: str, seconds: int, rate: float) -> dict:
    if load == "most":
        return wrk(binary, url, key, body, seconds, 64, cores=None, threads=CORES)
    if load == "rate":
        # Each connection pauses between its answer and its next request (wrk's delay), so
        # the rate reached is connections / (pause + latency): the pause is the interval
        # less the latency a short first run measured, for the rate asked.
        interval_ms = 1000 * RATE_CONNECTIONS / rate
        probe = wrk(binary, url, key, body, 2, RATE_CONNECTIONS, interval_ms, spread=True, cores=None, threads=CORES)
        latency_ms = 1000 * RATE_CONNECTIONS / max(probe["rps"], 1.0) - interval_ms
        pause_ms = max(0.1, interval_ms - latency_ms)
        return wrk(binary, url, key, body, seconds, RATE_CONNECTIONS, pause_ms,
                   spread=True, cores=None, threads=CORES)
    return wrk(binary, url, key, body, seconds, 1, cores=None, threads=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate", type=float, default=500.0, help="the fixed rate, req/s")
    parser.add_argument("--unread", action="store_true", help="also a key whose calls' bodies go unread")
    args = parser.parse_args()
    keys = {**KEYS, UNREAD: UNREAD_KEY, BUDGETED: BUDGETED_KEY}
    binary = ensure_wrk()
    body = '{"model":"gpt-4o-mini","stream":false,"messages":[{"role":"user","content":"%s"}]}' % PROMPT
    rows: dict[tuple[str, str], list[dict]] = {}
    with contextlib.ExitStack() as cleanup:
        urls, groups = start(cleanup, args.unread)
        for side, url in urls.items():                  # warm-up, unmeasured
            wrk(binary, url, keys[side], body, 2, 16, cores=None, threads=CORES)
        for _ in range(args.rounds):
            for load in LOADS:
                for side, url in urls.items():
                    before = {what: sum(map(cpu_seconds, pids)) for what, pids in groups[side].items()}
                    result = measure(binary, url, keys[side], body, load, args.seconds, args.rate)
                    for what, pids in groups[side].items():
                        result[what] = (sum(map(cpu_seconds, pids)) - before[what]) / max(1, result["requests"]) * 1e6
                    rows.setdefault((load, side), []).append(result)
    report(rows, args, list(urls))


def report(rows: dict[tuple[str, str], list[dict]], args: argparse.Namespace, sides: list[str]) -> None:
    def median(load: str, side: str, field: str) -> float:
        return statistics.median(row.get(field, 0.0) for row in rows[(load, side)])

    names = {"most": "as many as it answers (64 connections)",
             "rate": f"{args.rate:g} req/s asked, arrivals spread ({RATE_CONNECTIONS} connections)",
             "one": "one request at a time"}
    print(f"\nJSON on the whole machine ({CORES} cores, nothing pinned; Envoy alone: {CORES} threads; gateway: "
          f"{CORES} ext_proc workers, Envoy {CORES} threads); {args.rounds} interleaved rounds x {args.seconds} s, "
          "medians\n")
    print("| load | side | req/s | vs Envoy alone | p50 ms | p99 ms | added p50 | added p99 | worker CPU/req | "
          "Envoy CPU/req | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for load in LOADS:
        for side in sides:
            rps = median(load, side, "rps")
            ratio = rps / median(load, "envoy alone", "rps")
            added = ("-", "-") if side == "envoy alone" else tuple(
                f"+{median(load, side, q) - median(load, 'envoy alone', q):.2f} ms" for q in ("p50", "p99"))
            worker = f"{median(load, side, 'worker'):,.0f} µs" if side != "envoy alone" else "-"
            errors = sum(row["errors"] for row in rows[(load, side)])
            print(f"| {names[load]} | {side} | {rps:,.0f} | {ratio:.2f}x | {median(load, side, 'p50'):.2f} | "
                  f"{median(load, side, 'p99'):.2f} | {added[0]} | {added[1]} | {worker} | "
                  f"{median(load, side, 'envoy'):,.0f} µs | {errors} |")


if __name__ == "__main__":
    main()
