"""Sends the worker's call spans to an OTLP/gRPC collector, in batches, off the request path.

A call's span is written in OTLP's wire format when the call ends (stages/accounting/trace.py,
after its last reply) and queued as bytes, which the garbage collector does not walk; a
task on the worker's loop joins the queue into one ExportTraceServiceRequest (its
resource and scope made by the OpenTelemetry protocol's own messages,
`opentelemetry-proto`) every FLUSH_SECONDS, or as soon as BATCH_SPANS are waiting, and
sends it on a grpc.aio channel. One export is in flight at a
time. The queue is bounded: with the collector down or slow, spans past MAX_QUEUED are
dropped and counted (`gateway_trace_spans_total{result}`), never held in memory without
end, and a call never waits for, nor fails because of, its span.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import struct
from collections import deque
from typing import NamedTuple

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from ..wire.writing import varint
from . import metrics
from .tracing import TracingSettings

log = logging.getLogger("extproc.tracing")

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
FLUSH_SECONDS = 1.0
BATCH_SPANS = 512
MAX_QUEUED = 4096
EXPORT_TIMEOUT = 5.0
SCOPE_NAME = "llm-gateway"
# ResourceSpans' field 2 is ScopeSpans in the protocol since 0.19; a distribution that
# ships an older snapshot of the same files (xds-protos) names it
# InstrumentationLibrarySpans, its field 1 `instrumentation_library`. The wire is the same.
# Which of the two is installed depends on the order pip wrote them, so readers of an
# export request (the tests' receiver, the bench) go through the two functions below.
ScopeSpans = getattr(trace_pb2, "ScopeSpans", None) or trace_pb2.InstrumentationLibrarySpans
_SCOPE_INFO_FIELD = ScopeSpans.DESCRIPTOR.fields_by_number[1].name
_SCOPE_SPANS_FIELD = trace_pb2.ResourceSpans.DESCRIPTOR.fields_by_number[2].name


def scope_spans_of(resource_spans) -> list:
    """A decoded ResourceSpans' ScopeSpans (field 2), whichever snapshot named it."""
    return list(getattr(resource_spans, _SCOPE_SPANS_FIELD))


def scope_name_of(scope_spans) -> str:
    """A decoded ScopeSpans' instrumentation scope name (field 1's name)."""
    return getattr(scope_spans, _SCOPE_INFO_FIELD).name


class SpanRecord(NamedTuple):
    """One ended call's span, as plain values (encode_span writes it)."""

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
        self.queue: deque[bytes] = deque()      # encoded Span messages
        self._wake = asyncio.Event()
        self._channel: grpc.aio.Channel | None = None
        self._export = None
        self._failing = False                 # logged once until an export succeeds again
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._exported = metrics.trace_spans.labels("exported")
        self._queue_full = metrics.trace_spans.labels("dropped_queue_full")
        self._failed = metrics.trace_spans.labels("dropped_export_failed")

    def full(self) -> bool:
        """No room for one more span: it is dropped, and counted."""
        if len(self.queue) >= MAX_QUEUED:
            self._queue_full.inc()
            return True
        return False

    def add(self, span: bytes) -> None:
        """Queues an encoded span (encode_span); drops it (counted) when the queue is full."""
        if self.full():
            return
        queue = self.queue
        queue.append(span)
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
            if not self._failing:
                self._failing = True
                reason = error.code() if isinstance(error, grpc.aio.AioRpcError) else type(error).__name__
                log.warning("trace export to %s failed, spans are dropped until it succeeds "
                            "(gateway_trace_spans_total): %s", self.settings.endpoint, reason)
            return
        if self._failing:
            self._failing = False
            log.warning("trace export to %s succeeds again", self.settings.endpoint)
        self._exported.inc(len(batch))

    def _exporter(self):
        if self._export is None:
            self._channel = grpc.aio.insecure_channel(self.settings.endpoint)
            self._export = self._channel.unary_unary(
                EXPORT_METHOD, request_serializer=None,         # export_request's bytes
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


def export_request(service_name: str, batch: list[bytes]) -> bytes:
    """One ExportTraceServiceRequest, serialized: its resource and scope as the protocol's
    messages make them, then the encoded spans."""
    spans = b"".join([_SPAN_TAG + _length(encoded) + encoded for encoded in batch])
    scope_spans = _scope(service_name) + spans
    resource_spans = _resource(service_name) + _SCOPE_SPANS_TAG + _length(scope_spans) + scope_spans
    return _RESOURCE_SPANS_TAG + _length(resource_spans) + resource_spans


def encode_span(record: SpanRecord) -> bytes:
    """A Span message (opentelemetry/proto/trace/v1/trace.proto), SERVER kind, written
    straight to the wire format: a Span with 20-odd KeyValue and AnyValue messages cost
    44 µs to build through the message types, 18 µs written here
    (docs/decisions/call-spans-from-the-service.md)."""
    name = record.name.encode("utf-8", "replace")
    parts = [b"\x0a\x10", record.trace_id, b"\x12\x08", record.span_id]             # fields 1, 2
    if record.parent_span_id:
        parts += (b"\x22\x08", record.parent_span_id)                              # 4
    parts += (b"\x2a", _length(name), name, b"\x30\x02",                            # 5 name, 6 kind
              b"\x39", _FIXED64.pack(record.start_ns), b"\x41", _FIXED64.pack(record.end_ns))   # 7, 8
    pairs = _pairs
    for key, value in record.attributes.items():                                    # 9 attributes
        if value.__class__ is str or value.__class__ is list:
            # Names, ids, models, verdicts repeat from call to call: each written once.
            cached = (key, value) if value.__class__ is str else (key, *value)
            field = pairs.get(cached)
            if field is None:
                if len(pairs) >= _MAX_PAIRS:
                    pairs.clear()
                field = pairs[cached] = _attribute(key, value)
            parts.append(field)
        else:
            parts.append(_attribute(key, value))
    if record.error:
        parts.append(b"\x7a\x02\x18\x02")                                           # 15 status: ERROR
    return b"".join(parts)


_pairs: dict[tuple, bytes] = {}
_MAX_PAIRS = 4096


def _attribute(key: str, value) -> bytes:
    """Span field 9: one KeyValue."""
    pair = _key(key) + _any_value(value)
    return b"\x4a" + _length(pair) + pair


def _any_value(value) -> bytes:
    """KeyValue's field 2: an AnyValue (string 1, bool 2, int 3, double 4, array 5)."""
    if isinstance(value, str):
        encoded = value.encode("utf-8", "replace")
        inner = b"\x0a" + _length(encoded) + encoded
    elif isinstance(value, bool):
        inner = b"\x10\x01" if value else b"\x10\x00"
    elif isinstance(value, int):
        inner = b"\x18" + varint(value & 0xFFFFFFFFFFFFFFFF)
    elif isinstance(value, float):
        inner = b"\x21" + _DOUBLE.pack(value)
    else:
        items = b"".join([b"\x0a" + _length(v) + v for v in (_string_value(item) for item in value)])
        inner = b"\x2a" + _length(items) + items
    return b"\x12" + _length(inner) + inner


def _string_value(item) -> bytes:
    encoded = str(item).encode("utf-8", "replace")
    return b"\x0a" + _length(encoded) + encoded


_keys: dict[str, bytes] = {}


def _key(key: str) -> bytes:
    """KeyValue's field 1, per attribute name (a bounded set: stages/accounting/trace.py's)."""
    found = _keys.get(key)
    if found is None:
        encoded = key.encode()
        found = _keys[key] = b"\x0a" + _length(encoded) + encoded
    return found


def _length(data: bytes) -> bytes:
    return varint(len(data))
_FIXED64 = struct.Struct("<Q")
_DOUBLE = struct.Struct("<d")
_RESOURCE_SPANS_TAG = b"\x0a"        # ExportTraceServiceRequest.resource_spans (1)
_SCOPE_SPANS_TAG = b"\x12"           # ResourceSpans.scope_spans (2)
_SPAN_TAG = b"\x12"                  # ScopeSpans.spans (2)


@functools.cache
def _resource(service_name: str) -> bytes:
    """ResourceSpans' field 1, from the protocol's messages."""
    resource_spans = trace_pb2.ResourceSpans()
    resource_spans.resource.attributes.add(key="service.name", value=AnyValue(string_value=service_name))
    return resource_spans.SerializeToString()


@functools.cache
def _scope(service_name: str) -> bytes:
    """ScopeSpans' field 1 (the instrumentation scope), from the protocol's messages."""
    scope_spans = ScopeSpans()
    getattr(scope_spans, _SCOPE_INFO_FIELD).name = SCOPE_NAME
    return scope_spans.SerializeToString()


_exporters: dict[TracingSettings, SpanExporter] = {}


def exporter_for(settings: TracingSettings) -> SpanExporter:
    """The worker's exporter for these settings, started on first use (on the running loop)."""
    exporter = _exporters.get(settings)
    if exporter is None:
        exporter = _exporters[settings] = SpanExporter(settings)
    return exporter


def close_unused_exporters(in_use: TracingSettings | None) -> list:
    """At a reload: closes the exporters of tracing settings the config in force no longer
    names; returns the closings to await (each sends what it holds first). A call still on
    the old config makes its exporter anew, as a plugin's channel is (guardrails/plugin.py)."""
    return [_exporters.pop(settings).close() for settings in [s for s in _exporters if s != in_use]]


async def close_exporters() -> None:
    """At a worker's stop: every exporter sends what it holds."""
    while _exporters:
        _, exporter = _exporters.popitem()
        try:
            await asyncio.wait_for(exporter.close(), EXPORT_TIMEOUT + 1)
        except Exception:
            log.warning("trace export at shutdown did not complete", exc_info=True)
