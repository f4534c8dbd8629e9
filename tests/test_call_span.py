"""The call span's parts that need no Envoy: reading a caller's W3C `traceparent`, head
sampling, the OTLP request a batch becomes, and the exporter's bounded queue (what the
e2e test in test_tracing_e2e.py cannot make happen on demand)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from extproc.config.filter_config import load_config
from extproc.observability import span_export
from extproc.observability.span_export import (SpanExporter, SpanRecord, encode_span, export_request,
                                               scope_name_of, scope_spans_of)
from extproc.observability.tracing import TracingSettings
from extproc.pipeline.call import Call
from extproc.stages.accounting.trace import parse_traceparent, trace_context
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

QUICKSTART = load_config(str(Path(__file__).resolve().parent.parent / "config" / "quickstart.yaml"))
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def test_a_valid_traceparent_is_read_with_its_sampled_flag():
    assert parse_traceparent(f"00-{TRACE}-{PARENT}-01") == (bytes.fromhex(TRACE), bytes.fromhex(PARENT), True)
    assert parse_traceparent(f"00-{TRACE}-{PARENT}-00")[2] is False
    # A later version may add fields; what version 00 defines is read.
    assert parse_traceparent(f"01-{TRACE}-{PARENT}-03-more")[2] is True


def test_an_invalid_traceparent_is_ignored():
    for value in ("", "garbage", f"00-{TRACE}-{PARENT}", f"ff-{TRACE}-{PARENT}-01", f"00-{TRACE.upper()}-{PARENT}-01",
                  f"00-{'0' * 32}-{PARENT}-01", f"00-{TRACE}-{'0' * 16}-01", f"00-{TRACE}-{PARENT}-01-extra",
                  f"00-{TRACE[:-1]}g-{PARENT}-01", f"00-{TRACE}-{PARENT}-1"):
        assert parse_traceparent(value) is None, value


def _call(percent: float, headers: dict[str, str]) -> Call:
    tracing = TracingSettings(host="127.0.0.1", port=4317, sampling_percent=percent)
    call = Call(dataclasses.replace(QUICKSTART, observability=dataclasses.replace(QUICKSTART.observability,
                                                                                  tracing=tracing)))
    call.headers = headers
    return call


def test_sampling_is_parent_based_with_a_traceparent_and_by_percent_without():
    continued = trace_context(_call(0, {"traceparent": f"00-{TRACE}-{PARENT}-01"}))
    assert continued.sampled and continued.trace_id.hex() == TRACE and continued.parent_span_id.hex() == PARENT
    assert continued.traceparent() == f"00-{TRACE}-{continued.span_id.hex()}-01"
    assert not trace_context(_call(100, {"traceparent": f"00-{TRACE}-{PARENT}-00"})).sampled
    assert all(trace_context(_call(100, {})).sampled for _ in range(50))
    assert not any(trace_context(_call(0, {})).sampled for _ in range(50))
    kept = sum(trace_context(_call(50, {})).sampled for _ in range(2000))
    assert 800 < kept < 1200
    fresh = trace_context(_call(100, {}))
    assert fresh.parent_span_id == b"" and len(fresh.trace_id) == 16 and len(fresh.span_id) == 8


def _record(**attributes) -> SpanRecord:
    return SpanRecord(bytes.fromhex(TRACE), bytes.fromhex(PARENT), b"", "chat m", 1, 2, attributes, False)



def test_a_batch_becomes_one_otlp_request_with_typed_values():
    request = ExportTraceServiceRequest.FromString(export_request(
        "gw", [encode_span(_record(tokens=3, cost=0.5, name="x", flag=True, reasons=["stop"], big=2**40,
                                   text="é" * 200)),
               encode_span(_record()._replace(error=True, parent_span_id=bytes.fromhex(PARENT)))]))
    [resource_spans] = request.resource_spans
    assert resource_spans.resource.attributes[0].value.string_value == "gw"
    [scope] = scope_spans_of(resource_spans)
    first, second = scope.spans
    values = {kv.key: kv.value for kv in first.attributes}
    assert values["tokens"].int_value == 3 and values["cost"].double_value == 0.5
    assert values["name"].string_value == "x" and values["flag"].bool_value is True
    assert [v.string_value for v in values["reasons"].array_value.values] == ["stop"]
    assert values["big"].int_value == 2**40 and values["text"].string_value == "é" * 200
    assert first.kind == Span.SPAN_KIND_SERVER and not first.HasField("status")
    assert (first.trace_id.hex(), first.span_id.hex(), first.parent_span_id) == (TRACE, PARENT, b"")
    assert (first.name, first.start_time_unix_nano, first.end_time_unix_nano) == ("chat m", 1, 2)
    assert second.status.code == Status.STATUS_CODE_ERROR and second.parent_span_id.hex() == PARENT
    assert scope_name_of(scope) == "llm-gateway"


def test_a_full_queue_drops_spans_and_counts_them(monkeypatch):
    monkeypatch.setattr(span_export, "MAX_QUEUED", 3)

    async def fill() -> tuple[int, float]:
        exporter = SpanExporter(TracingSettings(host="127.0.0.1", port=1))
        before = exporter._queue_full._value.get()
        for _ in range(5):
            exporter.add(encode_span(_record()))
        queued, dropped = len(exporter.queue), exporter._queue_full._value.get() - before
        exporter._task.cancel()
        return queued, dropped

    assert asyncio.run(fill()) == (3, 2)


def test_a_reload_closes_the_exporter_of_settings_no_longer_named():
    old, new = TracingSettings(host="127.0.0.1", port=1), TracingSettings(host="127.0.0.1", port=2)

    async def scenario() -> None:
        exporter = span_export.exporter_for(old)
        exporter.add(encode_span(_record()))
        assert span_export.close_unused_exporters(old) == []           # still named: kept
        before = exporter._failed._value.get()
        await asyncio.gather(*span_export.close_unused_exporters(new))
        # What it held was sent before it stopped (to a collector that is down: dropped, counted).
        assert not exporter.queue and exporter._failed._value.get() - before == 1
        assert exporter._task.done() and old not in span_export._exporters
        # A call still on the old config gets an exporter of its own.
        assert span_export.exporter_for(old) is not exporter
        await asyncio.gather(*span_export.close_unused_exporters(None))
        assert span_export._exporters == {}

    asyncio.run(scenario())
