"""A call whose policy reads nothing of its body (stages/body_unread.py) against Envoy
alone, the same gateway's call whose policy reads it, and the transport's floor for each
(bench/floor.py's do-nothing servicer: 3 messages, and the 2 of the unread path), all in
one run, interleaved:

    .venv/bin/python bench/body_unread.py [--seconds 6] [--rounds 2] [--connections 32] [--modes json,sse]

The gateway is bench/run.py's (bench/sides.py: the quickstart, every feature on, one
worker; Envoy and the worker on core 0, mock and wrk on core 1) with two more keys of a
team whose callers are not agents (`runs.teams` names the quickstart's two, so the run
limits and loop stopping, which read every body, do not apply to it) and no guardrail;
one of them with no budget or cache rule either. The "read" row is alice's call (the
quickstart's guardrails, a token budget for her team): three messages. The "unread" row
is the other key's: two (request headers; the trailers at the answer's end). The
"unread, budgeted" row is a third key's, with a token budget and no guardrail: two
messages, its budget reserved at the headers (stages/budget/unread.py).

Then one request at a time, the sides' requests interleaved (Envoy alone, read, unread,
in turn, --samples each: so a slow minute on this VM is every side's; for JSON the two
floors too): p50, p90 and p99, and what each adds to Envoy alone's. Each throughput row's CPU per request:
the worker's (or the do-nothing servicer's) and Envoy's, and the share of core 0 they kept
busy: a side well under 100% was bound by core 1 (the mock and wrk), not by core 0.
`sse`: the same calls streamed, the usage asked for (a stream passed through: three
messages read, two unread); its floors are not measured. `json 400KB`: an agent's 400 KB
history resent (bench/run.py's `json 400KB resent`), with its floors.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from floor import floor_stack, measure_row, under_load  # noqa: E402
from run import PROMPT, ensure_wrk, history_body  # noqa: E402
from sides import KEYS, start_sides  # noqa: E402

UNREAD_KEY = "sk-bench-unread"
BUDGETED_KEY = "sk-bench-unread-budgeted"
BODIES = {
    "json": '{"model":"gpt-4o-mini","stream":false,"messages":[{"role":"user","content":"%s"}]}' % PROMPT,
    "sse": '{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},'
           '"messages":[{"role":"user","content":"%s"}]}' % PROMPT,
    # An agent's history resent whole (bench/run.py's): what the unread path leaves in Envoy.
    "json 400KB": history_body(400, False),
}


def with_unread_key(config: dict) -> None:
    """Keys of a team that is not an agent's (`runs.teams` names the quickstart's two) and
    that no guardrail applies to: one with no budget, one with a token budget."""
    config["runs"]["teams"] = ["research", "support"]
    config["keys"].append({"id": "unread", "key": UNREAD_KEY, "team": "batch", "models": "*"})
    config["keys"].append({"id": "budgeted", "key": BUDGETED_KEY, "team": "batch", "models": "*"})
    config["budgets"].append({"name": "budgeted-tokens", "scope": "key", "match": "budgeted", "unit": "tokens",
                              "limit": 10**12, "window": "month"})
    guardrails = config["guardrails"]
    policies = guardrails.setdefault("policies", {"default": [rule["name"] for rule in guardrails["rules"]]})
    policies.setdefault("keys", {}).update(unread=[], budgeted=[])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--modes", default="json,sse", help="json, sse, json 400KB (comma-separated)")
    parser.add_argument("--samples", type=int, default=1000, help="requests per side one at a time")
    args = parser.parse_args()
    modes = [mode.strip() for mode in args.modes.split(",")]
    binary = ensure_wrk()
    rows: dict[tuple[str, str], list[dict]] = {}
    with contextlib.ExitStack() as cleanup:
        sides = start_sides(cleanup, edit=with_unread_key)
        gateway_url, alone_url = sides.urls["gateway"], sides.urls["envoy alone"]
        workdir = sides.stack.workdir
        measured = {
            "Envoy alone": (alone_url, KEYS["envoy alone"], [sides.alone.pid], []),
            "gateway, body read": (gateway_url, KEYS["gateway"], sides.envoys, sides.workers),
            "gateway, body unread": (gateway_url, UNREAD_KEY, sides.envoys, sides.workers),
            "gateway, unread, budgeted": (gateway_url, BUDGETED_KEY, sides.envoys, sides.workers),
        }
        paths_taken(sides.stack, measured)
        for _ in range(args.rounds):
            for mode in modes:
                body = BODIES[mode]
                for label, (url, key, envoys, workers) in measured.items():
                    result, cpu = under_load(binary, url, key, body, args, [*envoys, *workers])
                    rows.setdefault((mode, label), []).append({
                        "rps": result["rps"], "p50": result["p50"], "p99": result["p99"],
                        "errors": result["errors"], "envoy_us": sum(cpu[:len(envoys)]),
                        "servicer_us": sum(cpu[len(envoys):])})
                if mode.startswith("json"):
                    for pattern in ("3", "2 unread"):
                        rows.setdefault((mode, f"floor, {pattern} messages"), []).append(
                            measure_row(binary, workdir, sides.mock_port, pattern, "h2", body, args))
        # The do-nothing floors in the rotation too, for JSON: what any ext_proc adds to a
        # request that comes alone, before doing anything.
        with floor_stack(workdir, sides.mock_port, "3", "h2", args) as (three, _), \
                floor_stack(workdir, sides.mock_port, "2 unread", "h2", args) as (two, _):
            floors_too = {**measured, "floor, 3 messages": (three, "k", [], []),
                          "floor, 2 unread messages": (two, "k", [], [])}
            latency = {mode: one_at_a_time(floors_too if mode.startswith("json") else measured, BODIES[mode],
                                           args.samples) for mode in modes}
    print(f"{args.rounds} interleaved rounds x {args.seconds}s, {args.connections} connections; Envoy and one "
          f"worker (or the do-nothing servicer) on core 0, mock + wrk on core 1; chat, short prompt "
          f"(json 400KB: a 400 KB history)")
    print(f"{'traffic':<5} {'side':<26} {'req/s':>7} {'vs Envoy':>9} {'vs floor':>9} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'worker/req':>11} {'Envoy/req':>10} {'core 0':>7}")
    floors = {"gateway, body read": "floor, 3 messages", "gateway, body unread": "floor, 2 unread messages",
              "gateway, unread, budgeted": "floor, 2 unread messages"}
    for mode in modes:
        alone = statistics.median(r["rps"] for r in rows[(mode, "Envoy alone")])
        for (row_mode, label), runs in rows.items():
            if row_mode != mode:
                continue
            rps = statistics.median(r["rps"] for r in runs)
            floor = rows.get((mode, floors.get(label, "")))
            versus_floor = f"{rps / statistics.median(r['rps'] for r in floor):.2f}" if floor else "-"
            print(f"{mode:<5} {label:<26} {rps:>7.0f} {rps / alone:>8.2f}x {versus_floor:>9} "
                  f"{statistics.median(r['p50'] for r in runs):>7.2f} {statistics.median(r['p99'] for r in runs):>7.2f} "
                  f"{statistics.median(r['servicer_us'] for r in runs):>8.0f} us "
                  f"{statistics.median(r['envoy_us'] for r in runs):>7.0f} us "
                  f"{statistics.median(core_zero(r) for r in runs):>6.0%}")
    print("core 0: the share of core 0 a side's Envoy and worker kept busy (CPU per request x rate); a side "
          "well under 100% was bound by core 1 (the mock and wrk), so ratios against it are upper bounds")
    errors = sum(r["errors"] for runs in rows.values() for r in runs)
    print(f"non-2xx answers: {errors}")
    print(f"\none request at a time, the sides interleaved, {args.samples} each (ms):")
    print(f"{'traffic':<5} {'side':<26} {'p50':>7} {'p90':>7} {'p99':>7} {'added p50':>10} {'added p99':>10}")
    for mode in modes:
        alone = latency[mode]["Envoy alone"]
        for label, (p50, p90, p99) in latency[mode].items():
            print(f"{mode:<5} {label:<26} {p50:>7.2f} {p90:>7.2f} {p99:>7.2f} {p50 - alone[0]:>+10.2f} "
                  f"{p99 - alone[2]:>+10.2f}")


def core_zero(row: dict) -> float:
    """The share of core 0 a round's Envoy and worker (or servicer) used."""
    return (row["servicer_us"] + row["envoy_us"]) * row["rps"] / 1e6


def paths_taken(stack, measured: dict) -> None:
    """Each gateway side's call takes the path its row names (its log line says)."""
    for label, (url, key, _, _) in measured.items():
        if not label.startswith("gateway"):
            continue
        rid = f"bench-path-{time.time_ns()}"
        httpx.post(url, content=BODIES["json"], timeout=30, headers={
            "authorization": f"Bearer {key}", "content-type": "application/json",
            "x-request-id": rid}).raise_for_status()
        unread = bool(stack.wait_for_record(rid).get("body_unread"))
        if unread != ("unread" in label):
            raise SystemExit(f"{label}: the call took the other path (body_unread: {unread})")


def one_at_a_time(sides: dict, body: str, samples: int) -> dict[str, tuple[float, float, float]]:
    """p50, p90 and p99 (ms) of each side's requests sent one at a time, the sides in turn."""
    clients = {label: httpx.Client(headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
                                   timeout=30) for label, (_, key, _, _) in sides.items()}
    times: dict[str, list[float]] = {label: [] for label in sides}
    for index in range(samples + 50):
        for label, (url, _, _, _) in sides.items():
            started = time.perf_counter()
            clients[label].post(url, content=body).raise_for_status()
            if index >= 50:                 # after a warm-up
                times[label].append((time.perf_counter() - started) * 1000)
    for client in clients.values():
        client.close()
    return {label: (statistics.median(spent), statistics.quantiles(spent, n=100)[89],
                    statistics.quantiles(spent, n=100)[98]) for label, spent in times.items()}


if __name__ == "__main__":
    main()
