"""`extproc runs list | show ID`: agent runs and their calls in order (store/runs.py),
read from the store the gateway uses (the SQLite file under `--state-dir`, or the Redis
of the config's `store:`)."""

from __future__ import annotations

import json
import sys
import time

from ..store.runs import find_run, list_runs
from .operator_cli import operator_config


def add_runs_parser(commands) -> None:
    runs = commands.add_parser("runs", help="agent runs: their totals, limits' outcomes and calls in order")
    actions = runs.add_subparsers(dest="action", required=True)

    def common(parser) -> None:
        parser.add_argument("--state-dir", help="the state dir `extproc up` uses (SQLite store)")
        parser.add_argument("--config", help="filter config whose store to read (default: the shipped quickstart)")
        parser.add_argument("--json", action="store_true", help="print JSON")

    listing = actions.add_parser("list", help="the latest runs (a call in the last --hours)")
    listing.add_argument("--key", default="", help="only this key's runs (its id)")
    listing.add_argument("--hours", type=float, default=24.0)
    listing.add_argument("--limit", type=int, default=100)
    common(listing)
    show = actions.add_parser("show", help="one run (its id, the start of it, or its name) and its calls")
    show.add_argument("id")
    common(show)


def cmd_runs(args) -> int:
    config = operator_config(args)
    if config is None:
        return 2
    if args.action == "list":
        runs = list_runs(config.store, limit=max(1, args.limit), key_id=args.key,
                         since=time.time() - args.hours * 3600)
        print(json.dumps(runs, indent=2) if args.json else _table(runs))
        return 0
    run = find_run(config.store, args.id)
    if run is None:
        print(f"extproc runs show: no run '{args.id[:80]}' (or more than one starts so)", file=sys.stderr)
        return 1
    print(json.dumps(run, indent=2) if args.json else _details(run))
    return 0


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def _table(runs: list[dict]) -> str:
    lines = [f"{'run':<24}  {'name':<24} {'key':<10} {'client':<12} {'calls':>5} {'mcp':>4} "
             f"{'tokens':>9} {'cost_usd':>10}  {'outcome':<14} last call (UTC)"]
    for run in runs:
        lines.append(f"{run['id']:<24}  {run['name'][:24]:<24} {run['key'][:10]:<10} {run['client'] or '-':<12} "
                     f"{run['calls']:>5} {run['mcp_calls']:>4} {run['input_tokens'] + run['output_tokens']:>9} "
                     f"{run['cost_usd']:>10.4f}  {run['outcome']:<14} {_when(run['last_ts'])}")
    return "\n".join(lines + _one_call_keys(runs)) if runs else "no runs"


ONE_CALL_RUNS = 5       # a key with at least this many runs listed, every one a single call, is flagged


def _one_call_keys(runs: list[dict]) -> list[str]:
    """Keys whose runs are all one call long: a caller naming a new run on every call,
    whom run limits do not bound (its key's budgets and `max_runs_per_hour` do)."""
    by_key: dict[str, list[int]] = {}
    for run in runs:
        by_key.setdefault(run["key"], []).append(run["calls"] + run["mcp_calls"])
    return [f"note: key {key}: {len(sizes)} runs, each one call long (a new run id on every call? run limits "
            "do not bound it; its budgets and max_runs_per_hour do)"
            for key, sizes in sorted(by_key.items()) if len(sizes) >= ONE_CALL_RUNS and max(sizes) == 1]


def _details(run: dict) -> str:
    lines = [f"run {run['id']} ({run['name']}, from {run['source']}{', inferred' if run.get('inferred') else ''}), "
             f"key {run['key']} "
             f"(user {run['user']}, team {run['team']}), client {run['client'] or '-'}",
             f"models {', '.join(run['models']) or '-'}; {run['model_calls']} model calls, {run['mcp_calls']} MCP "
             f"calls, {run['refused']} refused; {run['input_tokens']} in / {run['output_tokens']} out tokens, "
             f"${run['cost_usd']:.4f}; outcome {run['outcome']}",
             f"{_when(run['first_ts'])} .. {_when(run['last_ts'])} UTC", ""]
    for call in run["calls"]:
        what = call.get("tool") or call.get("model") or "-"
        extra = f" {call['error_code']}" if call.get("error_code") else ""
        tools = f" carries back {','.join(call['tool_calls'])}" if call.get("tool_calls") else ""
        lines.append(f"{_when(call['ts'])}  {call.get('kind') or 'model':<5} {what:<28} {call.get('status', '')}{extra}"
                     f"  {call.get('input_tokens', 0)}+{call.get('output_tokens', 0)} tok  "
                     f"${call.get('cost_usd', 0.0):.6f}  {call.get('latency_ms', 0):.0f} ms{tools}")
    return "\n".join(lines)
