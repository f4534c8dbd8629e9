"""What a worker new to a long agent session spends on its history: reading it all again,
or taking the findings another worker published in the store (stages/guard/shared_findings.py).

    .venv/bin/python bench/shared_findings.py [--turns N]

The quickstart pipeline in process (request headers and body, then the done hooks), the
session of tests/test_shared_findings.py: per turn a question and a 260 KB tool result,
a secret in the second turn. `max_scan_chars` is raised so that the worker that reads it
all may; the SQLite store is the quickstart's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT / "tests"))

from any_json import quickstart_runtime  # noqa: E402
from gateway_stack import quickstart_config  # noqa: E402
from test_shared_findings import call_through, sent_body, session  # noqa: E402

from extproc.guardrails.known import KNOWN  # noqa: E402


def timed(runtime, body: dict) -> float:
    started = time.perf_counter()
    reply, _ = call_through(runtime, body)
    elapsed = time.perf_counter() - started
    sent_body(reply)                              # answered, not refused
    return elapsed * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=12)
    args = parser.parse_args()
    config = quickstart_config()
    config["guardrails"]["max_scan_chars"] = 100_000_000
    runtime = quickstart_runtime(Path(tempfile.mkdtemp(prefix="llmgw-shared-")), config)
    for turns in range(1, args.turns):            # another worker serves the session so far
        call_through(runtime, session(turns))
    body = session(args.turns)
    size = sum(len(m["content"]) for m in body["messages"]) / 1e6
    guard = runtime.pipeline.stages[[s.name for s in runtime.pipeline.stages].index("guard_request")]
    rows = []
    for label, store_on in (("reads the whole history", False), ("takes the store's findings", True)):
        best = []
        for _ in range(3):
            KNOWN.clear()                         # a worker new to the session
            guard.shared.store = runtime.store.store if store_on else None
            best.append(timed(runtime, body))
        rows.append((label, min(best)))
    guard.shared.store = runtime.store.store
    rows.append(("knows it (its own earlier turn)", min(timed(runtime, body) for _ in range(3))))
    print(f"turn {args.turns} of a session, {size:.2f} MB of history, the whole call in process:")
    for label, ms in rows:
        print(f"  a worker that {label}: {ms:.1f} ms")


if __name__ == "__main__":
    main()
