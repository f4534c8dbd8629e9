"""Sends the worker's call spans to an OTLP/gRPC collector, in batches, off the request path.

A call's span is queued as plain values when the call ends (stages/trace.py); a task on
the worker's loop turns the queue into one ExportTraceServiceRequest (the OpenTelemetry
protocol's own messages, `opentelemetry-proto`) every FLUSH_SECONDS, or as soon as
BATCH_SPANS are waiting, and sends it on a grpc.aio channel. One export is in flight at a
time. The queue is bounded: with the collector down or slow, spans past MAX_QUEUED are
dropped and counted (`gateway_trace_spans_total{result}`), never held in memory without
end, and a call never waits for, nor fails because of, its span.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import NamedTuple

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, Status

from . import metrics
from .tracing import TracingSettings

log = logging.getLogger("extproc.tracing")

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
FLUSH_SECONDS = 1.0
BATCH_SPANS = 512
MAX_QUEUED = 4096
EXPORT_TIMEOUT = 5.0
SCOPE_NAME = "llm-gateway"
# ResourceSpans' field 2: `scope_spans` in the protocol since 0.19; a distribution that
# ships an older snapshot of the same files (xds-protos) names it
# `instrumentation_library_spans`. The wire is the same.
_SCOPE_FIELD = ResourceSpans.DESCRIPTOR.fields_by_number[2].name
_SCOPE_INFO_FIELD = ResourceSpans.DESCRIPTOR.fields_by_number[2].message_type.fields_by_number[1].name


class SpanRecord(NamedTuple):
    """One ended call's span, as plain values: made into protobuf when its batch is sent."""

    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes
    name: str
    start_ns: int
    end_ns: int
    attributes: dict
    error: bool


class SpanExporter:
    def __init__(self, settings: TracingSettings) -> None:
        self.settings = settings
        self.queue: deque[SpanRecord] = deque()
        self._wake = asyncio.Event()
        self._channel: grpc.aio.Channel | None = None
        self._export = None
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._exported = metrics.trace_spans.labels("exported")
        self._queue_full = metrics.trace_spans.labels("dropped_queue_full")
        self._failed = metrics.trace_spans.labels("dropped_export_failed")

    def add(self, record: SpanRecord) -> None:
        """Queues a span; drops it (counted) when the queue is full."""
        queue = self.queue
        if len(queue) >= MAX_QUEUED:
            self._queue_full.inc()
            return
        queue.append(record)
        if len(queue) == BATCH_SPANS:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), FLUSH_SECONDS)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            while self.queue:
                await self.send_batch()

    async def send_batch(self) -> None:
        """Sends up to BATCH_SPANS queued spans; a failed send drops them (counted)."""
        queue = self.queue
        batch = [queue.popleft() for _ in range(min(len(queue), BATCH_SPANS))]
        if not batch:
            return
        try:
            await self._exporter()(export_request(self.settings.service_name, batch), timeout=EXPORT_TIMEOUT)
        except asyncio.CancelledError:
            raise
        except Exception as error:   # the collector down, slow or refusing: the calls go on
            self._failed.inc(len(batch))
            log.warning("trace export to %s failed (%d spans dropped): %s", self.settings.endpoint,
                        len(batch), getattr(error, "code", lambda: type(error).__name__)())
            return
        self._exported.inc(len(batch))

    def _exporter(self):
        if self._export is None:
            self._channel = grpc.aio.insecure_channel(self.settings.endpoint)
            self._export = self._channel.unary_unary(
                EXPORT_METHOD, request_serializer=ExportTraceServiceRequest.SerializeToString,
                response_deserializer=ExportTraceServiceResponse.FromString)
        return self._export

    async def close(self) -> None:
        """Sends what is queued (once), then stops."""
        self._task.cancel()
        try:
            while self.queue:
                await self.send_batch()
        finally:
            if self._channel is not None:
                await self._channel.close()


def export_request(service_name: str, batch: list[SpanRecord]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name", value=AnyValue(string_value=service_name))
    scope_spans = getattr(resource_spans, _SCOPE_FIELD).add()
    getattr(scope_spans, _SCOPE_INFO_FIELD).name = SCOPE_NAME
    spans = scope_spans.spans
    for record in batch:
        spans.append(Span(
            trace_id=record.trace_id, span_id=record.span_id, parent_span_id=record.parent_span_id,
            name=record.name, kind=Span.SPAN_KIND_SERVER,
            start_time_unix_nano=record.start_ns, end_time_unix_nano=record.end_ns,
            attributes=[KeyValue(key=key, value=any_value(value)) for key, value in record.attributes.items()],
            status=Status(code=Status.STATUS_CODE_ERROR) if record.error else None))
    return request


def any_value(value) -> AnyValue:
    """An attribute's OTLP value, typed as the OpenTelemetry conventions ask: bool, int,
    double, string, or an array of strings."""
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(array_value={"values": [AnyValue(string_value=str(item)) for item in value]})


_exporters: dict[TracingSettings, SpanExporter] = {}


def exporter_for(settings: TracingSettings) -> SpanExporter:
    """The worker's exporter for these settings, started on first use (on the running loop)."""
    exporter = _exporters.get(settings)
    if exporter is None:
        exporter = _exporters[settings] = SpanExporter(settings)
    return exporter


async def close_exporters() -> None:
    """At a worker's stop: every exporter sends what it holds."""
    while _exporters:
        _, exporter = _exporters.popitem()
        try:
            await asyncio.wait_for(exporter.close(), EXPORT_TIMEOUT + 1)
        except Exception:
            log.warning("trace export at shutdown did not complete", exc_info=True)
