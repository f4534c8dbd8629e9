"""Benchmark, in isolation: what one call's span costs the worker. The request-headers hook
(the trace context, the provider's `traceparent`), the done hook (the attributes, the
span written in OTLP's wire format and queued) and the batch's share of the export (the
OTLP request joined, 512 spans a batch), for a JSON chat call as the quickstart serves it.

    .venv/bin/python bench/call_span.py [--spans 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time
from pathlib import Path

from extproc.api.openai import find_endpoint
from extproc.api.usage import Usage
from extproc.config.filter_config import load_config
from extproc.observability import span_export
from extproc.observability.tracing import TracingSettings
from extproc.pipeline.call import Call
from extproc.stages.accounting.trace import CallSpan

ROOT = Path(__file__).resolve().parent.parent


def make_call(config) -> Call:
    call = Call(config)
    call.headers = {":path": "/v1/chat/completions", "x-gateway-tag-agent": "planner",
                    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    call.endpoint, _ = find_endpoint("/v1/chat/completions")
    call.key = next(iter(config.keys_by_hash.values()))
    call.model_name = "gpt-4o-mini"
    call.model = config.models["gpt-4o-mini"]
    call.backend = call.model.backends[0]
    call.usage = Usage(42, 17)
    call.status, call.outcome = 200, "ok"
    call.tags = {"agent": "planner"}
    call.verdicts = [{"guardrail": "pii", "direction": "request", "verdict": "passed"}]
    call.response_json = {"model": "gpt-4o-mini-2024-07-18", "choices": [{"finish_reason": "stop"}]}
    call.service_seconds, call.ended_at = 0.0004, time.perf_counter()
    return call


async def measure(spans: int) -> dict[str, float]:
    base = load_config(str(ROOT / "config" / "quickstart.yaml"))
    tracing = TracingSettings(host="127.0.0.1", port=1)
    config = dataclasses.replace(base, observability=dataclasses.replace(base.observability, tracing=tracing))
    span_export.MAX_QUEUED = spans + 1
    span_export._exporters.clear()
    calls = [make_call(config) for _ in range(spans)]
    exporter = span_export.exporter_for(tracing)
    exporter._task.cancel()                       # batches are built here, not sent
    started = time.perf_counter()
    for call in calls:
        CallSpan.request_headers(call, False)
    headers = time.perf_counter()
    for call in calls:
        CallSpan.done(call)
    done = time.perf_counter()
    records = list(exporter.queue)
    exporter.queue.clear()
    size = 0
    for first in range(0, len(records), span_export.BATCH_SPANS):
        request = span_export.export_request("llm-gateway", records[first:first + span_export.BATCH_SPANS])
        size += len(request)
    batched = time.perf_counter()
    return {"request_headers_us": (headers - started) / spans * 1e6, "done_us": (done - headers) / spans * 1e6,
            "batch_us": (batched - done) / spans * 1e6, "total_us": (batched - started) / spans * 1e6,
            "bytes_per_span": size / spans}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=20000)
    args = parser.parse_args()
    runs = [asyncio.run(measure(args.spans)) for _ in range(3)]
    best = min(runs, key=lambda r: r["total_us"])
    print(f"{args.spans} spans, best of 3: " + ", ".join(f"{k} {v:.1f}" for k, v in best.items()))


if __name__ == "__main__":
    main()
