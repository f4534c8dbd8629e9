"""The filter config: parsed once into typed, immutable objects.

A worker holds one `GatewayConfig` at a time; a request keeps the snapshot it
started with, so a reload never changes a request half-way.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Mapping

from ..guardrails.config import GuardrailSettings, parse_guardrails
from ..observability.settings import ObservabilitySettings, parse_observability
from ..store.limits import Limit, StoreSettings, parse_limits, parse_store
from .yamlread import Node, Problems, load_yaml


class Secret:
    """A credential that never shows up in repr, logs or errors."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    cluster: str                 # Envoy cluster that reaches it
    auth_header: str             # "authorization" (Bearer) or "api-key" (Azure style)
    credential_source: str       # "env:NAME", "file:/path" or "inline" (never the value)
    credential: Secret | None    # None when the source could not be read

    def auth_value(self) -> str:
        secret = self.credential.reveal() if self.credential else ""
        return f"Bearer {secret}" if self.auth_header == "authorization" else secret


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens."""
    input: float = 0.0
    cached_input: float = 0.0
    output: float = 0.0

    def cost(self, input_tokens: int, cached_tokens: int, output_tokens: int) -> float:
        uncached = max(input_tokens - cached_tokens, 0)
        return (uncached * self.input + cached_tokens * self.cached_input
                + output_tokens * self.output) / 1_000_000


@dataclass(frozen=True, slots=True)
class Backend:
    name: str                    # what x-gateway-backend, logs and metrics call it
    provider: Provider
    model: str                   # the model's name at the provider
    weight: int
    price: Price | None = None   # this backend's own price; default: the model's


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    backends: tuple[Backend, ...]
    strategy: str                # "fallback" (ordered) or "weighted"
    price: Price
    encoding: str                # tokenizer encoding for offline counts

    @property
    def primary(self) -> Backend:
        return self.backends[0]

    @property
    def is_virtual(self) -> bool:
        """Several backends: Envoy fails over between them, attempt by attempt."""
        return len(self.backends) > 1

    def price_of(self, backend: Backend | None) -> Price:
        return backend.price if backend is not None and backend.price is not None else self.price


@dataclass(frozen=True, slots=True)
class VirtualKey:
    id: str
    sha256: bytes
    user: str
    team: str
    models: frozenset[str] | None    # None: every model

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models


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
    # request, no lower latency: bench/README.md "The workers' scheduling policy").
    worker_scheduling: str = "normal"
    # How the workers speak gRPC to Envoy: "h2" (transport/http2.py, on the event loop) or
    # "grpc" (grpc.aio, whose threads cost ~6x the CPU per call: bench/README.md).
    transport: str = "h2"


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
    mock_provider: Mapping | None = None


def load_config(path: str, *, strict_credentials: bool = True) -> GatewayConfig:
    """Parse and validate; raises ConfigError listing every problem found.

    strict_credentials=False lets `extproc check` validate a production config
    on a machine that does not hold its secrets (missing ones become warnings).
    """
    problems = Problems(path)
    root = load_yaml(path, problems)
    root.only_keys("version", "server", "mock_provider", "providers", "models", "keys",
                   "budgets", "rate_limits", "store", "guardrails", "observability")
    with open(path, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()[:12]
    label = root.get("version").str("")
    providers = {name: _provider(name, node, strict_credentials)
                 for name, node in root.get("providers").items()}
    models = {name: _model(name, node, providers) for name, node in root.get("models").items()}
    if not models and not root.get("models").missing:
        root.get("models").fail("must name at least one model")
    keys = _keys(root.get("keys"), models)
    config = GatewayConfig(
        path=path,
        version=f"{label}@{digest}" if label else digest,
        server=_server(root.get("server")),
        providers=providers,
        models=models,
        keys_by_hash=keys,
        limits=parse_limits(root.get("budgets"), root.get("rate_limits")),
        store=parse_store(root.get("store"), default_state_dir()),
        guardrails=parse_guardrails(root.get("guardrails")),
        observability=parse_observability(root.get("observability")),
        mock_provider=root.get("mock_provider").value if not root.get("mock_provider").missing else None,
    )
    problems.raise_if_any()
    return config


def default_state_dir() -> str:
    """`extproc up --state-dir` sets LLMGW_STATE_DIR for its workers."""
    return os.environ.get("LLMGW_STATE_DIR") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "llm-gateway")


def _server(node: Node) -> ServerSettings:
    node.only_keys("workers", "admin", "socket_dir", "health_port", "worker_max_rss_mb",
                   "worker_connection_age_s", "worker_scheduling", "transport")
    workers = node.get("workers")
    count = 0 if workers.value in ("auto", None) or workers.missing else workers.number(integer=True, minimum=1)
    return ServerSettings(
        workers=count,
        admin_address=node.get("admin").str("127.0.0.1:9464"),
        socket_dir=node.get("socket_dir").str("/tmp/llm-gateway"),
        health_port=node.get("health_port").number(None, integer=True, minimum=1),
        worker_max_rss_mb=node.get("worker_max_rss_mb").number(1024, integer=True, minimum=0),
        worker_connection_age_s=node.get("worker_connection_age_s").number(30, integer=True, minimum=1),
        worker_scheduling=node.get("worker_scheduling").choice(("normal", "batch"), "normal"),
        transport=node.get("transport").choice(("h2", "grpc"), "h2"),
    )


def _provider(name: str, node: Node, strict: bool) -> Provider:
    node.only_keys("cluster", "auth", "api_key")
    auth = node.get("auth").choice(("bearer", "api-key"), "bearer")
    source, secret = _credential(node.get("api_key"), strict)
    return Provider(name=name, cluster=node.get("cluster").str(),
                    auth_header="authorization" if auth == "bearer" else "api-key",
                    credential_source=source, credential=secret)


def _credential(node: Node, strict: bool) -> tuple[str, Secret | None]:
    node.only_keys("env", "file", "value")
    if node.missing:
        node.fail("is required: {env: VAR}, {file: /path} or {value: ...} (demo only)")
        return "", None
    if not node.get("env").missing:
        var = node.get("env").str()
        value = os.environ.get(var)
        if value is None and strict:
            node.fail(f"environment variable {var} is not set")
        return f"env:{var}", Secret(value) if value is not None else None
    if not node.get("file").missing:
        file = node.get("file").str()
        try:
            with open(file, encoding="utf-8") as handle:
                return f"file:{file}", Secret(handle.read().strip())
        except OSError as exc:
            if strict:
                node.fail(f"cannot read credential file {file}: {exc.strerror}")
            return f"file:{file}", None
    if not node.get("value").missing:
        return "inline", Secret(node.get("value").str())
    node.fail("must have one of: env, file, value")
    return "", None


def _model(name: str, node: Node, providers: Mapping[str, Provider]) -> Model:
    from ..api.tokens import encoding_for_model  # local: tokens imports the tokenizer
    node.only_keys("backends", "strategy", "price", "encoding")
    strategy = node.get("strategy").choice(("fallback", "weighted"), "fallback")
    backends = []
    for item in node.get("backends").elements():
        item.only_keys("provider", "model", "name", "weight", "price")
        provider_name = item.get("provider").str()
        provider = providers.get(provider_name)
        if provider is None:
            item.get("provider").fail(f"unknown provider {provider_name!r}")
            continue
        backends.append(Backend(
            name=item.get("name").str(provider_name),
            provider=provider,
            model=item.get("model").str(name),
            weight=item.get("weight").number(1, integer=True, minimum=0),
            price=None if item.get("price").missing else _price(item.get("price")),
        ))
    if not backends:
        node.get("backends").fail("must list at least one backend")
    names = [b.name for b in backends]
    if len(set(names)) != len(names):
        node.get("backends").fail("backend names must be unique within a model (set `name:`)")
    price = _price(node.get("price")) if not node.get("price").missing else \
        _default_price(backends[0].model if backends else name)
    encoding = node.get("encoding").choice(("o200k_base", "cl100k_base"),
                                           encoding_for_model(backends[0].model if backends else name))
    return Model(name=name, backends=tuple(backends), strategy=strategy, price=price, encoding=encoding)


def _price(node: Node) -> Price:
    node.only_keys("input", "cached_input", "output")
    input_price = node.get("input").number(0.0, minimum=0)
    return Price(input=input_price,
                 cached_input=node.get("cached_input").number(input_price, minimum=0),
                 output=node.get("output").number(0.0, minimum=0))


def _default_price(model: str) -> Price:
    from ..api.prices import default_price
    found = default_price(model)
    return Price(*found) if found else Price()


def _keys(node: Node, models: Mapping[str, Model]) -> dict[bytes, VirtualKey]:
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
        allowed = _allowed_models(item.get("models"), models)
        if digest in keys:
            item.fail(f"key of {key_id!r} is the same as the key of {keys[digest].id!r}")
        keys[digest] = VirtualKey(id=key_id, sha256=digest, user=item.get("user").str(key_id),
                                  team=item.get("team").str("default"), models=allowed)
    return keys


def _allowed_models(node: Node, models: Mapping[str, Model]) -> frozenset[str] | None:
    if node.missing or node.value == "*":
        return None
    allowed = set()
    for entry in node.elements():
        name = entry.str()
        if name not in models:
            entry.fail(f"unknown model {name!r}")
        allowed.add(name)
    return frozenset(allowed)
