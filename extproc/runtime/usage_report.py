"""`extproc usage`: spend and what is left, per budget and scope, from the live store."""

from __future__ import annotations

import asyncio
import time

from ..config.filter_config import GatewayConfig
from ..store import open_store
from ..store.limits import window_bounds


async def _rows_then_close(config: GatewayConfig):
    """The counter rows of the store the config names, the store closed after (a Redis
    client belongs to the loop it ran on)."""
    store = open_store(config.store, patient=True)
    try:
        return await _rows(store)
    finally:
        closed = store.close()
        if asyncio.iscoroutine(closed):
            await closed


async def _rows_of(store):
    return await _rows(store)


async def _rows(store):
    rows = store.rows()
    return await rows if asyncio.iscoroutine(rows) else rows


async def _rows_and_key_limits(store, now: float):
    """The counter rows, and the budgets of the keys made at run time that are in force
    (each key's own, as the budget stage charges them)."""
    from ..stages.key_ring import key_limits
    from ..store.keys import KeyBook
    rows = await _rows(store)
    stored = await KeyBook(store).all()
    return rows, [limit for key in stored if key.state(now) != "revoked" for limit in key_limits(key)]


def usage_table(config: GatewayConfig, now: float | None = None) -> str:
    now = now or time.time()
    store = open_store(config.store)
    rows, key_budgets = asyncio.run(_rows_and_key_limits(store, now))
    by_counter = {row.counter: row for row in rows}
    lines = [("LIMIT", "SCOPE", "WHO", "WINDOW", "USED", "HELD", "LIMIT", "REMAINING", "RESETS IN")]
    for limit in [*config.limits, *key_budgets]:
        if limit.kind == "concurrent":
            continue
        start, end = window_bounds(limit.window, now)
        suffix = f"|{int(start)}"
        who_values = sorted({c.split("|")[1] for c in by_counter
                             if c.startswith(limit.name + "|") and c.endswith(suffix)})
        if not who_values and limit.match:
            who_values = [limit.match]
        for who in who_values:
            row = by_counter.get(f"{limit.name}|{who}{suffix}")
            used, held = (row.spent, row.held) if row else (0.0, 0.0)
            fmt = (lambda v: f"{v:.4f}") if limit.kind == "usd" else (lambda v: f"{v:,.0f}")
            lines.append((limit.name, limit.scope, who, limit.window, fmt(used), fmt(held),
                          fmt(limit.limit), fmt(max(0.0, limit.limit - used - held)),
                          f"{int(end - now)}s"))
    if len(lines) == 1:
        return "No budgets or rate limits are configured."
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in lines)


# --- spend by dimension (store/meters.py) ---------------------------------------------

WINDOWS = ("hour", "day", "month")


def parse_by(text: str) -> tuple[str, ...]:
    """`team,tag:agent` → ("team", "tag:agent"); ValueError naming what is wrong."""
    from ..store.meters import valid_dimension
    dims = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    if not dims:
        raise ValueError("--by needs at least one dimension (key, user, team, model, backend, cache, tag:<name>).")
    if RUN in dims and len(dims) > 1:
        raise ValueError("--by run stands alone: each run's row names its key, user and team.")
    for dim in dims:
        if dim != RUN and not valid_dimension(dim):
            raise ValueError(f"Unknown dimension {dim!r}: one of key, user, team, model, backend, cache, tag:<name>.")
    if len(set(dims)) != len(dims):
        raise ValueError("--by names a dimension twice.")
    return dims


def usage_by(config: GatewayConfig, by: tuple[str, ...], window: str = "day", store=None,
             now: float | None = None) -> dict:
    """Spend grouped by `by` in the current `window`: {"by", "window", "start", "end", "rows"}.
    Raises store.meters.NoMeter when no configured set of dimensions covers `by`."""
    from ..store.meters import find_set, report
    now = now or time.time()
    if by == (RUN,):
        return _usage_by_run(config, window, now)
    find_set(config.metering.sets, by)                  # fail before reading the store
    rows = asyncio.run(_rows_of(store)) if store is not None else asyncio.run(_rows_then_close(config))
    start, end = window_bounds(window, now)
    return {"by": list(by), "window": window, "start": int(start), "end": int(end),
            "rows": report(config.metering.sets, by, rows, window, now)}


RUN = "run"


def _usage_by_run(config: GatewayConfig, window: str, now: float) -> dict:
    """Agent runs with a call in the window, each with its totals (store/runs.py)."""
    from ..store.runs import list_runs
    start, end = window_bounds(window, now)
    rows = [{"run": run["id"], "name": run["name"], "key": run["key"], "user": run["user"], "team": run["team"],
             "client": run["client"], "outcome": run["outcome"], "requests": run["calls"] + run["mcp_calls"],
             "input_tokens": run["input_tokens"], "output_tokens": run["output_tokens"], "usd": run["cost_usd"]}
            for run in list_runs(config.store, limit=10_000, since=start)]
    rows.sort(key=lambda row: -row["usd"])
    return {"by": [RUN], "window": window, "start": int(start), "end": int(end), "rows": rows}


def usage_by_table(result: dict) -> str:
    by = result["by"]
    saved = any("saved_usd" in row for row in result["rows"])
    lines = [tuple(d.upper() for d in by) + ("REQUESTS", "INPUT TOKENS", "OUTPUT TOKENS", "USD") +
             (("SAVED USD",) if saved else ())]
    for row in result["rows"]:
        lines.append(tuple(row[d] or "-" for d in by) + (
            f"{row['requests']:,}", f"{row['input_tokens']:,}", f"{row['output_tokens']:,}", f"{row['usd']:.6f}") +
            ((f"{row.get('saved_usd', 0.0):.6f}",) if saved else ()))
    if len(lines) == 1:
        return f"No spend in this {result['window']} yet."
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in lines)


def admin_usage(config: GatewayConfig, query: str) -> tuple[int, bytes]:
    """The admin API's `/admin/usage?by=DIM[,DIM...]&window=day` (behind its token:
    keys_admin.py): the report as JSON."""
    import json
    from urllib.parse import parse_qs

    from ..store.meters import NoMeter
    params = parse_qs(query)
    window = (params.get("window") or ["day"])[0]
    try:
        if window not in WINDOWS:
            raise ValueError(f"window must be one of {', '.join(WINDOWS)}.")
        result = usage_by(config, parse_by((params.get("by") or [""])[0]), window)
    except (ValueError, NoMeter) as error:
        return 400, json.dumps({"error": {"message": str(error), "type": "invalid_request_error"}}).encode()
    return 200, json.dumps(result).encode()
