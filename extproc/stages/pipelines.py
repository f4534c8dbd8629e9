"""Assembles the pipeline a config asks for."""

from __future__ import annotations

from ..config.filter_config import GatewayConfig
# The request path
from .admission import Admission
from .body_unread import BodyUnread
from .attempt import AttemptRewrite
from .one_message import OneMessageResponse
from .own_usage import OwnUsage
from .pass_through import PassThroughStream
from .resolve import ParseRequest, ResolveModel
from .route import Route
from .pool_pick import PoolPick
from .stored_responses import RememberResponse, StoredResponses
from .translate_answer import TranslateAnswer
# Guardrails
from .guard.request import GuardRequest
from .guard.response import GuardResponse
from .guard.scan_allowance import ScanAllowance, ScanCharge, ScanLedger
# Budgets, caps, meters
from .budget.caps import SessionSettle, SpendCaps
from .budget.limits import Budget, BudgetPrecheck, BudgetSettle, ExhaustedCounters
from .budget.unread import UnreadReservation
from .budget.meter import Meter
# The response cache
from .cache.lookup import CacheLookup, CacheStoreHandle
from .cache.store import CacheStore
# Agent runs
from .runs.limits import McpRunTrace, RecogniseRun, RunLimits, RunSettle, worker_run_log
from .runs.model_tools import RunToolAnswer, RunToolTaint
# MCP
from .mcp.answer import McpAnswer
from .mcp.gate import McpGate
from .mcp.record import McpRecord
from .mcp.run_tools import RunTools
from .mcp.trace import McpSpan
# What a call used, cost and is recorded as
from .accounting.cost import CallCost
from .accounting.cut_stream import CutStream
from .accounting.delivered import DeliveredOnly
from .accounting.in_flight import CallAnswered, CallsInFlight
from .accounting.log_lines import LogLines
from .accounting.record import Record
from .accounting.trace import CallSpan
from .accounting.usage import ResponseUsage
from ..store.calls import CallLog
from ..store.cut_streams import WorkerCutStreams
from ..pipeline.runner import Pipeline


def build_pipeline(config: GatewayConfig, store=None, cut_streams: WorkerCutStreams | None = None,
                   cache: CacheStoreHandle | None = None, calls: CallLog | None = None) -> Pipeline:
    # Order matters: each stage may rely on what the ones before it filled in.
    # ResponseUsage runs its done hook before Budget's, so settling sees the usage.
    # Keys made at run time may carry budgets of their own (stages/key_ring.py): with a
    # store, the budget stages are always there (a call no limit applies to returns at once).
    budgets = store is not None
    caps = bool(config.caps.per_call or config.caps.session)
    cut_streams = cut_streams or WorkerCutStreams()
    exhausted = ExhaustedCounters()          # Budget finds them, BudgetPrecheck refuses at once
    caching = config.cache.enabled
    cache = cache or CacheStoreHandle(None)
    scans = ScanLedger()                     # the scan time each key bought this minute
    lines = LogLines()                       # Record writes them; CallsInFlight's slots wait for them
    return Pipeline([
        Admission(),
        OwnUsage(store),                     # GET /v1/gateway/usage: answered once the key is known
        ParseRequest(),
        RecogniseRun(store, config.runs),    # the agent run: from the key, headers and body
        *([RunToolTaint(store)] if store is not None and config.mcp.taint.model_tools else []),   # its taint
        StoredResponses(store),              # routes a stored response's calls at their headers;
                                             # a `previous_response_id` must be the caller's (body)
        ResolveModel(),
        *([BudgetPrecheck(exhausted, store)] if budgets else []),   # a caller out of budget: no scan
        ScanAllowance(scans),                # a key whose scan time this minute is spent: no scan
        GuardRequest(store),                 # before budgets and routing: see stages/guard/request.py
        ScanCharge(scans),                   # the scan's time, charged to the key
        *([Budget(store, config.store, exhausted)] if budgets else []),
        *([SpendCaps(store, config.caps, config.store)] if caps else []),
        *([RunLimits(store, config.runs, config.store.lease_seconds)] if budgets and config.runs.enforced else []),
        *([CacheLookup(cache)] if caching else []),   # after every check that may refuse the call
                                             # (a hit counts as a request), before Route
        Route(),
        *([PoolPick()] if any(p.pool is not None for p in config.providers.values()) else []),   # after Route
        # After Admission, RecogniseRun (headers); before the response paths below, which
        # it leaves aside. It reserves the budgets of the calls it takes (Budget: the rest).
        BodyUnread(UnreadReservation(store, config.store, exhausted) if budgets else None),
        OneMessageResponse(),                # after Admission (headers) and Budget, Route (body)
        PassThroughStream(),                 # after Admission (headers) and ParseRequest (body)
        CutStream(cut_streams.sent, cut_streams.ratios, store),   # after PassThroughStream; done before ResponseUsage's
        ResponseUsage(),                     # its done hook completes the usage...
        DeliveredOnly(),                     # ...then charged for what reached the caller
        TranslateAnswer(),                   # after ResponseUsage: the usage is read in the provider's dialect
        *([RememberResponse(store)] if store is not None else []),   # after TranslateAnswer, ResponseUsage:
                                             # they find the response's id
        CallCost(),                          # after ResponseUsage: the usage is final at the end
        *([RunToolAnswer()] if store is not None and config.mcp.taint.model_tools else []),   # after TranslateAnswer
        GuardResponse(),
        *([CallSpan()] if config.observability.tracing is not None else []),   # done after CallCost's
        *([CallAnswered(store)] if store is not None else []),   # done: the answer is final, not yet settled
        *([BudgetSettle(store)] if budgets else []),   # ...which settling needs
        *([RunSettle(store, worker_run_log(), config.runs)] if budgets else []),   # after CallCost: the cost
        *([SessionSettle(store)] if caps and config.caps.session and store is not None else []),
        *([CacheStore(cache)] if caching else []),   # done after GuardResponse's; before Meter, Record
        *([Meter(store, config.metering)] if store is not None and config.metering.sets else []),
        Record(calls=_kept(config, calls), lines=lines),
        *([CallsInFlight(store, lines)] if store is not None else []),   # its done hook after Record's line
    ])


def build_upstream_pipeline(config: GatewayConfig) -> Pipeline:
    """For the ext_proc filter inside provider clusters: one run per attempt."""
    return Pipeline([AttemptRewrite()], request_only=True)


def _kept(config: GatewayConfig, calls: CallLog | None) -> CallLog | None:
    """The recent calls' list when the console keeps them (config `console.calls.keep`)."""
    return calls if config.console is not None and config.console.calls_kept else None


def build_mcp_pipeline(config: GatewayConfig, store=None, calls: CallLog | None = None) -> Pipeline:
    """For MCP profiles' routes (/mcp/<profile>): identity, tool policy and rate limits,
    guardrails on arguments and results, the call's span, the audit line."""
    tools = RunTools(store) if store is not None else None     # shared by the gate and the answer
    return Pipeline([McpGate(store, tools), McpAnswer(tools),
                     *([McpSpan()] if config.observability.tracing is not None else []),
                     McpRecord(calls=_kept(config, calls)),
                     *([McpRunTrace(worker_run_log(), config.runs)] if store is not None else [])])


def pipeline_table(pipeline: Pipeline) -> str:
    """The pipeline as a Markdown table: each stage in order, its hooks, and the Call
    fields it reads and writes (docs/pipeline.md holds the quickstart's)."""
    rows = ["| stage | hooks | reads | writes |", "|---|---|---|---|"]
    for name, hooks, reads, writes in pipeline.table():
        rows.append(f"| `{name}` | {', '.join(hooks)} | {', '.join(sorted(reads)) or '-'} | "
                    f"{', '.join(sorted(writes)) or '-'} |")
    return "\n".join(rows)
