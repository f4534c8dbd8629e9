"""The mock's simulated vLLM pool: the engine (prefix cache, LRU eviction, pinning,
batching and queueing, TTFT), its /metrics in vLLM's names, its adapters, and the
replica controls (metrics faults, down and up), against replicas served in-process."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from extproc.config.local_ports import shift_config
from extproc.mock.vllm_metrics import render
from extproc.mock.vllm_pool import pools_from_config
from extproc.mock.vllm_spec import PoolSpec
from extproc.mock.vllm_sim import Engine, EngineSpec, PrefixCache, Sequence, block_hashes
from gateway_stack import free_ports

FAST = 0.02        # time_scale: a 12 ms decode step takes 0.24 ms


def run(coroutine):
    return asyncio.run(coroutine)


async def finish_all(engine: Engine, seqs: list[Sequence], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(s.finished for s in seqs):
        assert time.monotonic() < deadline, "the engine did not finish its sequences"
        await asyncio.sleep(0.002)


def prompt(tokens: int, start: int = 0) -> list[int]:
    return list(range(start, start + tokens))


# --- the KV cache ------------------------------------------------------------------------

def test_block_hashes_chain_on_the_prefix_and_the_adapter():
    a, b = block_hashes(prompt(64), 16, None), block_hashes(prompt(48) + prompt(16, 999), 16, None)
    assert len(a) == 4 and a[:3] == b[:3] and a[3] != b[3]     # same prefix, same leading blocks
    assert block_hashes(prompt(64), 16, "sql-lora")[0] != a[0]    # an adapter's blocks are its own
    assert len(block_hashes(prompt(63), 16, None)) == 3            # only full blocks


def test_lru_eviction_takes_the_least_recent_blocks_tail_first():
    cache = PrefixCache(total=4)
    first, second = [1, 2], [3, 4]
    assert cache.try_allocate(first, 0)
    cache.release(first, 0)
    assert cache.try_allocate(second, 0)
    cache.release(second, 0)
    assert cache.hit_blocks(first) == 2 and cache.hit_blocks(second) == 2
    assert cache.evicted == 0
    assert cache.try_allocate([5], 0)                   # full: one block must go
    assert cache.hit_blocks([1, 2]) == 1                # the first's tail went, its head stays
    assert cache.try_allocate([6], 0)
    assert cache.hit_blocks([1]) == 0 and cache.hit_blocks(second) == 2
    assert cache.evicted == 2                           # counted (bench/pool.py reads it)
    cache.release([5], 0)
    cache.release([6], 0)
    assert cache.hit_blocks(second) == 2
    assert cache.try_allocate(second, 0)                 # a hit refreshes: now the most recent
    cache.release(second, 0)
    assert cache.try_allocate([7, 8], 0)
    assert cache.hit_blocks(second) == 2 and cache.hit_blocks([5]) == 0 and cache.hit_blocks([6]) == 0


def test_blocks_computed_again_after_their_eviction_are_counted():
    cache = PrefixCache(total=2)
    assert cache.try_allocate([1, 2], 0)
    cache.release([1, 2], 0)
    assert cache.try_allocate([3, 4], 0)                # evicts 1 and 2
    cache.release([3, 4], 0)
    assert (cache.evicted, cache.refilled) == (2, 0)    # new blocks are not "again"
    assert cache.try_allocate([1, 2], 0)                # held before, evicted: computed again
    assert (cache.evicted, cache.refilled) == (4, 2)
    cache.release([1, 2], 0)
    assert cache.try_allocate([1, 2], 0) and cache.refilled == 2     # a hit is not a refill
    cache.release([1, 2], 0)
    cache.clear_free()
    assert (cache.evicted, cache.refilled) == (0, 0)


def test_blocks_running_sequences_hold_are_pinned():
    cache = PrefixCache(total=4)
    assert cache.try_allocate([1, 2, 3], 0)             # held
    assert not cache.try_allocate([4, 5], 0)            # does not fit beside them: nothing evicted
    assert cache.hit_blocks([1, 2, 3]) == 3 and cache.in_use() == 3
    assert cache.try_allocate([1, 2, 3], 1)             # a second holder shares them
    assert cache.in_use() == 4
    cache.release([1, 2, 3], 1)
    cache.release([1, 2, 3], 0)
    assert cache.in_use() == 0 and cache.try_allocate([4, 5, 6, 7], 0)


# --- the engine ----------------------------------------------------------------------------

def test_prefix_hits_grow_on_a_repeated_prefix():
    async def scenario():
        engine = Engine(EngineSpec(time_scale=FAST))
        engine.start()
        shared = prompt(1000)
        done = []
        for turn in range(3):
            ids = shared + prompt(100 * (turn + 1), 50_000)
            seq = Sequence(len(ids), block_hashes(ids, 16, None), 4, None)
            engine.submit(seq)
            await finish_all(engine, [seq])
            done.append(seq.cached_tokens)
        await engine.stop()
        return done, engine.counters
    cached, counters = run(scenario())
    # Each turn extends the last (a conversation): its full blocks are hits, 16 tokens each.
    assert cached == [0, 1088, 1200]
    assert counters.prefix_hits == 2288 and counters.prefix_queries == 1100 + 1200 + 1300


def test_a_prompt_wholly_cached_still_computes_its_last_token():
    async def scenario():
        engine = Engine(EngineSpec(time_scale=FAST))
        engine.start()
        ids = prompt(64)
        seqs = []
        for _ in range(2):
            seq = Sequence(64, block_hashes(ids, 16, None), 2, None)
            engine.submit(seq)
            await finish_all(engine, [seq])
            seqs.append(seq)
        await engine.stop()
        return seqs
    first, second = run(scenario())
    assert first.cached_tokens == 0 and second.cached_tokens == 48


def test_requests_past_max_batch_wait_in_order():
    async def scenario():
        engine = Engine(EngineSpec(max_batch=2))           # real time: 12 ms steps
        engine.start()
        seqs = [Sequence(32, block_hashes(prompt(32, 1000 * i), 16, None), 10, None) for i in range(5)]
        for seq in seqs:
            engine.submit(seq)
        await asyncio.sleep(0.005)                          # within the first step
        seen = (len(engine.running), len(engine.waiting))
        await finish_all(engine, seqs)
        await engine.stop()
        return seen, [s.first_token_at for s in seqs]
    (running, waiting), firsts = run(scenario())
    assert (running, waiting) == (2, 3)
    assert firsts == sorted(firsts)                      # FIFO


def test_an_adapter_waits_for_a_lora_slot_while_others_go_on():
    async def scenario():
        engine = Engine(EngineSpec(max_loras=1))            # real time: 12 ms steps
        engine.start()
        first = Sequence(32, [], 10, "sql-lora")
        second = Sequence(32, [], 2, "chat-lora")           # its slot is taken by a running request
        base = Sequence(32, [], 2, None)                    # needs no slot: goes past it
        for seq in (first, second, base):
            engine.submit(seq)
        await asyncio.sleep(0.005)
        seen = ([s.adapter for s in engine.running], [s.adapter for s in engine.waiting])
        labels = list(engine.lora_info)[-1]
        await finish_all(engine, [first, second, base])
        await engine.stop()
        return seen, labels, list(engine.loras)
    (running, waiting), (running_label, waiting_label), loaded = run(scenario())
    assert running == ["sql-lora", None] and waiting == ["chat-lora"]
    assert (running_label, waiting_label) == ("sql-lora", "chat-lora")
    assert loaded == ["chat-lora"]                          # the idle one gave its slot up


def test_a_request_waits_while_the_kv_cache_cannot_hold_it():
    async def scenario():
        engine = Engine(EngineSpec(kv_blocks=8, block_tokens=16, time_scale=FAST))
        engine.start()
        big = Sequence(100, block_hashes(prompt(100), 16, None), 20, None)      # 8 blocks: all of them
        small = Sequence(10, [], 4, None)
        engine.submit(big)
        engine.submit(small)
        await asyncio.sleep(0.005)
        blocked = small in engine.waiting and engine.kv_usage() == 1.0
        await finish_all(engine, [big, small])
        await engine.stop()
        return blocked, engine.kv_usage()
    blocked, usage_after = run(scenario())
    assert blocked and usage_after == 0.0                # cached blocks no request holds count as free


def test_ttft_grows_with_the_uncached_prompt_length():
    async def ttft(tokens: int) -> float:
        engine = Engine(EngineSpec(time_scale=0.2))
        engine.start()
        seq = Sequence(tokens, block_hashes(prompt(tokens), 16, None), 1, None)
        engine.submit(seq)
        await finish_all(engine, [seq])
        await engine.stop()
        return engine.counters.ttft_sum
    short, long = run(ttft(100)), run(ttft(8000))
    # Simulated seconds: 12 ms + 0.08 ms a token (100: ~20 ms; 8,000: ~652 ms); a busy host
    # only makes them later.
    assert short > 0.019 and long > 0.65 and long > 3 * short


def test_a_bigger_batch_steps_slower_but_generates_more():
    spec = EngineSpec()
    one = spec.decode_ms_per_step + spec.decode_ms_per_seq
    many = spec.decode_ms_per_step + spec.decode_ms_per_seq * 32
    assert many > one and 32 / many > 1 / one * 20


# --- replicas, served in-process -------------------------------------------------------------

class ServedPool:
    """A pool served on its own event loop in a thread, for synchronous tests."""

    def __init__(self, item: dict) -> None:
        [self.pool] = pools_from_config({"vllm_pools": [item]})
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self.pool.start())

    def call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.pool.spec.port + index}"

    def close(self) -> None:
        self.call(self.pool.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def served():
    pool = ServedPool({"name": "sim", "port": free_ports(3), "replicas": 3, "models": ["llama-3.1-8b-instruct"],
                       "adapters": {"sql-lora": [0, 1], "chat-lora": [0]}, "max_loras": 1, "time_scale": FAST,
                       "max_output_tokens": 32768})
    yield pool
    pool.close()


def chat(text: str, **extra) -> dict:
    return {"model": "llama-3.1-8b-instruct", "max_tokens": 6,
            "messages": [{"role": "system", "content": "You answer about the shared handbook. " * 60},
                         {"role": "user", "content": text}], **extra}


def control(served, index: int, order: dict) -> dict:
    response = httpx.post(f"{served.url(index)}/_mock/replica", json=order, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_replica_answers_as_vllm_with_its_name_and_prefix_cache_usage(served):
    url = served.url(0)
    httpx.delete(f"{url}/_mock/requests")
    first = httpx.post(f"{url}/v1/chat/completions", json=chat("what is the leave policy"), timeout=10)
    second = httpx.post(f"{url}/v1/chat/completions", json=chat("and the travel policy"), timeout=10)
    assert first.status_code == second.status_code == 200
    assert first.headers["x-mock-replica"] == "sim-0"
    answer = first.json()
    assert answer["object"] == "chat.completion" and answer["choices"][0]["finish_reason"] == "length"
    assert answer["choices"][0]["message"]["content"] == "what is the leave policy what"
    assert answer["usage"]["completion_tokens"] == 6 and answer["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    cached = second.json()["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached > 400 and cached % 16 == 0             # the shared system prompt's blocks
    received = httpx.get(f"{url}/_mock/requests").json()
    assert [r["replica"] for r in received] == ["sim-0", "sim-0"] and received[1]["usage"]["cached_tokens"] == cached
    models = httpx.get(f"{url}/v1/models").json()["data"]
    assert [(m["id"], m["parent"]) for m in models] == [("llama-3.1-8b-instruct", None),
                                                        ("sql-lora", "llama-3.1-8b-instruct"),
                                                        ("chat-lora", "llama-3.1-8b-instruct")]
    assert httpx.get(f"{url}/health").status_code == 200


def test_a_stream_carries_usage_last_when_asked(served):
    body = chat("stream it", stream=True, stream_options={"include_usage": True}, model="sql-lora")
    with httpx.stream("POST", f"{served.url(1)}/v1/chat/completions", json=body, timeout=10) as response:
        assert response.headers["x-mock-replica"] == "sim-1"
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == \
        "stream it stream it stream it"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6


def test_an_adapter_a_replica_lacks_is_vllms_404(served):
    response = httpx.post(f"{served.url(2)}/v1/chat/completions", json=chat("hi", model="sql-lora"), timeout=5)
    assert response.status_code == 404
    assert response.json() == {"error": {"message": "The model `sql-lora` does not exist.", "type": "NotFoundError",
                                         "param": None, "code": 404}}
    assert response.headers["x-mock-replica"] == "sim-2"


def test_an_adapter_loaded_and_unloaded_at_run_time(served):
    url, body = served.url(2), chat("hi", model="fresh-lora")
    assert httpx.post(f"{url}/v1/chat/completions", json=body, timeout=5).status_code == 404
    loaded = httpx.post(f"{url}/v1/load_lora_adapter", json={"lora_name": "fresh-lora", "lora_path": "/a"}, timeout=5)
    assert loaded.status_code == 200 and "added successfully" in loaded.text
    assert httpx.post(f"{url}/v1/load_lora_adapter", json={"lora_name": "fresh-lora", "lora_path": "/a"},
                      timeout=5).status_code == 400
    assert "fresh-lora" in [m["id"] for m in httpx.get(f"{url}/v1/models", timeout=5).json()["data"]]
    assert httpx.post(f"{url}/v1/chat/completions", json=body, timeout=5).status_code == 200
    assert httpx.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": "fresh-lora"}, timeout=5).status_code == 200
    assert httpx.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": "fresh-lora"}, timeout=5).status_code == 404
    assert httpx.post(f"{url}/v1/chat/completions", json=body, timeout=5).status_code == 404


def metric_samples(text: str) -> dict[str, list]:
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def test_metrics_parse_with_vllms_names_and_show_adapters_loaded(served):
    url = served.url(0)
    for adapter in ("sql-lora", "chat-lora", "chat-lora"):     # one LoRA slot: the second takes it
        assert httpx.post(f"{url}/v1/chat/completions", json=chat("x", model=adapter), timeout=5).status_code == 200
    assert list(served.pool.replicas[0].engine.loras) == ["chat-lora"]
    families = metric_samples(httpx.get(f"{url}/metrics", timeout=5).text)
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:gpu_cache_usage_perc",
                 "vllm:kv_cache_usage_perc", "vllm:lora_requests_info", "vllm:prefix_cache_queries",
                 "vllm:prefix_cache_hits", "vllm:prompt_tokens", "vllm:generation_tokens",
                 "vllm:time_to_first_token_seconds", "vllm:cache_config_info"):
        assert name in families, name
    running = families["vllm:num_requests_running"][0]
    assert running.labels["model_name"] == "llama-3.1-8b-instruct" and running.value == 0
    lora = families["vllm:lora_requests_info"]
    assert {s.labels["running_lora_adapters"] for s in lora} >= {"sql-lora", "chat-lora", ""}
    assert all(s.labels["max_lora"] == "1" and s.value > 1.7e9 for s in lora)
    assert families["vllm:prefix_cache_hits"][0].value > 0
    assert families["vllm:time_to_first_token_seconds"][-1].name.endswith("_sum")


def test_queue_and_kv_use_show_in_metrics_under_load():
    async def scenario():
        [pool] = pools_from_config({"vllm_pools": [{"name": "busy", "port": free_ports(1), "replicas": 1,
                                                    "max_batch": 2, "time_scale": FAST}]})
        replica = pool.replicas[0]
        await pool.start()
        async with httpx.AsyncClient(timeout=10) as client:
            calls = [asyncio.create_task(client.post(f"http://127.0.0.1:{pool.spec.port}/v1/completions",
                                                     json={"prompt": f"request {i} " * 50, "max_tokens": 1000}))
                     for i in range(5)]
            deadline = time.monotonic() + 5
            while (len(replica.engine.running), len(replica.engine.waiting)) != (2, 3):   # all in
                assert time.monotonic() < deadline
                await asyncio.sleep(0.002)
            families = metric_samples(render(replica.engine, "m").decode())
            answers = await asyncio.gather(*calls)
        await pool.stop()
        return families, answers
    families, answers = run(scenario())
    assert families["vllm:num_requests_running"][0].value == 2 and families["vllm:num_requests_waiting"][0].value == 3
    assert 0 < families["vllm:kv_cache_usage_perc"][0].value < 1
    assert all(a.status_code == 200 and a.json()["usage"]["completion_tokens"] == 1000 for a in answers)


def test_metrics_faults_garbage_error_slow_and_hang(served):
    url = served.url(2)
    try:
        control(served, 2, {"metrics": "garbage"})
        body = httpx.get(f"{url}/metrics", timeout=5)
        assert body.status_code == 200
        with pytest.raises(Exception):
            list(text_string_to_metric_families(body.text))
        control(served, 2, {"metrics": "error"})
        assert httpx.get(f"{url}/metrics", timeout=5).status_code == 500
        for mode in ("slow", "hang"):
            control(served, 2, {"metrics": mode})
            with pytest.raises(httpx.ReadTimeout):
                httpx.get(f"{url}/metrics", timeout=0.3)
        control(served, 2, {"metrics": "ok"})
        assert "vllm:num_requests_running" in httpx.get(f"{url}/metrics", timeout=5).text
    finally:
        control(served, 2, {"metrics": "ok"})


def test_a_replica_down_refuses_drops_in_flight_and_comes_back_empty(served):
    url = served.url(1)
    body = chat("warm the cache")
    assert httpx.post(f"{url}/v1/chat/completions", json=body, timeout=5).status_code == 200
    slow = {**body, "max_tokens": 30000}                 # ~7 s of steps: in flight when the pod dies
    outcome = {}

    def call():
        try:
            outcome["status"] = httpx.post(f"{url}/v1/chat/completions", json=slow, timeout=10).status_code
        except httpx.HTTPError as error:
            outcome["error"] = type(error).__name__
    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 5
    while not served.pool.replicas[1].engine.running:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert control(served, 1, {"down": True})["down"] is True
    caller.join(5)
    assert "error" in outcome, outcome                   # dropped mid-answer
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=2)
    assert control(served, 0, {"replica": 1, "down": False})["down"] is False     # from a sibling
    again = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=5)
    assert again.status_code == 200 and again.json()["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


def test_a_replica_down_for_a_while_comes_back_by_itself(served):
    assert control(served, 2, {"down": True, "up_after_s": 0.2})["down"] is True
    deadline = time.monotonic() + 5
    while served.pool.replicas[2].down:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert httpx.get(f"{served.url(2)}/health", timeout=2).status_code == 200


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_leaves_frees_its_place_queued_or_running(stream):
    pool = ServedPool({"name": "leave", "port": free_ports(1), "replicas": 1, "max_batch": 1,
                       "time_scale": FAST, "max_output_tokens": 32768})
    engine = pool.pool.replicas[0].engine
    try:
        body = {"model": "llama-3.1-8b-instruct", "prompt": "long one", "max_tokens": 30000, "stream": stream}

        # Each client stays 2 s: long enough on a busy host for both to be in (one
        # running, one queued) before either leaves.
        def leave_after_a_while():
            gives_up = time.monotonic() + 2
            try:
                with httpx.stream("POST", f"{pool.url(0)}/v1/completions", json=body, timeout=2) as response:
                    for _ in response.iter_bytes():         # a stream: read a while, then hang up
                        if time.monotonic() > gives_up:
                            return
            except httpx.ReadTimeout:                       # JSON: nothing comes before the end
                pass
        threads = [threading.Thread(target=leave_after_a_while) for _ in range(2)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while (len(engine.running), len(engine.waiting)) != (1, 1):     # one running, one queued
            assert time.monotonic() < deadline
            time.sleep(0.01)
        while engine.running or engine.waiting:         # both clients gave up: both gone
            assert time.monotonic() < deadline, (len(engine.running), len(engine.waiting))
            time.sleep(0.01)
        assert engine.kv_usage() == 0
        for thread in threads:
            thread.join(5)
    finally:
        pool.close()


def test_reset_empties_the_cache_and_the_counters(served):
    url = served.url(0)
    body = chat("reset me")
    httpx.post(f"{url}/v1/chat/completions", json=body, timeout=5)
    control(served, 0, {"reset": True})
    assert served.pool.replicas[0].engine.counters.prompt_tokens == 0
    answer = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=5).json()
    assert answer["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert httpx.post(f"{url}/_mock/replica", json={"metrics": "sideways"}, timeout=5).status_code == 400


# --- config ---------------------------------------------------------------------------------

def test_the_quickstart_pool_and_its_ports_move_with_the_port_offset():
    with open("config/quickstart.yaml", encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    [item] = raw["mock_provider"]["vllm_pools"]
    spec = PoolSpec.from_config(item)
    assert (spec.name, spec.ports(), spec.models) == ("mock-vllm", [10120, 10121, 10122, 10123],
                                                      ["llama-3.1-8b-instruct"])
    assert spec.adapters == {"sql-lora": [0, 1]} and spec.engine == EngineSpec()
    shift_config(raw, 1000)
    assert raw["mock_provider"]["vllm_pools"][0]["port"] == 11120


def test_extproc_up_checks_every_replica_port_is_free(monkeypatch):
    from extproc.runtime import up_cli
    from extproc.config.envoy_gen import generate
    from extproc.config.filter_config import load_config
    from extproc.credentials.google import DEMO_SERVICE_ACCOUNT_ENV, demo_service_account
    monkeypatch.setenv(DEMO_SERVICE_ACCOUNT_ENV, demo_service_account())
    config = load_config("config/quickstart.yaml")
    listening = dict(up_cli._listeners(config, generate(config)))
    assert [listening[f"the simulated vLLM replica mock-vllm-{i}"] for i in range(4)] == \
        [f"127.0.0.1:{10120 + i}" for i in range(4)]


def test_completions_stream_and_the_context_limit(served):
    body = {"model": "llama-3.1-8b-instruct", "prompt": "tell me more", "max_tokens": 4, "stream": True}
    with httpx.stream("POST", f"{served.url(2)}/v1/completions", json=body, timeout=10) as response:
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1]) == "tell me more tell"
    too_long = httpx.post(f"{served.url(2)}/v1/completions", timeout=10,
                          json={"model": "llama-3.1-8b-instruct", "prompt": "tell me more", "max_tokens": 40000})
    assert too_long.status_code == 400 and too_long.json()["error"]["type"] == "BadRequestError"


def test_a_conversations_next_turn_hits_the_answer_it_repeats(served):
    url = served.url(1)
    messages = [{"role": "system", "content": "You plan trips. " * 30},
                {"role": "user", "content": "a weekend in Lisbon with two children"}]
    body = {"model": "llama-3.1-8b-instruct", "max_tokens": 80, "messages": messages}
    first = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10).json()
    messages += [{"role": "assistant", "content": first["choices"][0]["message"]["content"]},
                 {"role": "user", "content": "and with a car"}]
    second = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10).json()
    # Past the first prompt's blocks: the answer's, cached when it ended.
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] > first["usage"]["prompt_tokens"] + 40


@pytest.mark.parametrize("item, said", [
    ({"name": "p", "port": 18000}, "replicas must be given"),
    ({"name": "p", "port": 18000, "replicas": 2, "max_batchs": 4}, "unknown key(s) max_batchs"),
    ({"name": "p", "port": 18000, "replicas": 2, "adapters": {"a": [2]}}, "adapters name replicas 0 to 1"),
    ({"name": "p", "port": 18000, "replicas": 2, "kv_blocks": "many"}, "kv_blocks must be a number"),
    ({"name": "p", "port": 65535, "replicas": 2}, "port + replicas - 1 a port"),
])
def test_a_wrong_pool_entry_is_named(item, said):
    with pytest.raises(ValueError) as error:
        pools_from_config({"vllm_pools": [{"name": "ok", "port": 17000, "replicas": 1}, item]})
    assert str(error.value).startswith("mock_provider.vllm_pools[1]: ") and said in str(error.value)


def test_any_json_in_a_request_is_an_answer_or_vllms_error_never_a_crash():
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from any_json import JSON, WRONG_TYPE
    pool = ServedPool({"name": "fuzz", "port": free_ports(1), "replicas": 1, "time_scale": FAST,
                       "max_output_tokens": 8, "adapters": {"a": [0]}})
    fields = st.dictionaries(st.sampled_from(["messages", "prompt", "stream", "stream_options", "max_tokens",
                                              "max_completion_tokens", "tools", "model", "n"]),
                             st.one_of(WRONG_TYPE, JSON), max_size=4)
    message = st.fixed_dictionaries({"role": st.one_of(st.just("user"), WRONG_TYPE),
                                     "content": st.one_of(st.text(max_size=30), WRONG_TYPE, JSON)})

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(path=st.sampled_from(["/v1/chat/completions", "/v1/completions"]), extra=fields,
           messages=st.lists(message, min_size=1, max_size=3))
    def check(path, extra, messages):
        body = {"model": "llama-3.1-8b-instruct", "messages": messages, "prompt": "hello", **extra}
        response = httpx.post(f"{pool.url(0)}{path}", content=json.dumps(body), timeout=10,   # (inf: not JSON)
                              headers={"content-type": "application/json"})
        assert response.status_code in (200, 400, 404), (body, response.status_code, response.text)
        if response.status_code != 200:
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    try:
        check()
        for options in ([1], "yes", 3, None):            # stream_options of another type than a mapping
            body = {"model": "a", "prompt": "hi", "stream": True, "stream_options": options, "max_tokens": 2}
            assert httpx.post(f"{pool.url(0)}/v1/completions", json=body, timeout=10).status_code == 200
    finally:
        pool.close()
