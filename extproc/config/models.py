"""Models in the filter config: each a name clients ask for, served by one backend
(concrete) or several (virtual: Envoy fails over between them), each backend priced."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from ..api.prices import UNKNOWN_MAX_OUTPUT_TOKENS, Price, shipped_max_output, shipped_price
from ..api.usage import Usage
from ..dialects import dialect_named
from .providers import Provider
from ..yamltree import Node


@dataclass(frozen=True, slots=True)
class Backend:
    name: str                    # what x-gateway-backend, logs and metrics call it
    provider: Provider
    model: str                   # the model's name at the provider
    weight: int
    price: Price | None = None   # its own, the model's, or the shipped table's; None: unpriced
    max_output_tokens: int | None = None   # the most one answer may generate; None: unknown

    @property
    def dialect(self) -> str:
        """The API dialect its provider speaks for its model."""
        return self.provider.dialect_for(self.model)


# How long a streamed call to a virtual model waits for an attempt's response headers
# before Envoy tries the next backend. Providers send a stream's headers at once and its
# first token soon after, so a few seconds of silence means a stalled backend; a model
# that thinks long before answering may need more (`first_byte_timeout_s`).
DEFAULT_FIRST_BYTE_TIMEOUT_S = 10.0
MAX_FIRST_BYTE_TIMEOUT_S = 300.0


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    backends: tuple[Backend, ...]
    strategy: str                # "fallback" (ordered) or "weighted"
    price: Price | None          # the first backend's (reports); each backend has its own
    encoding: str                # tokenizer encoding for offline counts
    # A virtual model's streamed call: each attempt whose response headers have not come
    # within this is given up by Envoy, and the next backend tried (config/envoy_gen.py).
    first_byte_timeout_ms: int = 0
    # output_ceiling's answer for each caller dialect: a budget asks it on every call.
    _ceilings: dict = field(default_factory=dict, init=False, compare=False, hash=False, repr=False)
    # Every backend has a price (its own or the model's): USD budgets can charge it.
    fully_priced: bool = field(init=False, compare=False, hash=False, repr=False)
    # The largest body any of its backends' providers takes.
    max_request_bytes: int = field(init=False, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        # Worked out once: each call a budget or a body's size applies to asks.
        object.__setattr__(self, "fully_priced", all(backend.price is not None for backend in self.backends))
        object.__setattr__(self, "max_request_bytes",
                           max((backend.provider.max_request_bytes for backend in self.backends), default=0))

    @property
    def primary(self) -> Backend:
        return self.backends[0]

    @property
    def is_virtual(self) -> bool:
        """Several backends: Envoy fails over between them, attempt by attempt."""
        return len(self.backends) > 1

    def price_of(self, backend: Backend | None) -> Price | None:
        return backend.price if backend is not None else self.price

    def cost(self, backend: Backend | None, usage: Usage) -> float:
        """What `usage` costs at `backend`'s price; 0 for a model nobody priced."""
        price = self.price_of(backend)
        return price.cost(usage) if price is not None else 0.0

    def output_ceiling(self, caller_dialect: str) -> tuple[int, bool]:
        """The most one answer of a call that sets no output cap may generate, whichever
        backend answers, and whether that is known. A backend of the other dialect that
        needs a cap (Anthropic's) gets its provider's `default_max_tokens` from the
        translation; a backend whose maximum nobody gave counts as UNKNOWN_MAX_OUTPUT_TOKENS."""
        found = self._ceilings.get(caller_dialect)
        if found is None:
            found = self._ceilings[caller_dialect] = self._output_ceiling(caller_dialect)
        return found

    def _output_ceiling(self, caller_dialect: str) -> tuple[int, bool]:
        ceiling, known = 0, True
        for backend in self.backends:
            most = backend.max_output_tokens
            if backend.dialect != caller_dialect and dialect_named(backend.dialect).needs_output_cap:
                most = min(most or backend.provider.default_max_tokens, backend.provider.default_max_tokens)
            if most is None:
                most, known = UNKNOWN_MAX_OUTPUT_TOKENS, False
            ceiling = max(ceiling, most)
        return ceiling, known


def qualified_model(name: str, providers: Mapping[str, Provider]) -> Model | None:
    """A model asked for as "<provider>/<model>" of a provider that lets callers name its
    models (`models:` patterns), priced from the shipped table (None when unknown: a USD
    budget refuses it); None when no provider serves that name."""
    from ..api.tokens import encoding_for_model  # local: tokens imports the tokenizer
    provider_name, _, served = name.partition("/")
    provider = providers.get(provider_name)
    if provider is None or not served or not provider.serves(served):
        return None
    backend = Backend(name=provider_name, provider=provider, model=served, weight=1, price=shipped_price(served),
                      max_output_tokens=shipped_max_output(served))
    return Model(name=name, backends=(backend,), strategy="fallback", price=backend.price,
                 encoding=encoding_for_model(served))


def parse_model(name: str, node: Node, providers: Mapping[str, Provider]) -> Model:
    from ..api.tokens import encoding_for_model  # local: tokens imports the tokenizer
    node.only_keys("backends", "strategy", "price", "encoding", "max_output_tokens", "first_byte_timeout_s")
    first_byte = node.get("first_byte_timeout_s").number(DEFAULT_FIRST_BYTE_TIMEOUT_S, minimum=0.1)
    if first_byte > MAX_FIRST_BYTE_TIMEOUT_S:
        node.get("first_byte_timeout_s").fail(f"must be at most {MAX_FIRST_BYTE_TIMEOUT_S} (seconds)")
    strategy = node.get("strategy").choice(("fallback", "weighted"), "fallback")
    model_max_output = _max_output(node)
    model_price = _price(node.get("price")) if not node.get("price").missing else None
    backends = []
    for item in node.get("backends").elements():
        item.only_keys("provider", "model", "name", "weight", "price", "max_output_tokens")
        provider_name = item.get("provider").str()
        provider = providers.get(provider_name)
        if provider is None:
            item.get("provider").fail(f"unknown provider {provider_name!r}")
            continue
        served = item.get("model").str(name)
        # A backend's price: its own, else the model's, else the shipped one of the model it serves.
        price = _price(item.get("price")) if not item.get("price").missing else \
            model_price or shipped_price(served)
        if price is None:
            item.warn(f"no price: neither `price:` nor the shipped table (exact names and aliases) prices "
                      f"{served!r}; its calls are recorded at $0, and a USD budget refuses them")
        # Its maximum output: its own, else the model's, else the shipped one of the model it serves.
        max_output = _max_output(item) or model_max_output or shipped_max_output(served)
        backends.append(Backend(name=item.get("name").str(provider_name), provider=provider, model=served,
                                weight=item.get("weight").number(1, integer=True, minimum=0), price=price,
                                max_output_tokens=max_output))
    if not backends:
        node.get("backends").fail("must list at least one backend")
    names = [b.name for b in backends]
    if len(set(names)) != len(names):
        node.get("backends").fail("backend names must be unique within a model (set `name:`)")
    if strategy == "weighted" and backends and not any(b.weight for b in backends):
        node.get("backends").fail("weights must not all be 0 (weighted: the first attempt is drawn by weight)")
    first = backends[0].model if backends else name
    encoding = node.get("encoding").choice(("o200k_base", "cl100k_base"), encoding_for_model(first))
    if len(backends) < 2 and not node.get("first_byte_timeout_s").missing:
        node.get("first_byte_timeout_s").warn("applies to a model with several backends only (there is "
                                              "no next backend to try): ignored")
    return Model(name=name, backends=tuple(backends), strategy=strategy,
                 price=backends[0].price if backends else model_price, encoding=encoding,
                 first_byte_timeout_ms=int(round(first_byte * 1000)) if len(backends) > 1 else 0)


def _max_output(node: Node) -> int | None:
    item = node.get("max_output_tokens")
    return None if item.missing else item.number(0, integer=True, minimum=1)


def _price(node: Node) -> Price:
    node.only_keys("input", "cached_input", "output", "cache_write")
    input_price = node.get("input").number(0.0, minimum=0)
    return Price(input=input_price,
                 cached_input=node.get("cached_input").number(input_price, minimum=0),
                 output=node.get("output").number(0.0, minimum=0),
                 cache_write=node.get("cache_write").number(None, minimum=0))


