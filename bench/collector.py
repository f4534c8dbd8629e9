"""Python's collector in a loaded worker: how many passes of each generation it made and
what share of the worker's CPU they took, under one of bench/run.py's loads.

    .venv/bin/python bench/collector.py [--modes json] [--seconds 20]

The in-process benches (pipeline.py, stage_profile.py, instructions.py) make one call at
a time, so they never hold what a worker holds under load: the calls in flight. That is
what sets the collector off (docs/decisions/collector-young-generation.md). Here
bench/run.py's gateway side runs with a `gc.callbacks` hook loaded into every Python
process of the stack (a `sitecustomize` module on PYTHONPATH, which the supervisor, its
fork server and the workers forked from it all import or inherit); each process writes
its passes' counts and times, restarted when it is forked, to a file of its own, and the
workers' are printed after the load.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The hook: each pass timed; what a process counted is written at most every 0.5 s
# (`STATS_DIR`/<pid>: its command line, then passes, ms and freed objects per generation,
# and its CPU seconds), and restarted in a forked child.
HOOK = '''
import gc, os, time
_dir = os.environ.get("LLMGW_COLLECTOR_STATS")
_s = {}
def _reset():
    _s.update(started=0.0, written=0.0, passes=[0, 0, 0], ms=[0.0, 0.0, 0.0], freed=[0, 0, 0])
def _pass(phase, info):
    if phase == "start":
        _s["started"] = time.perf_counter()
        return
    generation = info["generation"]
    _s["passes"][generation] += 1
    _s["ms"][generation] += (time.perf_counter() - _s["started"]) * 1000
    _s["freed"][generation] += info["collected"]
    if time.monotonic() - _s["written"] >= 0.5:
        _s["written"] = time.monotonic()
        with open(os.path.join(_dir, str(os.getpid())), "w") as out:
            command = open("/proc/self/cmdline", "rb").read().replace(b"\\0", b" ").decode(errors="replace")
            out.write(f"{command}\\n{_s['passes']}\\n{_s['ms']}\\n{_s['freed']}\\n{time.process_time()}\\n")
if _dir:
    _reset()
    gc.callbacks.append(_pass)
    os.register_at_fork(after_in_child=_reset)
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="json", help="bench/run.py's modes (comma-separated)")
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    for mode in args.modes.split(","):
        with tempfile.TemporaryDirectory(prefix="llmgw-collector-") as work:
            hook, stats = Path(work) / "hook", Path(work) / "stats"
            hook.mkdir()
            stats.mkdir()
            (hook / "sitecustomize.py").write_text(HOOK)
            env = {**os.environ, "LLMGW_COLLECTOR_STATS": str(stats),
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))}
            run = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--throughput-only",
                                  "--modes", mode, "--seconds", str(args.seconds), "--rounds", "1"],
                                 env=env, capture_output=True, text=True, check=True)
            rate = next((line for line in run.stdout.splitlines() if line.startswith(mode) and "gateway" in line), "")
            print(f"{mode}: {' '.join(rate[len(mode):].split()[1:2])} req/s (bench/run.py, {args.seconds} s, one round)")
            workers = 0
            for found in stats.iterdir():
                command, passes, ms, freed, cpu = found.read_text().splitlines()[:5]
                if " worker " not in f" {command} ":
                    continue
                workers += 1
                spent, cpu_s = sum(map(float, ms.strip("[]").split(","))), float(cpu)
                # (written at a pass: `cpu_s` is the worker's CPU by its last pass, not by the end)
                share = f", {spent / 10 / cpu_s:.1f}% of its CPU until then" if cpu_s >= 1 else ""
                print(f"  worker {found.name}: passes by generation {passes}, {spent:.1f} ms in all, "
                      f"objects freed {freed}; the last pass after {cpu_s:.2f} s of its CPU{share}")
            if not workers:
                print("  the worker made no pass")


if __name__ == "__main__":
    main()
