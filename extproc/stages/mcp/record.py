"""The audit trail of MCP profiles: one JSON line per JSON-RPC call on stdout, and
`gateway_mcp_calls_total` for tool calls. The line names who called (key id, user,
team), where (profile, server), what (method, tool), how much (the arguments' size,
never their content), how long, what came of it and every guardrail verdict."""

from __future__ import annotations

import sys
import time

import orjson

from ...observability import metrics
from ...observability.settings import OVERFLOW, BoundedLabel
from ...pipeline.call import Call
from ...pipeline.stage import Stage
from .gate import McpState

# Tool names the metric takes from calls (beyond those the config names), per worker.
MAX_TOOL_LABELS = 100


class McpRecord(Stage):
    name = "mcp_record"
    reads = frozenset({"ended_at", "key", "log_fields", "mcp", "method", "outcome", "request_id", "service_seconds",
                       "started", "status", "verdicts"})
    writes = frozenset()

    def __init__(self, out=None, calls=None) -> None:
        self._out = out or sys.stdout.buffer
        self._tools = BoundedLabel()
        self._calls = calls          # the console's recent calls (store/calls.py): a bounded list in memory

    def done(self, call: Call) -> None:
        state: McpState | None = call.mcp
        if state is None:
            return
        ended = call.ended_at or time.perf_counter()
        outcome = outcome_of(call, state)
        profile = state.profile
        record = {
            "ts": time.time(),
            "kind": "mcp",
            "request_id": call.request_id,
            "key_id": call.key.id if call.key else None,
            "user": call.key.user if call.key else None,
            "team": call.key.team if call.key else None,
            "profile": profile.name if profile else None,
            "server": server_label(state) if profile else None,
            "http_method": call.method,
            "method": state.rpc_method or None,
            "tool": state.tool or None,
            "argument_bytes": state.argument_bytes,
            "policy": state.policy or None,
            "session": state.session,
            "status": call.status,
            "outcome": outcome,
            "latency_ms": round((ended - call.started) * 1000, 3),
            "service_ms": round(call.service_seconds * 1000, 3),
            "guardrails": call.verdicts,
            "config_version": call.config.version,
        }
        if state.run:
            record["run"] = state.run
        if state.decisions:                    # the run's tool policy (run_tools.py)
            record["decisions"] = state.decisions
        logged = call.log_fields
        if "trace_id" in logged:               # tracing configured (stages/accounting/trace.py log_trace)
            record["trace_id"] = logged["trace_id"]
            if "trace_url" in logged:
                record["trace_url"] = logged["trace_url"]
        self._out.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        self._out.flush()
        if self._calls is not None:
            self._calls.add(record)
        if state.rpc_method == "tools/call" and profile is not None:
            metrics.child(metrics.mcp_calls, profile.name, server_label(state),
                          self._tool_label(state, outcome), outcome).inc()

    def _tool_label(self, state: McpState, outcome: str) -> str:
        """Tool names are the caller's input: a label only for a tool the config names,
        or, up to a bound, one the server was asked to run."""
        profile = state.profile
        named = (profile.tools or frozenset()) | frozenset().union(
            *(v for rules in (profile.by_key, profile.by_user, profile.by_team) for v in rules.values() if v),
            profile.default or frozenset())
        if state.tool in named:
            return state.tool
        if outcome in ("ok", "tool_error", "quarantined") and state.tool:
            label = self._tools(state.tool, MAX_TOOL_LABELS)
            return "other" if label == OVERFLOW else label
        return "other"


def server_label(state: McpState) -> str:
    """The tool's server; for other messages of a combined profile, its servers ("a+b")."""
    return state.server or "+".join(server.name for server in state.profile.servers)


def outcome_of(call: Call, state: McpState) -> str:
    if state.outcome:
        return state.outcome
    if call.outcome == "cancelled":
        return "cancelled"
    if call.outcome == "error":
        return "gateway_error"
    if call.status >= 400:
        return "upstream_error"
    return "ok"
