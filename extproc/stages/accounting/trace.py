"""The call's span: made by the service, one SERVER span per call (observability.tracing).

Its trace context comes from the caller's W3C `traceparent` (the trace continued, the
gateway's span a child of the caller's, the caller's sampled flag obeyed) or is fresh
(head-sampled at `sampling_percent`). The request to the provider gets a `traceparent`
naming the gateway's span, in the request headers' reply the call sends anyway, so a
traced provider's span sits beneath it. When the call has ended (its done hook, after
the last reply is out), a sampled call's span is written in OTLP's wire format and
queued for the worker's exporter (observability/span_export.py): nothing is sent on the
request path. Refusals the service answers (401, 403, 429, a blocked prompt) have their span too.

Attributes follow the OpenTelemetry gen_ai semantic conventions (gen_ai.operation.name,
gen_ai.provider.name, gen_ai.request.model, gen_ai.response.model, gen_ai.usage.* as
integers, gen_ai.response.finish_reasons as a string array, error.type), plus
http.response.status_code and the gateway's own (gateway.*). Why the service and not
Envoy's tracer: docs/decisions/call-spans-from-the-service.md.
"""

from __future__ import annotations

import hashlib
import os
import random
import time

from ...observability.span_export import SpanExporter, SpanRecord, encode_span, exporter_for
from ...pipeline.call import Call
from ...pipeline.stage import Stage
from .cost import charged_cost

_MAX_CHARS = 256
_MAX_LIST = 32
_HEX = frozenset("0123456789abcdef")      # lowercase only, as W3C writes it
_random = random.Random()                  # seeded from the OS once per worker
os.register_at_fork(after_in_child=_random.seed)      # and again in a forked one


class TraceContext:
    __slots__ = ("trace_id", "span_id", "parent_span_id", "sampled")

    def __init__(self, trace_id: bytes, span_id: bytes, parent_span_id: bytes, sampled: bool) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_span_id = parent_span_id
        self.sampled = sampled

    def traceparent(self) -> str:
        """W3C `traceparent` naming this span, for the request to the provider."""
        return f"00-{self.trace_id.hex()}-{self.span_id.hex()}-{'01' if self.sampled else '00'}"


def parse_traceparent(value: str) -> tuple[bytes, bytes, bool] | None:
    """(trace id, parent span id, sampled) of a valid W3C `traceparent`, else None (then
    the call starts a trace of its own, as the W3C recommendation asks)."""
    parts = value.strip().split("-")
    if len(parts) < 4:
        return None
    version, trace_hex, parent_hex, flags = parts[:4]
    if len(version) != 2 or version == "ff" or (version == "00" and len(parts) != 4) \
            or len(trace_hex) != 32 or len(parent_hex) != 16 or len(flags) != 2 \
            or not _HEX.issuperset(version + trace_hex + parent_hex + flags):
        return None
    trace_id, parent_id = bytes.fromhex(trace_hex), bytes.fromhex(parent_hex)
    if not any(trace_id) or not any(parent_id):
        return None
    return trace_id, parent_id, bool(int(flags, 16) & 1)


def _span_id() -> bytes:
    return (_random.getrandbits(64) or 1).to_bytes(8, "big")


class TraceState:
    """The call's trace context, once made."""
    __slots__ = ("context",)

    def __init__(self) -> None:
        self.context: TraceContext | None = None


def trace_context(call: Call) -> TraceContext:
    """The call's trace context, made once: from the caller's `traceparent` when it is
    valid (parent-based sampling), else its agent run's trace (stages/runs/limits.py), else a
    fresh trace sampled at `sampling_percent`."""
    held = call.own(TraceState)
    context = held.context
    if context is None:
        caller = call.headers.get("traceparent")
        parent = parse_traceparent(caller) if caller else None
        if parent is not None:
            context = TraceContext(parent[0], _span_id(), parent[1], parent[2])
        elif call.run is not None:
            # One trace per agent run: its id made from the run's, its calls' spans in it,
            # sampled together (the decision read from the id, the same on every worker).
            trace_id = hashlib.blake2b(call.run.id.encode(), digest_size=16).digest()
            percent = call.config.observability.tracing.sampling_percent
            context = TraceContext(trace_id, _span_id(), b"",
                                   percent >= 100 or int.from_bytes(trace_id[:8], "big") / 2 ** 64 * 100 < percent)
        else:
            percent = call.config.observability.tracing.sampling_percent
            context = TraceContext((_random.getrandbits(128) or 1).to_bytes(16, "big"), _span_id(), b"",
                                   percent >= 100 or _random.random() * 100 < percent)
        held.context = context
    return context


def span_attributes(call: Call) -> dict:
    """Everything the span says of the call, typed."""
    attributes: dict = {}
    if call.endpoint is not None:
        attributes["gen_ai.operation.name"] = call.codec.operation or call.endpoint.kind
        attributes["gen_ai.request.model"] = call.model_name[:_MAX_CHARS]
        attributes["gateway.api"] = call.dialect
    identity_attributes(call, attributes)
    run = call.run
    if run is not None:                         # gen_ai's agent attributes
        attributes["gen_ai.conversation.id"] = run.id
        attributes["gateway.run"] = run.name
        if run.client:
            attributes["gen_ai.agent.name"] = run.client
    tags = call.tags
    if tags:
        attributes["gateway.tags"] = [f"{k}={v}" for k, v in sorted(tags.items())][:_MAX_LIST]
    verdicts = guardrail_verdicts(call)
    if verdicts:
        attributes["gateway.guardrails"] = verdicts
    backend = call.backend
    if backend is not None:
        attributes["gen_ai.provider.name"] = backend.provider.type
        if call.outcome != "refused":           # it went to a provider
            attributes["gateway.backend"] = backend.name
            attributes["gen_ai.response.model"] = _response_model(call)
            attributes["gateway.attempts"] = call.attempts
            attributes["gateway.cost_usd"] = charged_cost(call)
    usage = call.usage
    if usage is not None:
        attributes["gen_ai.usage.input_tokens"] = usage.input_tokens
        attributes["gen_ai.usage.output_tokens"] = usage.output_tokens
        attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cached_tokens
        attributes["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
        if usage.cache_write_tokens:
            attributes["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write_tokens
        attributes["gateway.usage_estimated"] = bool(usage.estimated)
    cached = call.cache
    if cached is not None:                      # the response cache took the call
        attributes["gateway.cache"] = cached.result
        if cached.saved_usd:
            attributes["gateway.cache_saved_usd"] = cached.saved_usd
        if cached.similarity is not None:          # a semantic hit: how near its question was
            attributes["gateway.cache_similarity"] = round(cached.similarity, 4)
    reasons = _finish_reasons(call)
    if reasons:
        attributes["gen_ai.response.finish_reasons"] = reasons
    if call.status:
        attributes["http.response.status_code"] = call.status
    attributes["gateway.outcome"] = call.outcome
    if call.status >= 400:
        attributes["error.type"] = call.error_code or str(call.status)
    elif call.outcome != "ok":                  # (a stream cut after its 200, the client gone)
        attributes["error.type"] = call.outcome
    if call.first_byte_at:
        attributes["gateway.ttft_ms"] = (call.first_byte_at - call.started) * 1000
    attributes["gateway.service_ms"] = call.service_seconds * 1000
    return attributes


def identity_attributes(call: Call, attributes: dict) -> None:
    """Who called: the key's id, user and team."""
    if call.key is not None:
        attributes["gateway.key_id"] = call.key.id
        attributes["gateway.user"] = call.key.user or ""
        attributes["gateway.team"] = call.key.team or ""


def guardrail_verdicts(call: Call) -> list[str]:
    """Each guardrail's verdict on the call, as `guardrail:direction:verdict`."""
    verdicts = call.verdicts
    return [f"{v['guardrail']}:{v['direction']}:{v['verdict']}" for v in verdicts][:_MAX_LIST] if verdicts else []


def span_name(call: Call) -> str:
    if call.endpoint is None:
        return "gateway"
    operation = call.codec.operation or call.endpoint.kind
    return f"{operation} {call.model_name[:_MAX_CHARS]}".strip()


def _response_model(call: Call) -> str:
    parsed = call.response_json
    model = parsed.get("model") if isinstance(parsed, dict) else None
    return str(model)[:_MAX_CHARS] if model else call.backend.model


def _finish_reasons(call: Call) -> list[str]:
    parsed = call.response_json
    if not isinstance(parsed, dict):
        return []
    if isinstance(parsed.get("stop_reason"), str):                      # Anthropic's Messages
        return [parsed["stop_reason"]]
    choices = parsed.get("choices")
    if isinstance(choices, list):
        return [str(c.get("finish_reason")) for c in choices[:_MAX_LIST]
                if isinstance(c, dict) and c.get("finish_reason")]
    if isinstance(parsed.get("status"), str):                           # the Responses API
        return [parsed["status"]]
    return []


class CallSpan(Stage):
    """Names the gateway's span to the provider (request headers) and queues the span when
    the call has ended (done). Its done hook runs after ResponseUsage's and CallCost's:
    the usage and cost are final."""

    name = "trace"
    reads = frozenset({"attempts", "backend", "cache", "ended_at", "endpoint", "error_code", "first_byte_at", "headers",
                       "key", "model", "model_name", "outcome", "path", "response_json", "run", "service_seconds",
                       "started", "status", "tags", "usage", "verdicts"})
    writes = frozenset({"log_fields"})

    @staticmethod
    def request_headers(call: Call, end_of_stream: bool) -> None:
        call.reply.set_headers["traceparent"] = trace_context(call).traceparent()

    @staticmethod
    def done(call: Call) -> None:
        log_trace(call, trace_context(call))
        target = span_target(call)
        if target is not None:
            queue_span(call, target, span_name(call), span_attributes(call), call.status >= 500)


def span_target(call: Call) -> tuple[TraceContext, SpanExporter] | None:
    """Where an ended call's span goes: None when the call is not sampled or the worker's
    queue is full (then its attributes are never built)."""
    context = trace_context(call)
    if not context.sampled:
        return None
    exporter = exporter_for(call.config.observability.tracing)
    return None if exporter.full() else (context, exporter)


def queue_span(call: Call, target: tuple[TraceContext, SpanExporter], name: str, attributes: dict,
               error: bool) -> None:
    """Writes an ended call's span (from its start to its end) and queues it for export."""
    context, exporter = target
    now_ns, elapsed = time.time_ns(), time.perf_counter()
    ended = call.ended_at or elapsed
    exporter.add(encode_span(SpanRecord(
        context.trace_id, context.span_id, context.parent_span_id, name,
        now_ns - int((elapsed - call.started) * 1e9), now_ns - int((elapsed - ended) * 1e9),
        attributes, error)))


def log_trace(call: Call, context: TraceContext) -> None:
    """The log line's `trace_id` (the provider got it in its `traceparent`, sampled or
    not), and for a sampled call `trace_url`: `traces_url` with `{trace_id}` filled in."""
    call.log_fields["trace_id"] = trace_id = context.trace_id.hex()
    traces_url = call.config.observability.tracing.traces_url
    if traces_url and context.sampled:
        call.log_fields["trace_url"] = traces_url.replace("{trace_id}", trace_id)
