"""The filter config: parsed once into typed, immutable objects.

A worker holds one `GatewayConfig` at a time; a request keeps the snapshot it
started with, so a reload never changes a request half-way.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import os
from dataclasses import dataclass
from typing import Mapping

from ..guardrails.config import GuardrailSettings, parse_guardrails
from ..observability.settings import ObservabilitySettings, parse_observability
from ..store.limits import Limit, StoreSettings, parse_limits, parse_store
from .console import ConsoleSettings, parse_console
from .identity import CATCH_ALL_TEAM
from .identity import IdentitySettings, parse_identity
from ..store.cache_settings import CacheSettings, parse_cache
from ..store.caps import CapSettings, parse_caps
from .runs import RunSettings, parse_runs
from ..store.meters import CACHE_SET, MeteringSettings, meter_set, parse_metering
from .mcp import McpSettings, parse_mcp
from .models import Model, parse_model, qualified_model
from .providers import Provider, parse_provider
from ..yamltree import Node, Problems, load_yaml
from .local_ports import port_offset, shift_address, shift_config
from .state_dir import default_state_dir  # noqa: F401  (read from here by the store and the CLI)


@dataclass(frozen=True, slots=True)
class VirtualKey:
    id: str
    sha256: bytes
    user: str
    team: str
    models: frozenset[str] | None    # None: every model; entries may be patterns ("anthropic/*")
    # Budgets of this key alone (a key made at run time: store/keys.py), besides `budgets:`.
    limits: tuple = ()
    # Claims of a caller identified by a token, that limits may be scoped by (`claim:<name>`).
    claims: Mapping[str, str] | None = None

    def may_use(self, model: str) -> bool:
        if self.models is None or model in self.models:
            return True
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models if _is_pattern(pattern))


def _is_pattern(name: str) -> bool:
    return any(ch in name for ch in "*?[")


@dataclass(frozen=True, slots=True)
class ServerSettings:
    workers: int                 # 0: one per core
    admin_address: str
    socket_dir: str
    health_port: int | None      # gRPC health service on TCP for kubelet (worker 0)
    # Replace a worker, gracefully, once its resident memory passes this (0: never).
    # A bound, not the everyday cure: on grpc.aio, grpc-python leaks ~120 bytes per stream
    # Envoy resets while a read is pending (runtime/processor.py waits without one).
    worker_max_rss_mb: int
    # Envoy reconnects to the workers this often (the extproc cluster's
    # max_connection_duration): how a replaced worker's traffic moves to its successor.
    worker_connection_age_s: int
    # The workers' CPU scheduling policy: "normal" (SCHED_OTHER) or "batch" (SCHED_BATCH:
    # a worker thread that wakes does not preempt the thread running; less worker CPU per
    # request, no lower latency: bench/README.md, "Tried, measured, and not kept").
    worker_scheduling: str = "normal"
    # How the workers speak gRPC to Envoy: "h2" (transport/http2.py, on the event loop) or
    # "grpc" (grpc.aio, whose threads cost ~6x the CPU per call: docs/decisions/workers-http2.md).
    transport: str = "h2"


MAX_QUALIFIED_MODELS = 10_000


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    path: str
    version: str
    server: ServerSettings
    providers: Mapping[str, Provider]
    models: Mapping[str, Model]
    keys_by_hash: Mapping[bytes, VirtualKey]
    limits: tuple[Limit, ...] = ()
    store: StoreSettings | None = None
    guardrails: GuardrailSettings = GuardrailSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    identity: IdentitySettings = IdentitySettings()
    metering: MeteringSettings = MeteringSettings()
    caps: CapSettings = CapSettings()
    runs: RunSettings = RunSettings()          # agent runs' limits and loop stopping (config/runs.py)
    cache: CacheSettings = CacheSettings()
    mock_provider: Mapping | None = None
    mcp: McpSettings = McpSettings()
    console: ConsoleSettings | None = None
    warnings: tuple[str, ...] = ()   # valid but probably not meant (`extproc check` prints them)
    _qualified: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def model(self, name: str) -> Model | None:
        """The model a caller names: one of `models:`, else "<provider>/<model>" of a
        provider that lets callers name its models (made once per config, then kept)."""
        found = self.models.get(name)
        if found is not None or "/" not in name:
            return found
        if name not in self._qualified:
            if len(self._qualified) >= MAX_QUALIFIED_MODELS:       # caller-chosen names: bounded
                return qualified_model(name, self.providers)
            self._qualified[name] = qualified_model(name, self.providers)
        return self._qualified[name]


def load_config(path: str, *, strict_credentials: bool = True) -> GatewayConfig:
    """Parse and validate; raises ConfigError listing every problem found.

    strict_credentials=False lets `extproc check` validate a production config
    on a machine that does not hold its secrets (missing ones become warnings).
    """
    problems = Problems(path)
    root = load_yaml(path, problems)
    shift_config(root.value, port_offset())          # `extproc up --port-offset N`
    root.only_keys("version", "server", "mock_provider", "providers", "models", "keys",
                   "budgets", "rate_limits", "store", "guardrails", "observability", "identity",
                   "metering", "caps", "mcp", "cache", "console", "runs")
    with open(path, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()[:12]
    label = root.get("version").str("")
    providers = {name: parse_provider(name, node, strict_credentials)
                 for name, node in root.get("providers").items()}
    models = {name: parse_model(name, node, providers) for name, node in root.get("models").items()}
    if not models and not any(p.model_patterns for p in providers.values()):
        root.get("models").fail("must name at least one model (or a provider must let callers name its "
                                 "models: `models: \"*\"`)")
    keys = _keys(root.get("keys"), models, providers)
    guardrails = parse_guardrails(root.get("guardrails"))
    cache = parse_cache(root.get("cache"), default_state_dir())
    metering = parse_metering(root.get("metering"))
    if cache.enabled and root.get("metering").get("dimensions").missing:
        # Without a `metering` section, what the cache saved is metered by team and model too.
        metering = dataclasses.replace(metering, sets=metering.sets + (meter_set(CACHE_SET),))
    identity = parse_identity(root.get("identity"), strict_credentials,
                              lambda node: _allowed_models(node, models, providers),
                              os.path.dirname(os.path.abspath(path)))
    config = GatewayConfig(
        path=path,
        version=f"{label}@{digest}" if label else digest,
        server=_server(root.get("server")),
        providers=providers,
        models=models,
        keys_by_hash=keys,
        limits=parse_limits(root.get("budgets"), root.get("rate_limits")),
        store=parse_store(root.get("store"), default_state_dir()),
        guardrails=guardrails,
        observability=parse_observability(root.get("observability")),
        identity=identity,
        metering=metering,
        caps=parse_caps(root.get("caps")),
        runs=parse_runs(root.get("runs")),
        cache=cache,
        mock_provider=root.get("mock_provider").value if not root.get("mock_provider").missing else None,
        mcp=parse_mcp(root.get("mcp"), guardrails, strict_credentials),
        console=parse_console(root.get("console"), strict_credentials, identity),
    )
    _warn_of_an_open_catch_all(config, root.get("identity"))
    _warn_of_unknown_cached_models(config, root.get("cache"))
    _warn_of_limits_matching_nobody(config, problems)
    problems.raise_if_any()
    config = dataclasses.replace(config, warnings=tuple(problems.warnings))
    return config


def _warn_of_limits_matching_nobody(config: GatewayConfig, problems: Problems) -> None:
    """A budget or rate limit for a key, user or team this config names nowhere is valid (a
    key made at run time, or a token's team, may be it), and more often a typo: said, not
    refused."""
    keys = config.keys_by_hash.values()
    known = {"key": {key.id for key in keys}, "user": {key.user for key in keys},
             "team": {key.team for key in keys} | set(config.identity.teams)}
    for limit in config.limits:
        if limit.claim is None and limit.match is not None and limit.scope in known \
                and limit.match not in known[limit.scope]:
            problems.warn(f"budgets/rate_limits {limit.name.rsplit('.', 1)[0]}",
                          f"matches {limit.scope} {limit.match!r}, which no key or team of this config has "
                          "(fine for a key made at run time or a token's team; otherwise a typo)")
    for team in sorted((config.runs.teams or frozenset()) - known["team"]):
        problems.warn("runs.teams", f"names team {team!r}, which no key or team of this config has "
                                    "(fine for a key made at run time or a token's team; otherwise a typo)")


def _warn_of_an_open_catch_all(config: GatewayConfig, identity: Node) -> None:
    """`identity.teams."*"` lets every team without an entry in: with every model and no
    budget that counts each team, the first token of a team nobody planned for may spend
    without limit."""
    catch_all = config.identity.teams.get(CATCH_ALL_TEAM)
    if catch_all is None or catch_all.models is not None:
        return
    if any(limit.scope == "team" and limit.match is None for limit in config.limits):
        return
    identity.get("teams").get(CATCH_ALL_TEAM).warn(
        "lets every team without an entry use every model with no team budget; list its models, "
        "or add a budget with `scope: team` and no `match` (one per team)")


def _warn_of_unknown_cached_models(config: GatewayConfig, cache: Node) -> None:
    """A cache rule naming a model nobody can call caches nothing: probably a typo."""
    for rule, node in zip(config.cache.rules, cache.get("rules").elements()):
        for name in rule.models:
            if not _is_pattern(name) and config.model(name) is None:
                node.get("models").warn(f"names {name!r}, which is not a model of this config: "
                                        f"nothing is cached for it")
        embedding = rule.semantic.embedding_model if rule.semantic else None
        if embedding is not None and config.model(embedding) is None:
            node.get("semantic").get("embedding_model").fail(
                f"names {embedding!r}, which is not a model of this config (the gateway calls it)")
        elif embedding is not None:
            # The embedding is the caller's own call: a key not allowed its model never matches.
            barred = sorted(key.id for key in config.keys_by_hash.values()
                            if (rule.teams is None or key.team in rule.teams) and not key.may_use(embedding)
                            and any(key.may_use(name) for name in rule.models))
            if barred:
                node.get("semantic").warn(f"keys {', '.join(barred[:5])}{' ...' if len(barred) > 5 else ''} "
                                          f"may not call {embedding!r}: their questions are matched exactly only")


def _server(node: Node) -> ServerSettings:
    node.only_keys("workers", "admin", "socket_dir", "health_port", "worker_max_rss_mb",
                   "worker_connection_age_s", "worker_scheduling", "transport")
    workers = node.get("workers")
    count = 0 if workers.value in ("auto", None) or workers.missing else workers.number(integer=True, minimum=1)
    return ServerSettings(
        workers=count,
        admin_address=node.get("admin").str(shift_address("127.0.0.1:9464", port_offset())),
        socket_dir=node.get("socket_dir").str("/tmp/llm-gateway"),
        health_port=node.get("health_port").number(None, integer=True, minimum=1),
        worker_max_rss_mb=node.get("worker_max_rss_mb").number(1024, integer=True, minimum=0),
        worker_connection_age_s=node.get("worker_connection_age_s").number(30, integer=True, minimum=1),
        worker_scheduling=node.get("worker_scheduling").choice(("normal", "batch"), "normal"),
        transport=node.get("transport").choice(("h2", "grpc"), "h2"),
    )


def _keys(node: Node, models: Mapping[str, Model], providers: Mapping[str, Provider]) -> dict[bytes, VirtualKey]:
    keys: dict[bytes, VirtualKey] = {}
    for item in node.elements():
        item.only_keys("id", "key", "key_sha256", "user", "team", "models")
        key_id = item.get("id").str()
        if not item.get("key").missing:      # plain text: demo configs only
            digest = hashlib.sha256(item.get("key").str().encode()).digest()
        else:
            hex_digest = item.get("key_sha256").str()
            try:
                digest = bytes.fromhex(hex_digest)
                if len(digest) != 32:
                    raise ValueError
            except ValueError:
                item.get("key_sha256").fail("must be 64 hex characters (sha256 of the key)")
                continue
        allowed = _allowed_models(item.get("models"), models, providers)
        if digest in keys:
            item.fail(f"key of {key_id!r} is the same as the key of {keys[digest].id!r}")
        keys[digest] = VirtualKey(id=key_id, sha256=digest, user=item.get("user").str(key_id),
                                  team=item.get("team").str("default"), models=allowed)
    return keys


def _allowed_models(node: Node, models: Mapping[str, Model], providers: Mapping[str, Provider]) -> frozenset[str] | None:
    """A key's allowlist: model names, or patterns ("anthropic/claude-*", "gpt-4o*"); a name
    must be a model of the config or one a provider lets callers name."""
    if node.missing or node.value == "*":
        return None
    allowed = set()
    for entry in node.elements():
        name = entry.str()
        if not _is_pattern(name) and name not in models and qualified_model(name, providers) is None:
            entry.fail(f"unknown model {name!r}")
        allowed.add(name)
    return frozenset(allowed)
