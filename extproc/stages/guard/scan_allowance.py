"""The scan time one key may buy: `guardrails.max_scan_ms_per_key_per_minute`.

The request guardrails' scan is the costly part of a request, and it runs whether the
request is then forwarded or refused: a key flooding prompts built to trip a rule (each
refused 400 after its scan) would otherwise buy the worker's event loop for nothing.
Each worker keeps, per key and per minute, the time the request guardrails took for the
key's calls; once the allowance is spent the key's next calls are refused, before any
scan, with 429 `rate_limited` in the caller's dialect until the minute ends.

Two stages around GuardRequest: `ScanAllowance` (before it) refuses a key whose
allowance is spent and starts the clock; `ScanCharge` (after it) charges the time the
scan took. A call the scan refused never reaches ScanCharge: ScanAllowance's done hook
charges it, up to the call's end (Runner.end, at once after the refusal).

Per worker and in memory: a dict lookup and a clock read per call. With N workers a key
may spend up to N allowances a minute in one replica, each bounded.
"""

from __future__ import annotations

import time

from ...pipeline.call import Call
from ...pipeline.errors import GatewayError
from ...pipeline.stage import Stage

_MAX_KEYS = 10_000          # keys tracked per worker; past it the lapsed minutes go first


class ScanClock:
    """When the call's scan began (perf_counter), until it is charged."""
    __slots__ = ("started",)

    def __init__(self) -> None:
        self.started = 0.0


class ScanLedger:
    """Per key: [the minute it counts (epoch minute), the scan seconds spent in it]."""
    __slots__ = ("spent",)

    def __init__(self) -> None:
        self.spent: dict[str, list] = {}

    def charge(self, key_id: str, seconds: float, minute: int) -> None:
        entry = self.spent.get(key_id)
        if entry is None or entry[0] != minute:
            if entry is None and len(self.spent) >= _MAX_KEYS:
                self.spent = {k: v for k, v in self.spent.items() if v[0] == minute}
            self.spent[key_id] = [minute, seconds]
        else:
            entry[1] += seconds


class ScanAllowance(Stage):
    name = "scan_allowance"
    reads = frozenset({"body", "ended_at", "key"})
    writes = frozenset()

    def __init__(self, ledger: ScanLedger) -> None:
        self.ledger = ledger

    def request_body(self, call: Call) -> None:
        allowance_ms = call.config.guardrails.max_scan_ms_per_key_per_minute
        key = call.key
        if not allowance_ms or key is None or call.body is None:
            return
        now = time.time()
        entry = self.ledger.spent.get(key.id)
        if entry is not None and entry[0] == int(now // 60) and entry[1] * 1000 >= allowance_ms:
            retry_after = max(1, int(60 - now % 60 + 0.999))
            raise GatewayError(429, "rate_limited",
                               f"This key's guardrail scan time for this minute ({allowance_ms} ms, "
                               f"guardrails.max_scan_ms_per_key_per_minute) is spent; retry after "
                               f"{retry_after} s.", headers={"retry-after": str(retry_after)})
        call.own(ScanClock).started = time.perf_counter()

    def done(self, call: Call) -> None:
        clock = call.owned(ScanClock)
        if clock is not None and clock.started and call.ended_at:
            # The scan refused the call (ScanCharge never ran): charged up to its end.
            self.ledger.charge(call.key.id, max(0.0, call.ended_at - clock.started), int(time.time() // 60))
            clock.started = 0.0


class ScanCharge(Stage):
    name = "scan_charge"
    reads = frozenset({"key"})
    writes = frozenset()

    def __init__(self, ledger: ScanLedger) -> None:
        self.ledger = ledger

    def request_body(self, call: Call) -> None:
        clock = call.owned(ScanClock)
        if clock is not None and clock.started:
            self.ledger.charge(call.key.id, time.perf_counter() - clock.started, int(time.time() // 60))
            clock.started = 0.0
