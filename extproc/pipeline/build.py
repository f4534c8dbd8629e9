"""Assembles the pipeline a config asks for."""

from __future__ import annotations

from ..config.filter_config import GatewayConfig
from ..stages.admission import Admission
from ..stages.attempt import AttemptRewrite
from ..stages.budget import Budget, BudgetSettle
from ..stages.cut_stream import CutStream
from ..stages.guard import GuardRequest
from ..stages.guard_response import GuardResponse
from ..stages.mcp_answer import McpAnswer
from ..stages.mcp_gate import McpGate
from ..stages.mcp_record import McpRecord
from ..stages.one_message import OneMessageResponse
from ..stages.pass_through import PassThroughStream
from ..stages.record import Record
from ..stages.resolve import ParseRequest, ResolveModel
from ..stages.route import Route
from ..stages.stored_responses import StoredResponses
from ..stages.usage import ResponseUsage
from ..store.cut_streams import WorkerCutStreams
from .runner import Pipeline


def build_pipeline(config: GatewayConfig, store=None, cut_streams: WorkerCutStreams | None = None) -> Pipeline:
    # Order matters: each stage may rely on what the ones before it filled in.
    # ResponseUsage runs its done hook before Budget's, so settling sees the usage.
    budgets = store is not None and bool(config.limits)
    cut_streams = cut_streams or WorkerCutStreams()
    return Pipeline([
        Admission(),
        StoredResponses(store),              # routes a stored response's calls at their headers
        ParseRequest(),
        ResolveModel(),
        GuardRequest(),                      # before budgets and routing: see guard.py
        *([Budget(store, config.store)] if budgets else []),
        Route(),
        OneMessageResponse(),                # after Admission (headers) and Budget, Route (body)
        PassThroughStream(),                 # after Admission (headers) and ParseRequest (body)
        CutStream(cut_streams.sent, cut_streams.ratios, store),   # after PassThroughStream; done before ResponseUsage's
        ResponseUsage(),                     # its done hook completes the usage...
        GuardResponse(),
        *([BudgetSettle(store)] if budgets else []),   # ...which settling needs
        Record(),
    ])


def build_upstream_pipeline(config: GatewayConfig) -> Pipeline:
    """For the ext_proc filter inside provider clusters: one run per attempt."""
    return Pipeline([AttemptRewrite()], request_only=True)


def build_mcp_pipeline(config: GatewayConfig, store=None) -> Pipeline:
    """For MCP profiles' routes (/mcp/<profile>): identity, tool policy and rate limits,
    guardrails on arguments and results, the audit line."""
    return Pipeline([McpGate(store), McpAnswer(), McpRecord()])
