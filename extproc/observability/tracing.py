"""Tracing settings: `observability.tracing` in the filter config.

    observability:
      tracing:
        otlp_endpoint: 127.0.0.1:4317     # OTLP/gRPC collector (host:port, or http://host:port)
        sampling_percent: 100             # head sampling of calls that start a trace; a caller's
                                          # traceparent decides for its own (parent-based)
        service_name: llm-gateway
        traces_url: ""                    # a link to one trace, {trace_id} filled in: a sampled
                                          # call's log line carries it as trace_url

The service makes each call's span (stages/accounting/trace.py) and each worker sends them in
batches (span_export.py); docs/decisions/call-spans-from-the-service.md says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

from ..yamltree import Node

@dataclass(frozen=True, slots=True)
class TracingSettings:
    host: str
    port: int
    sampling_percent: float = 100.0
    service_name: str = "llm-gateway"
    traces_url: str = ""

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"


def parse_tracing(node: Node) -> TracingSettings | None:
    if node.missing:
        return None
    node.only_keys("otlp_endpoint", "sampling_percent", "service_name", "traces_url")
    endpoint = node.get("otlp_endpoint").str("")
    parsed = urlparse(endpoint if "//" in endpoint else f"//{endpoint}")
    try:
        port = parsed.port
    except ValueError:
        port = None
    if not parsed.hostname or not port:
        node.get("otlp_endpoint").fail("must be host:port (or http://host:port) of an OTLP/gRPC collector")
        return None
    percent = node.get("sampling_percent").number(100.0, minimum=0)
    if percent > 100:
        node.get("sampling_percent").fail("must be at most 100")
    return TracingSettings(host=parsed.hostname, port=port,
                           sampling_percent=percent,
                           service_name=node.get("service_name").str("llm-gateway"),
                           traces_url=node.get("traces_url").str(""))
