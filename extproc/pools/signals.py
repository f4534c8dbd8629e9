"""Each worker's view of its pools' replicas, kept fresh off the request path: one asyncio
task per pool scrapes every replica's /metrics each `scrape_interval_ms` (short timeouts,
all replicas at once) and, every few seconds, /v1/models (the models and adapters each
serves). A replica whose last good scrape is older than `stale_after_ms` is stale; one
whose scrapes fail (refused, garbage, timeout) is failing: the picker demotes both."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from ..config.pools import Pool
from .homes import SharedHomes, address_crc
from .metrics import Load, parse
from .prefix import PrefixTable

MODELS_EVERY_S = 2.0          # how often the served models and adapters are read again
IDLE_STOP_S = 10.0            # a pool no call used this long is not scraped until its next call
FAILING_AFTER = 2             # failed scrapes in a row that make a replica failing
SCRAPE_FAILURES = ("timeout", "unreachable", "status", "unreadable")    # reasons (bounded)
log = logging.getLogger(__name__)


@dataclass(slots=True)
class Endpoint:
    address: str                     # "ip:port", as Envoy's cluster has it
    load: Load = field(default_factory=Load)
    scraped_at: float = 0.0          # monotonic time of the last good scrape (0: never)
    failures: int = 0                # failed scrapes in a row
    served: frozenset[str] = frozenset()     # models and adapters /v1/models lists
    models_at: float = 0.0
    sent: int = 0                    # calls this worker sent it since its last scrape
    counted: int = 0                 # ... in the interval its last good scrape closed
    scrape_failures: dict[str, int] = field(default_factory=dict)    # failed scrapes, by reason

    def fresh(self, now: float, stale_s: float) -> bool:
        return self.failures < FAILING_AFTER and self.scraped_at > 0 and now - self.scraped_at <= stale_s

    @property
    def failing(self) -> bool:
        return self.failures >= FAILING_AFTER


class PoolSignals:
    """One pool's replicas as this worker sees them."""

    def __init__(self, name: str, pool: Pool, addresses: tuple[str, ...] | None = None,
                 homes: SharedHomes | None = None) -> None:
        self.name = name
        self.pool = pool
        self.endpoints: dict[str, Endpoint] = {a: Endpoint(a) for a in (addresses or pool.endpoints)}
        self.prefixes = PrefixTable(pool.prefix_blocks)
        self.task: asyncio.Task | None = None
        self.stopped = False                 # replaced by a reload: its tasks end
        self.unscraped_turn = 0              # before the first scrape: the replicas in turn
        self.used_at = time.monotonic()      # the last call's pick (signals_for)
        self.home_ring: tuple[list[int], list[str]] | None = None    # picker.py's, per replica list
        # Each conversation's latest replica: shared with the other workers when the
        # registry passes the gateway's table, else this process's own.
        self.homes = homes if homes is not None else SharedHomes(name, folder="")
        self.by_crc: dict[int, str] = {address_crc(a): a for a in self.endpoints}    # homes' words
        # Called after each round of scrapes (off the request path) with these signals: the
        # stage that starts them publishes each replica's view on /metrics.
        self.observer: Callable[[PoolSignals], None] | None = None

    def set_addresses(self, addresses: list[str]) -> None:
        """The replica list changed (EndpointSlices): keep what is known of those that stay."""
        if set(addresses) != set(self.endpoints):
            self.home_ring = None
        for gone in set(self.endpoints) - set(addresses):
            del self.endpoints[gone]
            self.prefixes.forget(gone)
        for address in addresses:
            self.endpoints.setdefault(address, Endpoint(address))
        self.by_crc = {address_crc(a): a for a in self.endpoints}

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.get_event_loop().create_task(self._scrape_forever())

    def stop(self) -> None:
        self.stopped = True
        if self.task is not None:
            self.task.cancel()
            self.task = None

    async def _scrape_forever(self) -> None:
        interval = self.pool.scrape_interval_ms / 1000
        while True:
            started = time.monotonic()
            if started - self.used_at > IDLE_STOP_S:
                # Nobody calls the pool: its replicas' load is not worth a scrape per
                # interval. The next call starts scraping again (picking meanwhile from
                # the last signals, stale: after any fresh ones, by queue).
                self.task = None
                return
            endpoints = list(self.endpoints.values())
            await asyncio.gather(*(self.scrape(endpoint) for endpoint in endpoints), return_exceptions=True)
            if self.observer is not None:
                try:
                    self.observer(self)
                except Exception:                  # what is seen of it never stops the scrapes
                    log.exception("pool %s: publishing its replicas' signals", self.name)
            await asyncio.sleep(max(0.005, interval - (time.monotonic() - started)))

    async def scrape(self, endpoint: Endpoint) -> None:
        timeout = self.pool.scrape_timeout_ms / 1000
        reason = "unreadable"
        try:
            status, body = await asyncio.wait_for(_get(endpoint.address, "/metrics"), timeout)
            if status != 200:
                reason = "status"
                raise ValueError(f"status {status}")
            load = parse(body, self.pool.metric_names)
        except (OSError, ValueError, asyncio.TimeoutError, asyncio.IncompleteReadError) as error:
            if isinstance(error, asyncio.TimeoutError):
                reason = "timeout"
            elif isinstance(error, OSError):
                reason = "unreachable"
            endpoint.scrape_failures[reason] = endpoint.scrape_failures.get(reason, 0) + 1
            endpoint.failures += 1
            if endpoint.failures == FAILING_AFTER:
                self.prefixes.forget(endpoint.address)     # it may come back with an empty cache
            return
        now = time.monotonic()
        endpoint.counted = endpoint.sent
        endpoint.load, endpoint.scraped_at, endpoint.failures, endpoint.sent = load, now, 0, 0
        if now - endpoint.models_at > MODELS_EVERY_S:
            endpoint.models_at = now
            try:
                status, body = await asyncio.wait_for(_get(endpoint.address, "/v1/models"), timeout)
                if status == 200:
                    data = json.loads(body).get("data")
                    endpoint.served = frozenset(str(item.get("id")) for item in data if isinstance(item, dict))
            except (OSError, ValueError, AttributeError, TypeError, asyncio.TimeoutError,
                    asyncio.IncompleteReadError):
                pass                       # the config's lists still say what it serves


async def _get(address: str, path: str) -> tuple[int, bytes]:
    """A plain HTTP/1.0 GET (the answer ends with the connection): no client library on
    a loop that also answers Envoy."""
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {address}\r\nAccept: text/plain\r\n\r\n".encode())
        raw = await reader.read(1 << 20)
        chunks = [raw]
        while raw:
            raw = await reader.read(1 << 20)
            chunks.append(raw)
            if sum(len(c) for c in chunks) > 4 << 20:
                raise ValueError("too large")
    finally:
        writer.close()
    data = b"".join(chunks)
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("no HTTP answer")
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ValueError("no HTTP status")
    return int(parts[1]), body
