"""`extproc usage`: spend and what is left, per budget and scope, from the live store."""

from __future__ import annotations

import asyncio
import time

from ..config.filter_config import GatewayConfig
from ..store import open_store
from ..store.limits import window_bounds


async def _rows(store):
    rows = store.rows()
    return await rows if asyncio.iscoroutine(rows) else rows


def usage_table(config: GatewayConfig, now: float | None = None) -> str:
    now = now or time.time()
    store = open_store(config.store)
    rows = asyncio.run(_rows(store))
    by_counter = {row.counter: row for row in rows}
    lines = [("LIMIT", "SCOPE", "WHO", "WINDOW", "USED", "HELD", "LIMIT", "REMAINING", "RESETS IN")]
    for limit in config.limits:
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
