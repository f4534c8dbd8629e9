"""A pool provider (`type: pool`): replicas of an OpenAI-compatible model server (vLLM
first) whose endpoint for each call the gateway picks (extproc/pools/, stages/pool_pick.py)
from what each replica's /metrics says and which prompt prefixes it has seen.

    providers:
      local-vllm:
        type: pool
        server: vllm
        endpoints: [127.0.0.1:10120, 127.0.0.1:10121]
        # or, in a cluster: service: {name: vllm, namespace: models, port: 8000}
        models: [llama-3.1-8b-instruct]
        adapters: {sql-lora: [127.0.0.1:10120]}
        picker: {weights: {queue: 1, kv_cache: 1, prefix: 2, adapter: 1}, when_saturated: least_loaded,
                 scrape_timeout_ms: 100}
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from ..yamltree import Node

# The metric names of each server kind: what the scraper reads (pools/metrics.py).
SERVERS = {
    "vllm": {"running": ("vllm:num_requests_running",), "waiting": ("vllm:num_requests_waiting",),
             "kv_cache": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
             "lora": ("vllm:lora_requests_info",)},
    "sglang": {"running": ("sglang:num_running_reqs",), "waiting": ("sglang:num_queue_reqs",),
               "kv_cache": ("sglang:token_usage",), "lora": ()},
}
SATURATED_CHOICES = ("least_loaded", "shed")


@dataclass(frozen=True, slots=True)
class PickerWeights:
    queue: float = 1.0
    kv_cache: float = 1.0
    prefix: float = 2.0
    adapter: float = 1.0


@dataclass(frozen=True, slots=True)
class KubeService:
    """A Kubernetes Service whose EndpointSlices list the pool's replicas (watched)."""
    name: str
    namespace: str
    port: int

    @property
    def dns_name(self) -> str:
        """A headless Service's name: Envoy's DNS resolves it to every ready pod."""
        return f"{self.name}.{self.namespace}.svc.cluster.local"


@dataclass(frozen=True, slots=True)
class Pool:
    server: str                              # a key of SERVERS
    endpoints: tuple[str, ...]               # "ip:port" (local); empty with `service`
    service: KubeService | None
    models: tuple[str, ...]
    adapters: dict                           # adapter -> endpoints said to serve it (learned too)
    weights: PickerWeights
    when_saturated: str                      # least_loaded | shed
    scrape_interval_ms: int = 50
    stale_after_ms: int = 500
    scrape_timeout_ms: int = 100             # a /metrics (or /v1/models) read slower than this fails
    saturated_queue: int = 8                 # waiting requests from which an endpoint is saturated
    saturated_kv_cache: float = 0.95
    block_chars: int = 256                   # prompt characters per prefix block (~64 tokens)
    prefix_blocks: int = 4096                # prefix blocks remembered per endpoint (LRU)
    fallbacks: int = 2                       # endpoints after the pick that Envoy's retries try

    @property
    def metric_names(self) -> dict:
        return SERVERS[self.server]


def parse_pool(node: Node) -> Pool:
    server = node.get("server").choice(tuple(SERVERS), "vllm")
    endpoints = tuple(_endpoint(entry) for entry in node.get("endpoints").elements())
    service = _service(node.get("service"))
    if bool(endpoints) == (service is not None):
        node.fail("a pool names its replicas: `endpoints: [ip:port, ...]` or `service: {name, namespace, port}`"
                  " (one of the two)")
    models = tuple(entry.str() for entry in node.get("models").elements())
    if not models:
        node.get("models").fail("a pool lists the models its replicas serve (e.g. [llama-3.1-8b-instruct])")
    adapters = {}
    adapter_node = node.get("adapters")
    for name, served in adapter_node.items():
        adapters[name] = tuple(_endpoint(entry) for entry in served.elements())
    picker = node.get("picker")
    picker.only_keys("weights", "when_saturated", "scrape_interval_ms", "stale_after_ms", "scrape_timeout_ms",
                     "saturated_queue", "saturated_kv_cache", "block_chars", "prefix_blocks", "fallbacks")
    weights_node = picker.get("weights")
    weights_node.only_keys("queue", "kv_cache", "prefix", "adapter")
    defaults = PickerWeights()
    weights = PickerWeights(**{key: weights_node.get(key).number(getattr(defaults, key), minimum=0)
                               for key in ("queue", "kv_cache", "prefix", "adapter")})
    interval = picker.get("scrape_interval_ms").number(50, integer=True, minimum=10)
    stale = picker.get("stale_after_ms").number(max(500, 4 * interval), integer=True, minimum=interval * 2)
    # A scrape may take two intervals (a replica busy generating answers its /metrics late),
    # within 50-500 ms; one slower than `stale_after_ms` would leave the replica stale anyway.
    timeout_node = picker.get("scrape_timeout_ms")
    timeout = timeout_node.number(min(stale, max(50, min(500, 2 * interval))), integer=True, minimum=10)
    if timeout > stale:
        timeout_node.fail(f"must be at most stale_after_ms ({stale}): a replica whose scrape takes longer is stale")
    return Pool(server=server, endpoints=endpoints, service=service, models=models, adapters=adapters,
                weights=weights, when_saturated=picker.get("when_saturated").choice(SATURATED_CHOICES, "least_loaded"),
                scrape_interval_ms=interval, stale_after_ms=stale, scrape_timeout_ms=timeout,
                saturated_queue=picker.get("saturated_queue").number(8, integer=True, minimum=1),
                saturated_kv_cache=picker.get("saturated_kv_cache").number(0.95, minimum=0.1),
                block_chars=picker.get("block_chars").number(256, integer=True, minimum=16),
                prefix_blocks=picker.get("prefix_blocks").number(4096, integer=True, minimum=16),
                fallbacks=picker.get("fallbacks").number(2, integer=True, minimum=0))


def _endpoint(entry: Node) -> str:
    text = entry.str("").strip()
    host, _, port = text.rpartition(":")
    try:
        ipaddress.ip_address(host)
        ok = port.isdigit() and 0 < int(port) < 65536
    except ValueError:
        ok = False
    if not ok:
        entry.fail("an endpoint is an IP address and port (e.g. 10.0.3.7:8000): Envoy routes to it as is")
    return text


def _service(node: Node) -> KubeService | None:
    if node.missing:
        return None
    node.only_keys("name", "namespace", "port")
    name, namespace = node.get("name").str(""), node.get("namespace").str("default")
    for key, value in (("name", name), ("namespace", namespace)):
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", value):
            node.get(key).fail("a Kubernetes name (lower case letters, digits, '-')")
    return KubeService(name, namespace, node.get("port").number(8000, integer=True, minimum=1))
