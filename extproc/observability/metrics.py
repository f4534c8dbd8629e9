"""Prometheus metrics: the contract's families, with bounded label sets.

Labels are model, backend, team, status, guardrail, verdict: all from the config
(never raw keys or free-form caller input), so series stay bounded. With several
worker processes, prometheus-client's multiprocess mode aggregates them; the
supervisor sets PROMETHEUS_MULTIPROC_DIR before the workers start.
"""

from __future__ import annotations

import os
from bisect import bisect_left

from prometheus_client import Counter, Gauge, Histogram, values

_changed: set = set()        # values updated in memory since the last flush()
_batching = False
_batched_type: type | None = None       # the batched value class, in multiprocess mode

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # prometheus-client calls os.getpid() (a syscall) on every update to notice a
    # fork. The pid is kept here instead, and set again in a forked child (the workers
    # are forked from a preloaded server: runtime/forked.py), which prometheus-client
    # then notices at its next unbatched update (batch_writes makes one), reopening this
    # process's own file for every value.
    _PID = os.getpid()

    def _forked() -> None:
        global _PID
        _PID = os.getpid()

    os.register_at_fork(after_in_child=_forked)
    _MmapedValue = values.MultiProcessValue(lambda: _PID)

    class _BatchedValue(_MmapedValue):
        """Once batch_writes() is on, an update changes the value in memory only and
        flush() copies it to this process's file: the locked mmap write cost ~3 µs,
        and a request made about twenty of them."""

        def inc(self, amount):
            if not _batching:
                return super().inc(amount)
            self._value += amount
            _changed.add(self)

        def set(self, value, timestamp=None):
            if not _batching:
                return super().set(value, timestamp)
            self._value, self._timestamp = value, timestamp or 0.0
            _changed.add(self)

    values.ValueClass = _batched_type = _BatchedValue


def batch_writes() -> None:
    """From now on, updates reach the shared files at flush() (a worker does it every
    FLUSH_INTERVAL seconds and when it stops). Single-threaded callers only."""
    global _batching
    # An update of nothing, unbatched: in a forked process, prometheus-client sees the
    # new pid and moves the values made before the fork (the unlabelled ones) to this
    # process's file; batched updates never look.
    store_resets.inc(0)
    _batching = True


def flush() -> None:
    """Writes the values updated since the last flush to this process's file (the same
    write prometheus-client's own update does; it keeps `_file`, `_key`, `_value`)."""
    while _due:
        _due.pop().apply()
    while _changed:
        value = _changed.pop()
        value._file.write_value(value._key, value._value, value._timestamp)


FLUSH_INTERVAL = 0.25
_children: dict = {}
_due: list = []             # histogram children with observations not yet in their values


class _CounterChild:
    """A labelled counter's update without prometheus-client's checks per update (the
    child is made with its labels, so always observable): a call makes ~25 updates. A
    batched one (a worker's) is made here, in one call rather than two."""
    __slots__ = ("_value", "_batched")

    def __init__(self, labelled) -> None:
        self._value = labelled._value
        self._batched = type(self._value) is _batched_type

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        value = self._value
        if _batching and self._batched:
            value._value += amount
            _changed.add(value)
        else:
            value.inc(amount)


class _HistogramChild:
    """A labelled histogram's observation: its bucket found by bisection rather than
    prometheus-client's walk of the bounds in Python (a call makes ~7). Batched (a
    worker's), its bucket counts are tallied here and added to the values at flush(),
    its sum at once (a float sum depends on the order of its terms)."""
    __slots__ = ("_sum", "_buckets", "_bounds", "_batched", "_pending", "_due")

    def __init__(self, labelled) -> None:
        self._sum, self._buckets, self._bounds = labelled._sum, labelled._buckets, tuple(labelled._upper_bounds)
        self._batched = type(self._sum) is _batched_type
        self._pending = [0] * len(self._bounds)
        self._due = False

    def observe(self, amount: float) -> None:
        bounds = self._bounds
        # The last bound is +Inf: every number has a bucket. A NaN is bisected to 0 and
        # counted in none (as prometheus-client counts it).
        index = bisect_left(bounds, amount)
        if _batching and self._batched:         # (as _CounterChild.inc)
            self._sum._value += amount
            if amount <= bounds[index]:
                self._pending[index] += 1
            if not self._due:
                self._due = True
                _due.append(self)
            return
        self._sum.inc(amount)
        if amount <= bounds[index]:
            self._buckets[index].inc(1)

    def apply(self) -> None:
        """The observations tallied since the last flush, added to the values."""
        self._due = False
        _changed.add(self._sum)
        pending = self._pending
        for index, count in enumerate(pending):
            if count:
                bucket = self._buckets[index]
                bucket._value += count
                _changed.add(bucket)
                pending[index] = 0


def _fast(labelled):
    if isinstance(labelled, Histogram):
        return _HistogramChild(labelled)
    if isinstance(labelled, Counter):
        return _CounterChild(labelled)
    return labelled


def child(family, *labels):
    """family.labels(*labels), remembered: labels() validates and locks (~2.5 µs), and
    label sets are bounded (config names, capped tags), so the cache is too. A counter's
    or a histogram's child is wrapped for a faster update (inc, observe)."""
    key = (family, labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = _fast(family.labels(*labels))
    return found


# From milliseconds to minutes: LLM calls span all of it.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320)
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)
_SERVICE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5)

token_usage = Histogram(
    "gen_ai_client_token_usage", "Tokens used per request (OpenTelemetry gen_ai).",
    ["gen_ai_token_type", "gen_ai_request_model", "gen_ai_response_model", "team"],
    buckets=_TOKEN_BUCKETS)
request_duration = Histogram(
    "gen_ai_server_request_duration_seconds", "Time from request headers to the last byte.",
    ["gen_ai_request_model", "backend", "status"], buckets=_LATENCY_BUCKETS)
time_to_first_token = Histogram(
    "gen_ai_server_time_to_first_token_seconds", "Streaming: time to the first generated chunk.",
    ["gen_ai_request_model", "backend"], buckets=_LATENCY_BUCKETS)
requests = Counter(
    "gateway_requests", "Requests by outcome.", ["model", "backend", "team", "status"])
cost_usd = Counter("gateway_cost_usd", "Spend in USD.", ["model", "team"])
call_outcomes = Counter(
    "gateway_call_outcomes", "Calls by how they ended: ok, refused, upstream_error, provider_cut, cancelled, "
    "error, gateway_timeout (docs/observability.md#outcomes).", ["model", "outcome"])
absorbed_tokens = Counter(
    "gateway_absorbed_tokens", "Tokens a provider billed that no caller was charged: the answer never "
    "reached the caller (Envoy gave up waiting for the service).", ["gen_ai_token_type", "model"])
# Pool providers: the replica picked per call and why (labels: the pool's configured or
# discovered replica addresses, and a handful of reasons: extproc/pools/picker.py).
pool_picks = Counter(
    "gateway_pool_picks", "Replicas of pool providers picked, by reason.", ["endpoint", "reason"])
# Each replica of a pool as the workers' pickers see it (labels: the pool provider's name
# and its replicas' addresses), set after each round of scrapes, off the request path;
# with several workers, the one that updated last (each scrapes every replica itself).
pool_endpoint_waiting = Gauge(
    "gateway_pool_endpoint_waiting", "A pool replica's waiting requests, from its last good scrape.",
    ["pool", "endpoint"], multiprocess_mode="mostrecent")
pool_endpoint_running = Gauge(
    "gateway_pool_endpoint_running", "A pool replica's running requests, from its last good scrape.",
    ["pool", "endpoint"], multiprocess_mode="mostrecent")
pool_endpoint_kv_cache = Gauge(
    "gateway_pool_endpoint_kv_cache_usage", "A pool replica's KV-cache use (0-1), from its last good scrape.",
    ["pool", "endpoint"], multiprocess_mode="mostrecent")
pool_endpoint_counted = Gauge(
    "gateway_pool_endpoint_picks_counted", "Calls a worker sent the replica between its last two good "
    "scrapes (the picker counts them as waiting until the next scrape).", ["pool", "endpoint"],
    multiprocess_mode="mostrecent")
pool_endpoint_demoted = Gauge(
    "gateway_pool_endpoint_demoted", "1 when the picker demotes the replica: its last good scrape is older "
    "than stale_after_ms, or its scrapes fail (never picked); else 0.", ["pool", "endpoint"],
    multiprocess_mode="mostrecent")
# A replica gone from its pool has its gauges set to GONE: the multiprocess files keep
# every label set a worker ever wrote, and the admin's /metrics leaves out the samples of
# these families that read GONE (runtime/admin.py), so a departed replica's series end.
GONE = float("nan")
POOL_ENDPOINT_FAMILIES = "gateway_pool_endpoint_"
pool_scrape_failures = Counter(
    "gateway_pool_scrape_failures", "Failed scrapes of pool replicas' /metrics, by reason: timeout "
    "(slower than scrape_timeout_ms), unreachable, status (not 200), unreadable.", ["pool", "endpoint", "reason"])
guardrail_verdicts = Counter(
    "gateway_guardrail_verdicts", "Guardrail verdicts.", ["guardrail", "verdict"])
# gateway_budget_remaining is read from the store at each scrape (runtime/budget_gauge.py).
extproc_processing = Histogram(
    "gateway_extproc_processing_seconds", "Time spent inside the service per ext_proc message.",
    ["phase"], buckets=_SERVICE_BUCKETS)
usage_estimated = Counter(
    "gateway_usage_estimated", "Requests whose usage was counted offline (provider gave none).",
    ["model"])
extproc_request = Histogram(
    "gateway_extproc_request_seconds", "Time spent inside the service per request (all its messages).",
    ["endpoint"], buckets=_SERVICE_BUCKETS)
tagged_requests = Counter(
    "gateway_tagged_requests", "Requests by allow-listed tag (x-gateway-tag-<name>).",
    ["tag", "value", "model", "status"])
tagged_cost_usd = Counter(
    "gateway_tagged_cost_usd", "Spend in USD by allow-listed tag (x-gateway-tag-<name>).",
    ["tag", "value", "model"])
key_requests = Counter(
    "gateway_key_requests", "Requests per key and user (only with observability.per_key_metrics).",
    ["key_id", "user", "model", "status"])
key_tokens = Counter(
    "gateway_key_tokens", "Tokens per key (only with observability.per_key_metrics).",
    ["key_id", "gen_ai_token_type"])
failovers = Counter(
    "gateway_failovers", "Requests answered by a later attempt (Envoy retried or failed over).",
    ["model", "backend"])
budget_admissions = Counter(
    "gateway_budget_admissions", "Calls admitted by budgets and rate limits, by where: in a "
    "worker's allotment (memory) or by a store round trip.", ["path"])
store_errors = Counter(
    "gateway_store_errors", "Budget store operations that failed (fail mode applied).", ["operation"])
store_resets = Counter(
    "gateway_store_resets", "Times a worker found the budget store's generation marker gone or changed: "
    "the store lost its counters (a Redis restarted without persistence, flushed or replaced).")
cut_streams = Counter(
    "gateway_cut_streams", "Streams passed through that ended without their trailers message (client "
    "left, provider dropped), by what their output was charged on: the usage Envoy read (the "
    "answer came whole), the bytes sent, or the output cap.", ["charged_on"])
cache_requests = Counter(
    "gateway_cache_requests", "Calls the response cache took, by result (hit, miss, bypass, refresh).", ["result"])
cache_saved_usd = Counter(
    "gateway_cache_saved_usd", "What the response cache's hits would have cost at the provider, USD.", ["model", "team"])
config_reloads = Counter("gateway_config_reloads", "Config reloads.", ["result"])
mcp_calls = Counter(
    "gateway_mcp_calls", "MCP tool calls (tools/call) by profile, server, tool and outcome; the tool "
    "label is a tool the profile's config names (else a bounded set of those called, then `other`).",
    ["profile", "server", "tool", "outcome"])
trace_spans = Counter(
    "gateway_trace_spans", "Call spans by what became of them (observability.tracing): exported, "
    "dropped_queue_full (the collector slower than the calls), dropped_export_failed.", ["result"])
runs = Counter(
    "gateway_runs", "Agent runs by what became of them: started (a run's first call written to the store), "
    "stopped_loop (429 agent_loop), stopped_limit (a run limit reached).", ["outcome"])
run_cost_usd = Counter(
    "gateway_run_cost_usd", "Spend in USD of calls that belong to an agent run, by the agent (client) "
    "the gateway recognised (\"\" when none).", ["client"])
