"""A 60-turn agent session growing to ~4 MB, each turn resending its history: CPU of the
request guardrail (the quickstart's PII rule) per turn, with known findings and without,
against a read of the turn's new text alone. In-process (no Envoy): the guardrail's share.

    .venv/bin/python bench/long_session.py
"""

from __future__ import annotations

import time

from extproc.guardrails.config import _pii_detector
from extproc.guardrails.joined import find_in_texts
from extproc.guardrails.known import KnownFindings, find_known_or_new

DETECTOR = _pii_detector(("email", "card", "ssn", "iban", "secret"))
TURNS, RESULT = 60, 66_000


def turn(n: int) -> list[str]:
    line = f"turn {n}: src/module_{n}.py passes its tests, nothing else to report here\n"
    question = f"Turn {n}: what does module {n} do?" + (" key sk-proj-" + "AbCd0123" * 6 if n == 2 else "")
    return [question, f'{{"path": "src/module_{n}.py"}}', (line * (RESULT // len(line) + 1))[:RESULT]]


def main() -> None:
    known, history = KnownFindings(), ["You are a coding agent."]
    totals = {"known": 0.0, "full": 0.0}
    for n in range(1, TURNS + 1):
        new = turn(n)
        history = history + new
        start = time.process_time()
        find_known_or_new(DETECTOR, "bench", history, known)
        cached = time.process_time() - start
        start = time.process_time()
        find_in_texts(DETECTOR, history) if n in (1, 30, TURNS) or n % 10 == 0 else None
        full = time.process_time() - start
        start = time.process_time()
        find_in_texts(DETECTOR, history[-4:])
        alone = time.process_time() - start
        totals["known"] += cached
        if n % 10 == 0 or n == 1:
            print(f"turn {n:2d}  {sum(map(len, history)) / 1e6:5.2f} MB  known {cached * 1e3:7.2f} ms"
                  f"  full read {full * 1e3:8.2f} ms  new text alone {alone * 1e3:6.2f} ms"
                  f"  ratio {cached / max(alone, 1e-6):4.2f}x")
    print(f"session total with known findings: {totals['known'] * 1e3:.0f} ms CPU")


if __name__ == "__main__":
    main()
