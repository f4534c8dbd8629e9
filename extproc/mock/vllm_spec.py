"""A `vllm_pools:` entry of the mock provider's config, read and checked: the pool's name,
ports, models and adapters (vllm_pool.py serves it), and its engine's settings (EngineSpec,
vllm_sim.py)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from .vllm_sim import EngineSpec

POOL_KEYS = {"name", "port", "replicas", "host", "models", "adapters"}


@dataclass
class PoolSpec:
    name: str
    port: int
    replicas: int
    host: str = "127.0.0.1"
    models: list[str] = field(default_factory=lambda: ["llama-3.1-8b-instruct"])
    adapters: dict[str, list[int]] = field(default_factory=dict)
    engine: EngineSpec = field(default_factory=EngineSpec)

    @classmethod
    def from_config(cls, item: dict) -> "PoolSpec":
        """A `vllm_pools:` entry; ValueError naming what is wrong (a typo'd key included)."""
        if not isinstance(item, dict):
            raise ValueError("each entry is a mapping: {name, port, replicas, ...}")
        unknown = set(item) - POOL_KEYS - {f.name for f in fields(EngineSpec)}
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        missing = [key for key in ("name", "port", "replicas") if key not in item]
        if missing:
            raise ValueError(f"{', '.join(missing)} must be given")
        try:
            port, replicas = int(item["port"]), int(item["replicas"])
            adapters = {str(name): [int(i) for i in where] for name, where in (item.get("adapters") or {}).items()}
        except (TypeError, ValueError, AttributeError):
            raise ValueError("port and replicas are numbers; adapters maps each adapter to a list "
                             "of replica numbers") from None
        if replicas < 1 or not 0 < port <= 65535 - replicas + 1:
            raise ValueError("replicas must be at least 1, and port + replicas - 1 a port")
        if any(not 0 <= i < replicas for where in adapters.values() for i in where):
            raise ValueError(f"adapters name replicas 0 to {replicas - 1}")
        models = [str(m) for m in item.get("models") or ["llama-3.1-8b-instruct"]]
        return cls(name=str(item["name"]), port=port, replicas=replicas, host=str(item.get("host", "127.0.0.1")),
                   models=models, adapters=adapters, engine=EngineSpec.from_config(item))

    def ports(self) -> list[int]:
        return [self.port + i for i in range(self.replicas)]
