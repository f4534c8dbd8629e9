"""Budgets and rate limits: reserve before forwarding, settle from real usage after.

The reservation is an estimate (prompt tokens counted offline plus the output
cap, priced at the model's dearest backend); settle swaps it for what the
provider reported (or what we counted when it reported nothing). A call that
ends any other way (refused later, upstream error, client gone) settles too, so
nothing is left reserved; leases cover a worker that dies mid-call. The store
is, by default, the worker's allotments (store/allotments.py): far from a
budget's end both happen in memory, and the store hears of them every 0.5 s.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
import uuid

from ...api.usage import Usage
from ...observability import metrics
from ...pipeline.call import Call
from ...pipeline.errors import GatewayError, gateway_error, model_not_priced
from ...store import StoreUnavailable, is_awaitable, maybe_await
from ...store.limits import Charge, plan_charges, settled_amount
from ..accounting.cost import charged_cost
from .headers import ratelimit_headers, reset_in
from ...pipeline.stage import Stage

log = logging.getLogger("extproc.budget")

# The response header that tells a caller the gateway capped its answer, and at what.
OUTPUT_CAPPED_HEADER = "x-gateway-output-capped"
# Reserve attempts for a call that set no cap: the model's maximum, then what the refusing
# budget has left (again if a concurrent call took that room first).
_FITTING_TRIES = 4
_RESERVATION_PREFIX = uuid.uuid4().hex[:12]      # per process: made again in a forked worker


def _new_prefix() -> None:
    global _RESERVATION_PREFIX
    _RESERVATION_PREFIX = uuid.uuid4().hex[:12]


os.register_at_fork(after_in_child=_new_prefix)
_reservations = itertools.count()


def reservation_id(call: Call) -> str:
    """A reservation's id: a client-chosen request id must not collide, so this worker's
    token and a count follow it."""
    return f"{call.request_id or ''}:{_RESERVATION_PREFIX}{next(_reservations)}"


class BudgetHold:
    """What Budget reserved for the call, for BudgetSettle to settle."""
    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held = None


EXHAUSTED_MEMORY_S = 5.0
# A counter the store found with room is not read again for this long: a caller another
# worker (or replica) found exhausted is refused here within it, without a read per call.
STORE_LOOK_S = 0.5
STORE_LOOK_MIN_BYTES = 16_384       # bodies smaller than this are scanned in well under a millisecond
# Past this share of its limit a counter is read at every call (as Budget reserves each
# call in the store near a budget's end): the call that exhausts it is the last scanned.
NEAR_END = 0.9


class ExhaustedCounters:
    """Counters a refusal found empty, in this pipeline: counter -> (until, the refusal).
    A caller out of budget is refused again at once by BudgetPrecheck, before the guardrail
    scan (the costly part of a request) runs for a request that could never be forwarded.
    Remembered for a few seconds at most, so a limit raised or a window reset is seen
    promptly; a reloaded config's pipeline starts with none. Budget fills it."""
    __slots__ = ("counters",)

    def __init__(self) -> None:
        self.counters: dict[str, tuple[float, GatewayError]] = {}

    def remember(self, charge: Charge, remaining: dict[str, float], refusal: GatewayError, now: float) -> None:
        counters = self.counters
        if charge.limit.kind != "concurrent" and remaining.get(charge.counter, 1) <= 0:
            if len(counters) > 10_000:            # bounded: drop the lapsed ones, else all
                for counter in [c for c, (until, _) in counters.items() if until <= now] or list(counters):
                    del counters[counter]
            counters[charge.counter] = (min(charge.window_end, now + EXHAUSTED_MEMORY_S), refusal)


def limits_of(call: Call):
    """The budgets and rate limits of the config, and the key's own."""
    limits = call.config.limits
    if call.key is not None and call.key.limits:      # a run-time key's own budgets
        limits = limits + call.key.limits
    return limits


def applying_limits(call: Call) -> bool:
    """Whether a budget or rate limit applies to the call's key."""
    return _any_applies(limits_of(call), call.key)


def _any_applies(limits, key) -> bool:
    return any(limit.scope_value(key) is not None for limit in limits)


class BudgetPrecheck(Stage):
    """Before the guardrails: a caller whose budget or rate limit is exhausted is refused
    (the budget's 429) without scanning its request. Exhausted as this worker's Budget
    found it, or as the store says: each of the caller's counters is read from the store
    (SQLite: one indexed read; Redis: one round trip), at most every STORE_LOOK_S while it
    has room, so a caller another worker or replica refused, or whose requests the scan
    refused before Budget could learn it, is refused here too. Nothing is charged or
    reserved here; Budget, after the guardrails, charges as before. A store that cannot
    be read leaves the decision to Budget (and its fail mode)."""

    name = "budget_precheck"
    reads = frozenset({"body", "endpoint", "key", "raw_body"})
    writes = frozenset()

    def __init__(self, exhausted: ExhaustedCounters, store=None) -> None:
        self.memory = exhausted
        self.exhausted = exhausted.counters
        self.store = store
        self.looked: dict[str, float] = {}       # counter -> until when the store's "room left" stands

    def request_body(self, call: Call):
        if call.body is None or not call.endpoint.generates:
            return None
        exhausted, looked, store = self.exhausted, self.looked, self.store
        # The store is asked only for a body whose scan costs more than the read: a small
        # one goes on to Budget, which decides exactly, without a round trip before it.
        look = store is not None and len(call.raw_body) >= STORE_LOOK_MIN_BYTES
        if not exhausted and not look:       # nothing to refuse now, nothing to ask
            return None
        limits = limits_of(call)
        if not limits:
            return None
        now = time.time()
        unread = None
        for charge in plan_charges(limits, call.key, 0, 0.0, now, 0.0):
            held = exhausted.get(charge.counter) if exhausted else None
            if held is not None:
                until, refusal = held
                if now < until:
                    # Told afresh: when the window resets, as of now (nothing is left of it).
                    raise GatewayError(refusal.status, refusal.code,
                                       _refusal_message(charge, refusal.code, 0.0, now, needed=False),
                                       headers={**refusal.headers, "retry-after": str(_retry_after(charge, now))})
                del exhausted[charge.counter]
            if look and charge.limit.kind != "concurrent" and looked.get(charge.counter, 0.0) <= now:
                if unread is None:
                    unread = []
                unread.append(charge)
        return self._look(unread, now) if unread else None

    async def _look(self, charges: list[Charge], now: float) -> None:
        """Refuses the call when the store says a counter has spent its limit."""
        looked = self.looked
        if len(looked) > 10_000:
            looked.clear()
        # One read in flight serves a burst: the calls that come meanwhile leave the
        # decision to Budget, which is exact (80 calls at once would be 80 reads, each
        # before the scan, on a loaded store).
        for charge in charges:
            looked[charge.counter] = now + STORE_LOOK_S
        try:
            spent = await maybe_await(self.store.spent([charge.counter for charge in charges]))
        except StoreUnavailable:
            return
        for charge in charges:
            if spent.get(charge.counter, 0.0) >= charge.limit.limit:
                code = _refusal_code(charge)
                remaining = {c.counter: c.limit.limit - spent.get(c.counter, 0.0) for c in charges}
                left = charge.limit.limit - spent.get(charge.counter, 0.0)
                refusal = GatewayError(429, code, _refusal_message(charge, code, left, now, needed=False),
                                       headers={"retry-after": str(_retry_after(charge, now)),
                                                **ratelimit_headers(charges, remaining, now)})
                self.memory.remember(charge, {charge.counter: 0.0}, refusal, now)
                raise refusal
            if spent.get(charge.counter, 0.0) >= charge.limit.limit * NEAR_END:
                looked[charge.counter] = 0.0                    # near its end: read again next call


class Budget(Stage):
    name = "budget"
    reads = frozenset({"endpoint", "key", "model", "path", "request_id"})
    writes = frozenset({"body", "body_changed", "log_fields", "output_reserved", "ratelimit_headers"})

    def __init__(self, store, settings, exhausted: ExhaustedCounters | None = None) -> None:
        self.store = store
        self.settings = settings
        self.exhausted = exhausted or ExhaustedCounters()

    async def request_body(self, call: Call) -> None:
        if call.body is None or not call.endpoint.generates:
            return
        # The limits the caller falls in, found once (each charge's counter is named below).
        limits = [limit for limit in limits_of(call) if limit.scope_value(call.key) is not None]
        if not limits:
            return
        if not call.model.fully_priced:
            charging_usd = [limit for limit in limits if limit.kind == "usd"]
            if charging_usd:     # at $0 it would never be charged: refuse rather than let it run free
                raise model_not_priced(call.model.name, charging_usd[0].name)
        # A call that sets no output cap is reserved up to its model's maximum output, or
        # what its tightest budget has left, whichever is smaller; capped only in the latter
        # case (or when nobody knows the model's maximum), and then told so.
        field = call.codec.output_cap_field
        uncapped = field is not None and call.codec.max_output_tokens(call.body) is None and \
            any(limit.kind in ("tokens", "usd") for limit in limits)
        ceiling, known = call.model.output_ceiling(call.dialect) if uncapped else (0, True)
        each = ceiling if uncapped else None
        rid = reservation_id(call)
        for _ in range(_FITTING_TRIES):
            tokens, usd = self._estimate(call, each)
            now = time.time()
            charges = plan_charges(limits, call.key, tokens, usd, now, self.settings.lease_seconds)
            try:
                admission = await maybe_await(self.store.reserve(rid, charges, now, now + self.settings.lease_seconds))
            except StoreUnavailable as error:
                metrics.child(metrics.store_errors, "reserve").inc()
                log.error("budget store unavailable on reserve: %s", error)
                if self.settings.fail_mode == "open":
                    return
                raise gateway_error("The budget store is unavailable; the request was not forwarded.") from None
            if admission.admitted or each is None:
                break
            # No room for the model's whole answer: as much as the refusing budget has left,
            # down to the least an uncapped call is reserved (below it: refused).
            fits = _output_that_fits(call, admission.refused, admission.remaining.get(admission.refused.counter))
            if fits >= each or fits < min(call.config.store.default_output_tokens, ceiling):
                break
            each = fits
        if not admission.admitted:
            refused = admission.refused
            code = _refusal_code(refused)
            retry_after = _retry_after(refused, now)
            headers = {"retry-after": str(retry_after),
                       **ratelimit_headers(charges, admission.remaining, now)}
            refusal = GatewayError(429, code, _refusal_message(
                refused, code, admission.remaining.get(refused.counter), now), headers=headers)
            self.exhausted.remember(refused, admission.remaining, refusal, now)
            raise refusal
        metrics.child(metrics.budget_admissions,
                      "allotment" if admission.in_memory else "store").inc()
        call.own(BudgetHold).held = (rid, charges)
        # The headers the budget adds to the answer (Envoy adds them itself to answers the
        # service does not see the headers of: one_message.py).
        headers = call.ratelimit_headers = ratelimit_headers(charges, admission.remaining, now)
        if each is not None:
            call.output_reserved = each
            if each < ceiling or not known:
                _cap_what_was_reserved(call, field, each, "budget" if each < ceiling else "unknown_model_maximum")
                headers[OUTPUT_CAPPED_HEADER] = str(each)

    def _estimate(self, call: Call, each: int | None) -> tuple[int, float]:
        """Tokens and USD (at the dearest backend) to reserve; `each`: the output per
        answer of a call that sets no cap (None: the call's own cap)."""
        model = call.model
        prompt = call.prompt_tokens()
        output = call.output_cap() if each is None else each * call.codec.answers_per_request(call.body)
        usage, backends = Usage(prompt, output), model.backends
        usd = model.cost(backends[0], usage) if len(backends) == 1 else max(model.cost(b, usage) for b in backends)
        return prompt + output, usd

    @staticmethod
    def response_headers(call: Call, headers: dict[str, str], end_of_stream: bool) -> None:
        extra = call.ratelimit_headers
        if extra:
            call.reply.set_headers.update(extra)


class BudgetSettle(Stage):
    """The settling half of Budget; runs after ResponseUsage has the final usage."""

    name = "budget_settle"
    reads = frozenset({"backend", "model", "request_id", "usage"})
    writes = frozenset()

    def __init__(self, store) -> None:
        self.store = store

    def done(self, call: Call):
        hold = call.owned(BudgetHold)
        held = hold.held if hold is not None else None
        if held is None:
            return None
        rid, charges = held
        usage = call.usage
        tokens = usage.total if usage else 0
        usd = charged_cost(call)
        amounts = [settled_amount(charge, tokens, usd) for charge in charges]
        try:
            settled = self.store.settle(rid, charges, amounts)     # the allotments': mostly at once
        except StoreUnavailable as error:
            _settle_failed(call, error)
            return None
        return self._settled_later(call, settled) if is_awaitable(settled) else None

    @staticmethod
    async def _settled_later(call: Call, settled) -> None:
        try:
            await maybe_await(settled)
        except StoreUnavailable as error:
            _settle_failed(call, error)


def _settle_failed(call: Call, error: StoreUnavailable) -> None:
    # The worker's allotments keep the settle and apply it, once, when the store is back
    # (store/allotments.py); its reservation is held until then.
    metrics.child(metrics.store_errors, "settle").inc()
    log.error("budget store unavailable on settle (request %s; kept, settled when the store "
              "is back): %s", call.request_id, error)


# A concurrency slot frees when one of the caller's calls ends, which nobody can tell in
# advance: the hint is to try again soon, not when the slot's lease would run out.
CONCURRENCY_RETRY_AFTER_S = 1


def _retry_after(charge: Charge, now: float) -> int:
    """Seconds until the refused limit has room: its window's end, or soon for concurrency."""
    if charge.limit.kind == "concurrent":
        return CONCURRENCY_RETRY_AFTER_S
    return max(1, int(charge.window_end - now + 0.999))


def _output_that_fits(call: Call, charge: Charge, room: float | None) -> int:
    """The output per answer the refusing counter still has room for, after the prompt
    (tokens: one a token; USD: at the dearest backend's prices); -1 when none or unknown."""
    if room is None or charge.limit.kind not in ("tokens", "usd"):
        return -1
    answers = call.codec.answers_per_request(call.body)
    prompt = call.prompt_tokens()
    if charge.limit.kind == "tokens":
        return int((room - prompt) // answers)
    fits = None
    for backend in call.model.backends:
        price = call.model.price_of(backend)
        if price is None or not price.output:
            continue                  # its output costs nothing: it bounds nothing
        left = room - price.cost(Usage(prompt, 0))
        each = int(left * 1_000_000 / price.output // answers)
        fits = each if fits is None else min(fits, each)
    return -1 if fits is None else fits


def _cap_what_was_reserved(call: Call, field: str, cap: int, reason: str) -> None:
    """A call that set no output cap and whose reservation could not cover its model's
    whole answer goes to the provider with the cap it was reserved, so what it spends
    cannot pass what it reserved; the caller is told (OUTPUT_CAPPED_HEADER) and the log
    line says why (`budget`: the budget's room; `unknown_model_maximum`: nobody gave the
    model's maximum output)."""
    call.body = call.codec.with_output_cap(call.body, cap)
    call.body_changed = True
    call.log_fields["output_cap_added"] = cap
    call.log_fields["output_cap_reason"] = reason


def _refusal_code(charge: Charge) -> str:
    limit = charge.limit
    return "budget_exceeded" if limit.kind in ("tokens", "usd") and limit.window != "minute" else "rate_limited"


_UNITS = {"tokens": "tokens", "usd": "USD", "requests": "requests", "concurrent": "concurrent requests"}


def _amount(kind: str, amount: float) -> str:
    """An amount of a limit's unit as a caller reads it: 1532 tokens, $0.0042, 3 requests."""
    if kind == "usd":
        return f"${max(0.0, amount):.4f}"
    count = max(0, int(amount))
    return f"{count:,} {_UNITS[kind].removesuffix('s') if count == 1 else _UNITS[kind]}"


def _refusal_message(charge: Charge, code: str, left: float | None = None, now: float | None = None,
                     needed: bool = True) -> str:
    """Names the limit, what this request needed of it (its estimate: the prompt counted
    and the output it may write, priced at the dearest backend), what is left, and when
    the window resets, so a caller can tell a request too big for any window from one
    that waits for the next. `needed` False: a refusal remembered for later calls, whose
    own needs it does not know."""
    limit = charge.limit
    kind = limit.kind
    window = f" per {limit.window}" if limit.window else ""
    text = (f"{'Budget' if code == 'budget_exceeded' else 'Rate limit'} '{limit.name}' "
            f"({limit.limit:g} {_UNITS[kind]}{window}, {limit.scope} scope) has no room for this request")
    if left is None:
        return text + "."
    parts = []
    if needed:
        estimate = "an estimated " if kind in ("tokens", "usd") else ""
        parts.append(f"it needs {estimate}{_amount(kind, charge.reserve + charge.count_now)}")
    parts.append(f"{_amount(kind, left)} {'free' if kind == 'concurrent' else 'left'}")
    if kind == "concurrent":
        parts.append(f"a slot frees when one of these calls ends (retry in {CONCURRENCY_RETRY_AFTER_S}s)")
    elif now is not None:
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(charge.window_end))
        parts.append(f"the {limit.window} window resets in {reset_in(charge.window_end - now)} (at {at})")
    return f"{text}: {', '.join(parts)}."
