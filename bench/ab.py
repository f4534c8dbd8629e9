"""Two versions of the gateway side by side, for an A/B of a change: this source tree's
(A) and another's (B, `--against PATH`: a `git worktree` of the version to compare). Each
is bench/sides.py's gateway (the quickstart pipeline, every feature on, one worker; its
Envoy and worker on core 0, its mock on core 1), and the do-nothing floor of three
messages (bench/floor.py) runs in the same rotation. The sides take turns round by round,
the order reversed every other round (A, B, floor; floor, B, A; ...), so that the hour's
speed, which moves a run's rates by 10% on this VM, falls on both alike:

    .venv/bin/python bench/ab.py --against PATH [--modes "json,json 400KB"] [--seconds 6] [--rounds 6]

Prints each side's medians (req/s, the worker's and Envoy's CPU per request, the share of
core 0 they kept busy, the ratio to the floor measured in the same rounds), then B
against A round by round: B's rate and its CPU per request (worker and Envoy together)
as ratios of A's in the same round, their medians, and in how many rounds B was ahead. A
change of a few percent, which separate runs an hour apart cannot tell from the VM's
drift, shows there.

B runs on this virtual environment, its own tree first on PYTHONPATH; its compiled modules
(extproc/transport/compiled.py) must be built from its own sources (`pip install -e .`
in it, or this tree's copied in when those sources are the same): the bench refuses a
tree whose compiled modules are older than their sources, or compiled unlike this one's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from body_unread import BODIES, core_zero  # noqa: E402
from floor import floor_stack, under_load  # noqa: E402
from run import ensure_wrk  # noqa: E402
from sides import KEYS, start_sides  # noqa: E402

_PROBE = ("import extproc, extproc.transport.compiled as c; print(extproc.__file__); "
          "print(sorted(name for name, done in c.compiled().items() if done)); print(c.stale())")


def compiled_in(tree: Path) -> str:
    """Which modules run compiled when `tree` is first on the path; exits when the tree's
    code is not what would run, or its compiled modules are older than their sources."""
    found = subprocess.run([sys.executable, "-c", _PROBE], cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)},
                           capture_output=True, text=True, timeout=120)
    if found.returncode != 0:
        raise SystemExit(f"{tree}: extproc does not import: {found.stderr.strip()[-500:]}")
    path, compiled, stale = found.stdout.splitlines()
    if not Path(path).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"{tree}: extproc imports from {path}, not from the tree")
    if stale != "[]":
        raise SystemExit(f"{tree}: compiled modules older than their sources: {stale} (`pip install -e .` there)")
    return compiled


def round_order(index: int) -> list[str]:
    """The sides in a round: reversed every other round."""
    order = ["A", "B", "floor"]
    return order if index % 2 == 0 else order[::-1]


def row(result: dict, cpu: list[float], envoys: int) -> dict:
    return {"rps": result["rps"], "errors": result["errors"], "envoy_us": sum(cpu[:envoys]),
            "servicer_us": sum(cpu[envoys:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", required=True, type=Path, help="the other version's source tree (B)")
    parser.add_argument("--modes", default="json", help="json, sse, json 400KB (comma-separated)")
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    modes = [mode.strip() for mode in args.modes.split(",")]
    unknown = [mode for mode in modes if mode not in BODIES]
    if unknown:
        raise SystemExit(f"unknown modes {unknown}: {', '.join(BODIES)}")
    against = args.against.resolve()
    mine, theirs = compiled_in(ROOT), compiled_in(against)
    if mine != theirs:
        raise SystemExit(f"compiled unlike this tree: {against} runs {theirs} compiled, this one {mine}")
    binary = ensure_wrk()
    rows: dict[tuple[str, str], list[dict]] = {}
    with contextlib.ExitStack() as cleanup:
        sides = {"A": start_sides(cleanup, env={"PYTHONPATH": str(ROOT)}),
                 "B": start_sides(cleanup, env={"PYTHONPATH": str(against)})}
        workdir = sides["A"].stack.workdir
        for index in range(args.rounds):
            for mode in modes:
                body = BODIES[mode]
                for side in round_order(index):
                    if side == "floor":
                        with floor_stack(workdir, sides["A"].mock_port, "3", "h2", args) as (url, pids):
                            result, cpu = under_load(binary, url, "k", body, args, pids)
                        rows.setdefault((mode, side), []).append(row(result, cpu[::-1], 1))   # (Envoy first)
                        continue
                    gateway = sides[side]
                    result, cpu = under_load(binary, gateway.urls["gateway"], KEYS["gateway"], body, args,
                                             [*gateway.envoys, *gateway.workers])
                    rows.setdefault((mode, side), []).append(row(result, cpu, len(gateway.envoys)))
    report(args, modes, rows, against)


def report(args, modes: list[str], rows: dict, against: Path) -> None:
    print(f"{args.rounds} rounds x {args.seconds}s per side, {args.connections} connections, the order reversed "
          f"every other round; A: {ROOT}, B: {against}")
    print(f"{'traffic':<11} {'side':<6} {'req/s':>7} {'vs floor':>9} {'worker/req':>11} {'Envoy/req':>10} "
          f"{'core 0':>7}")
    for mode in modes:
        floor = statistics.median(r["rps"] for r in rows[(mode, "floor")])
        for side in ("A", "B", "floor"):
            runs = rows[(mode, side)]
            rps = statistics.median(r["rps"] for r in runs)
            versus = "-" if side == "floor" else f"{rps / floor:.3f}"
            print(f"{mode:<11} {side:<6} {rps:>7.0f} {versus:>9} "
                  f"{statistics.median(r['servicer_us'] for r in runs):>8.0f} us "
                  f"{statistics.median(r['envoy_us'] for r in runs):>7.0f} us "
                  f"{statistics.median(core_zero(r) for r in runs):>6.0%}")
    print("\nB against A, round by round (B's rate / A's; B's CPU per request, worker and Envoy, / A's):")
    for mode in modes:
        pairs = list(zip(rows[(mode, "A")], rows[(mode, "B")]))
        rate = [b["rps"] / a["rps"] for a, b in pairs]
        cpu = [(b["servicer_us"] + b["envoy_us"]) / (a["servicer_us"] + a["envoy_us"]) for a, b in pairs]
        print(f"{mode:<11} rate {' '.join(f'{r:.3f}' for r in rate)}: median {statistics.median(rate):.3f}, "
              f"B ahead in {sum(r > 1 for r in rate)} of {len(rate)}")
        print(f"{'':<11} CPU  {' '.join(f'{c:.3f}' for c in cpu)}: median {statistics.median(cpu):.3f}, "
              f"B cheaper in {sum(c < 1 for c in cpu)} of {len(cpu)}")
    errors = sum(r["errors"] for runs in rows.values() for r in runs)
    print(f"non-2xx answers: {errors}")


if __name__ == "__main__":
    main()
