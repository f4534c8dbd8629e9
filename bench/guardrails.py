"""Time per 4 KB message of each guardrail and of the quickstart's request policy.

    .venv/bin/python bench/guardrails.py
"""

from __future__ import annotations

import random
import statistics
import time

from extproc.guardrails.injection import InjectionDetector
from extproc.guardrails.pii import PIIDetector

WORDS = ("the quick brown fox jumps over a lazy dog while engineers review the quarterly "
         "report and discuss latency budgets for the new gateway release next week").split()


def message(size: int = 4096, seed: int = 7, planted: bool = True) -> str:
    rng = random.Random(seed)
    words = []
    while sum(len(w) + 1 for w in words) < size:
        words.append(rng.choice(WORDS))
    if planted:
        for i, item in enumerate(["jane@example.com", "4111 1111 1111 1111", "123-45-6789",
                                  "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "+1 415 555 2671"]):
            words.insert((i + 1) * len(words) // 7, item)
    return " ".join(words)[:size]


def per_call(fn, text: str, rounds: int = 300) -> float:
    fn(text)
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(rounds):
            fn(text)
        samples.append((time.perf_counter() - started) / rounds)
    return statistics.median(samples)


def main() -> None:
    detectors = {
        "pii (all entities)": PIIDetector().find,
        "pii (quickstart: email,card,ssn,iban,secret)": PIIDetector(("email", "card", "ssn", "iban", "secret")).find,
        "prompt injection": InjectionDetector().find,
    }
    quickstart = [detectors["pii (quickstart: email,card,ssn,iban,secret)"], detectors["prompt injection"]]
    print(f"{'guardrail':<48} {'4 KB, planted PII':>18} {'4 KB, clean':>12}")
    for name, fn in [*detectors.items(), ("quickstart request policy (both)",
                                          lambda t: [f(t) for f in quickstart])]:
        planted = per_call(fn, message()) * 1000
        clean = per_call(fn, message(planted=False)) * 1000
        print(f"{name:<48} {planted:>15.3f} ms {clean:>9.3f} ms")


if __name__ == "__main__":
    main()
