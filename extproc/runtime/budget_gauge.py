"""`gateway_budget_remaining`, read from the budget store at each scrape.

Workers settle calls against the store (or their allotments of it); the admin endpoint,
in the supervisor, reads the store when Prometheus scrapes, so every budget shows from
the first second of every window (its full limit until something is spent), whichever
worker or replica spent it, with no worker's gauge going stale. One series per budget and
scope value: the one it `match`es, else each key, user or team of the config (bounded),
plus any scope value with spend in the current window (keys created at run time).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..config.files import file_signature, settled_signature
from ..config.filter_config import GatewayConfig, load_config
from ..yamltree import ConfigError
from ..store import open_store
from ..store.limits import Limit, window_bounds

log = logging.getLogger("extproc.admin")

LABELS = ("budget", "scope", "scope_value", "unit")


class BudgetRemaining(Collector):
    """A Prometheus collector over the store named by the config at `config_path` (read
    again when the file changes, as the workers do)."""

    def __init__(self, config: GatewayConfig) -> None:
        self._config = config
        self._config_stat = file_signature(config.path)
        self._store = None
        self._store_settings = None

    def describe(self):
        return [GaugeMetricFamily("gateway_budget_remaining", "What is left of a budget in its current window.",
                                  labels=LABELS)]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("gateway_budget_remaining",
                                   "What is left of a budget in its current window.", labels=LABELS)
        config = self._current_config()
        budgets = [limit for limit in config.limits if limit.kind in ("tokens", "usd") and limit.window]
        if budgets:
            try:
                spent = self._spent_in_windows(config)
            except Exception as error:      # noqa: BLE001 - a scrape must not fail on the store
                log.warning("gateway_budget_remaining: the budget store could not be read: %s", error)
                spent = None
            if spent is not None:
                now = time.time()
                for limit in budgets:
                    start, _ = window_bounds(limit.window, now)
                    for value in sorted(_scope_values(limit, config) | spent.get((limit.name, int(start)), {}).keys()):
                        used = spent.get((limit.name, int(start)), {}).get(value, 0.0)
                        family.add_metric((limit.name, limit.scope, value, limit.kind), limit.limit - used)
        yield family

    def _current_config(self) -> GatewayConfig:
        stat = settled_signature(self._config.path, self._config_stat)
        if stat is not None and stat != self._config_stat:
            self._config_stat = stat
            try:
                self._config = load_config(self._config.path)
            except ConfigError:
                pass                          # the workers keep the old one too
        return self._config

    def _spent_in_windows(self, config: GatewayConfig) -> dict[tuple[str, int], dict[str, float]]:
        """(limit name, window start) -> scope value -> spent + held, from every counter."""
        if self._store is None or self._store_settings != config.store:
            if self._store is not None:
                _close(self._store)
            self._store, self._store_settings = open_store(config.store, patient=True), config.store
        rows = self._store.rows()
        if asyncio.iscoroutine(rows):
            rows = asyncio.run(_closing_loop(self._store, rows))
            self._store = None             # a Redis client belongs to the loop it ran on
        found: dict[tuple[str, int], dict[str, float]] = {}
        for row in rows:
            parts = row.counter.split("|")
            if len(parts) == 3 and parts[2].isascii() and parts[2].isdigit():
                found.setdefault((parts[0], int(parts[2])), {})[parts[1]] = row.spent + row.held
        return found


async def _closing_loop(store, rows):
    try:
        return await rows
    finally:
        await store.close()


def _scope_values(limit: Limit, config: GatewayConfig) -> set[str]:
    """The scope values a budget applies to, as far as the config tells."""
    if limit.match is not None:
        return {limit.match}
    keys = config.keys_by_hash.values()
    return {"key": {k.id for k in keys}, "user": {k.user for k in keys}, "team": {k.team for k in keys},
            "global": {"*"}}[limit.scope]


def _close(store) -> None:
    closing = store.close()
    if asyncio.iscoroutine(closing):
        closing.close()
