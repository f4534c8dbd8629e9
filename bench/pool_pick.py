"""The picker's own cost per call (worker CPU): hashing the prompt's prefix blocks, the
prefix lookup, the score of every replica and the ordered pick, at 8 and 256 replicas,
for a prefix-heavy prompt (a 6 KB system prompt and a conversation of ~10 KB).

    .venv/bin/python bench/pool_pick.py
"""

from __future__ import annotations

import random
import statistics
import time

from extproc.config.pools import PickerWeights, Pool
from extproc.pools.picker import pick
from extproc.pools.prefix import block_hashes, home_key
from extproc.pools.signals import PoolSignals

SYSTEM = "You answer questions about the company's garden tools, politely and precisely. " * 80


def signals_of(count: int) -> PoolSignals:
    addresses = tuple(f"10.1.{i // 250}.{i % 250}:8000" for i in range(count))
    pool = Pool(server="vllm", endpoints=addresses, service=None, models=("m",), adapters={},
                weights=PickerWeights(), when_saturated="least_loaded")
    signals = PoolSignals("bench", pool)
    rng = random.Random(1)
    now = time.monotonic()
    for endpoint in signals.endpoints.values():
        endpoint.scraped_at = now + 3600         # fresh for the whole run
        endpoint.load.waiting, endpoint.load.running = rng.randint(0, 6), rng.randint(0, 30)
        endpoint.load.kv_cache = rng.random() * 0.9
    return signals


def conversation(i: int) -> list[str]:
    texts = [SYSTEM]
    for turn in range(4):
        texts += [f"Conversation {i}, question {turn}: which pruning shears for roses? " * 12,
                  "Bypass shears with a sap groove; keep them sharp and clean. " * 10]
    return texts


def measure(count: int, calls: int = 3000) -> tuple[float, float, float]:
    """Mean worker CPU per call (this thread's CPU time: a host's other load, which
    preempts it, is not counted), then the median and p99 of each call's wall time."""
    signals = signals_of(count)
    prompts = [conversation(i % 200) for i in range(calls)]
    for texts in prompts[:200]:                  # untimed: one-off costs (NumPy's import, the
        hashes = block_hashes(texts, 256)        # ring of homes) and a warm prefix table
        chosen = pick(signals, "m", hashes, home=home_key(texts))
        signals.endpoints[chosen.endpoints[0]].sent = 0
    times = []
    cpu = time.thread_time()
    for texts in prompts:
        started = time.perf_counter()
        hashes = block_hashes(texts, 256)
        chosen = pick(signals, "m", hashes, home=home_key(texts))
        times.append(time.perf_counter() - started)
        signals.endpoints[chosen.endpoints[0]].sent = 0
    cpu = time.thread_time() - cpu
    times.sort()
    return cpu / calls * 1e6, statistics.median(times) * 1e6, times[int(len(times) * 0.99)] * 1e6


if __name__ == "__main__":
    print("| replicas | CPU µs (mean) | wall µs p50 | wall µs p99 |\n|---|---|---|---|")
    for count in (8, 64, 256):
        cpu, p50, p99 = measure(count)
        print(f"| {count} | {cpu:.1f} | {p50:.1f} | {p99:.1f} |")
