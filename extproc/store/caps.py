"""Spend caps: what one call may cost, and what one agent run (a session) may spend.

    caps:
      per_call:                          # the tightest that applies wins
      - {scope: team, match: research, max_cost_usd_per_call: 0.50}
      - {scope: key, match: bob, max_cost_usd_per_call: 0.05}
      session:
        header: x-gateway-session        # Claude Code: x-claude-code-session-id
        ttl_s: 3600
        max_cost_usd: 5.00

A call is refused (400) when its reservation (prompt counted offline plus the output cap,
at the model's dearest backend: what a budget reserves) passes its per-call cap. A
session is a budget whose scope value is the session header's value: its counter is the
budgets' (same store, reserve and settle). Its window starts at the session's first
call and lasts `ttl_s` seconds: the start is a store record every worker agrees on
(`first_record`, atomic), and the counter's key names it, so a runaway agent loop is
stopped (429) until `ttl_s` after it began; a call after that starts a fresh window. A
call without the header has no session cap.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..yamltree import Node
from .limits import Charge, Limit

CAP_SCOPES = ("key", "user", "team", "global")
DEFAULT_SESSION_HEADER = "x-gateway-session"
SESSION_LIMIT_NAME = "session"
SESSION_START_KIND = "session_start"      # store record: a session's window start, epoch seconds


@dataclass(frozen=True, slots=True)
class PerCallCap:
    scope: str
    match: str | None
    max_usd: float

    def applies(self, key) -> bool:
        value = {"key": key.id, "user": key.user, "team": key.team, "global": "*"}[self.scope]
        return self.match is None or value == self.match


@dataclass(frozen=True, slots=True)
class SessionCap:
    header: str
    ttl_s: int
    limit: Limit


@dataclass(frozen=True, slots=True)
class CapSettings:
    per_call: tuple[PerCallCap, ...] = ()
    session: SessionCap | None = None

    def per_call_cap(self, key) -> float | None:
        """The tightest per-call cap that applies to this caller's key, else None."""
        caps = [cap.max_usd for cap in self.per_call if key is not None and cap.applies(key)]
        return min(caps) if caps else None


def parse_caps(node: Node) -> CapSettings:
    node.only_keys("per_call", "session")
    per_call = []
    for item in node.get("per_call").elements():
        item.only_keys("scope", "match", "max_cost_usd_per_call")
        per_call.append(PerCallCap(scope=item.get("scope").choice(CAP_SCOPES, "key"),
                                   match=item.get("match").str(None),
                                   max_usd=item.get("max_cost_usd_per_call").number(minimum=0)))
    session = None
    found = node.get("session")
    if not found.missing:
        found.only_keys("header", "ttl_s", "max_cost_usd")
        limit = found.get("max_cost_usd").number(minimum=0)
        session = SessionCap(header=found.get("header").str(DEFAULT_SESSION_HEADER).lower(),
                             ttl_s=found.get("ttl_s").number(3600, integer=True, minimum=1),
                             limit=Limit(name=SESSION_LIMIT_NAME, scope="session", match=None, kind="usd",
                                         limit=limit, window=None))
    return CapSettings(per_call=tuple(per_call), session=session)


def session_name(session: str) -> str:
    """The session header's value as store keys hold it: bounded, no separator."""
    return session[:128].replace("|", "_")


def session_charge(cap: SessionCap, session: str, usd: float, start: float) -> Charge:
    """The session's charge: its counter in the window that began at `start`."""
    return Charge(cap.limit, f"{SESSION_LIMIT_NAME}|{session_name(session)}|{start!r}", usd, 0, start + cap.ttl_s)
