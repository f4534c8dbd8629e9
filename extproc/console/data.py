"""What the pages show, read from the store the gateway uses (as `extproc usage`, `extproc
keys` and the admin API read it): keys, budgets' counters, meters, and the overview's
counts of the recent calls. (The recent calls themselves: recent.py; the running config,
masked: config_view.py.)"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import sqlite3
import threading
import time

from ..config.filter_config import GatewayConfig
from ..store import open_store
from ..store.calls import CallStats, call_stats
from ..store.keys import KeyBook, StoredKey, keyset_version
from ..store.limits import window_bounds
from ..store.meters import MEASURES, METER_PREFIX, NoMeter, clean, find_set

WINDOWS = ("hour", "day", "month")
KEYS_PER_PAGE = 100
NEAR_LIMIT = 0.8                  # a budget this used shows on the overview
MAX_NEAR = 20                     # ... the most used of them (the budgets page has them all)
SPEND_SECONDS = 3.0               # how long a page's spend is reused (the same grouping, window, filter)
MAX_MEMO = 256
MAX_ROWS = 500                    # rows of a table on a page (the CSV export has every one)


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


def counters(config: GatewayConfig, ranges: list[tuple[str, str]]) -> list[tuple[str, float, float]]:
    """(counter, spent, held) of the counters whose names fall in any [low, high) range:
    SQLite reads those ranges of its primary key alone (a page needs only its own
    counters, a store may hold hundreds of thousands); Redis's counters are all read."""
    if config.store.kind != "sqlite":
        return [(row.counter, row.spent, row.held) for row in store_rows(config)
                if any(low <= row.counter < high for low, high in ranges)]
    try:
        connection = sqlite3.connect(f"file:{config.store.path}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error:
        return []
    try:
        found = []
        for low, high in ranges:
            found += connection.execute("SELECT counter, spent, held FROM counters WHERE counter >= ? AND counter < ?",
                                        (low, high)).fetchall()
        return found
    except sqlite3.OperationalError:
        return []
    finally:
        connection.close()


def _prefix(text: str) -> tuple[str, str]:
    """The range of names starting with `text`."""
    return text, text[:-1] + chr(ord(text[-1]) + 1)


_NOT_METERS = [("", METER_PREFIX), (METER_PREFIX[:-1] + chr(ord(METER_PREFIX[-1]) + 1), "\U0010ffff")]


def stored_keys(config: GatewayConfig) -> list[StoredKey]:
    """The keys made at run time; parsed again only when the store's keyset version moved
    (every create, rotate and revoke moves it: store/keys.py)."""
    reserved = frozenset(key.id for key in config.keys_by_hash.values())

    async def read(store) -> list[StoredKey]:
        version = await keyset_version(store)
        cached = _keys_read.get(config.store)
        if version is not None and cached is not None and cached[0] == version:
            return cached[1]
        keys = await KeyBook(store, reserved).all()
        _keys_read[config.store] = (version, keys)
        return keys
    with _keys_lock:             # pages opened together after a change parse the keys once
        return asyncio.run(_with_store(config, read))


_keys_read: dict = {}          # store settings -> (keyset version, its keys)
_keys_lock = threading.Lock()


def keys_with_budgets(config: GatewayConfig) -> list[StoredKey]:
    return [key for key in stored_keys(config) if key.budgets]


# --- keys ---------------------------------------------------------------------------

def key_list(config: GatewayConfig, query: str = "", page: int = 0, now: float | None = None) -> dict:
    """One page of keys: the config file's, then the store's, newest first; `query` matches
    id, user or team. Only the page's keys are described."""
    now = now or time.time()
    needle = query.strip().lower()
    keys = [*config.keys_by_hash.values(), *sorted(stored_keys(config), key=lambda k: -k.created)]
    if needle:
        keys = [k for k in keys if needle in k.id.lower() or needle in k.user.lower() or needle in k.team.lower()]
    pages = max(1, -(-len(keys) // KEYS_PER_PAGE))
    page = min(max(page, 0), pages - 1)
    rows = [_described(k, now) for k in keys[page * KEYS_PER_PAGE:(page + 1) * KEYS_PER_PAGE]]
    return {"keys": rows, "total": len(keys), "page": page, "pages": pages, "query": query}


def _described(key, now: float) -> dict:
    if isinstance(key, StoredKey):
        return {**key.described(now), "source": "store"}
    return {"id": key.id, "user": key.user, "team": key.team, "models": sorted(key.models) if key.models else "*",
            "budgets": [], "expires": None, "created": None, "state": "active", "source": "config file",
            "metadata": {}}


def one_key(config: GatewayConfig, key_id: str, now: float | None = None) -> dict | None:
    now = now or time.time()
    for key in config.keys_by_hash.values():
        if key.id == key_id:
            return _described(key, now)
    reserved = frozenset(key.id for key in config.keys_by_hash.values())
    found = asyncio.run(_with_store(config, lambda store: KeyBook(store, reserved).get(key_id)))
    return _described(found, now) if found else None


# --- spend --------------------------------------------------------------------------

def dimensions(config: GatewayConfig) -> list[str]:
    """Every metered dimension, in the order the config lists them."""
    seen: list[str] = []
    for meter in config.metering.sets:
        seen += [d for d in meter.dimensions if d not in seen]
    return seen


def spend(config: GatewayConfig, by: tuple[str, ...], window: str, now: float | None = None,
          only: dict[str, str] | None = None) -> dict:
    """`_spend`'s result, computed at most SPEND_SECONDS ago: a busy day is tens of thousands
    of counters (~100 ms to sum), and the workers hand theirs over every 0.5 s anyway."""
    if now is not None or only:        # one key's counters are a short range: read them each time
        return _spend(config, by, window, now, only)
    key = (config.store, config.metering, tuple(by), window, tuple(sorted((only or {}).items())))
    with _memo_lock:
        found = _memo.get(key)
        if found is not None and time.monotonic() - found[0] < SPEND_SECONDS:
            return found[1]
    with _collector_paused():
        result = _spend(config, by, window, None, only)
    with _memo_lock:
        if len(_memo) >= MAX_MEMO:
            _memo.clear()
        _memo[key] = (time.monotonic(), result)
    return result


_memo: dict[tuple, tuple[float, dict]] = {}
_memo_lock = threading.Lock()


@contextlib.contextmanager
def _collector_paused():
    """Python's cycle collector paused while a spend is summed: tens of thousands of
    counters make as many small objects, none in a cycle, and the collections they set
    off were a sixth of the time. (Another thread that paused it too leaves it to this one.)"""
    running = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if running:
            gc.enable()


def _spend(config: GatewayConfig, by: tuple[str, ...], window: str, now: float | None = None,
           only: dict[str, str] | None = None) -> dict:
    """Spend grouped by `by` in the current window, and its total over time (per hour in
    an hour or a day, per day in a month). `only`: dimension values it must have.
    Raises NoMeter when no metered set covers `by` (and `only`'s dimensions)."""
    now = now or time.time()
    only = only or {}
    meter = find_set(config.metering.sets, tuple(by) + tuple(d for d in only if d not in by))
    start, end = window_bounds(window, now)
    first = meter.dimensions[0]
    if first in only:        # the combination starts with its value: read that key range alone
        ranges = [_prefix(f"{meter.name}.{m}|{first}={clean(only[first])};") for m in MEASURES]
    else:
        ranges = [_prefix(meter.name + ".")]
    positions = [meter.dimensions.index(d) for d in by]
    wanted = [(meter.dimensions.index(d), clean(v)) for d, v in only.items()]
    step = 86400 if window == "month" else 3600
    buckets = {int(start + i * step): 0.0 for i in range(int((end - start) // step))}
    measure_of = {f"{meter.name}.{m}": i for i, m in enumerate(MEASURES)}
    usd = MEASURES.index("usd")
    low, high = str(int(start)), str(int(end))
    groups: dict[str, tuple | None] = {}          # a combination -> its group (None: not wanted)
    totals: dict[tuple, list[float]] = {}
    by_time: dict[tuple, dict[int, float]] = {}      # a group -> its USD per bucket
    digits = len(low)
    for counter, spent, _ in counters(config, ranges):
        name, combination, hour = counter.split("|")
        # Window starts are whole seconds of the same number of digits: compared as text.
        if len(hour) != digits or not low <= hour < high:
            continue
        try:
            group = groups[combination]
        except KeyError:
            values = [part.partition("=")[2] for part in combination.split(";")]
            group = groups[combination] = (tuple(values[i] for i in positions)
                                           if all(values[i] == v for i, v in wanted) else None)
        if group is None:
            continue
        measure = measure_of[name]
        try:
            totals[group][measure] += spent
        except KeyError:
            totals[group] = [0.0] * len(MEASURES)
            totals[group][measure] += spent
        if measure == usd:
            bucket = int(start + (int(hour) - start) // step * step)
            buckets[bucket] = buckets.get(bucket, 0.0) + spent
            over_time = by_time.get(group)
            if over_time is None:
                over_time = by_time[group] = {}
            over_time[bucket] = over_time.get(bucket, 0.0) + spent
    rows = []
    money = [m.endswith("usd") for m in MEASURES]       # (a set metering the cache has its savings too)
    for group, sums in totals.items():
        row = dict(zip(by, group))
        for m, v, is_money in zip(MEASURES, sums, money):
            row[m] = round(v, 8) if is_money else int(round(v))
        rows.append(row)
    rows.sort(key=lambda e: (-e["usd"], -e["requests"], tuple(str(e[d]) for d in by)))
    return {"by": list(by), "window": window, "start": start, "end": end, "rows": rows, "as_of": time.time(),
            "totals": {m: sum(row[m] for row in rows) for m in MEASURES},
            "series": sorted(buckets.items()), "step": step,
            "series_by": _series_by(by_time, sorted(buckets), by)}


FROM_CACHE = "response cache"     # a metered call's backend when the response cache answered it


def shown(dimension: str, value) -> str:
    """A metered value as a page shows it: a call with no backend was answered from the
    response cache (stages/budget/meter.py meters no call refused before a backend)."""
    if not value:
        return FROM_CACHE if dimension == "backend" else "-"
    return str(value)


SERIES_GROUPS = 6           # the dearest groups drawn over time; the rest as one "other"


def _series_by(by_time: dict[tuple, dict[int, float]], buckets: list[int], by: tuple[str, ...]) -> list[tuple]:
    """Each dearest group's USD per bucket, [(label, [usd per bucket])], then "other"."""
    ranked = sorted(by_time.items(), key=lambda item: -sum(item[1].values()))
    series = [(" / ".join(shown(d, v) for d, v in zip(by, group)) if by else "all",
               [values.get(bucket, 0.0) for bucket in buckets]) for group, values in ranked[:SERIES_GROUPS]]
    rest = ranked[SERIES_GROUPS:]
    if rest:
        # Each group's few buckets added once (by key, a month has thousands of groups).
        other = dict.fromkeys(buckets, 0.0)
        for _, values in rest:
            for bucket, usd in values.items():
                other[bucket] = other.get(bucket, 0.0) + usd
        series.append(("other", [other[bucket] for bucket in buckets]))
    return series


# --- budgets ------------------------------------------------------------------------

def budgets(config: GatewayConfig, now: float | None = None, keys=None) -> list[dict]:
    """Each budget's limit, used, held, remaining and reset, per scope value with a counter
    in its current window (or the value it `match`es): the config's budgets, then the
    budgets of keys made at run time; the most used first."""
    now = now or time.time()
    index: dict[tuple[str, str], dict[str, tuple[float, float]]] = {}   # (name, window start) -> who -> row
    for counter, spent, held in counters(config, _NOT_METERS):
        parts = counter.split("|")
        if len(parts) == 3:
            index.setdefault((parts[0], parts[2]), {})[parts[1]] = (spent, held)
    found = []

    def add(name: str, scope: str, unit: str, limit: float, window: str, values: list[str]) -> None:
        start, end = window_bounds(window, now)
        seen = index.get((name, str(int(start))), {})
        for who in sorted(set(seen) | set(values)):
            used, held = seen.get(who, (0.0, 0.0))
            found.append({"budget": name, "scope": scope, "who": who, "unit": unit, "window": window,
                          "limit": limit, "used": used, "held": held,
                          "remaining": max(0.0, limit - used - held),
                          "share": (used + held) / limit if limit else 1.0, "resets": end})

    for limit in config.limits:
        if limit.kind in ("tokens", "usd") and limit.window:
            add(limit.name, limit.scope, limit.kind, limit.limit, limit.window, [limit.match] if limit.match else [])
    for key in keys_with_budgets(config) if keys is None else keys:
        if key.state(now) != "active":
            continue
        for budget in key.budgets:
            add(f"key:{key.id}.{budget.unit}", "key", budget.unit, budget.limit, budget.window, [key.id])
    found.sort(key=lambda b: -b["share"])
    return found


def teams(config: GatewayConfig, now: float | None = None) -> list[dict]:
    """Each team: its active keys, and what it spent this month (the meters)."""
    now = now or time.time()
    found: dict[str, dict] = {}

    def team(name: str) -> dict:
        return found.setdefault(name, {"team": name, "keys": 0, "usd": 0.0, "requests": 0, "tokens": 0})
    for key in config.keys_by_hash.values():
        team(key.team)["keys"] += 1
    for key in stored_keys(config):
        if key.state(now) == "active":
            team(key.team)["keys"] += 1
    try:
        for row in spend(config, ("team",), "month")["rows"]:
            team(row["team"]).update(usd=row["usd"], requests=row["requests"],
                                     tokens=row["input_tokens"] + row["output_tokens"])
    except NoMeter:
        pass
    return sorted(found.values(), key=lambda t: (-t["usd"], t["team"]))


# --- overview -----------------------------------------------------------------------

def overview(config: GatewayConfig, window: str, now: float | None = None) -> dict:
    """Requests, tokens and cost by model and backend (the meters), errors and latency
    percentiles by the same (the recent calls kept), and the budgets close to their limit."""
    start, _ = window_bounds(window, now or time.time())
    # The calls are counted by SQLite on a thread of their own while the meters are summed
    # here: the two reads overlap (SQLite lets go of the GIL while it counts).
    counting = (_COUNTING.submit(call_stats, config.store, start)
                if config.console and config.console.calls_kept else None)
    try:
        volume = spend(config, ("model", "backend"), window, now)      # (now None: reused a few seconds)
    except NoMeter:
        volume = None
    now = now or time.time()
    near = [b for b in budgets(config, now) if b["share"] >= NEAR_LIMIT]
    kept = counting.result() if counting else CallStats({}, {}, {})
    # A metered call with no backend was answered from the response cache (the meters
    # count no call refused before a backend); a kept one may be either (CallStats).
    metered = {(r["model"], r["backend"], not r["backend"]): r for r in (volume or {}).get("rows", [])}
    by_group = []
    for group in set(kept.calls) | set(metered):
        row = metered.get(group)
        times = kept.latencies.get(group, [])
        by_group.append({"model": group[0], "backend": group[1],
                         "answered_by": "backend" if group[1] else "cache" if group[2] else "none",
                         "requests": row["requests"] if row else 0,
                         "tokens": row["input_tokens"] + row["output_tokens"] if row else 0,
                         "usd": row["usd"] if row else 0.0, "calls_kept": kept.calls.get(group, 0),
                         "errors": kept.errors.get(group, 0),
                         "p50": _percentile(times, 0.50), "p99": _percentile(times, 0.99)})
    by_group.sort(key=lambda g: (-g["usd"], -g["requests"], g["model"]))
    everything = sorted(took for times in kept.latencies.values() for took in times)
    return {"window": window, "groups": by_group[:MAX_ROWS],
            "totals": (volume or {}).get("totals") or dict.fromkeys(MEASURES, 0),
            "errors": sum(kept.errors.values()), "calls_kept": sum(kept.calls.values()),
            "sampled": len(everything), "p50": _percentile(everything, 0.50),
            "p99": _percentile(everything, 0.99), "near_limit": near[:MAX_NEAR], "more_near": max(0, len(near) - MAX_NEAR),
            "series": (volume or {}).get("series", []), "metered": volume is not None,
            "as_of": (volume or {}).get("as_of") or time.time()}


_COUNTING = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="console-calls")


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(q * len(values)))]
