"""Each worker's copy of the keys managed at run time (store/keys.py).

Looking a key up is one dict lookup and a clock check, on the worker's own memory: the
store is never asked on a request's path. A background task asks the store for the
keyset's version every POLL_SECONDS (one small read) and reloads every key only when it
changed, so a created, revoked or rotated key takes effect within that interval on every
worker of every replica sharing the store; expiry is checked on each lookup.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from dataclasses import dataclass
from typing import Callable

from ..config.filter_config import GatewayConfig, VirtualKey
from ..store import StoreUnavailable
from ..store.keys import KeyBook, StoredKey, keyset_version
from ..store.limits import Limit

log = logging.getLogger("extproc.keys")

POLL_SECONDS = 0.25
# A key this worker does not know is looked for in the store once per this interval at
# most (a key just made works at once; a flood of wrong keys costs one small read each).
LOOK_AGAIN_SECONDS = 1.0
MAX_LOOKED_FOR = 4096


@dataclass(frozen=True, slots=True)
class _Entry:
    key: VirtualKey
    digest: bytes
    not_after: float            # inf: never expires


def key_limits(stored: StoredKey) -> tuple[Limit, ...]:
    """A key's own budgets, as the budget stage charges them (scope: this key only)."""
    return tuple(Limit(name=f"key:{stored.id}.{budget.unit}", scope="key", match=stored.id,
                       kind=budget.unit, limit=budget.limit, window=budget.window)
                 for budget in stored.budgets)


class KeyRing:
    def __init__(self) -> None:
        self._by_hash: dict[bytes, _Entry] = {}
        self._version: str | None = None
        self.loaded = False
        self._store_of: Callable[[], object] | None = None
        self._config_of: Callable[[], GatewayConfig] | None = None
        self._looked_for: dict[bytes, float] = {}       # unknown digest -> when last looked for
        self._looking: asyncio.Future | None = None      # the refresh in flight, shared

    async def look_again(self, digest: bytes) -> bool:
        """Refreshes from the store now for a key not found here (at most once per
        LOOK_AGAIN_SECONDS per key, one refresh shared by concurrent lookups). True if a
        refresh ran: the caller looks the key up again."""
        if self._store_of is None or self._config_of is None:
            return False
        now = time.monotonic()
        if now - self._looked_for.get(digest, -LOOK_AGAIN_SECONDS) < LOOK_AGAIN_SECONDS:
            return False
        if len(self._looked_for) >= MAX_LOOKED_FOR:
            self._looked_for = {d: t for d, t in self._looked_for.items() if now - t < LOOK_AGAIN_SECONDS}
            if len(self._looked_for) >= MAX_LOOKED_FOR:
                return False            # a flood of distinct wrong keys: the poll alone serves them
        self._looked_for[digest] = now
        if self._looking is None or self._looking.done():
            self._looking = asyncio.ensure_future(self.refresh(self._store_of(), self._config_of()))
        try:
            await asyncio.shield(self._looking)
        except (StoreUnavailable, OSError):
            return False                # the store is out: the keys last read decide
        except Exception:               # noqa: BLE001 - a bad record: refused as unknown, logged
            log.exception("looking a key up in the store failed")
            return False
        return True

    def find(self, digest: bytes) -> VirtualKey | None:
        entry = self._by_hash.get(digest)
        # The dict found it by hash; the constant-time comparison keeps timing from telling
        # how close a guess came, as for the config file's keys.
        if entry is None or not hmac.compare_digest(entry.digest, digest) or time.time() >= entry.not_after:
            return None
        return entry.key

    def build(self, stored_keys: list[StoredKey], config: GatewayConfig) -> dict[bytes, _Entry]:
        config_ids = {key.id for key in config.keys_by_hash.values()}
        now = time.time()
        entries: dict[bytes, _Entry] = {}
        for stored in stored_keys:
            if stored.state(now) == "revoked":
                continue
            if stored.id in config_ids:
                log.error("key id %r is both in the config file and in the store; the stored key is "
                          "refused until one of them is renamed or revoked", stored.id)
                continue
            key = VirtualKey(id=stored.id, sha256=bytes.fromhex(stored.sha256), user=stored.user,
                             team=stored.team, models=frozenset(stored.models) if stored.models is not None else None,
                             limits=key_limits(stored))
            expires = stored.expires if stored.expires is not None else float("inf")
            entries[key.sha256] = _Entry(key, key.sha256, expires)
            for old_hex, until in stored.previous:
                digest = bytes.fromhex(old_hex)
                entries[digest] = _Entry(key, digest, min(until, expires))
        return entries

    async def refresh(self, store, config: GatewayConfig) -> bool:
        """Reload when the keyset's version moved; True if it did."""
        version = await keyset_version(store)
        if version == self._version and self.loaded:
            return False
        stored_keys = await KeyBook(store).all() if version is not None else []
        self._by_hash = self.build(stored_keys, config)
        self._version = version
        self.loaded = True
        return True

    async def keep_fresh(self, store_of: Callable[[], object], config_of: Callable[[], GatewayConfig]) -> None:
        """Runs for the worker's life. A store that cannot be read keeps the keys last read
        (revocations wait for it; the error is logged once per outage)."""
        self._store_of, self._config_of = store_of, config_of
        failing = False
        config_seen = None
        while True:
            try:
                config = config_of()
                if config is not config_seen:       # a reload may add a clashing config key
                    self._version, config_seen = None, config
                await self.refresh(store_of(), config)
                if failing:
                    log.info("key store readable again")
                failing = False
            except (StoreUnavailable, OSError) as error:
                if not failing:
                    log.error("key store unavailable; keeping the keys last read: %s", error)
                failing = True
            except Exception:                     # a bad record must not stop the refresh
                log.exception("reading the keys from the store failed")
            await asyncio.sleep(POLL_SECONDS)


KEY_RING = KeyRing()
