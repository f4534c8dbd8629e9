"""The span of each JSON-RPC call on an MCP profile (observability.tracing), made as the
model API's call spans are (stages/accounting/trace.py: the caller's `traceparent` continued,
parent-based sampling, written in OTLP's wire format when the call has ended and queued
for the worker's exporter). The MCP server's request carries a `traceparent` naming it.

Names and attributes follow the OpenTelemetry gen_ai conventions for tools where they
apply: `execute_tool {tool}` for tools/call (else the JSON-RPC method, `tools/list`),
gen_ai.operation.name `execute_tool`, gen_ai.tool.name, mcp.method.name,
jsonrpc.request.id; plus what the audit line says (stages/mcp/record.py) as gateway.*
attributes. The session id is a bearer-like token: the span says whether the caller
named one (gateway.mcp_session), never which. Refusals, answered by the service, have
their span too.
"""

from __future__ import annotations

from ...pipeline.call import Call
from .gate import McpState
from .record import outcome_of, server_label
from ..accounting.trace import (CallSpan, guardrail_verdicts, identity_attributes, log_trace, queue_span, span_target,
                    trace_context)

_MAX_ID_CHARS = 128
# Outcomes where the tool (or the hop to its server) failed, rather than the caller
# being refused: the span's status is ERROR.
_FAILED = frozenset(("gateway_error", "upstream_error", "error", "tool_error"))


def mcp_span_name(call: Call, state: McpState) -> str:
    if state.rpc_method == "tools/call" and state.tool:
        return f"execute_tool {state.tool}"
    if state.rpc_method:
        return state.rpc_method
    # Refused at its headers (401, 403, 405): the message was never read.
    return f"{call.method[:16]} /mcp/{state.profile.name}".strip() if state.profile else "mcp"


def mcp_span_attributes(call: Call, state: McpState, outcome: str) -> dict:
    attributes: dict = {}
    if state.rpc_method == "tools/call":
        attributes["gen_ai.operation.name"] = "execute_tool"
        if state.tool:
            attributes["gen_ai.tool.name"] = state.tool
    if state.rpc_method:
        attributes["mcp.method.name"] = state.rpc_method
    if state.rpc_id is not None:
        attributes["jsonrpc.request.id"] = str(state.rpc_id)[:_MAX_ID_CHARS]
    identity_attributes(call, attributes)
    if state.profile is not None:
        attributes["gateway.profile"] = state.profile.name
        attributes["gateway.server"] = server_label(state)
    if state.policy:
        attributes["gateway.policy"] = state.policy
    attributes["gateway.mcp_session"] = state.session
    if state.argument_bytes:
        attributes["gateway.argument_bytes"] = state.argument_bytes
    attributes["gateway.outcome"] = outcome
    if outcome != "ok":
        attributes["error.type"] = outcome
    verdicts = guardrail_verdicts(call)
    if verdicts:
        attributes["gateway.guardrails"] = verdicts
    if call.status:
        attributes["http.response.status_code"] = call.status
    attributes["gateway.service_ms"] = call.service_seconds * 1000
    return attributes


class McpSpan(CallSpan):
    """Names the gateway's span to the MCP server (request headers, as CallSpan) and
    queues the span when the call has ended (done: the outcome and the verdicts are final)."""

    name = "mcp_trace"
    reads = frozenset({"ended_at", "headers", "key", "mcp", "method", "outcome", "run", "service_seconds", "started",
                       "status", "verdicts"})
    writes = frozenset({"log_fields"})

    @staticmethod
    def done(call: Call) -> None:
        state: McpState | None = call.mcp
        if state is None:
            return
        log_trace(call, trace_context(call))
        target = span_target(call)
        if target is None:
            return
        outcome = outcome_of(call, state)
        queue_span(call, target, mcp_span_name(call, state), mcp_span_attributes(call, state, outcome),
                   call.status >= 500 or outcome in _FAILED)
