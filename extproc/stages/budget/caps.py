"""Spend caps per call and per session (store/caps.py): checked against the call's
reservation before it is forwarded, the session's settled from what it cost."""

from __future__ import annotations

import logging
import time

from ...observability import metrics
from ...pipeline.call import Call
from ...pipeline.errors import GatewayError, gateway_error
from ...store import StoreUnavailable, maybe_await
from ...store.caps import SESSION_START_KIND, session_charge, session_name
from ...pipeline.stage import Stage
from ..accounting.cost import charged_cost, reservation_basis

log = logging.getLogger("extproc.caps")
_KNOWN_STARTS = 10_000      # sessions whose window start a worker remembers


class SessionHold:
    """What SpendCaps reserved for the call's session, for SessionSettle to settle."""
    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held = None


class SpendCaps(Stage):
    name = "caps"
    reads = frozenset({"body", "endpoint", "headers", "key", "model", "output_reserved", "request_id"})
    writes = frozenset()

    def __init__(self, store, caps, store_settings) -> None:
        self.store = store
        self.caps = caps
        self.settings = store_settings
        self.starts: dict[str, float] = {}      # session -> its window's start (store record)

    async def request_body(self, call: Call) -> None:
        if call.body is None or call.model is None or not call.endpoint.generates:
            return
        cap = self.caps.per_call_cap(call.key)
        session_cap = self.caps.session
        session = call.headers.get(session_cap.header) if session_cap is not None else None
        if cap is None and not session:
            return
        basis = reservation_basis(call)
        if cap is not None and basis > cap:
            raise GatewayError(400, "cost_cap_exceeded", (
                f"This call could cost up to ${basis:.6f} (its prompt and output cap at the model's price), "
                f"more than the ${cap:g} a call may cost for this key; lower max_tokens or the prompt."))
        if session and self.store is not None:
            await self._reserve_session(call, session, basis)

    async def _reserve_session(self, call: Call, session: str, basis: float) -> None:
        now = time.time()
        rid = f"session:{call.request_id}:{id(call)}"
        try:
            charge = session_charge(self.caps.session, session, basis, await self._window_start(session, now))
            admission = await maybe_await(self.store.reserve(rid, [charge], now, now + self.settings.lease_seconds))
        except StoreUnavailable as error:
            metrics.child(metrics.store_errors, "reserve").inc()
            log.error("budget store unavailable on a session's reserve: %s", error)
            if self.settings.fail_mode == "open":
                return
            raise gateway_error("The budget store is unavailable; the request was not forwarded.") from None
        if not admission.admitted:
            retry_after = max(1, int(charge.window_end - now + 0.999))
            raise GatewayError(429, "budget_exceeded", (
                f"This session (header {self.caps.session.header}) has no room left of its "
                f"${self.caps.session.limit.limit:g} for this call's reservation (${basis:.6f}); "
                f"its window ends in {retry_after} s."), headers={"retry-after": str(retry_after)})
        call.own(SessionHold).held = (rid, charge)

    async def _window_start(self, session: str, now: float) -> float:
        """When the session's window began: its first call, as the store recorded it (this
        worker remembers it until the window is over)."""
        name = session_name(session)
        start = self.starts.get(name)
        ttl = self.caps.session.ttl_s
        if start is None or now >= start + ttl:
            start = float(await maybe_await(self.store.first_record(SESSION_START_KIND, name, repr(now), now + ttl)))
            if len(self.starts) >= _KNOWN_STARTS:
                self.starts.clear()
            self.starts[name] = start
        return start


class SessionSettle(Stage):
    """The settling half of SpendCaps: after ResponseUsage has the final usage."""

    name = "session_settle"
    reads = frozenset({"backend", "model", "request_id", "usage"})
    writes = frozenset()

    def __init__(self, store) -> None:
        self.store = store

    async def done(self, call: Call) -> None:
        hold = call.owned(SessionHold)
        held = hold.held if hold is not None else None
        if held is None:
            return
        rid, charge = held
        try:
            await maybe_await(self.store.settle(rid, [charge], [charged_cost(call)]))
        except StoreUnavailable as error:
            metrics.child(metrics.store_errors, "settle").inc()
            log.error("budget store unavailable on a session's settle (request %s): %s", call.request_id, error)
