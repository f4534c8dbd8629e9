"""Self-hosted pools: Envoy's round robin, Envoy's least-request and the gateway's picker
side by side, on one gateway and one simulated vLLM pool of 8 replicas (the mock's
`vllm_pools`, calibrated to Llama-3.1-8B on an A100), through real Envoy and the pipeline.

Workloads (64 concurrent callers, or with `--rate` calls arriving at random; streamed,
for `--seconds` each):
- `prefix`: multi-turn conversations (5 turns of ~600 words, each resending its history,
  24 output tokens each) under one shared ~3,000-word system prompt: a replica that saw the conversation serves its prefix
  from its KV cache, one that did not prefills it again.
- `unique`: every call a new ~3,000-word prompt (no shared prefix).
- `documents`: questions on 64 documents of ~2,500 words (each call one document, picked
  at random, then a new 20-word question; ~3,300 tokens, 206 blocks each): together ~6x
  what one replica's KV cache holds, ~80% of what the pool's 8 hold. Balanced without regard to prefixes, every
  replica sees every document and keeps a fraction; homed by prefix, each keeps its own.

Three models on the same 8 replicas: `bench-rr` and `bench-lr` (clusters balanced by
Envoy, ROUND_ROBIN and LEAST_REQUEST) and `bench-pick` (a pool provider); and an oracle no
balancer can be, for the ceiling: the bench itself sends each caller's conversations (or
each document's questions) to one replica of its own, eight callers (or documents) to
each (`bench-r0` ... `bench-r7`, one replica each), through the same gateway.

The simulated GPUs run 4x slower than the calibration (`--time-scale 4`): every simulated
cost scales alike, so the ratios between balancings are the calibrated replica's, and
the host's 2 cores (the 8 replicas, Envoy, the workers and 64 callers share them) stay
idle enough not to be what the run measures (at 1x the load average reached 6-7). Each
replica holds 4,096 blocks of 16 tokens (64K tokens; an A100-80GB holds ~400K for this
model): the workloads' working sets are several times one replica's cache and less
than the pool's, the regime a prefix-aware picker is for.

    .venv/bin/python bench/pool.py [--seconds 30] [--concurrency 64] [--workloads prefix,unique,documents]
    .venv/bin/python bench/pool.py --rate 12 --workloads documents     (open loop: calls arrive at random)
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT / "tests"))

from gateway_stack import GatewayStack, quickstart_config  # noqa: E402

from extproc.mock.vllm_prompt import prompt_token_ids  # noqa: E402
from extproc.mock.vllm_sim import block_hashes  # noqa: E402

BLOCK_TOKENS = 16
ORACLE = "bench-oracle"     # not a model: each call goes to the replica the bench assigns it

REPLICAS = 8
ALICE = {"authorization": "Bearer sk-demo-alice"}
WORDS = ("garden shears rake hoe spade trowel pruning soil compost mulch hedge lawn seed bulb "
         "watering hose nozzle sprinkler gloves wheelbarrow ladder saw loppers edger").split()


def text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


SYSTEM = "You are the assistant of a garden-tool shop. Policies: " + text(random.Random(7), 3000)
DOCUMENTS = [f"Manual {d}: " + text(random.Random(1000 + d), 2500) for d in range(64)]


def config(time_scale: float = 1.0, kv_blocks: int = 2048) -> dict:
    data = quickstart_config()
    data["mock_provider"]["vllm_pools"] = [{"name": "mock-vllm", "port": 10120, "replicas": REPLICAS,
                                            "models": ["llama-3.1-8b-instruct"], "time_scale": time_scale,
                                            "kv_blocks": kv_blocks}]
    endpoints = [f"127.0.0.1:{10120 + i}" for i in range(REPLICAS)]
    data["providers"].pop("local-vllm", None)
    data["models"].pop("local-llama", None)
    data["models"].pop("local-llama-sql", None)
    # (The simulated replicas share one process, and the host's 2 cores, with everything
    # else: scraped every 200 ms rather than 50, their /metrics take less of it.)
    data["providers"]["bench-pick"] = {"type": "pool", "endpoints": endpoints, "models": ["llama-3.1-8b-instruct"],
                                       "picker": {"scrape_interval_ms": 200, "stale_after_ms": 1000}}
    for name in ("bench-rr", "bench-lr"):       # one endpoint here; all eight in edit_envoy below
        data["providers"][name] = {"url": "http://127.0.0.1:10120", "cluster": name.replace("-", "_"),
                                   "api_key": {"value": "none"}}
    oracle = [f"bench-r{i}" for i in range(REPLICAS)]     # one replica each: the oracle's placement
    for name in oracle:
        data["providers"][name] = {"url": "http://127.0.0.1:10120", "cluster": name.replace("-", "_"),
                                   "api_key": {"value": "none"}}
    for name in ("bench-rr", "bench-lr", "bench-pick", *oracle):
        data["models"][name] = {"backends": [{"provider": name, "model": "llama-3.1-8b-instruct"}],
                                "price": {"input": 0, "output": 0}}
    data.pop("budgets", None)
    data.pop("runs", None)
    return data


class BenchStack(GatewayStack):
    def edit_envoy(self, envoy: dict) -> None:
        port = self.pool_ports["mock-vllm"]
        for cluster in envoy["static_resources"]["clusters"]:
            if cluster["name"] in ("bench_rr", "bench_lr"):
                cluster["lb_policy"] = "ROUND_ROBIN" if cluster["name"] == "bench_rr" else "LEAST_REQUEST"
                cluster.pop("outlier_detection", None)
                cluster["load_assignment"]["endpoints"][0]["lb_endpoints"] = [
                    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port + i}}}}
                    for i in range(REPLICAS)]
            elif cluster["name"].startswith("bench_r") and cluster["name"][7:].isdigit():
                cluster.pop("outlier_detection", None)
                address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                address["socket_address"]["port_value"] = port + int(cluster["name"][7:])


def reusable(body: dict, seen: set[int]) -> int:
    """The prompt's leading tokens some earlier call of the side sent in full blocks, as
    the replicas render and hash it: what a perfect cache (one replica holding every
    prompt) would serve. (A replica also keeps its answers' blocks, ~1-2 a turn, which
    this does not count.)"""
    hashes = block_hashes(prompt_token_ids("chat", body) or [], BLOCK_TOKENS, None)
    held = 0
    while held < len(hashes) and hashes[held] in seen:
        held += 1
    seen.update(hashes[held:])
    return held * BLOCK_TOKENS


async def call(client: httpx.AsyncClient, url: str, body: dict, stats: dict, turn: int = 0) -> str:
    could = reusable(body, stats["seen"])
    stats["reusable"] += could
    started = time.perf_counter()
    first = None
    answer = []
    async with client.stream("POST", url, json=body, headers=ALICE) as response:
        if response.status_code != 200:
            stats["errors"] += 1
            await response.aread()
            return ""
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = orjson.loads(line[6:])
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    first = first or time.perf_counter()
                    answer.append(piece)
            if event.get("usage"):
                cached = (event["usage"].get("prompt_tokens_details") or {}).get("cached_tokens", 0)
                stats["output_tokens"] += event["usage"].get("completion_tokens", 0)
                stats["cached"] += cached
                stats["prompt"] += event["usage"].get("prompt_tokens", 0)
                missed = stats["missed"].setdefault(turn, [0, 0, 0])    # calls, short ones, tokens short
                missed[0] += 1
                if could - cached >= 4 * BLOCK_TOKENS:                  # a perfect cache held 4+ blocks more
                    missed[1] += 1
                    missed[2] += could - cached
    if first is not None:
        stats["ttft"].append(first - started)
    stats["calls"] += 1
    return "".join(answer)


async def session(index: int, conversation: int, rng: random.Random, model: str, workload: str, url: str,
                  deadline: float, stats: dict, client: httpx.AsyncClient) -> None:
    """One caller's unit of work: a question on a document, a unique prompt, or a
    conversation of 5 turns (each turn sent when the answer before it has come)."""
    options = {"max_tokens": 24, "stream": True, "stream_options": {"include_usage": True}}
    oracle = model == ORACLE
    if oracle:                                  # each caller's conversations on a replica of its own
        model = f"bench-r{index % REPLICAS}"
    if workload == "documents":
        document = rng.randrange(len(DOCUMENTS))
        if oracle:                              # each document on a replica of its own
            model = f"bench-r{document % REPLICAS}"
        question = f"{DOCUMENTS[document]}\n\nQuestion {index}-{conversation}: {text(rng, 20)}?"
        await call(client, url, {"model": model, "messages": [{"role": "user", "content": question}], **options}, stats)
        return
    if workload == "unique":
        messages = [{"role": "user", "content": f"{index}-{conversation} " + text(rng, 3000)}]
        await call(client, url, {"model": model, "messages": messages, **options}, stats)
        return
    messages = [{"role": "system", "content": SYSTEM}]
    for turn in range(5):
        if time.monotonic() >= deadline:
            return
        messages.append({"role": "user", "content": f"Customer {index}-{conversation}, turn {turn}: "
                         + text(rng, 600)})
        answer = await call(client, url, {"model": model, "messages": messages, **options}, stats, turn)
        messages.append({"role": "assistant", "content": answer or "ok"})


async def caller(index: int, model: str, workload: str, url: str, deadline: float, stats: dict,
                 client: httpx.AsyncClient) -> None:
    """A closed-loop caller: the next session as soon as one ends."""
    rng = random.Random(index)
    conversation = 0
    while time.monotonic() < deadline:
        conversation += 1
        await session(index, conversation, rng, model, workload, url, deadline, stats, client)


async def arrivals(rate: float, model: str, workload: str, url: str, deadline: float, stats: dict,
                   client: httpx.AsyncClient) -> None:
    """Open loop: sessions start at random (Poisson) times, `rate` calls a second on average
    (a conversation's 5 turns count 5), whether or not earlier ones have been answered."""
    per_session = 5 if workload == "prefix" else 1
    timing = random.Random(99)
    started: list[asyncio.Task] = []
    while time.monotonic() < deadline:
        number = len(started)
        started.append(asyncio.ensure_future(session(10_000 + number, 1, random.Random(number), model, workload, url,
                                                     deadline, stats, client)))
        await asyncio.sleep(timing.expovariate(rate / per_session))
    await asyncio.gather(*started)                # the calls still queued are answered and counted


async def run(stack: GatewayStack, model: str, workload: str, seconds: float, concurrency: int,
              rate: float = 0) -> dict:
    for i in range(REPLICAS):                   # every side starts from cold caches
        httpx.post(f"{stack.replica_url('mock-vllm', i)}/_mock/replica", json={"reset": True}, timeout=5)
    stats = {"calls": 0, "errors": 0, "output_tokens": 0, "cached": 0, "prompt": 0, "ttft": [],
             "reusable": 0, "seen": set(), "missed": {}}
    url = f"{stack.base_url}/chat/completions"
    connections = 1024 if rate else concurrency     # open loop: the queue is the pool's, not the client's
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        started = time.monotonic()
        if rate:
            await arrivals(rate, model, workload, url, started + seconds, stats, client)
        else:
            await asyncio.gather(*(caller(i, model, workload, url, started + seconds, stats, client)
                                   for i in range(concurrency)))
        elapsed = time.monotonic() - started
    states = [httpx.post(f"{stack.replica_url('mock-vllm', i)}/_mock/replica", json={}, timeout=5).json()
              for i in range(REPLICAS)]
    evicted = sum(state["evicted_blocks"] for state in states)
    refilled = sum(state["refilled_blocks"] for state in states)
    ttft = sorted(stats["ttft"]) or [0.0]
    return {"calls/s": stats["calls"] / elapsed, "tokens/s": stats["output_tokens"] / elapsed,
            "ttft_mean": statistics.mean(ttft), "ttft_p50": ttft[len(ttft) // 2],
            "ttft_p90": ttft[int(len(ttft) * 0.9)], "cached": stats["cached"] / max(1, stats["prompt"]),
            "reusable": stats["reusable"] / max(1, stats["prompt"]),
            "errors": stats["errors"], "evicted": evicted, "refilled": refilled, "calls": stats["calls"],
            "missed": stats["missed"]}


def pool_counts(stack: GatewayStack) -> dict:
    """The pool's picks by replica and by reason, and its failed scrapes by reason, so far
    (the bench's only pool is bench-pick)."""
    counts: dict = {"picks": {}, "reasons": {}, "scrape_failures": {}}
    for line in httpx.get(f"{stack.admin_url}/metrics", timeout=10).text.splitlines():
        if line.startswith("gateway_pool_picks_total{"):
            labels, value = line[len("gateway_pool_picks_total{"):].rsplit("} ", 1)
            fields = dict(part.split("=", 1) for part in labels.split(","))
            endpoint, reason = fields["endpoint"].strip('"'), fields["reason"].strip('"')
            counts["picks"][endpoint] = counts["picks"].get(endpoint, 0) + float(value)
            counts["reasons"][reason] = counts["reasons"].get(reason, 0) + float(value)
        elif line.startswith("gateway_pool_scrape_failures_total{"):
            labels, value = line[len("gateway_pool_scrape_failures_total{"):].rsplit("} ", 1)
            reason = dict(part.split("=", 1) for part in labels.split(","))["reason"].strip('"')
            counts["scrape_failures"][reason] = counts["scrape_failures"].get(reason, 0) + float(value)
    return counts


def short_picks(records: list[dict]) -> dict:
    """Per pick reason: the picks, those where the picked replica held fewer of the prompt's
    leading blocks than another one did, and the blocks they were short by (the log line's
    `pool_prefix_blocks` and `pool_best_blocks`)."""
    short: dict[str, list[int]] = {}
    for record in records:
        if "pool_best_blocks" not in record:
            continue
        row = short.setdefault(record.get("pool_reason", "?"), [0, 0, 0])
        row[0] += 1
        gap = record["pool_best_blocks"] - record["pool_prefix_blocks"]
        if gap > 0:
            row[1] += 1
            row[2] += gap
    return short


def counted_since(before: dict, after: dict) -> dict:
    return {kind: {key: int(value - before[kind].get(key, 0)) for key, value in sorted(after[kind].items())
                   if value - before[kind].get(key, 0)} for kind in after}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workloads", default="prefix,unique")
    parser.add_argument("--time-scale", type=float, default=4.0,
                        help="the simulated GPUs this many times slower (every simulated delay)")
    parser.add_argument("--kv-blocks", type=int, default=4096, help="each replica's KV cache, in blocks of 16 tokens")
    parser.add_argument("--sides", default="rr,lr,pick,oracle",
                        help="which balancings run: rr (round robin), lr (least-request), pick (the picker), "
                             "oracle (each caller's conversations, or each document, on one replica, evenly)")
    parser.add_argument("--rate", type=float, default=0,
                        help="open loop: calls a second, arriving at random, instead of --concurrency callers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        stack = BenchStack(Path(folder), config=config(args.time_scale, args.kv_blocks), workers=2).start()
        try:
            print(f"load average at the start: {' '.join(open('/proc/loadavg').read().split()[:3])}",
                  file=sys.stderr)
            print("| workload | balancing | output tokens/s | calls/s | TTFT mean s | p50 s | p90 s | "
                  "prompt tokens from cache (a perfect cache) | errors |\n|---|---|---|---|---|---|---|---|---|")
            for workload in args.workloads.split(","):
                for model, label in (("bench-rr", "Envoy round robin"), ("bench-lr", "Envoy least-request"),
                                     ("bench-pick", "gateway picker"), (ORACLE, "oracle: sticky, even")):
                    if model.removeprefix("bench-") not in args.sides.split(","):
                        continue
                    before = pool_counts(stack) if model == "bench-pick" else None
                    logged = stack.log_count()
                    result = asyncio.run(run(stack, model, workload, args.seconds, args.concurrency, args.rate))
                    if before is not None:
                        picked = counted_since(before, pool_counts(stack))
                        print(f"  {workload}, the picker's picks by replica: {picked['picks']}; by reason: "
                              f"{picked['reasons']}; failed scrapes by reason: {picked['scrape_failures']}",
                              file=sys.stderr, flush=True)
                        print(f"  {workload}, the picker's picks below the deepest prefix a replica held, by "
                              f"reason: {short_picks(stack.log_records()[logged:])}", file=sys.stderr, flush=True)
                    print(f"  {workload}, {label}: calls a perfect cache would have served 4+ blocks more, by "
                          f"turn (calls, short, tokens short): {dict(sorted(result['missed'].items()))}",
                          file=sys.stderr, flush=True)
                    print(f"  {workload}, {label}: {result['calls']} calls, {result['evicted']} KV blocks evicted "
                          f"by the replicas, {result['refilled']} computed again after their eviction "
                          f"({result['refilled'] * BLOCK_TOKENS} tokens)", file=sys.stderr, flush=True)
                    print(f"| {workload} | {label} | {result['tokens/s']:.0f} | {result['calls/s']:.1f} | "
                          f"{result['ttft_mean']:.2f} | {result['ttft_p50']:.2f} | {result['ttft_p90']:.2f} | "
                          f"{result['cached']:.0%} ({result['reusable']:.0%}) | {result['errors']} |", flush=True)
        finally:
            print(f"load average at the end: {' '.join(open('/proc/loadavg').read().split()[:3])}",
                  file=sys.stderr)
            stack.stop()


if __name__ == "__main__":
    main()
