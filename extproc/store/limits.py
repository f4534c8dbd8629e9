"""Budgets and rate limits: config, windows, and the charges a request makes.

Windows are fixed and aligned to UTC: a minute, hour or day starts on the
boundary; a month is the calendar month. Everything resets when its window ends.

Every limit becomes a counter in the store (one per limit, scope value and
window). A request's charges are checked and applied atomically, all or none:
  budget (tokens or usd) reserve an estimate now; settle the real usage later
  requests per minute    count 1 now
  tokens per minute      like a token budget with a minute window
  concurrent requests    reserve 1 now; release at the end
Reservations carry a lease: one held by a crashed worker expires on its own.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

from ..yamltree import Node

SCOPES = ("key", "user", "team", "global")
WINDOWS = ("minute", "hour", "day", "month")


@dataclass(frozen=True, slots=True)
class Limit:
    name: str
    scope: str                 # key | user | team | global
    match: str | None          # only this key/user/team; None: each one separately
    kind: str                  # tokens | usd | requests | concurrent
    limit: float
    window: str | None         # None for concurrent
    claim: str | None = None   # scope "claim:<name>": one counter per value of a token's claim

    def scope_value(self, key) -> str | None:
        """The counter this request's caller falls in, or None if the limit does not apply."""
        if self.claim is None:
            scope = self.scope
            value = key.team if scope == "team" else key.id if scope == "key" else \
                key.user if scope == "user" else "*"
        else:
            value = (key.claims or {}).get(self.claim)
            if value is None:             # a key, or a token without the claim
                return None
        if self.match is not None and value != self.match:
            return None
        return value


@dataclass(frozen=True, slots=True)
class StoreSettings:
    kind: str                  # sqlite | redis
    path: str | None
    url: str | None
    fail_mode: str             # closed | open
    lease_seconds: float
    default_output_tokens: int
    allotments: bool = True    # workers admit calls against shares taken in advance


@dataclass(slots=True)
class Charge:
    """One counter touched by one request. (Not frozen: a frozen dataclass's `__init__`
    sets each field through `object.__setattr__`, 0.77 against 0.21 µs, and a call with a
    budget makes several; nothing changes a charge once made.)"""
    limit: Limit
    counter: str               # store key: limit name, scope value, window start
    reserve: float             # held until settled (estimate; 1 for concurrency)
    count_now: float           # added to spent at once (1 for requests per minute)
    window_end: float          # epoch seconds; when the counter resets


_current: dict[str, tuple[float, float]] = {}     # window -> the bounds last computed


def window_bounds(window: str, now: float) -> tuple[float, float]:
    """The window holding `now`: the last one computed while it still does (every call
    with a budget asks, and datetime arithmetic is ~10 µs)."""
    bounds = _current.get(window)
    if bounds is None or not bounds[0] <= now < bounds[1]:
        bounds = _current[window] = _window_bounds(window, now)
    return bounds


def _window_bounds(window: str, now: float) -> tuple[float, float]:
    t = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    if window == "minute":
        start = t.replace(second=0, microsecond=0)
        end = start + dt.timedelta(minutes=1)
    elif window == "hour":
        start = t.replace(minute=0, second=0, microsecond=0)
        end = start + dt.timedelta(hours=1)
    elif window == "day":
        start = t.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + dt.timedelta(days=1)
    else:
        start = t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        days = calendar.monthrange(start.year, start.month)[1]
        end = start + dt.timedelta(days=days)
    return start.timestamp(), end.timestamp()


def plan_charges(limits: tuple[Limit, ...], key, tokens: int, usd: float, now: float,
                 lease_seconds: float) -> list[Charge]:
    charges = []
    for limit in limits:
        value = limit.scope_value(key)
        if value is None:
            continue
        if limit.kind == "concurrent":
            charges.append(Charge(limit, f"{limit.name}|{value}", 1, 0, now + lease_seconds))
            continue
        start, end = window_bounds(limit.window, now)
        counter = f"{limit.name}|{value}|{int(start)}"
        if limit.kind == "requests":
            charges.append(Charge(limit, counter, 0, 1, end))
        else:
            charges.append(Charge(limit, counter, tokens if limit.kind == "tokens" else usd, 0, end))
    return charges


def settled_amount(charge: Charge, tokens: int, usd: float) -> float:
    if charge.limit.kind == "tokens":
        return tokens
    if charge.limit.kind == "usd":
        return usd
    return 0.0


# --- config ----------------------------------------------------------------------

def parse_limits(budgets: Node, rate_limits: Node) -> tuple[Limit, ...]:
    limits: list[Limit] = []
    names: set[str] = set()
    for item in budgets.elements():
        item.only_keys("name", "scope", "match", "unit", "limit", "window")
        scope, claim = _scope(item.get("scope"), SCOPES)
        limits.append(Limit(
            name=item.get("name").str(), scope=scope, claim=claim,
            match=item.get("match").str(None), kind=item.get("unit").choice(("tokens", "usd"), "tokens"),
            limit=item.get("limit").number(minimum=0), window=item.get("window").choice(WINDOWS, "month")))
    for item in rate_limits.elements():
        item.only_keys("name", "scope", "match", "requests_per_minute", "tokens_per_minute", "concurrent")
        name = item.get("name").str()
        scope, claim = _scope(item.get("scope"), ("key", "team"))
        match = item.get("match").str(None)
        found = False
        for field, kind, window in (("requests_per_minute", "requests", "minute"),
                                    ("tokens_per_minute", "tokens", "minute"),
                                    ("concurrent", "concurrent", None)):
            if not item.get(field).missing:
                found = True
                limits.append(Limit(name=f"{name}.{kind}", scope=scope, claim=claim, match=match, kind=kind,
                                    limit=item.get(field).number(integer=True, minimum=1),
                                    window=window))
        if not found:
            item.fail("needs requests_per_minute, tokens_per_minute or concurrent")
    for limit in limits:
        if limit.name in names:
            budgets.fail(f"limit name {limit.name!r} is used twice")
        names.add(limit.name)
    return tuple(limits)


def _scope(node: Node, scopes: tuple[str, ...]) -> tuple[str, str | None]:
    """A limit's scope, and the claim it counts by when it is `claim:<name>` (callers
    identified by a token: a counter per value, e.g. claim:plan with match: free)."""
    if isinstance(node.value, str) and node.value.startswith("claim:"):
        claim = node.value[len("claim:"):]
        if not claim:
            node.fail("claim:<name> needs a claim name")
        return node.value, claim or None
    return node.choice(scopes, "key"), None


def parse_store(node: Node, state_dir: str) -> StoreSettings:
    node.only_keys("kind", "path", "url", "fail_mode", "lease_seconds", "default_output_tokens",
                   "allotments")
    kind = node.get("kind").choice(("sqlite", "redis"), "sqlite")
    url = node.get("url").str(None)
    if kind == "redis" and not url:
        node.get("url").fail("is required for the redis store (redis://host:port/db)")
    return StoreSettings(
        kind=kind,
        path=node.get("path").str(f"{state_dir}/budgets.sqlite3"),
        url=url,
        fail_mode=node.get("fail_mode").choice(("closed", "open"), "closed"),
        lease_seconds=node.get("lease_seconds").number(900, minimum=1),
        default_output_tokens=node.get("default_output_tokens").number(512, integer=True, minimum=1),
        allotments=node.get("allotments").bool(True),
    )
