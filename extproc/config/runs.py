"""The `runs` section: limits per agent run and loop stopping (stages/runs/limits.py applies them).

    runs:
      teams: [research, support]     # optional: the teams whose model calls are agent runs
                                     # (default: every team); other teams' calls belong to no
                                     # run: no limits, loops, model-tool taint or trace
      ttl_hours: 24                  # a run's counters live this long after its first call
      infer: true                    # calls of an agent that names no run: a run inferred from
                                     # key, system prompt, first user turn and a growing history
      limits:                        # every entry that applies to a run counts it
      - name: alice-run
        scope: key                   # key | user | team | global, as budgets
        match: alice                 # optional: only this key (user, team)
        client: codex                # optional: only runs of this client (extproc/runs/identity.py)
        max_cost_usd: 2.00           # what the run's calls may cost, together
        max_tokens: 2000000          # their tokens (input and output)
        max_calls: 200               # model calls
        max_minutes: 60              # from the run's first call
        max_runs_per_hour: 100       # runs the scope's caller may start in an hour (a caller that
                                     # names a new run on every call is bounded here)
      loops:
        max_repeats: 8               # a tool call (same tool, same arguments) made more often
                                     # than this since the user's last turn: 429 agent_loop (0: off)
        clients: {codex: 5}          # per client
        max_same_answers: 5          # the model gave the same text answer more than 5 times in a
                                     # row, the agent asking again each time: 429 agent_loop (0: off)
        rate: {max_calls: 300, seconds: 60}   # more model calls than this in one window of
                                     # `seconds` in one run: 429 agent_loop (a store counter)

Each limit is a counter in the budget store (the run's id names it), reserved and
settled as budgets are: exact across workers and replicas."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from ..runs.identity import CLIENTS
from ..store.limits import SCOPES, Limit
from ..yamltree import Node

RUN_SCOPE = "run"
_KINDS = (("max_cost_usd", "usd"), ("max_tokens", "tokens"), ("max_calls", "requests"))
CLIENT_NAMES = tuple(dict.fromkeys(client.name for client in CLIENTS))


@dataclass(frozen=True, slots=True)
class RunLimit:
    name: str
    scope: str                   # which callers' runs it counts: key | user | team | global
    match: str | None
    client: str | None           # only runs of this client
    counters: tuple[Limit, ...]  # usd, tokens, requests: one counter each per run
    max_seconds: float | None    # wall clock from the run's first call
    starts: Limit | None = None  # runs a caller (the scope's key, user, team) may start per hour

    def scope_value(self, key) -> str:
        return {"key": key.id, "user": key.user, "team": key.team, "global": "*"}[self.scope]

    def applies(self, key, client: str) -> bool:
        if self.client is not None and client != self.client:
            return False
        if self.match is None:
            return True
        return self.scope_value(key) == self.match


@dataclass(frozen=True, slots=True)
class LoopSettings:
    max_repeats: int = 0         # 0: loops not stopped
    clients: Mapping[str, int] = field(default_factory=dict)
    max_same_answers: int = 0    # the same text answer more often than this in a row: a loop (0: off)
    rate: Limit | None = None    # a run's model calls per `rate_seconds` past which it is a loop
    rate_seconds: float = 60.0

    def repeats_for(self, client: str) -> int:
        return self.clients.get(client, self.max_repeats)

    @property
    def on(self) -> bool:
        return self.max_repeats > 0 or any(self.clients.values()) or self.max_same_answers > 0 \
            or self.rate is not None


@dataclass(frozen=True, slots=True)
class RunSettings:
    ttl_seconds: float = 86_400.0
    infer: bool = True           # a run inferred for an agent's calls that name none (stages/runs/unnamed.py)
    limits: tuple[RunLimit, ...] = ()
    loops: LoopSettings = LoopSettings()
    teams: frozenset[str] | None = None     # whose model calls are runs (None: every team's)

    @property
    def enforced(self) -> bool:
        return bool(self.limits) or self.loops.on

    def governs(self, key) -> bool:
        """Whether `key`'s model calls are agent runs (`teams`); MCP calls always may be."""
        return self.teams is None or (key is not None and key.team in self.teams)

    def limits_for(self, key, client: str) -> list[RunLimit]:
        return [limit for limit in self.limits if limit.applies(key, client)]


def parse_runs(node: Node) -> RunSettings:
    node.only_keys("teams", "ttl_hours", "infer", "limits", "loops")
    teams = None
    if not node.get("teams").missing:
        teams = frozenset(item.str() for item in node.get("teams").elements())
        if not teams or "" in teams:
            node.get("teams").fail("must list the teams whose calls are agent runs (leave it out: every team)")
    limits = []
    names: set[str] = set()
    for item in node.get("limits").elements():
        item.only_keys("name", "scope", "match", "client", "max_cost_usd", "max_tokens", "max_calls", "max_minutes",
                       "max_runs_per_hour")
        name = item.get("name").str()
        if name in names:
            item.get("name").fail(f"run limit name {name!r} is used twice")
        names.add(name)
        client = item.get("client").str(None)
        if client is not None and client not in CLIENT_NAMES:
            item.get("client").fail(f"must be one of {', '.join(CLIENT_NAMES)}")
        counters = tuple(Limit(name=f"run.{name}.{kind}", scope=RUN_SCOPE, match=None, kind=kind,
                               limit=item.get(field_name).number(minimum=0), window=None)
                         for field_name, kind in _KINDS if not item.get(field_name).missing)
        minutes, starts = item.get("max_minutes"), item.get("max_runs_per_hour")
        if not counters and minutes.missing and starts.missing:
            item.fail("needs max_cost_usd, max_tokens, max_calls, max_minutes or max_runs_per_hour")
        limits.append(RunLimit(name=name, scope=item.get("scope").choice(SCOPES, "key"),
                               match=item.get("match").str(None), client=client, counters=counters,
                               max_seconds=None if minutes.missing else minutes.number(minimum=0) * 60.0,
                               starts=None if starts.missing else Limit(
                                   name=f"run.{name}.starts", scope=RUN_SCOPE, match=None, kind="requests",
                                   limit=starts.number(integer=True, minimum=0), window="hour")))
    loops = node.get("loops")
    loops.only_keys("max_repeats", "max_same_answers", "rate", "clients")
    rate = loops.get("rate")
    rate.only_keys("max_calls", "seconds")
    rate_limit = None if rate.missing else Limit(
        name="run.loop.rate", scope=RUN_SCOPE, match=None, kind="requests",
        limit=rate.get("max_calls").number(integer=True, minimum=1), window=None)
    clients = {}
    for name, value in loops.get("clients").items():
        if name not in CLIENT_NAMES:
            value.fail(f"is not a client the gateway knows ({', '.join(CLIENT_NAMES)})")
        clients[name] = value.number(integer=True, minimum=0)
    return RunSettings(
        ttl_seconds=node.get("ttl_hours").number(24, minimum=0.01) * 3600.0,
        infer=node.get("infer").bool(True),
        limits=tuple(limits),
        teams=teams,
        loops=LoopSettings(max_repeats=loops.get("max_repeats").number(0, integer=True, minimum=0),
                           clients=clients,
                           max_same_answers=loops.get("max_same_answers").number(0, integer=True, minimum=0),
                           rate=rate_limit, rate_seconds=rate.get("seconds").number(60, minimum=1)))
