"""What the pages show, read from the store the gateway uses (as `extproc usage`, `extproc
keys` and the admin API read it): keys, budgets' counters, meters, recent calls; and the
running config with its secrets masked."""

from __future__ import annotations

import asyncio
import time

import yaml

from ..config.filter_config import GatewayConfig
from ..store import open_store
from ..store.calls import CallFilter, calls_since, recent_calls
from ..store.keys import KeyBook, StoredKey
from ..store.limits import window_bounds
from ..store.meters import MEASURES, METER_PREFIX, NoMeter, find_set, report

WINDOWS = ("hour", "day", "month")
KEYS_PER_PAGE = 100
NEAR_LIMIT = 0.8                  # a budget this used shows on the overview
MASK = "***"
# Names whose values the config page never shows: credentials' `value`, keys, tokens, secrets.
SECRET_NAMES = frozenset({"value", "key", "token", "secret", "password", "api_key", "private_key",
                          "secret_access_key", "client_secret", "session_secret", "authorization"})


async def _with_store(config: GatewayConfig, use):
    store = open_store(config.store, patient=True)
    try:
        result = use(store)
        return await result if asyncio.iscoroutine(result) else result
    finally:
        closing = store.close()
        if asyncio.iscoroutine(closing):
            await closing


def store_rows(config: GatewayConfig) -> list:
    return asyncio.run(_with_store(config, lambda store: store.rows()))


def stored_keys(config: GatewayConfig) -> list[StoredKey]:
    reserved = frozenset(key.id for key in config.keys_by_hash.values())
    return asyncio.run(_with_store(config, lambda store: KeyBook(store, reserved).all()))


# --- keys ---------------------------------------------------------------------------

def key_list(config: GatewayConfig, query: str = "", page: int = 0, now: float | None = None) -> dict:
    """One page of keys: the config file's, then the store's, newest first; `query` matches
    id, user or team."""
    now = now or time.time()
    rows = [{"id": k.id, "user": k.user, "team": k.team, "models": sorted(k.models) if k.models else "*",
             "budgets": [], "expires": None, "created": None, "state": "active", "source": "config file"}
            for k in config.keys_by_hash.values()]
    made = sorted(stored_keys(config), key=lambda k: -k.created)
    rows += [{**k.described(now), "source": "store"} for k in made]
    needle = query.strip().lower()
    if needle:
        rows = [row for row in rows if needle in row["id"].lower() or needle in row["user"].lower()
                or needle in row["team"].lower()]
    pages = max(1, -(-len(rows) // KEYS_PER_PAGE))
    page = min(max(page, 0), pages - 1)
    return {"keys": rows[page * KEYS_PER_PAGE:(page + 1) * KEYS_PER_PAGE], "total": len(rows), "page": page,
            "pages": pages, "query": query}


def one_key(config: GatewayConfig, key_id: str, now: float | None = None) -> dict | None:
    now = now or time.time()
    for key in config.keys_by_hash.values():
        if key.id == key_id:
            return {"id": key.id, "user": key.user, "team": key.team,
                    "models": sorted(key.models) if key.models else "*", "budgets": [], "expires": None,
                    "created": None, "state": "active", "source": "config file", "metadata": {}}
    reserved = frozenset(key.id for key in config.keys_by_hash.values())
    found = asyncio.run(_with_store(config, lambda store: KeyBook(store, reserved).get(key_id)))
    return {**found.described(now), "source": "store"} if found else None


# --- spend --------------------------------------------------------------------------

def dimensions(config: GatewayConfig) -> list[str]:
    """Every metered dimension, in the order the config lists them."""
    seen: list[str] = []
    for meter in config.metering.sets:
        seen += [d for d in meter.dimensions if d not in seen]
    return seen


def spend(config: GatewayConfig, by: tuple[str, ...], window: str, now: float | None = None,
          rows=None, only: dict[str, str] | None = None) -> dict:
    """Spend grouped by `by` in the current window, and its total over time (per hour in
    an hour or a day, per day in a month). `only`: dimension values it must have.
    Raises NoMeter when no metered set covers `by` (and `only`'s dimensions)."""
    now = now or time.time()
    wanted = tuple(by) + tuple(d for d in (only or {}) if d not in by)
    meter = find_set(config.metering.sets, wanted)
    rows = store_rows(config) if rows is None else rows
    start, end = window_bounds(window, now)
    grouped = report(config.metering.sets, wanted, rows, window, now)
    if only:
        grouped = [row for row in grouped if all(row.get(d) == v for d, v in only.items())]
    step = 86400 if window == "month" else 3600
    buckets = {int(start + i * step): 0.0 for i in range(int((end - start) // step))}
    prefix = meter.name + "."
    for row in rows:
        if not row.counter.startswith(prefix + "usd|"):
            continue
        _, combination, hour = row.counter.split("|")
        if not start <= float(hour) < end:
            continue
        if only:
            values = dict(part.split("=", 1) for part in combination.split(";"))
            if any(values.get(d) != v for d, v in only.items()):
                continue
        bucket = int(start + (float(hour) - start) // step * step)
        buckets[bucket] = buckets.get(bucket, 0.0) + row.spent
    totals = {m: sum(row[m] for row in grouped) for m in MEASURES}
    return {"by": list(by), "window": window, "start": start, "end": end, "rows": grouped, "totals": totals,
            "series": sorted(buckets.items()), "step": step}


# --- budgets ------------------------------------------------------------------------

def budgets(config: GatewayConfig, now: float | None = None, rows=None, keys=None) -> list[dict]:
    """Each budget's limit, used, held, remaining and reset, per scope value with a counter
    in its current window (or the value it `match`es): the config's budgets, then the
    budgets of keys made at run time."""
    now = now or time.time()
    rows = store_rows(config) if rows is None else rows
    by_counter = {row.counter: row for row in rows if not row.counter.startswith(METER_PREFIX)}
    found = []

    def add(name: str, scope: str, unit: str, limit: float, window: str, values: list[str]) -> None:
        start, end = window_bounds(window, now)
        suffix = f"|{int(start)}"
        seen = sorted({c.split("|")[1] for c in by_counter if c.startswith(name + "|") and c.endswith(suffix)}
                      | set(values))
        for who in seen:
            row = by_counter.get(f"{name}|{who}{suffix}")
            used, held = (row.spent, row.held) if row else (0.0, 0.0)
            found.append({"budget": name, "scope": scope, "who": who, "unit": unit, "window": window,
                          "limit": limit, "used": used, "held": held,
                          "remaining": max(0.0, limit - used - held),
                          "share": (used + held) / limit if limit else 1.0, "resets": end})

    for limit in config.limits:
        if limit.kind in ("tokens", "usd") and limit.window:
            add(limit.name, limit.scope, limit.kind, limit.limit, limit.window, [limit.match] if limit.match else [])
    for key in stored_keys(config) if keys is None else keys:
        if key.state(now) != "active":
            continue
        for budget in key.budgets:
            add(f"key:{key.id}.{budget.unit}", "key", budget.unit, budget.limit, budget.window, [key.id])
    return found


# --- overview -----------------------------------------------------------------------

def overview(config: GatewayConfig, window: str, now: float | None = None) -> dict:
    """Requests, tokens and cost by model and backend (the meters), errors and latency
    percentiles by the same (the recent calls kept), and the budgets close to their limit."""
    now = now or time.time()
    rows = store_rows(config)
    try:
        volume = spend(config, ("model", "backend"), window, now, rows)
    except NoMeter:
        volume = None
    start, _ = window_bounds(window, now)
    latency: dict[tuple[str, str], list[float]] = {}
    errors: dict[tuple[str, str], int] = {}
    kept = calls_since(config.store, start) if config.console and config.console.calls_kept else []
    for call in kept:
        group = (call.get("model") or "", call.get("backend") or "")
        latency.setdefault(group, []).append(float(call.get("latency_ms") or 0.0))
        status = call.get("status")
        if not isinstance(status, int) or status >= 400:
            errors[group] = errors.get(group, 0) + 1
    by_group = []
    for group in sorted(set(latency) | {(r["model"], r["backend"]) for r in (volume or {}).get("rows", [])}):
        metered = next((r for r in (volume or {}).get("rows", []) if (r["model"], r["backend"]) == group), None)
        times = sorted(latency.get(group, []))
        by_group.append({"model": group[0], "backend": group[1],
                         "requests": metered["requests"] if metered else 0,
                         "tokens": metered["input_tokens"] + metered["output_tokens"] if metered else 0,
                         "usd": metered["usd"] if metered else 0.0,
                         "calls_kept": len(times), "errors": errors.get(group, 0),
                         "p50": _percentile(times, 0.50), "p99": _percentile(times, 0.99)})
    by_group.sort(key=lambda g: (-g["usd"], -g["requests"], g["model"]))
    everything = sorted(float(c.get("latency_ms") or 0.0) for c in kept)
    near = [b for b in budgets(config, now, rows) if b["share"] >= NEAR_LIMIT]
    return {"window": window, "groups": by_group, "totals": (volume or {}).get("totals") or dict.fromkeys(MEASURES, 0),
            "errors": sum(errors.values()), "calls_kept": len(kept), "p50": _percentile(everything, 0.50),
            "p99": _percentile(everything, 0.99), "near_limit": sorted(near, key=lambda b: -b["share"]),
            "series": (volume or {}).get("series", []), "metered": volume is not None}


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(q * len(values)))]


# --- calls --------------------------------------------------------------------------

def calls(config: GatewayConfig, wanted: CallFilter, limit: int = 100) -> list[dict]:
    if config.console is None or not config.console.calls_kept:
        return []
    return recent_calls(config.store, wanted, limit)


# --- config -------------------------------------------------------------------------

def masked_config(config: GatewayConfig) -> str:
    """The running config file as YAML, every secret-looking value replaced by ***."""
    try:
        with open(config.path, encoding="utf-8") as handle:
            tree = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError) as error:
        return f"# the config file cannot be read now: {type(error).__name__}"
    return yaml.safe_dump(_mask(tree), sort_keys=False, allow_unicode=True)


def _mask(node, name: str = ""):
    if isinstance(node, dict):
        return {k: _mask(v, str(k).lower()) for k, v in node.items()}
    if isinstance(node, list):
        return [_mask(item, name) for item in node]
    if name in SECRET_NAMES or name.endswith(("secret", "password", "_token", "_key")):
        return MASK if not isinstance(node, (dict, list)) and node is not None else node
    if isinstance(node, str) and node.startswith(("sk-", "Bearer ")):
        return MASK
    return node
