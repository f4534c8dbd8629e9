"""Pool providers' picker: the config, /metrics parsing (garbage included), the prefix
table's LRU, the score and its fallbacks, and the Envoy cluster made for a pool."""

from __future__ import annotations

import math

import time

import pytest
import yaml

from extproc.config.envoy_gen import generate
from extproc.config.filter_config import load_config
from extproc.yamltree import ConfigError
from extproc.config.pools import SERVERS, Pool, PickerWeights
from extproc.pools.homes import SLOTS, SharedHomes, address_crc
from extproc.pools.metrics import parse
from extproc.pools.picker import NoEndpoint, pick
from extproc.pools.prefix import PrefixTable, block_hashes
from extproc.pools.signals import PoolSignals

VLLM = SERVERS["vllm"]
METRICS = b"""# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="llama-3.1-8b-instruct"} 3.0
vllm:num_requests_waiting{model_name="llama-3.1-8b-instruct"} 2.0
vllm:kv_cache_usage_perc{model_name="llama-3.1-8b-instruct"} 0.25
vllm:gpu_cache_usage_perc{model_name="llama-3.1-8b-instruct"} 0.25
vllm:lora_requests_info{max_lora="4",running_lora_adapters="sql-lora,x",waiting_lora_adapters=""} 1.7e9
"""


def test_vllm_metrics_are_read():
    load = parse(METRICS, VLLM)
    assert (load.running, load.waiting, load.kv_cache) == (3.0, 2.0, 0.25)
    assert load.running_adapters == {"sql-lora", "x"} and load.waiting_adapters == frozenset()


@pytest.mark.parametrize("garbage", [b"", b"\xff\xfe", b"hello world\n", b"vllm:num_requests_running nan\n",
                                     b"vllm:num_requests_running{a=\"b\"} 1\n",      # no waiting
                                     b"vllm:num_requests_running 1\nvllm:num_requests_waiting x\n",
                                     b"vllm:num_requests_waiting -4\nvllm:num_requests_running 1\n",
                                     bytes(range(256)) * 4])
def test_garbage_metrics_raise_value_error(garbage):
    with pytest.raises(ValueError):
        parse(garbage, VLLM)


def test_prefix_table_matches_leading_blocks_and_evicts_lru():
    table = PrefixTable(capacity=8)
    shared = block_hashes(["s" * 1024, "question one"], 256)
    assert len(shared) == 4
    table.record("a", shared)
    longer = block_hashes(["s" * 1024, "q" * 600], 256)
    assert table.matched(longer) == {"a": 4}
    assert table.matched(block_hashes(["t" * 1024], 256)) == {}
    table.record("a", block_hashes(["u" * 256 * 8], 256))        # 8 newer blocks evict the old ones
    assert table.matched(shared) == {} and table.size("a") == 8
    table.forget("a")
    assert table.size("a") == 0 and table.matched(block_hashes(["u" * 2048], 256)) == {}


def test_eviction_takes_a_prompts_deepest_blocks_first():
    """A call's blocks are recorded deepest first, so the LRU forgets the end of an old
    prompt before its start (as vLLM does): what a replica holds stays a leading prefix."""
    table = PrefixTable(capacity=6)
    old = block_hashes(["o" * 256 * 4], 256)
    table.record("a", old)
    table.record("a", block_hashes(["n" * 256 * 3], 256))      # 3 newer blocks: 1 of old's goes
    assert table.matched(old) == {"a": 3}
    table.record("b", old[:2])
    assert table.matched(old) == {"a": 3, "b": 2}


def test_a_large_table_drops_its_least_recently_used_in_one_pass():
    """Past an eighth over its capacity, a table goes back to its capacity, the least
    recently used blocks (and the deepest of a prompt) first."""
    table = PrefixTable(capacity=64)
    old = block_hashes(["o" * 256 * 40], 256)
    table.record("a", old)
    table.record("a", block_hashes(["n" * 256 * 32], 256))      # 72 held: not yet past 64 + 8
    assert table.size("a") == 72 and table.matched(old) == {"a": 40}
    table.record("a", block_hashes(["m" * 256 * 1], 256))       # 73: back to 64, 9 of old's deepest gone
    assert table.size("a") == 64 and table.matched(old) == {"a": 31}


def test_block_hashes_stand_for_their_whole_prefix():
    one = block_hashes(["x" * 300, "same ending " * 40], 256)
    two = block_hashes(["y" * 300, "same ending " * 40], 256)
    assert len(one) == len(two) == 3 and not set(one) & set(two)     # same later blocks, other start
    assert block_hashes(["x" * 300, "other " * 80], 256)[0] == one[0]
    assert block_hashes(["short"], 256) == [] and len(block_hashes(["é" * 256], 256)) == 2   # UTF-8 bytes


def test_conversations_under_a_long_system_prompt_have_their_own_homes():
    from extproc.pools.prefix import home_key
    system = "You answer questions about garden tools. " * 600            # ~25 KB
    keys = {home_key([system, f"Customer {i}: which rake?"]) for i in range(20)}
    assert len(keys) == 20
    assert home_key([system, "Customer 1: which rake?", "an answer", "a later turn"]) == \
        home_key([system, "Customer 1: which rake?"])                      # the same in every turn


def test_questions_on_one_long_document_share_its_home():
    from extproc.pools.prefix import home_key
    documents = [f"Manual {d}: " + "how to sharpen, store and oil the shears. " * 300 for d in range(3)]
    keys = {d: {home_key([f"{document}\n\nQuestion {q}: which oil?"]) for q in range(10)}
            for d, document in enumerate(documents)}
    assert all(len(same) == 1 for same in keys.values())                 # one home per document
    assert len(set().union(*keys.values())) == 3                          # and documents spread


def _pool(n: int = 4, homes=None, **picker) -> PoolSignals:
    addresses = tuple(f"10.0.0.{i}:8000" for i in range(n))
    pool = Pool(server="vllm", endpoints=addresses, service=None, models=("m",),
                adapters={"lora": addresses[:2]}, weights=PickerWeights(), when_saturated=picker.pop("when", "least_loaded"),
                **picker)
    signals = PoolSignals("p", pool, homes=homes)
    for endpoint in signals.endpoints.values():
        endpoint.scraped_at = time.monotonic()
    return signals


def _set(signals, i, waiting=0.0, running=0.0, kv=0.0, adapters=frozenset()):
    load = signals.endpoints[f"10.0.0.{i}:8000"].load
    load.waiting, load.running, load.kv_cache, load.running_adapters = waiting, running, kv, adapters


def test_least_loaded_then_fallbacks_in_order():
    signals = _pool()
    for i, waiting in enumerate([5, 1, 3, 0]):
        _set(signals, i, waiting=waiting)
    chosen = pick(signals, "m", [])
    assert chosen.endpoints == ["10.0.0.3:8000", "10.0.0.1:8000", "10.0.0.2:8000"]
    assert chosen.reason == "least_loaded"


def test_a_repeated_prefix_goes_to_the_same_replica():
    signals = _pool()
    hashes = block_hashes(["system " * 400, "hello"], 256)
    first = pick(signals, "m", hashes).endpoints[0]
    for endpoint in signals.endpoints.values():
        endpoint.sent = 0
    again = pick(signals, "m", hashes)
    assert again.endpoints[0] == first and again.reason == "prefix"


def test_the_shared_homes_keep_a_word_per_key_and_the_newest_wins(tmp_path):
    one, two = SharedHomes("p", str(tmp_path)), SharedHomes("p", str(tmp_path))    # two workers
    one.put(7, address_crc("10.0.0.1:8000"))
    assert two.get(7) == address_crc("10.0.0.1:8000") and two.get(8) == 0
    two.put(7 + SLOTS, address_crc("10.0.0.2:8000"))        # the same slot: the newer key wins
    assert one.get(7) == 0 and one.get(7 + SLOTS) == address_crc("10.0.0.2:8000")
    one.put(0, 5)                                            # key 0: never stored
    assert two.get(0) == 0
    assert SharedHomes("q", str(tmp_path)).get(7 + SLOTS) == 0     # another pool, another file
    assert SharedHomes("p", "").get(7 + SLOTS) == 0                # no folder: this process's own


def test_a_conversation_moved_off_its_hash_home_stays_where_it_went_in_every_worker(tmp_path):
    """Worker A sends a conversation away from its ring home (over its bound); worker B,
    which never saw it, sends the next turn where A did, and keeps it there while that
    replica is within the looser bound of a recorded home."""
    hashes, key = block_hashes(["system " * 400, "Customer 1: which rake?"], 256), 0xC0FFEE
    ring_home = pick(_pool(), "m", hashes, home=key).endpoints[0]       # a worker of its own
    worker_a, worker_b = _pool(homes=SharedHomes("p", str(tmp_path))), _pool(homes=SharedHomes("p", str(tmp_path)))
    for signals in (worker_a, worker_b):
        _set(signals, int(ring_home.split(".")[3].split(":")[0]), running=6)     # over 1.0x mean + 1
    moved = pick(worker_a, "m", hashes, home=key).endpoints[0]
    assert moved != ring_home
    assert pick(worker_b, "m", hashes, home=key).endpoints[0] == moved
    record = pick(worker_b, "m", hashes, home=key)
    assert record.endpoints[0] == moved and record.prefix_blocks == record.best_blocks == len(hashes)
    at = int(moved.split(".")[3].split(":")[0])
    _set(worker_b, at, running=4)        # mean 2.5: past 1.0x + 1 (3.5), within 2x + 1 (6)
    for endpoint in worker_b.endpoints.values():
        endpoint.sent = 0
    assert pick(worker_b, "m", hashes, home=key).endpoints[0] == moved


def test_stale_and_failing_replicas_are_demoted_or_skipped():
    signals = _pool(stale_after_ms=500)
    signals.endpoints["10.0.0.0:8000"].scraped_at = time.monotonic() - 5      # stale
    signals.endpoints["10.0.0.1:8000"].failures = 5                            # failing
    chosen = pick(signals, "m", [])
    assert "10.0.0.1:8000" not in chosen.endpoints
    assert chosen.endpoints[0] in ("10.0.0.2:8000", "10.0.0.3:8000")
    for i in (2, 3):
        signals.endpoints[f"10.0.0.{i}:8000"].failures = 5
    assert pick(signals, "m", []).endpoints == ["10.0.0.0:8000"] * 3      # each retry stays where it is served
    assert pick(signals, "m", []).reason == "fallback"
    signals.endpoints["10.0.0.0:8000"].failures = 5
    with pytest.raises(NoEndpoint):
        pick(signals, "m", [])


def test_a_burst_on_stale_replicas_spreads_over_them():
    """After an idle spell (scraping stopped) every replica is stale: the calls sent each
    since count, so a burst does not all go to the one that was least loaded."""
    signals = _pool()
    for endpoint in signals.endpoints.values():
        endpoint.scraped_at = time.monotonic() - 60
    _set(signals, 2, waiting=0)
    for i in (0, 1, 3):
        _set(signals, i, waiting=1)
    firsts = [pick(signals, "m", []).endpoints[0] for _ in range(8)]
    assert all(p == "fallback" for p in [pick(signals, "m", []).reason])
    assert len(set(firsts)) == 4 and firsts[0] == "10.0.0.2:8000"


def test_adapters_go_to_replicas_that_have_them_preferring_loaded():
    signals = _pool()
    _set(signals, 1, adapters=frozenset({"lora"}))
    chosen = pick(signals, "lora", [])
    assert set(chosen.endpoints) <= {"10.0.0.0:8000", "10.0.0.1:8000"}
    assert chosen.endpoints[0] == "10.0.0.1:8000" and chosen.reason == "adapter"
    with pytest.raises(NoEndpoint, match="serves"):
        pick(signals, "other-model", [])


def test_saturated_pool_takes_least_loaded_or_sheds():
    signals = _pool()
    for i in range(4):
        _set(signals, i, waiting=20 - i)
    chosen = pick(signals, "m", [])
    assert chosen.reason == "saturated" and chosen.endpoints[0] == "10.0.0.3:8000"
    shedding = _pool(when="shed")
    for i in range(4):
        _set(shedding, i, kv=0.99)
    with pytest.raises(NoEndpoint) as refused:
        pick(shedding, "m", [])
    assert refused.value.shed


def test_unscraped_pool_lets_envoy_balance():
    signals = _pool()
    for endpoint in signals.endpoints.values():
        endpoint.scraped_at = 0.0
    chosen = pick(signals, "m", [])
    assert chosen.reason == "unscraped" and len(chosen.endpoints) == 3
    assert set(pick(signals, "lora", []).endpoints) == {"10.0.0.0:8000", "10.0.0.1:8000"}   # only where it is


def _config(tmp_path, provider: dict):
    config = {"providers": {"pool": provider},
              "models": {"local": {"backends": [{"provider": "pool", "model": "m"}],
                                   "price": {"input": 0, "output": 0}}},
              "keys": [{"id": "x", "key": "sk-x", "team": "t"}]}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_config(str(path), strict_credentials=False)


def test_pool_config_and_its_envoy_cluster(tmp_path):
    config = _config(tmp_path, {"type": "pool", "endpoints": ["127.0.0.1:9000", "127.0.0.1:9001"], "models": ["m"],
                                "picker": {"weights": {"prefix": 3}, "when_saturated": "shed"}})
    pool = config.providers["pool"].pool
    assert pool.endpoints == ("127.0.0.1:9000", "127.0.0.1:9001") and pool.weights.prefix == 3
    assert pool.when_saturated == "shed" and pool.scrape_timeout_ms == 100       # 2 intervals of 50 ms
    slow = _config(tmp_path, {"type": "pool", "endpoints": ["127.0.0.1:9000"], "models": ["m"],
                              "picker": {"scrape_interval_ms": 400, "scrape_timeout_ms": 1200}}).providers["pool"].pool
    assert (slow.stale_after_ms, slow.scrape_timeout_ms) == (1600, 1200)
    assert _config(tmp_path, {"type": "pool", "endpoints": ["127.0.0.1:9000"], "models": ["m"],
                              "picker": {"scrape_interval_ms": 400}}).providers["pool"].pool.scrape_timeout_ms == 500
    envoy = generate(config)
    [cluster] = [c for c in envoy["static_resources"]["clusters"] if c["name"] == "pool"]
    policy = cluster["load_balancing_policy"]["policies"][0]["typed_extension_config"]
    assert policy["name"] == "envoy.load_balancing_policies.override_host"
    assert len(cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]) == 2
    service = _config(tmp_path, {"type": "pool", "service": {"name": "vllm", "namespace": "models", "port": 8000},
                                 "models": ["m"]})
    [cluster] = [c for c in generate(service)["static_resources"]["clusters"] if c["name"] == "pool"]
    assert cluster["type"] == "STRICT_DNS"


@pytest.mark.parametrize("provider,message", [
    ({"type": "pool", "models": ["m"]}, "one of the two"),
    ({"type": "pool", "endpoints": ["vllm:8000"], "models": ["m"]}, "IP address and port"),
    ({"type": "pool", "endpoints": ["127.0.0.1:1"]}, "lists the models"),
    ({"type": "pool", "endpoints": ["127.0.0.1:1"], "models": ["m"], "picker": {"when_saturated": "x"}}, "shed"),
    ({"type": "pool", "endpoints": ["127.0.0.1:1"], "models": ["m"], "server": "tgi-x"}, "vllm"),
    ({"url": "http://x", "endpoints": ["127.0.0.1:1"]}, "not a setting of a openai provider"),
    ({"type": "pool", "endpoints": ["127.0.0.1:1"], "models": ["m"], "picker": {"scrape_timeout_ms": 600}},
     "at most stale_after_ms"),
    ({"type": "pool", "endpoints": ["127.0.0.1:1"], "models": ["m"], "picker": {"scrape_timeout_ms": 5}},
     "at least 10"),
])
def test_wrong_pool_configs_say_what_is_wrong(tmp_path, provider, message):
    with pytest.raises(ConfigError, match=message):
        _config(tmp_path, provider)


def test_the_chart_grants_the_endpointslice_watch_when_asked():
    helm = pytest.importorskip("helm_python")
    from pathlib import Path
    chart_path = Path(__file__).resolve().parent.parent / "charts" / "llm-gateway"
    with helm.Chart.load(str(chart_path)) as chart:
        files = chart.render({"pools": {"watchEndpointSlices": True, "namespaces": ["models"]}},
                             name="gw", namespace="gateway", is_install=True)
    objects = [o for path, text in files.items() if path.endswith(".yaml") for o in yaml.safe_load_all(text) if o]
    [role] = [o for o in objects if o["kind"] == "Role"]
    assert role["metadata"]["namespace"] == "models"
    assert role["rules"] == [{"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                              "verbs": ["get", "list", "watch"]}]
    [binding] = [o for o in objects if o["kind"] == "RoleBinding"]
    assert binding["subjects"][0]["namespace"] == "gateway"
    [deployment] = [o for o in objects if o["kind"] == "Deployment" and "gateway" in o["metadata"]["name"]
                    or o["kind"] == "Deployment"][:1]
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is True


def test_a_pool_nobody_calls_is_not_scraped_until_its_next_call():
    """Scraping stops once the pool has had no call for IDLE_STOP_S; the next call's
    signals_for starts it again."""
    import asyncio

    from extproc.pools import registry, signals as signals_module

    async def scenario():
        signals = _pool(2)
        signals.used_at = time.monotonic() - signals_module.IDLE_STOP_S - 1
        signals.start()
        await asyncio.wait_for(signals.task, 2)          # it ends without a scrape
        assert signals.task is None and all(e.failures == 0 for e in signals.endpoints.values())
        registry._pools["p"] = signals
        try:
            assert registry.signals_for("p", signals.pool) is signals and signals.task is not None
        finally:
            signals.stop()
            registry._pools.pop("p", None)

    asyncio.run(scenario())


def test_failed_scrapes_are_counted_by_reason_and_published():
    """A refused /metrics counts as `unreachable`; the publisher (stages/pool_pick.py) puts
    each replica's view and the failures on /metrics, and a replica gone is set GONE, which
    the admin's /metrics leaves out."""
    import asyncio
    import socket

    from extproc.observability import metrics
    from extproc.stages import pool_pick

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]              # closed once the block ends: refused
    pool = Pool(server="vllm", endpoints=(f"127.0.0.1:{port}",), service=None, models=("m",), adapters={},
                weights=PickerWeights(), when_saturated="least_loaded")
    signals = PoolSignals("unit-pool", pool)
    endpoint = signals.endpoints[f"127.0.0.1:{port}"]
    asyncio.run(signals.scrape(endpoint))
    assert endpoint.scrape_failures == {"unreachable": 1}
    pool_pick.publish_endpoints(signals)
    labels = ("unit-pool", endpoint.address)
    assert metrics.pool_scrape_failures.labels(*labels, "unreachable")._value.get() == 1
    assert metrics.pool_endpoint_demoted.labels(*labels)._value.get() == 1.0      # never scraped well
    endpoint.scraped_at, endpoint.failures, endpoint.load.waiting = time.monotonic(), 0, 3
    pool_pick.publish_endpoints(signals)
    assert metrics.pool_endpoint_demoted.labels(*labels)._value.get() == 0.0
    assert metrics.pool_endpoint_waiting.labels(*labels)._value.get() == 3.0
    signals.set_addresses([])
    pool_pick.publish_endpoints(signals)
    assert math.isnan(metrics.pool_endpoint_demoted.labels(*labels)._value.get())
    assert math.isnan(metrics.pool_endpoint_waiting.labels(*labels)._value.get())


def test_the_admin_leaves_out_the_series_of_replicas_gone_from_their_pool():
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    from extproc.observability.metrics import GONE
    from extproc.runtime.admin import DepartedLeftOut

    inner = CollectorRegistry()
    waiting = Gauge("gateway_pool_endpoint_waiting", "w", ["pool", "endpoint"], registry=inner)
    other = Gauge("gateway_other_gauge", "o", ["endpoint"], registry=inner)
    waiting.labels("p", "10.0.0.1:8000").set(2)
    waiting.labels("p", "10.0.0.2:8000").set(GONE)
    other.labels("10.0.0.2:8000").set(GONE)                # another family: as written
    outer = CollectorRegistry()
    outer.register(DepartedLeftOut(inner))
    text = generate_latest(outer).decode()
    assert 'gateway_pool_endpoint_waiting{endpoint="10.0.0.1:8000",pool="p"} 2.0' in text
    assert "10.0.0.2:8000\",pool" not in text and 'gateway_other_gauge{endpoint="10.0.0.2:8000"} NaN' in text


def test_a_services_endpointslices_give_the_ready_addresses_through_a_watchs_events():
    """The watch's events as the API server sends them (discovery.k8s.io/v1 EndpointSlices,
    one JSON object a line): replicas added, one not ready (draining), a slice deleted, a
    bookmark that changes nothing, and an ERROR that makes the watch list again."""
    from extproc.pools.kube_watch import apply_event, ready_addresses

    def piece(name, *endpoints):
        return {"metadata": {"name": name, "labels": {"kubernetes.io/service-name": "vllm"}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": 8000}],
                "endpoints": [{"addresses": [address], "conditions": {"ready": ready, "serving": True}}
                              for address, ready in endpoints]}
    slices: dict = {}
    assert apply_event(slices, {"type": "ADDED", "object": piece("vllm-a", ("10.0.0.1", True), ("10.0.0.2", True))})
    assert apply_event(slices, {"type": "ADDED", "object": piece("vllm-b", ("10.0.1.1", None))})
    assert ready_addresses(slices, 8000) == ["10.0.0.1:8000", "10.0.0.2:8000", "10.0.1.1:8000"]
    assert apply_event(slices, {"type": "MODIFIED", "object": piece("vllm-a", ("10.0.0.1", True), ("10.0.0.2", False))})
    assert ready_addresses(slices, 8000) == ["10.0.0.1:8000", "10.0.1.1:8000"]       # draining: not picked
    assert apply_event(slices, {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}}) is False
    assert apply_event(slices, {"type": "DELETED", "object": piece("vllm-b")})
    assert ready_addresses(slices, 8000) == ["10.0.0.1:8000"]
    assert apply_event(slices, {"type": "ERROR", "object": {"kind": "Status", "code": 410}}) is None
    assert apply_event(slices, {"type": "ADDED", "object": {}}) and ready_addresses(slices, 8000) == ["10.0.0.1:8000"]
    for garbage in ([], "x", {"type": "ADDED", "object": "x"}):
        assert apply_event(slices, garbage) is None                                   # list again
