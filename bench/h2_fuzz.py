"""The workers' HTTP/2 server fuzzed for longer than the suite does: the target of
tests/test_h2_fuzz.py (random frame sequences and HPACK blocks fed to a connection;
no exception, no unexpected error, no hang, every bound kept), in batches of fresh
random examples until the time is up.

    .venv/bin/python bench/h2_fuzz.py --minutes 20 [--batch 2000]

Prints the examples run and each failure found (hypothesis's shrunk example and its
error); exits 1 if any. A hung example stops the run with every thread's stack.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import test_h2_fuzz  # noqa: E402

from extproc.transport import compiled  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=2000, help="examples per hypothesis run")
    args = parser.parse_args()
    state = compiled.compiled()
    kind = "compiled" if all(state.values()) else "plain Python" if not any(state.values()) else f"mixed {state}"
    print(f"fuzzing the HTTP/2 server ({kind}) for {args.minutes:g} minutes", flush=True)
    started = time.monotonic()
    stop = started + args.minutes * 60
    failures = 0
    while time.monotonic() < stop:
        try:
            test_h2_fuzz.fuzz(max_examples=args.batch, deadline_ms=None)()
        except Exception:
            failures += 1
            print(f"--- failure {failures}:\n{traceback.format_exc()}", flush=True)
        print(f"{(time.monotonic() - started) / 60:5.1f} min: {test_h2_fuzz.examples_run} examples run, "
              f"{failures} failures", flush=True)
    print(f"examples run: {test_h2_fuzz.examples_run}; failures found: {failures}; "
          f"{(time.monotonic() - started) / 60:.1f} minutes")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
