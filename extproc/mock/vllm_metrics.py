"""A simulated vLLM replica's `/metrics`: Prometheus text with vLLM's own names, labels and
types (as vLLM's V1 engine exports them through prometheus_client), read off the engine
(vllm_sim.py) when scraped; and the broken answers a test can ask for instead.

Names: vllm:num_requests_running, vllm:num_requests_waiting, vllm:kv_cache_usage_perc and
vllm:gpu_cache_usage_perc (the same value: vLLM renamed it), vllm:lora_requests_info
(a gauge set to the time, one series per label set, labels max_lora,
waiting_lora_adapters, running_lora_adapters), vllm:prefix_cache_queries_total and
vllm:prefix_cache_hits_total (in tokens), vllm:prompt_tokens_total,
vllm:generation_tokens_total, vllm:request_success_total{finished_reason},
vllm:time_to_first_token_seconds (histogram, vLLM's buckets) and vllm:cache_config_info
(block_size, num_gpu_blocks). Each but lora_requests_info and cache_config_info carries
`model_name` and `engine="0"`, as vLLM labels them.
"""

from __future__ import annotations

import random

from .vllm_sim import TTFT_BUCKETS, Engine

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _number(value: float) -> str:
    return repr(float(value))


def _family(lines: list[str], name: str, kind: str, doc: str) -> None:
    lines.append(f"# HELP {name} {doc}")
    lines.append(f"# TYPE {name} {kind}")


def _labels(pairs: dict[str, str]) -> str:
    inner = ",".join(f'{key}="{value}"' for key, value in pairs.items())
    return "{" + inner + "}"


def render(engine: Engine, model_name: str) -> bytes:
    """The scrape: read off the engine now (~20 µs)."""
    base = {"engine": "0", "model_name": model_name}
    lbl = _labels(base)
    counters = engine.counters
    spec = engine.spec
    lines: list[str] = []
    for name, doc, value in (
            ("vllm:num_requests_running", "Number of requests in model execution batches.", len(engine.running)),
            ("vllm:num_requests_waiting", "Number of requests waiting to be processed.", len(engine.waiting)),
            ("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", engine.kv_usage()),
            ("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage. "
             "DEPRECATED: Use vllm:kv_cache_usage_perc instead.", engine.kv_usage())):
        _family(lines, name, "gauge", doc)
        lines.append(f"{name}{lbl} {_number(value)}")
    _family(lines, "vllm:lora_requests_info", "gauge", "Running stats on lora requests.")
    for (running, waiting), at in engine.lora_info.items():
        labels = _labels({"max_lora": str(spec.max_loras), "waiting_lora_adapters": waiting,
                          "running_lora_adapters": running})
        lines.append(f"vllm:lora_requests_info{labels} {_number(at)}")
    for name, doc, value in (
            ("vllm:prefix_cache_queries_total",
             "Prefix cache queries, in terms of number of queried tokens.", counters.prefix_queries),
            ("vllm:prefix_cache_hits_total",
             "Prefix cache hits, in terms of number of cached tokens.", counters.prefix_hits),
            ("vllm:prompt_tokens_total", "Number of prefill tokens processed.", counters.prompt_tokens),
            ("vllm:generation_tokens_total", "Number of generation tokens processed.",
             counters.generation_tokens)):
        _family(lines, name, "counter", doc)
        lines.append(f"{name}{lbl} {_number(value)}")
    _family(lines, "vllm:request_success_total", "counter", "Count of successfully processed requests.")
    for reason in ("stop", "length", "abort", *sorted(set(counters.finished) - {"stop", "length", "abort"})):
        labels = _labels({**base, "finished_reason": reason})
        lines.append(f"vllm:request_success_total{labels} {_number(counters.finished.get(reason, 0))}")
    name = "vllm:time_to_first_token_seconds"
    _family(lines, name, "histogram", "Histogram of time to first token in seconds.")
    for bound, count in zip(TTFT_BUCKETS, counters.ttft_buckets):
        lines.append(f'{name}_bucket{{engine="0",le="{bound}",model_name="{model_name}"}} {_number(count)}')
    lines.append(f'{name}_bucket{{engine="0",le="+Inf",model_name="{model_name}"}} {_number(counters.ttft_count)}')
    lines.append(f"{name}_count{lbl} {_number(counters.ttft_count)}")
    lines.append(f"{name}_sum{lbl} {_number(counters.ttft_sum)}")
    _family(lines, "vllm:cache_config_info", "gauge", "Information of the LLMEngine CacheConfig")
    info = _labels({"block_size": str(spec.block_tokens), "enable_prefix_caching": "True", "engine": "0",
                    "num_gpu_blocks": str(spec.kv_blocks)})
    lines.append(f"vllm:cache_config_info{info} 1.0")
    return ("\n".join(lines) + "\n").encode()


def garbage(seed: int) -> bytes:
    """What a broken exporter answers: bytes that are not Prometheus text (a different
    mess each scrape, the same for the same seed)."""
    rng = random.Random(seed)
    noise = bytes(rng.randrange(256) for _ in range(rng.randrange(64, 512)))
    return b"vllm:num_requests_running{{{ \xff\xfe not prometheus\n" + noise + b"\n}"
