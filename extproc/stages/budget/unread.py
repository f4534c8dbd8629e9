"""Budgets and rate limits for a call whose body is unread (stages/body_unread.py).

Such a call is reserved at its request headers, from what Envoy's request reader read of
its body (announced.py: the output caps and the number of answers) and its size, and
settled from the usage Envoy reads from its answer (BudgetSettle, as for every call).

The reservation is an upper bound of what the path that reads the body reserves for the
same call, never less:
- the prompt at one token per byte of the body: a token of text is at least a byte of it
  (and JSON's quotes, keys and escapes only add bytes), so the body's size bounds the
  prompt's count of the texts, the turns and the tool definitions;
- the output as the body asks for it, read by the dialect's own readers from the fields
  Envoy read (`codec.output_fields`), or the model's maximum output when it sets no cap;
- in USD at the backend's prices.
Media named by a URL or a file id count in neither path: the gateway does not fetch them.

A call this bound does not fit is not refused here: it takes the path that reads its
body, whose exact count may fit it, cap its output, or refuse it in the caller's dialect
(limits.py). So does a call whose bound is large for a limit (BOUND_SHARE), lest the
bounds of a few calls in flight hold what the exact counts would leave to others. So are a call whose caps Envoy could not read plainly, one whose model the
gateway cannot price for a USD budget, one that sets no cap for a model whose maximum
output is unknown (that path caps it), a caller another of its calls found exhausted,
and any call while the store cannot be reached (that path applies the fail mode)."""

from __future__ import annotations

import time
from typing import NamedTuple

from ...api.usage import Usage
from ...config.envoy_contract import OUTPUT_CAPS_READ, OUTPUT_FIELDS_READ
from ...config.models import Backend, Model
from ...observability import metrics
from ...pipeline.call import Call
from ...store import StoreUnavailable, maybe_await
from ...store.limits import plan_charges
from ..announced import announced_fields
from .headers import ratelimit_headers
from .limits import BudgetHold, ExhaustedCounters, limits_of, reservation_id


# A bound holds more than the call will spend (its prompt at a token a byte) until it is
# settled, and what calls in flight hold, others cannot be admitted against: a bound
# larger than this share of a limit would let a few concurrent calls hold it all and
# refuse calls the exact count admits. Such a call is counted exactly instead: then at
# most 1/16 of a limit is held beyond the path that reads the body per call in flight.
BOUND_SHARE = 16
_AMOUNTS = ("tokens", "usd")            # the kinds a bound overstates (requests, concurrency: exact)


class Reserved(NamedTuple):
    """What a reservation tells the call: its answer's x-ratelimit-* headers, and the
    output reserved for each answer of a call that set no cap (0: it set one), which is
    what a stream whose usage never came is charged."""
    headers: dict[str, str]
    output: int


class UnreadReservation:
    """Reserves a body-unread call's budgets and rate limits at its request headers."""

    def __init__(self, store, settings, exhausted: ExhaustedCounters) -> None:
        self.store = store
        self.settings = settings
        self.exhausted = exhausted.counters      # the refusals Budget remembers

    @staticmethod
    def may_reserve(call: Call) -> bool:
        """Whether Envoy reads every field that bounds this endpoint's output."""
        fields = call.codec.output_fields
        return OUTPUT_CAPS_READ in call.envoy_features and fields is not None \
            and OUTPUT_FIELDS_READ.issuperset(fields)

    async def reserve(self, call: Call, model: Model, backend: Backend, size: int, read) -> Reserved | None:
        """Reserves the call's upper bound (held for BudgetSettle), or None when the call
        must take the path that reads its body. `read`: the fields Envoy read
        (announced.py; None: Envoy did not read the body); `size`: the body's bytes."""
        codec = call.codec
        asked = announced_fields(read, codec.output_fields) if read is not None else None
        if asked is None:
            return None                     # Envoy did not read the body, or not plainly
        limits = limits_of(call)
        key = call.key
        applying = [limit for limit in limits if limit.scope_value(key) is not None]
        if not model.fully_priced and any(limit.kind == "usd" for limit in applying):
            return None                     # that path refuses it, naming the budget
        cap = asked_cap = codec.max_output_tokens(asked)
        if cap is None and codec.charges_output:
            ceiling, known = model.output_ceiling(call.dialect)
            if not known and any(limit.kind in _AMOUNTS for limit in applying):
                return None                 # that path caps it, and says so
            cap = ceiling
        output = (cap or 0) * codec.answers_per_request(asked) if codec.charges_output else 0
        usd = model.cost(backend, Usage(size, output))
        now = time.time()
        lease = self.settings.lease_seconds
        charges = plan_charges(limits, key, size + output, usd, now, lease)
        if any(charge.limit.kind in _AMOUNTS and charge.reserve * BOUND_SHARE > charge.limit.limit
               for charge in charges):
            return None                     # large for its limit: counted exactly (BOUND_SHARE)
        exhausted = self.exhausted
        if exhausted and any(exhausted.get(charge.counter, (0.0,))[0] > now for charge in charges):
            return None                     # that path refuses it at once
        rid = reservation_id(call)
        try:
            admission = await maybe_await(self.store.reserve(rid, charges, now, now + lease))
        except StoreUnavailable:
            return None
        if not admission.admitted:
            return None
        metrics.child(metrics.budget_admissions, "allotment" if admission.in_memory else "store").inc()
        call.own(BudgetHold).held = (rid, charges)
        return Reserved(ratelimit_headers(charges, admission.remaining, now),
                        cap if asked_cap is None else 0)
