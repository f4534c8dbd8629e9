"""An OTLP/gRPC trace receiver for end-to-end tests, built on the OpenTelemetry protocol's
own service definition (opentelemetry-proto's TraceService servicer and messages): it
keeps every span the gateway's workers export, decoded to plain values."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
from gateway_stack import GatewayStack, free_port, quickstart_config
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from extproc.observability.span_export import scope_name_of, scope_spans_of


# A sampled call's log line links to its trace (observability.tracing.traces_url).
TRACES_URL = "https://traces.example.test/trace/{trace_id}?from=gateway"


def _value(any_value):
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[dict] = []
        self.lock = threading.Lock()

    def Export(self, request, context):  # noqa: N802 (the protocol's name)
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope in scope_spans_of(resource_spans):
                for span in scope.spans:
                    with self.lock:
                        self.spans.append({
                            "name": span.name, "kind": span.kind, "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(), "parent_span_id": span.parent_span_id.hex(),
                            "start": span.start_time_unix_nano, "end": span.end_time_unix_nano,
                            "status": span.status.code, "scope": scope_name_of(scope),
                            "attributes": {a.key: _value(a.value) for a in span.attributes},
                            "resource": resource})
        return trace_service_pb2.ExportTraceServiceResponse()

    def tagged(self, case: str) -> list[dict]:
        with self.lock:
            return [s for s in self.spans if f"case={case}" in s["attributes"].get("gateway.tags", [])]

    def wait_for(self, case: str, timeout: float = 10) -> dict:
        """The span of the call tagged `x-gateway-tag-case: <case>` (a worker sends its
        spans every second)."""
        return self.wait_until(lambda span: f"case={case}" in span["attributes"].get("gateway.tags", []),
                               timeout, case)

    def wait_until(self, matches: Callable[[dict], bool], timeout: float = 10, what: str = "the call") -> dict:
        """The one span `matches` accepts, once it has arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [span for span in self.spans if matches(span)]
            if found:
                assert len(found) == 1, found
                return found[0]
            time.sleep(0.1)
        raise AssertionError(f"no span for {what}; spans: {[s['name'] for s in self.spans]}")


def receiver_server(receiver: Receiver, port: int) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server


@contextlib.contextmanager
def traced_stack(workdir: Path) -> Iterator[tuple[GatewayStack, Receiver, grpc.Server]]:
    """The quickstart with every call traced to a receiver of its own."""
    receiver = Receiver()
    port = free_port()
    server = receiver_server(receiver, port)
    config = quickstart_config()
    config.setdefault("observability", {})["tracing"] = {"otlp_endpoint": f"127.0.0.1:{port}",
                                                         "sampling_percent": 100, "service_name": "gw-under-test",
                                                         "traces_url": TRACES_URL}
    stack = GatewayStack(workdir, config).start()
    try:
        yield stack, receiver, server
    finally:
        stack.stop()
        server.stop(0)
