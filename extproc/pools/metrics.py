"""A replica's Prometheus text read for the few series the picker needs, in one pass
over its lines (~20 µs for vLLM's ~100 lines); anything unreadable raises ValueError so
the replica counts as failing, never as idle."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Load:
    running: float = 0.0
    waiting: float = 0.0
    kv_cache: float = 0.0               # 0..1
    running_adapters: frozenset[str] = frozenset()
    waiting_adapters: frozenset[str] = frozenset()


def parse(text: bytes, names: dict) -> Load:
    """The load in `text`, a /metrics answer; `names`: config/pools.py SERVERS' entry."""
    try:
        body = text.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    wanted = {}
    for field in ("running", "waiting", "kv_cache"):
        for name in names[field]:
            wanted[name] = field
    lora = names["lora"][0] if names["lora"] else None
    found: dict[str, float] = {}
    kv_seen = False
    load = Load()
    lora_at = -1.0
    for line in body.splitlines():
        if not line or line[0] == "#":
            continue
        brace = line.find("{")
        space = line.rfind(" ")
        if space <= 0:
            raise ValueError("a sample without a value")
        name = line[:brace] if 0 < brace < space else line[:space]
        field = wanted.get(name)
        if field is None and name != lora:
            continue
        try:
            value = float(line[space + 1:])
        except ValueError:
            raise ValueError(f"{name}: not a number") from None
        if value != value or value < 0:
            raise ValueError(f"{name}: not a count")
        if field is not None:
            if field == "kv_cache":
                if kv_seen:
                    continue                 # the newer name first; the older one repeats it
                kv_seen = True
            found[field] = found.get(field, 0.0) + value
        elif value >= lora_at:               # the latest lora_requests_info sample
            lora_at = value
            load.running_adapters = _label_set(line, "running_lora_adapters")
            load.waiting_adapters = _label_set(line, "waiting_lora_adapters")
    if "running" not in found or "waiting" not in found:
        raise ValueError("no queue metrics")
    load.running, load.waiting = found["running"], found["waiting"]
    load.kv_cache = min(1.0, found.get("kv_cache", 0.0))
    return load


def _label_set(line: str, label: str) -> frozenset[str]:
    at = line.find(label + '="')
    if at < 0:
        return frozenset()
    start = at + len(label) + 2
    end = line.find('"', start)
    return frozenset(name for name in line[start:end].split(",") if name) if end > 0 else frozenset()
