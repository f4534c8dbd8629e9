"""Agent runs on the model API: which run a call belongs to, the run's limits and loop
stopping, and the run's trace.

- RecogniseRun (request headers, else body): `call.run` from the caller's headers, else
  its body (extproc/runs/identity.py), on the log line as `run`; the call's span is in
  the run's trace (stages/accounting/trace.py).
- RunLimits (request body, after the budgets): loop stopping, from the request itself:
  a tool call it carries back that the model made more than `max_repeats` times since
  the user's last turn (the agent resends its history: Codec.last_tool_calls counts
  them) is refused, 429 `agent_loop`; nothing kept, so every worker and replica agrees.
  Then the run's limits that apply (USD, tokens, calls; runs started per hour; the wall
  clock from the run's first call, a store record every worker agrees on): counters in
  the budget store, but most calls need no store operation: the worker's ledger
  (extproc/runs/ledger.py) admits a call within its share of the room the store last
  showed; the rest go in one reserve, all or nothing, as the budgets'.
- RunSettle (done): the reservation settled from the call's cost and usage, and the
  call's entry for the run's trace (store/runs.py, written in batches off the call's path).

Refusals say the run is over and tell SDKs not to retry (`x-should-retry: false`)."""

from __future__ import annotations

import logging
import time

from ...config.runs import RunSettings
from ...observability import metrics
from ...pipeline.call import Call
from ...pipeline.errors import GatewayError, gateway_error
from ...pipeline.stage import Stage
from ...runs import recognise
from ...runs.ledger import RunCounter, RunLedger
from ...runs.loops import MAX_COUNTED, NAME_CHARS
from ...store import StoreUnavailable, maybe_await
from ...store.limits import Charge, settled_amount, window_bounds
from ...store.runs import RunLog
from .unnamed import chained_run, inferred_run
from ..accounting.cost import charged_cost, reservation_basis

log = logging.getLogger("extproc.runs")

START_KIND = "run_start"            # store record: a run's first call, epoch seconds
_KNOWN_STARTS = 10_000
STOPPED_LOOP, STOPPED_LIMIT = "stopped_loop", "stopped_limit"
_NO_RETRY = {"x-should-retry": "false"}     # the OpenAI and Anthropic SDKs honour it


_RUN_LOG: RunLog | None = None
_LEDGER = RunLedger()                   # the worker's, kept across reloads


def worker_run_ledger() -> RunLedger:
    return _LEDGER


def worker_run_log() -> RunLog:
    """The worker's one RunLog, whichever config its pipelines were built for."""
    global _RUN_LOG
    if _RUN_LOG is None:
        _RUN_LOG = RunLog()
        _RUN_LOG.on_runs = _count_runs
    return _RUN_LOG


def _count_runs(events: list[str]) -> None:
    for outcome in events:
        metrics.child(metrics.runs, outcome).inc()


class RunHold:
    """What RunLimits reserved and decided for the call, for RunSettle."""
    __slots__ = ("held", "local", "stopped", "tools")

    def __init__(self) -> None:
        self.held = None
        self.local: list = []            # (RunCounter, kind, estimate) admitted by the worker's ledger
        self.stopped = ""
        self.tools: list[str] = []


class RecogniseRun(Stage):
    name = "recognise_run"
    reads = frozenset({"body", "endpoint", "headers", "key", "request_id"})
    writes = frozenset({"log_fields", "run"})

    def __init__(self, store=None, settings: RunSettings | None = None) -> None:
        self.store = store
        self.settings = settings or RunSettings()

    def request_headers(self, call: Call, end_of_stream: bool) -> None:
        """From the headers (what most agents send): the call's trace is its run's. Only
        for the teams whose calls are runs (`runs.teams`)."""
        if call.key is not None and self.settings.governs(call.key):
            run = call.run = recognise(call.key.id, call.headers)
            if run is not None:
                call.log_fields["run"] = run.id

    def request_body(self, call: Call):
        """Else from the body (Codex CLI's prompt_cache_key); else the stored response it
        continues, or inferred from its conversation (unnamed.py): a store read, so an
        awaitable only for a call that could be named so (most calls return None here)."""
        if call.key is None or call.run is not None or not self.settings.governs(call.key):
            return None
        run = call.run = recognise(call.key.id, call.headers, call.body)
        if run is not None:
            _on_log_line(call, run)
            return None
        body = call.body
        if not isinstance(body, dict) or not call.endpoint.generates or self.store is None:
            return None
        codec = call.codec
        if codec.continued_response(body) is None and not (self.settings.infer and codec.tool_names(body)):
            return None
        return self._from_store(call)

    async def _from_store(self, call: Call) -> None:
        try:
            run = call.run = await chained_run(self.store, call) or (
                await inferred_run(self.store, call, self.settings.ttl_seconds)
                if self.settings.infer else None)
        except StoreUnavailable as error:
            log.error("store unavailable finding the run of a call that names none: %s", error)
            return
        if run is not None:
            _on_log_line(call, run)


def _on_log_line(call: Call, run) -> None:
    call.log_fields["run"] = run.id
    if run.inferred:
        call.log_fields["run_inferred"] = True


class RunLimits(Stage):
    name = "run_limits"
    reads = frozenset({"body", "endpoint", "key", "model", "output_reserved", "request_id", "run"})
    writes = frozenset()

    def __init__(self, store, settings: RunSettings, lease_seconds: float) -> None:
        self.store = store
        self.settings = settings
        self.lease_seconds = lease_seconds
        self.starts: dict[str, float] = {}           # run -> its first call (store record)
        self.ledger = worker_run_ledger()

    def request_body(self, call: Call):
        """A call of a run: its limits (an awaitable); None for a call of no run."""
        if call.run is None or call.body is None or call.model is None or not call.endpoint.generates:
            return None
        return self._limits(call)

    async def _limits(self, call: Call) -> None:
        run = call.run
        settings = self.settings
        limits = settings.limits_for(call.key, run.client)
        repeats = settings.loops.repeats_for(run.client)
        hold = call.own(RunHold)
        if repeats:
            carried = call.codec.last_tool_calls(call.body)
            hold.tools = [name[:NAME_CHARS] for name, _, _ in carried[:MAX_COUNTED]]
            for name, _, times in carried:
                if times > repeats:
                    hold.stopped = STOPPED_LOOP
                    raise _loop(run, name, times, repeats)
        same = settings.loops.max_same_answers
        if same:
            text, times = call.codec.repeated_answer(call.body)
            if times > same:
                hold.stopped = STOPPED_LOOP
                raise _same_answer(run, text, times, same)
        rate = settings.loops.rate
        if not limits and rate is None:
            return
        now = time.time()
        ends = now + settings.ttl_seconds
        ledger = self.ledger
        charges: list[Charge] = []           # what goes to the store (ledger.py: most calls, nothing)
        pushed: list[RunCounter] = []        # the run counters among them, in order
        local: list[tuple[RunCounter, str, float]] = []
        try:
            if rate is not None:             # calls in this window of the run: a counter as max_calls
                seconds = settings.loops.rate_seconds
                window = int(now // seconds)
                name = f"{rate.name}|{run.id}|{window}"
                state = ledger.counter(name)
                if ledger.admits_here(state, rate.limit, 1.0):
                    local.append((state, rate.kind, 1.0))
                else:
                    charges.append(Charge(rate, name, 0, state.unsynced + 1, (window + 1) * seconds))
                    pushed.append(state)
            for limit in limits:
                if limit.starts is not None or limit.max_seconds is not None:
                    start, new = await self._start(run.id, now)
                    if new and limit.starts is not None:
                        await self._count_start(call, run, limit, now)
                    if limit.max_seconds is not None and now - start > limit.max_seconds:
                        hold.stopped = STOPPED_LIMIT
                        raise _over(run, limit.name, f"{limit.max_seconds / 60:g} minutes from its first call",
                                    f"it began {int((now - start) // 60)} minutes ago")
                if limit.counters:
                    usd, tokens = reservation_basis(call), call.prompt_tokens() + call.output_cap()
                    for counter in limit.counters:
                        name = f"{counter.name}|{run.id}"
                        state = ledger.counter(name)
                        amount = usd if counter.kind == "usd" else tokens if counter.kind == "tokens" else 1.0
                        if ledger.admits_here(state, counter.limit, amount):
                            local.append((state, counter.kind, amount))
                            continue
                        calls = counter.kind == "requests"
                        charges.append(Charge(counter, name, 0 if calls else amount,
                                              state.unsynced + (1 if calls else 0), ends))
                        pushed.append(state)
            if charges:
                rid = f"run:{call.request_id}:{id(call)}"
                admission = await maybe_await(self.store.reserve(rid, charges, now, now + self.lease_seconds))
        except StoreUnavailable as error:
            metrics.child(metrics.store_errors, "reserve").inc()
            log.error("budget store unavailable on an agent run's reserve: %s", error)
            if call.config.store.fail_mode == "open":
                return
            raise gateway_error("The budget store is unavailable; the request was not forwarded.") from None
        if charges and not admission.admitted:
            self._refuse(run, admission, hold)
        if charges:
            hold.held = (rid, charges)
            remaining = admission.remaining
            for state, charge in zip(pushed, charges):
                state.synced = charge.limit.limit - remaining.get(charge.counter, charge.limit.limit)
                state.unsynced = 0.0
        for state, kind, amount in local:
            if kind == "requests":
                state.unsynced += 1
            else:
                state.flying += amount
        hold.local = local

    def _refuse(self, run, admission, hold: RunHold) -> None:
        refused = admission.refused
        used = refused.limit.limit - admission.remaining.get(refused.counter, 0)
        limit = refused.limit
        if limit is self.settings.loops.rate:
            hold.stopped = STOPPED_LOOP
            raise _too_fast(run, int(used), limit.limit, self.settings.loops.rate_seconds)
        hold.stopped = STOPPED_LIMIT
        name = limit.name[len("run."):].rsplit(".", 1)[0]
        if limit.kind == "usd":
            what, spent = f"${limit.limit:g} per run", f"it has spent ${used:.4f} and this call may cost up to " \
                f"${refused.reserve:.4f}"
        elif limit.kind == "tokens":
            what, spent = f"{limit.limit:g} tokens per run", f"it has used {int(used):,} and this call may use " \
                f"up to {int(refused.reserve):,}"
        else:
            what, spent = f"{limit.limit:g} calls per run", f"it has made {int(used):,}"
        raise _over(run, name, what, spent)

    async def _start(self, run_id: str, now: float) -> tuple[float, bool]:
        """When the run began (a store record every worker agrees on), and whether this
        call began it. Asked once per run and worker."""
        start = self.starts.get(run_id)
        if start is not None:
            return start, False
        mine = repr(now)
        found = await maybe_await(self.store.first_record(START_KIND, run_id, mine, now + self.settings.ttl_seconds))
        if len(self.starts) >= _KNOWN_STARTS:
            self.starts.clear()
        self.starts[run_id] = start = float(found)
        return start, found == mine

    async def _count_start(self, call: Call, run, limit, now: float) -> None:
        """A new run counts against the runs its caller may start this hour; refused, it
        is not begun (its start record goes, so its next call is a new run again)."""
        hour_start, hour_end = window_bounds("hour", now)
        counter = f"{limit.starts.name}|{limit.scope_value(call.key)}|{int(hour_start)}"
        charge = Charge(limit.starts, counter, 0, 1, hour_end)
        admission = await maybe_await(self.store.reserve(f"runstart:{run.id}", [charge], now, now + 60))
        if admission.admitted:
            return
        self.starts.pop(run.id, None)
        await maybe_await(self.store.delete_record(START_KIND, run.id))
        retry = max(1, int(hour_end - now + 0.999))
        raise GatewayError(429, "rate_limited", (
            f"The run policy '{limit.name}' lets {limit.scope} '{limit.scope_value(call.key)}' start "
            f"{limit.starts.limit:g} agent runs an hour, and this call starts another ('{run.name}'); the hour's "
            f"window resets in {retry} s. A caller that names a new run on every call is counted here."),
            headers={"retry-after": str(retry)})


def _loop(run, tool: str, times: int, repeats: int) -> GatewayError:
    return GatewayError(429, "agent_loop", (
        f"Agent loop stopped: this run ('{run.name}') has made the same call of the tool '{tool[:NAME_CHARS]}' "
        f"with the same arguments {times} times since its user's last turn; the gateway allows {repeats}"
        f"{' for ' + run.client if run.client else ''}. The run is paused: tell the user what repeated; a new "
        "user turn goes on."), headers=dict(_NO_RETRY))


def _same_answer(run, text: str, times: int, same: int) -> GatewayError:
    shown = " ".join(text.split())[:NAME_CHARS]
    return GatewayError(429, "agent_loop", (
        f"Agent loop stopped: the model of this run ('{run.name}') has given the same answer "
        f"('{shown}{'...' if len(text) > NAME_CHARS else ''}') {times} times in a row, asked again each time; "
        f"the gateway allows {same}. The run is paused: tell the user what repeated."), headers=dict(_NO_RETRY))


def _too_fast(run, made: int, allowed: float, seconds: float) -> GatewayError:
    return GatewayError(429, "agent_loop", (
        f"Agent loop stopped: this run ('{run.name}') has made {made} model calls in {seconds:g} seconds; the "
        f"gateway allows {allowed:g}, a rate no person-driven task reaches. The run is paused: tell the user "
        "that it kept calling the model."), headers=dict(_NO_RETRY))


def _over(run, limit_name: str, what: str, spent: str) -> GatewayError:
    return GatewayError(429, "budget_exceeded", (
        f"This agent run ('{run.name}') reached its run limit '{limit_name}' ({what}): {spent}. The run is over; "
        "tell the user. A new task starts a new run."), headers=dict(_NO_RETRY))


class RunSettle(Stage):
    """The settling half of RunLimits, and the call's entry in its run's trace: after
    CallCost (the cost is final)."""

    name = "run_settle"
    reads = frozenset({"backend", "ended_at", "error_code", "key", "model", "model_name", "request_id", "run",
                       "started", "status", "usage"})
    writes = frozenset()

    def __init__(self, store, runs: RunLog | None, settings: RunSettings) -> None:
        self.store = store
        self.runs = runs
        self.settings = settings

    def done(self, call: Call):
        if call.run is None:
            return None
        return self._settle(call)

    async def _settle(self, call: Call) -> None:
        run = call.run
        hold = call.owned(RunHold)
        usage = call.usage
        cost = charged_cost(call)
        held = hold.held if hold is not None else None
        for state, kind, estimate in hold.local if hold is not None else ():
            if kind != "requests":
                state.flying = max(0.0, state.flying - estimate)
                state.unsynced += cost if kind == "usd" else usage.total if usage else 0
        if held is not None and self.store is not None:
            rid, charges = held
            try:
                await maybe_await(self.store.settle(rid, charges, [
                    settled_amount(charge, usage.total if usage else 0, cost) for charge in charges]))
            except StoreUnavailable as error:
                metrics.child(metrics.store_errors, "settle").inc()
                log.error("budget store unavailable on an agent run's settle (request %s): %s",
                          call.request_id, error)
        if cost:
            metrics.child(metrics.run_cost_usd, run.client).inc(cost)
        if self.runs is None or call.config.store is None:
            return
        key = call.key
        ended = call.ended_at or time.perf_counter()
        self.runs.add({
            "run": run.id, "run_name": run.name, "run_source": run.source, "client": run.client,
            "run_inferred": run.inferred,
            "key_id": key.id if key else "", "user": key.user if key else "", "team": key.team if key else "",
            "ts": round(time.time() - (time.perf_counter() - call.started), 6),   # when it began
            "request_id": call.request_id,
            "model": call.model.name if call.model is not None else call.model_name[:100],
            "backend": call.backend.name if call.backend is not None else None,
            "status": call.status, "error_code": call.error_code,
            "stopped": hold.stopped if hold is not None else "",
            "tool_calls": hold.tools if hold is not None else [],
            "input_tokens": usage.input_tokens if usage else 0, "output_tokens": usage.output_tokens if usage else 0,
            "cost_usd": round(cost, 9), "latency_ms": round((ended - call.started) * 1000, 3),
        }, call.config.store, self.settings.ttl_seconds)


_TRACED_MCP = ("tools/call", "tools/list")


class McpRunTrace(Stage):
    """An MCP call's entry in its run's trace (tools/call and tools/list, with the run's
    tool decisions: stages/mcp/run_tools.py), after the MCP pipeline's audit line."""

    name = "mcp_run_trace"
    reads = frozenset({"ended_at", "key", "mcp", "request_id", "run", "started", "status"})
    writes = frozenset()

    def __init__(self, runs: RunLog, settings: RunSettings) -> None:
        self.runs = runs
        self.settings = settings

    def done(self, call: Call) -> None:
        run, state = call.run, call.mcp
        if run is None or state is None or state.rpc_method not in _TRACED_MCP or call.config.store is None:
            return
        key = call.key
        ended = call.ended_at or time.perf_counter()
        self.runs.add({
            "run": run.id, "run_name": run.name, "run_source": run.source, "client": run.client,
            "key_id": key.id if key else "", "user": key.user if key else "", "team": key.team if key else "",
            "ts": round(time.time() - (time.perf_counter() - call.started), 6), "request_id": call.request_id,
            "kind": "mcp", "method": state.rpc_method, "tool": state.tool or None,
            "profile": state.profile.name if state.profile is not None else None,
            "status": call.status, "outcome": state.outcome or None,
            "decisions": state.decisions[:10], "latency_ms": round((ended - call.started) * 1000, 3),
        }, call.config.store, self.settings.ttl_seconds)
