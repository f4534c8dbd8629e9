"""Benchmark: the response cache. A hit against Envoy alone's JSON rate, and the worker
CPU a miss costs with the cache on against the same call with it off.

    .venv/bin/python bench/cache.py [--seconds 5] [--rounds 2]

The sides of bench/sides.py (Envoy and one worker on core 0, the mock and wrk on core 1),
the quickstart pipeline (key check, request guardrails, a token budget in SQLite, usage,
metrics, the log line) with a cache rule for `gpt-4o-mini` (team research, team scope) and
none for `gpt-4o`: the same key, budget and guardrails on both models, so the cache is the
only difference.

- hits: the same JSON request again and again (one miss first), answered by the worker at
  the request body; against Envoy alone proxying the same JSON to the mock.
- misses: every request new (a count in its prompt), so each one misses, goes to the
  provider and is stored (an SQLite write after the answer); against the same requests
  to `gpt-4o`, which no rule caches. Rounds alternate; worker CPU per request from /proc.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import FRESH_MARK, PROMPT, ensure_wrk, wrk  # noqa: E402
from sides import KEYS, cpu_seconds, start_sides  # noqa: E402


def _cached(config: dict) -> None:
    config["cache"] = {"rules": [{"models": ["gpt-4o-mini"], "teams": ["research"], "scope": "team"}]}


def _body(model: str, fresh: bool) -> str:
    prompt = f"{PROMPT} {FRESH_MARK}" if fresh else PROMPT
    return '{"model":"%s","stream":false,"messages":[{"role":"user","content":"%s"}]}' % (model, prompt)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    binary = ensure_wrk()
    with contextlib.ExitStack() as cleanup:
        sides = start_sides(cleanup, edit=_cached)
        gateway, alone = sides.urls["gateway"], sides.urls["envoy alone"]
        warm = httpx.post(gateway, content=_body("gpt-4o-mini", False), timeout=10,
                          headers={"authorization": f"Bearer {KEYS['gateway']}", "content-type": "application/json"})
        assert warm.status_code == 200, warm.text
        rates: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for label, url, key, body in (
                    ("Envoy alone, JSON", alone, KEYS["envoy alone"], _body("gpt-4o-mini", False)),
                    ("gateway, cache hit", gateway, KEYS["gateway"], _body("gpt-4o-mini", False))):
                result = _measured(binary, url, key, body, args, sides, cpu, label, fresh=False)
                rates.setdefault(label, []).append(result["rps"])
            for label, model in (("miss, cache off", "gpt-4o"), ("miss, cache on", "gpt-4o-mini")):
                result = _measured(binary, gateway, KEYS["gateway"], _body(model, True), args, sides, cpu,
                                   label, fresh=True)
                rates.setdefault(label, []).append(result["rps"])
        stats = httpx.get(f"{sides.stack.admin_url}/cache/stats").json()
    for label, values in rates.items():
        line = f"{label:<22} {statistics.median(values):>8,.0f} req/s (rounds: {', '.join(f'{v:,.0f}' for v in values)})"
        if label in cpu:
            line += f"   worker CPU {statistics.median(cpu[label]):,.0f} µs/request"
        line += f", Envoy CPU {statistics.median(cpu[label + ' envoy']):,.0f} µs/request"
        print(line)
    hit = statistics.median(rates["gateway, cache hit"]) / statistics.median(rates["Envoy alone, JSON"])
    on, off = statistics.median(cpu["miss, cache on"]), statistics.median(cpu["miss, cache off"])
    # Each round's miss against the cache-off run just before it: the host's load moves
    # between rounds more than between two runs of one round.
    per_round = [a / b for a, b in zip(cpu["miss, cache on"], cpu["miss, cache off"])]
    print(f"a hit at {hit:.2f}x Envoy alone's JSON rate; a miss costs {on / off:.3f}x the worker CPU "
          f"of the cache off ({on - off:+,.0f} µs/request; per round {', '.join(f'{r:.3f}x' for r in per_round)}); "
          f"entries stored: {stats['entries']:,}")


def _measured(binary: str, url: str, key: str, body: str, args, sides, cpu: dict, label: str,
              fresh: bool) -> dict:
    """One wrk run; the CPU per request of the worker (gateway rows) and of the side's Envoy."""
    envoys = [sides.alone.pid] if label.startswith("Envoy alone") else sides.envoys
    workers = [] if label.startswith("Envoy alone") else sides.workers
    before = sum(cpu_seconds(p) for p in workers), sum(cpu_seconds(p) for p in envoys)
    result = wrk(binary, url, key, body, args.seconds, args.connections, fresh=fresh)
    if result["errors"]:
        raise RuntimeError(f"{label}: {result['errors']} non-2xx answers")
    requests = max(1, result["requests"])
    if workers:
        cpu.setdefault(label, []).append((sum(cpu_seconds(p) for p in workers) - before[0]) / requests * 1e6)
    cpu.setdefault(label + " envoy", []).append((sum(cpu_seconds(p) for p in envoys) - before[1]) / requests * 1e6)
    return result


if __name__ == "__main__":
    main()
