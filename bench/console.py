"""Benchmark: each console page's time with a full store: 100k recent calls kept, 10k keys
made at run time (a third with budgets), and a day of meter counters for them.

The console runs as `extproc up` runs it (its own listener, the SQLite store under a
temporary state dir); a client signs in and loads each page in turn: once (the first load,
which reads the store), then `--rounds` times (the overview's and the spend page's sums are
reused for 3 s, console/data.py); the median and the slowest of these, and the CPU time of
the first load and the median one (the console's and the client's, one process: what the
machine's other load changes least).

    .venv/bin/python bench/console.py [--calls 100000] [--keys 10000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

PAGES = ["/", "/?window=month", "/keys", "/keys?q=team-7", "/keys/bench-key-42", "/budgets",
         "/spend?by=team&window=day", "/spend?by=key&by=model&window=month", "/spend.csv?by=key&window=day",
         "/calls", "/calls?team=team-3&status=error", "/calls?tag=agent%3Dplanner", "/guardrails", "/config"]
MODELS = ["gpt-4o-mini", "gpt-4o", "claude-sonnet-4-6", "gemini-2.5-flash"]
# The quickstart's first metered set (config/quickstart.yaml): the counters the pages read.
QUICKSTART_SET = ("key", "user", "team", "model", "backend", "tag:agent", "tag:task", "tag:branch")


def fill(state: Path, calls: int, keys: int) -> None:
    from extproc.store.calls import CallLog
    from extproc.store.keys import KeyBudget, StoredKey, digest_hex, new_secret
    from extproc.store.limits import StoreSettings, window_bounds
    from extproc.store.meters import MEASURES
    from extproc.store.sqlite_store import SQLiteStore

    path = str(state / "budgets.sqlite3")
    store = SQLiteStore(path, patient=True)
    now = time.time()
    made = []
    for n in range(keys):
        budgets = (KeyBudget("usd", 25.0, "month"),) if n % 3 == 0 else ()
        made.append(StoredKey(id=f"bench-key-{n}", sha256=digest_hex(new_secret()), user=f"user-{n}",
                              team=f"team-{n % 40}", models=None, budgets=budgets, created=now - n))
    store.put_records("key", [(k.id, k.to_json()) for k in made], None)
    store.put_record("keyset", "version", "bench", None)       # as KeyBook's changes leave it
    # A day of meter counters: each key called a few models in a few hours (the quickstart's
    # set of dimensions, tags included), and its budget's counter.
    day_start, _ = window_bounds("day", now)
    month_start, month_end = window_bounds("month", now)
    dims = ",".join(QUICKSTART_SET)
    counters = []
    rng = random.Random(7)
    for key in made:
        for _ in range(2):
            hour = int(day_start + 3600 * rng.randrange(0, max(1, int((now - day_start) // 3600) + 1)))
            model = rng.choice(MODELS)
            combination = (f"key={key.id};user={key.user};team={key.team};model={model};backend=mock;"
                           f"tag:agent=planner;tag:task=;tag:branch=")
            amounts = (3, 1500, 400, 0.004)
            counters += [(f"meter:{dims}.{m}|{combination}|{hour}", a, hour + 3600 + 40 * 86400)
                         for m, a in zip(MEASURES, amounts)]
        if key.budgets:
            counters.append((f"key:{key.id}.usd|{key.id}|{int(month_start)}", rng.random() * 25, month_end))
    store.close()
    connection = sqlite3.connect(path)
    connection.executemany("INSERT OR REPLACE INTO counters (counter, spent, held, expires) VALUES (?, ?, 0, ?)",
                           counters)
    connection.commit()
    connection.close()
    # The calls, as the workers write them (store/calls.py), in batches of 1,000.
    log = CallLog()
    settings = StoreSettings("sqlite", path, None, "closed", 900, 512)
    for start in range(0, calls, 1000):
        batch = []
        for n in range(start, min(calls, start + 1000)):
            key = made[n % keys]
            status = 200 if n % 50 else rng.choice([400, 429, 502])
            # A tenth answered from the response cache, and the 400s and 429s refused before
            # a backend: their records have none (the overview tells the two apart).
            hit = n % 10 == 5
            backend = None if hit or status in (400, 429) else "mock"
            batch.append({"ts": now - (calls - n) * 0.5, "request_id": f"req-{n}", "key_id": key.id, "user": key.user,
                          "team": key.team, "model": MODELS[n % 4], "backend": backend, "status": status,
                          "outcome": "ok" if status == 200 else "error", "input_tokens": 1500, "output_tokens": 400,
                          "cost_usd": 0.0 if hit else 0.004, "latency_ms": 200 + n % 700, "attempts": 1,
                          "tags": {"agent": "planner" if n % 2 else "coder"}, **({"cache": "hit"} if hit else {}),
                          **({"guardrails": [{"guardrail": "pii", "direction": "request", "verdict": "redacted"}]}
                             if n % 20 == 3 else {})})
        log._to_sqlite(path, batch, calls)
    print(f"filled: {keys:,} keys, {len(counters):,} counters, {calls:,} calls "
          f"({os.path.getsize(path) / 1e6:.0f} MB)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from gateway_stack import free_port, quickstart_config

    from extproc.config.filter_config import load_config
    from extproc.console.server import start_console
    from extproc.guardrails.config import detectors_not_made
    from extproc.runtime.keys_cli import run_operation

    work = Path(tempfile.mkdtemp(prefix="console-bench-"))
    os.environ["LLMGW_STATE_DIR"] = str(work)
    fill(work, args.calls, args.keys)
    config = quickstart_config()
    assert tuple(config["metering"]["dimensions"][0]) == QUICKSTART_SET, "the bench's counters are not the config's"
    config["console"]["listen"] = f"127.0.0.1:{free_port()}"
    config["console"]["calls"]["keep"] = args.calls
    path = work / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    with detectors_not_made():
        loaded = load_config(str(path), strict_credentials=False)
    server = start_console(loaded, run_operation)
    time.sleep(1.0)              # as a console some time up: it reads the run-time keys when it starts
    client = httpx.Client(base_url=f"http://{loaded.console.listen}", timeout=60)
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)[1]
    client.post("/login", data={"csrf": csrf, "token": "console-demo-admin-token", "name": "bench"})
    results = {}
    for page in PAGES:
        started, used = time.perf_counter(), time.process_time()
        answer = client.get(page)                  # the first load, and the page must load
        first = (time.perf_counter() - started) * 1000
        first_cpu = (time.process_time() - used) * 1000
        assert answer.status_code == 200, (page, answer.status_code)
        times, cpu = [], []
        for _ in range(args.rounds):
            started, used = time.perf_counter(), time.process_time()
            answer = client.get(page)
            times.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - used) * 1000)     # the console's thread and the client's
        results[page] = {"first_ms": round(first, 1), "first_cpu_ms": round(first_cpu, 1), "median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1),
                         "cpu_ms": round(statistics.median(cpu), 1), "kb": round(len(answer.content) / 1024)}
    server.shutdown()
    width = max(len(p) for p in PAGES)
    print(f"{'page':<{width}}  first ms  first CPU ms  median ms  max ms  CPU ms  KB")
    for page, r in results.items():
        print(f"{page:<{width}}  {r['first_ms']:>8}  {r['first_cpu_ms']:>12}  {r['median_ms']:>9}  {r['max_ms']:>6}"
              f"  {r['cpu_ms']:>6}  {r['kb']:>3}")
    print(json.dumps(results))
    print(f"slowest page: first load {max(r['first_ms'] for r in results.values())} ms "
          f"(CPU {max(r['first_cpu_ms'] for r in results.values())} ms), "
          f"median {max(r['median_ms'] for r in results.values())} ms (target < 300 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
