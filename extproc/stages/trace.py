"""The call's span attributes, for Envoy's span (observability/tracing.py).

Envoy's OpenTelemetry tracer makes one SERVER span per call (a caller's `traceparent`
continued) and sends it over OTLP; its `custom_tags` read the attributes from dynamic
metadata `llm_gateway.trace`, which this stage fills in the replies the call makes
anyway (no message of its own): what the request says with the request body's reply,
what the answer says with the last reply. Tags are evaluated when the span ends, after
the last reply. A refusal's reply carries what was known and its `error.type`
(pipeline/runner.py). Only when tracing is configured: otherwise nothing is added.

Attributes follow the OpenTelemetry gen_ai semantic conventions (gen_ai.operation.name,
gen_ai.provider.name, gen_ai.request.model, gen_ai.response.model, gen_ai.usage.*,
gen_ai.response.finish_reasons, error.type), plus the gateway's own (gateway.*). Envoy's
custom tags are strings: token counts arrive as "42".
"""

from __future__ import annotations

import time

from ..observability.tracing import TRACE_NAMESPACE
from ..pipeline.call import Call
from . import Stage
from .cost import charged_cost

# The gen_ai operation of each endpoint kind.
OPERATIONS = {"chat": "chat", "messages": "chat", "responses": "chat", "completions": "text_completion",
              "embeddings": "embeddings"}
_MAX_CHARS = 256
_ENDED = "trace_ended"


def request_attributes(call: Call) -> dict[str, str]:
    """What the request says: known at its body."""
    operation = OPERATIONS.get(call.endpoint.kind, call.endpoint.kind) if call.endpoint else ""
    model = call.model_name[:_MAX_CHARS]
    attributes = {"gen_ai.operation.name": operation, "gen_ai.request.model": model,
                  "span_name": f"{operation} {model}".strip(), "gateway.api": call.dialect}
    if call.key is not None:
        attributes.update({"gateway.key_id": call.key.id, "gateway.user": call.key.user or "",
                           "gateway.team": call.key.team or ""})
    if call.backend is not None:
        attributes["gen_ai.provider.name"] = call.backend.provider.type
    tags = call.stage_state.get("log", {}).get("tags")
    if tags:
        attributes["gateway.tags"] = ",".join(f"{k}={v}" for k, v in sorted(tags.items()))[:1024]
    return attributes


def response_attributes(call: Call) -> dict[str, str]:
    """What the answer says: known with the last reply."""
    attributes: dict[str, str] = {}
    if call.backend is not None:
        attributes.update({"gateway.backend": call.backend.name, "gen_ai.provider.name": call.backend.provider.type,
                           "gen_ai.response.model": _response_model(call), "gateway.attempts": str(call.attempts),
                           "gateway.cost_usd": f"{charged_cost(call):.8f}"})
    usage = call.usage
    if usage is not None:
        attributes.update({"gen_ai.usage.input_tokens": str(usage.input_tokens),
                           "gen_ai.usage.output_tokens": str(usage.output_tokens),
                           "gen_ai.usage.cache_read.input_tokens": str(usage.cached_tokens),
                           "gen_ai.usage.reasoning.output_tokens": str(usage.reasoning_tokens),
                           "gateway.usage_estimated": "true" if usage.estimated else "false"})
        if usage.cache_write_tokens:
            attributes["gen_ai.usage.cache_creation.input_tokens"] = str(usage.cache_write_tokens)
    reasons = _finish_reasons(call)
    if reasons:
        attributes["gen_ai.response.finish_reasons"] = ",".join(reasons)
    if call.status >= 400:
        attributes["error.type"] = call.error_code or str(call.status)
    verdicts = call.stage_state.get("log", {}).get("guardrails")
    if verdicts:
        attributes["gateway.guardrails"] = _verdicts(verdicts)
    if call.first_byte_at:
        attributes["gateway.ttft_ms"] = f"{(call.first_byte_at - call.started) * 1000:.3f}"
    service = call.service_seconds + (time.perf_counter() - call.message_started if call.message_started else 0.0)
    attributes["gateway.service_ms"] = f"{service * 1000:.3f}"
    return attributes


def refusal_attributes(call: Call, code: str) -> dict[str, str]:
    """A call the gateway refused: what was known, and why."""
    attributes = request_attributes(call) if call.endpoint is not None else {"span_name": "gateway"}
    attributes["error.type"] = code
    verdicts = call.stage_state.get("log", {}).get("guardrails")
    if verdicts:
        attributes["gateway.guardrails"] = _verdicts(verdicts)
    return attributes


def _verdicts(verdicts: list[dict]) -> str:
    return ",".join(f"{v['guardrail']}:{v['direction']}:{v['verdict']}" for v in verdicts)[:1024]


def _response_model(call: Call) -> str:
    parsed = call.stage_state.get("response_json")
    model = parsed.get("model") if isinstance(parsed, dict) else None
    return str(model)[:_MAX_CHARS] if model else call.backend.model


def _finish_reasons(call: Call) -> list[str]:
    parsed = call.stage_state.get("response_json")
    if not isinstance(parsed, dict):
        return []
    if isinstance(parsed.get("stop_reason"), str):                      # Anthropic's Messages
        return [parsed["stop_reason"]]
    choices = parsed.get("choices")
    if isinstance(choices, list):
        return [str(c.get("finish_reason")) for c in choices if isinstance(c, dict) and c.get("finish_reason")]
    if isinstance(parsed.get("status"), str):                           # the Responses API
        return [parsed["status"]]
    return []


class TraceAttributes(Stage):
    """Fills `llm_gateway.trace` (see the module's docstring). Its request-body hook runs
    after routing; its response hooks after CallCost (the usage and cost are final)."""

    name = "trace"

    @staticmethod
    def request_body(call: Call) -> None:
        if call.body is not None:
            call.reply.add_metadata(request_attributes(call), TRACE_NAMESPACE)

    @staticmethod
    def response_headers(call: Call, headers: dict[str, str], end_of_stream: bool) -> None:
        if end_of_stream:
            _last_reply(call)

    @staticmethod
    def response_body(call: Call, chunk: bytes, end_of_stream: bool) -> None:
        if end_of_stream:
            _last_reply(call)
        return None

    @staticmethod
    def response_trailers(call: Call, numbers: dict) -> None:
        _last_reply(call)


def _last_reply(call: Call) -> None:
    if call.stage_state.get(_ENDED):
        return
    call.stage_state[_ENDED] = True
    call.reply.add_metadata(response_attributes(call), TRACE_NAMESPACE)
