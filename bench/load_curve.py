"""Latency and CPU per request against the request rate, arrivals spread at random:
Envoy alone and the gateway under the same paced JSON load (bench/run.py's paced
connections, each pause drawn at random), at several rates, in interleaved rounds.

    .venv/bin/python bench/load_curve.py [--rates 250,500,750,1000] [--rounds 2] [--seconds 6]

The sides are bench/run.py's (bench/sides.py: Envoy and the worker on core 0, the mock and
wrk on core 1). Per rate and side it prints the rate reached, p50 and p99, and the CPU each
request cost: the gateway's worker and Envoy, and Envoy alone's. Under full load a
request costs far less than when requests come apart (the core's caches are cold and
nothing is batched; bench/README.md "What bounds the design"): this shows how much, and
where the added p50 comes from at each rate.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics

from run import PACED_CONNECTIONS, PROMPT, ensure_wrk, wrk
from sides import KEYS, cpu_seconds, start_sides


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="250,500,750,1000", help="JSON req/s targets, comma-separated")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=6)
    args = parser.parse_args()
    rates = [float(rate) for rate in args.rates.split(",")]
    binary = ensure_wrk()
    body = '{"model":"gpt-4o-mini","stream":false,"messages":[{"role":"user","content":"%s"}]}' % PROMPT
    rows: dict[tuple[float, str], list[dict]] = {}
    with contextlib.ExitStack() as cleanup:
        sides = start_sides(cleanup)
        pids = {"envoy alone": {"envoy": [sides.alone.pid]},
                "gateway": {"worker": sides.workers, "envoy": sides.envoys}}
        for side, url in sides.urls.items():            # warm-up, unmeasured
            wrk(binary, url, KEYS[side], body, 2, 8)
        for _ in range(args.rounds):
            for rate in rates:
                for side, url in sides.urls.items():
                    before = {what: sum(map(cpu_seconds, group)) for what, group in pids[side].items()}
                    result = wrk(binary, url, KEYS[side], body, args.seconds, PACED_CONNECTIONS,
                                 1000 * PACED_CONNECTIONS / rate, spread=True)
                    for what, group in pids[side].items():
                        result[what] = (sum(map(cpu_seconds, group)) - before[what]) / max(1, result["requests"]) * 1e6
                    rows.setdefault((rate, side), []).append(result)

    def median(rate: float, side: str, field: str) -> float:
        return statistics.median(row[field] for row in rows[(rate, side)])

    print(f"\nJSON, arrivals spread ({PACED_CONNECTIONS} connections, random pauses); {args.rounds} interleaved "
          f"rounds x {args.seconds}s; Envoy (+1 ext_proc worker) on core 0, mock + wrk on core 1")
    print(f"{'target':>7} {'side':<12} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'added p50':>10} "
          f"{'worker CPU/req':>15} {'Envoy CPU/req':>14}")
    for rate in rates:
        for side in sides.urls:
            added = median(rate, side, "p50") - median(rate, "envoy alone", "p50")
            worker = f"{median(rate, side, 'worker'):.0f} us" if side == "gateway" else "-"
            print(f"{rate:>7.0f} {side:<12} {median(rate, side, 'rps'):>7.0f} {median(rate, side, 'p50'):>7.2f} "
                  f"{median(rate, side, 'p99'):>7.2f} {added if side == 'gateway' else 0:>9.2f}  "
                  f"{worker:>15} {median(rate, side, 'envoy'):>11.0f} us")


if __name__ == "__main__":
    main()
