"""The response cache's config: which calls it answers, for how long, shared how far.

    cache:
      max_bytes: 268435456          # the store's size cap; the entries nearest their end go first
      stampede_wait_s: 10           # identical calls in flight wait this long for the first one's answer
      path: <state-dir>/response-cache.sqlite3    # the embedded store (a Redis budget store: that Redis)
      rules:                        # the first rule that matches a call decides; none: not cached
      - models: [gpt-4o-mini]       # names or patterns of the models asked for
        teams: [research]           # the callers' teams (absent: every team)
        ttl_s: 3600
        scope: team                 # team | key | user | global: who shares an entry
        max_entry_bytes: 262144     # larger answers are not kept
        tools: false                # cache calls that declare tools too
        streams: false              # keep streamed answers too (such streams are read, not passed through)
        max_temperature: 0          # cache calls whose temperature is at most this (absent: 0)
        count_hits_as_requests: true   # a hit counts in the metered requests (extproc usage)
        semantic:                   # also answer a question asked another way (opt-in; docs/caching.md)
          embedding_model: text-embedding-3-small   # a model of this config, called through the gateway
          min_similarity: 0.95      # cosine similarity of the last user turns' embeddings
          dimensions: 512           # asked of the embedding model (absent: its own number)
          timeout_s: 1              # a lookup slower than this: the call goes on as a miss (at most 1.5)
      gateway_url: http://127.0.0.1:10000   # where workers call the gateway for embeddings
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from ..yamltree import Node

CACHE_SCOPES = ("team", "key", "user", "global")
# The semantic lookup (the embedding call, then the search) runs within one ext_proc
# message, whose deadline is 2 s (config/envoy_gen.py): the rest of it keeps 0.5 s.
MAX_SEMANTIC_TIMEOUT_S = 1.5


@dataclass(frozen=True, slots=True)
class SemanticRule:
    """Answers for questions asked another way: the embedding of the last user turn,
    matched among the answers kept for the same scope, model and conversation before it."""
    embedding_model: str
    min_similarity: float = 0.95
    dimensions: int | None = None       # None: the embedding model's own
    timeout_s: float = 1.0


@dataclass(frozen=True, slots=True)
class CacheRule:
    models: tuple[str, ...]
    teams: frozenset[str] | None
    ttl_s: int = 3600
    scope: str = "team"
    max_entry_bytes: int = 262_144
    tools: bool = False
    max_temperature: float = 0.0
    count_hits_as_requests: bool = True
    streams: bool = False
    semantic: SemanticRule | None = None

    def matches(self, model: str, team: str) -> bool:
        if self.teams is not None and team not in self.teams:
            return False
        return any(model == name or fnmatch.fnmatchcase(model, name) for name in self.models)

    def scope_value(self, key) -> str:
        """Who shares the entries this call makes and reads: a caller never reads one made
        in a scope it is not in. A key without a team (or user) shares with itself only."""
        if self.scope == "global":
            return "global"
        if self.scope == "team" and key.team:
            return f"team:{key.team}"
        if self.scope == "user" and key.user:
            return f"user:{key.user}"
        return f"key:{key.id}"


@dataclass(frozen=True, slots=True)
class CacheSettings:
    rules: tuple[CacheRule, ...] = ()
    max_bytes: int = 256 * 1024 * 1024
    stampede_wait_s: float = 10.0
    path: str = ""
    gateway_url: str = "http://127.0.0.1:10000"

    @property
    def semantic(self) -> bool:
        return any(rule.semantic is not None for rule in self.rules)

    @property
    def enabled(self) -> bool:
        return bool(self.rules)

    def keeps_streams(self, model: str, team: str) -> bool:
        """Whether a stream of this model and team is kept: the gateway must read it."""
        rule = self.rule_for(model, team) if self.rules else None
        return rule is not None and rule.streams

    def rule_for(self, model: str, team: str) -> CacheRule | None:
        for rule in self.rules:
            if rule.matches(model, team):
                return rule
        return None


def parse_cache(node: Node, state_dir: str) -> CacheSettings:
    node.only_keys("rules", "max_bytes", "stampede_wait_s", "path", "gateway_url")
    rules = []
    for item in node.get("rules").elements():
        item.only_keys("models", "teams", "ttl_s", "scope", "max_entry_bytes", "tools", "max_temperature",
                       "count_hits_as_requests", "streams", "semantic")
        models = item.get("models")
        names = tuple(m.str() for m in models.elements()) if isinstance(models.value, list) else \
            ((models.str(),) if not models.missing else ())
        if not names:
            models.fail("must name at least one model (or a pattern: \"*\")")
        teams = item.get("teams")
        rules.append(CacheRule(
            models=names,
            teams=None if teams.missing else frozenset(t.str() for t in teams.elements()),
            ttl_s=item.get("ttl_s").number(3600, integer=True, minimum=1),
            scope=item.get("scope").choice(CACHE_SCOPES, "team"),
            max_entry_bytes=item.get("max_entry_bytes").number(262_144, integer=True, minimum=1),
            tools=item.get("tools").bool(False),
            max_temperature=item.get("max_temperature").number(0.0, minimum=0),
            count_hits_as_requests=item.get("count_hits_as_requests").bool(True),
            streams=item.get("streams").bool(False),
            semantic=_semantic(item.get("semantic"))))
    return CacheSettings(
        rules=tuple(rules),
        max_bytes=node.get("max_bytes").number(256 * 1024 * 1024, integer=True, minimum=1024),
        stampede_wait_s=node.get("stampede_wait_s").number(10.0, minimum=0),
        path=node.get("path").str(f"{state_dir}/response-cache.sqlite3"),
        gateway_url=_gateway_url(node.get("gateway_url")))


def _semantic(node: Node) -> SemanticRule | None:
    if node.missing:
        return None
    node.only_keys("embedding_model", "min_similarity", "dimensions", "timeout_s")
    model = node.get("embedding_model")
    if model.missing:
        model.fail("must name the embedding model the gateway calls (one of this config's models)")
    dimensions = node.get("dimensions")
    similarity = node.get("min_similarity")
    min_similarity = similarity.number(0.95, minimum=0)
    if min_similarity > 1:
        similarity.fail("must be at most 1 (a cosine similarity)")
    timeout = node.get("timeout_s")
    timeout_s = timeout.number(1.0, minimum=0.01)
    if timeout_s > MAX_SEMANTIC_TIMEOUT_S:
        timeout.fail(f"must be at most {MAX_SEMANTIC_TIMEOUT_S}: the lookup runs within Envoy's 2 s deadline "
                     "for one ext_proc message, and a message past it is a 504")
    return SemanticRule(
        embedding_model=model.str(),
        min_similarity=min_similarity,
        dimensions=dimensions.number(None, integer=True, minimum=1),
        timeout_s=timeout_s)


def _gateway_url(node: Node) -> str:
    url = node.str("http://127.0.0.1:10000").rstrip("/")
    if not url.startswith(("http://", "https://")):
        node.fail("must be an http:// or https:// URL (the gateway's listener, as its workers reach it)")
    return url
