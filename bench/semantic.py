"""Benchmark: the semantic response cache. How often a question asked another way is a
hit, how often a near-miss would be, at each similarity; and what a semantic lookup costs.

    .venv/bin/python bench/semantic.py [--thresholds 0.85,0.9,0.92,0.95,0.97]

1. Rates, through the gateway (real Envoy, one worker, the mock's embedding model:
   all-MiniLM-L6-v2, extproc/mock/embedding_model.py). For each pair of
   tests/corpora/semantic_pairs.yaml, in a conversation of its own: the first question is
   asked (a miss, kept), then the second; the rule's `min_similarity` is 1, so the
   second is never served and its log line says how near the nearest kept question was
   (`cache_similarity`; absent when the anchors put it in another partition). A pair is a
   hit at threshold t when that similarity is t or more: for paraphrases a right answer
   saved, for near-misses a wrong answer served.
2. Cost, in process: one lookup of a worker's index (the store read of what is new, then
   the search) over 1k and 100k vectors of one partition at 1,536 dimensions (the mock's
   text-embedding-3-small), the first (reading them all from SQLite) and the next ones.
3. Latency through the gateway: a question that misses with an exact-only rule, and with a
   semantic rule (the embedding call through Envoy added), medians of 40; and the
   embedding call alone (most of it is the mock's model, run on NumPy).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from gateway_stack import GatewayStack, quickstart_config  # noqa: E402

from extproc.store.cache_vectors import SQLiteVectors  # noqa: E402
from extproc.store.response_cache import SQLiteCache  # noqa: E402
from extproc.store.semantic_index import SemanticIndex  # noqa: E402

ALICE = {"authorization": "Bearer sk-demo-alice"}


def _config(min_similarity: float | None) -> dict:
    config = quickstart_config(response_cache=True)
    rule = {"models": ["gpt-4o-mini"], "scope": "team", "ttl_s": 3600}
    if min_similarity is not None:
        rule["semantic"] = {"embedding_model": "text-embedding-3-small", "min_similarity": min_similarity}
    config["cache"] = {"rules": [rule]}
    return config


def _ask(client: httpx.Client, stack: GatewayStack, system: str, question: str) -> httpx.Response:
    answer = client.post(f"{stack.base_url}/chat/completions", headers=ALICE, timeout=30, json={
        "model": "gpt-4o-mini", "max_tokens": 16,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}]})
    answer.raise_for_status()
    return answer


def rates(workdir: Path, thresholds: list[float]) -> None:
    corpus = yaml.safe_load((ROOT / "tests" / "corpora" / "semantic_pairs.yaml").read_text())
    groups = {"paraphrases": corpus["paraphrases"], **{f"near-miss: {k}": v for k, v in corpus["near_misses"].items()}}
    (workdir / "rates").mkdir()
    stack = GatewayStack(workdir / "rates", _config(1.0), workers=1).start()
    found: dict[str, list[float | None]] = {}
    try:
        with httpx.Client() as client:
            for group, pairs in groups.items():
                ids = []
                for first, second in pairs:
                    system = f"Conversation {uuid.uuid4().hex}."
                    _ask(client, stack, system, first)
                    ids.append(_ask(client, stack, system, second).headers["x-request-id"])
                found[group] = [stack.wait_for_record(i).get("cache_similarity") for i in ids]
    finally:
        stack.stop()
    print("\n| pairs | n | another partition (anchors) | " + " | ".join(f"≥ {t}" for t in thresholds) + " |")
    print("|---|---|---|" + "---|" * len(thresholds))
    for group, similarities in found.items():
        n = len(similarities)
        apart = sum(s is None for s in similarities)
        cells = [f"{sum(s is not None and s >= t for s in similarities) / n:.0%}" for t in thresholds]
        print(f"| {group} | {n} | {apart} | " + " | ".join(cells) + " |")
    near = [s for g, v in found.items() if g != "paraphrases" for s in v]
    print("| all near-misses | " + f"{len(near)} | {sum(s is None for s in near)} | " +
          " | ".join(f"{sum(s is not None and s >= t for s in near) / len(near):.0%}" for t in thresholds) + " |")


def lookup_cost(workdir: Path) -> None:
    path = str(workdir / "vectors.sqlite3")
    SQLiteCache(path, 1 << 30).close()
    vectors = SQLiteVectors(path)
    rng = np.random.default_rng(7)
    print("\n| vectors in the partition | first lookup (reads 10k) | next lookups (median) |\n|---|---|---|")
    for count in (1_000, 100_000):
        part = f"bench-{count}"
        rows = rng.standard_normal((count, 1536)).astype(np.float32)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        end = time.time() + 3600
        with vectors._db:
            vectors._db.executemany("INSERT INTO vectors (part, digest, scope, model, vector, expires, created) "
                                    "VALUES (?, ?, 'team:bench', 'm', ?, ?, ?)",
                                    ((part, f"d{i}", row.tobytes(), end, time.time()) for i, row in enumerate(rows)))
        index = SemanticIndex()
        query = rows[count // 2]
        started = time.perf_counter()
        asyncio.run(index.nearest(vectors, part, query))
        first = time.perf_counter() - started

        async def again() -> list[float]:
            times = []
            for _ in range(30):
                began = time.perf_counter()
                await index.nearest(vectors, part, query)
                times.append(time.perf_counter() - began)
            return times
        print(f"| {count:,} | {first * 1e3:.1f} ms | {statistics.median(asyncio.run(again())) * 1e3:.2f} ms |")
    vectors.close()


def latency(workdir: Path) -> None:
    print("\n| rule | a miss, median of 40 (client) |\n|---|---|")
    for label, similarity in (("exact only", None), ("semantic", 0.95)):
        (workdir / label.replace(" ", "-")).mkdir()
        stack = GatewayStack(workdir / label.replace(" ", "-"), _config(similarity), workers=1).start()
        try:
            with httpx.Client() as client:
                system = "You answer briefly."
                _ask(client, stack, system, "warm up the worker and the model")
                times, embeddings = [], []
                for n in range(40):
                    began = time.perf_counter()
                    _ask(client, stack, system, f"question {uuid.uuid4().hex} number {n}")
                    times.append(time.perf_counter() - began)
                    if similarity is not None:       # the embedding call alone, as the worker makes it
                        began = time.perf_counter()
                        client.post(f"{stack.base_url}/embeddings", headers=ALICE, timeout=30, json={
                            "model": "text-embedding-3-small", "input": f"question {uuid.uuid4().hex} number {n}",
                            "encoding_format": "base64"}).raise_for_status()
                        embeddings.append(time.perf_counter() - began)
        finally:
            stack.stop()
        print(f"| {label} | {statistics.median(times) * 1e3:.1f} ms |")
        if embeddings:
            print(f"| (its embedding call alone, through the gateway) | {statistics.median(embeddings) * 1e3:.1f} ms |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--thresholds", default="0.85,0.9,0.92,0.95,0.97")
    parser.add_argument("--skip-rates", action="store_true")
    args = parser.parse_args()
    thresholds = [float(t) for t in args.thresholds.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        if not args.skip_rates:
            rates(workdir, thresholds)
        lookup_cost(workdir)
        latency(workdir)


if __name__ == "__main__":
    main()
