"""Virtual keys managed at run time: kept in the budget store, next to the spend they make.

A key is a record (kind `key`, name its id) holding the SHA-256 of the key, never the key:
keys are 256 random bits, so a plain hash cannot be reversed. Each change also writes a
new `keyset/version` record; workers poll that one small value and reload the keys only
when it changed (stages/key_ring.py), so a new, revoked or rotated key takes effect on
every worker and replica within a poll interval.

The same operations serve `extproc keys` (straight on the store) and the admin API.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field

from .base import maybe_await
from .limits import WINDOWS

RECORD_KIND = "key"
VERSION_KIND, VERSION_NAME = "keyset", "version"
KEY_PREFIX = "sk-"
_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_LABEL_PATTERN = re.compile(r"[^\x00-\x1f\x7f]{1,128}")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class KeyProblem(ValueError):
    """A key operation that cannot be done, in words for the person who asked."""


@dataclass(frozen=True, slots=True)
class KeyBudget:
    unit: str            # usd | tokens
    limit: float
    window: str          # minute | hour | day | month


@dataclass(frozen=True, slots=True)
class StoredKey:
    id: str
    sha256: str                          # hex
    user: str
    team: str
    models: tuple[str, ...] | None       # None: every model
    budgets: tuple[KeyBudget, ...] = ()
    expires: float | None = None         # epoch seconds
    created: float = 0.0
    revoked: float | None = None
    # Hashes a rotation replaced, each valid until its time: [(sha256 hex, until)].
    previous: tuple[tuple[str, float], ...] = ()
    metadata: dict = field(default_factory=dict)

    def state(self, now: float) -> str:
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None and now >= self.expires:
            return "expired"
        return "active"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "StoredKey":
        raw = json.loads(text)
        return cls(id=raw["id"], sha256=raw["sha256"], user=raw["user"], team=raw["team"],
                   models=tuple(raw["models"]) if raw.get("models") is not None else None,
                   budgets=tuple(KeyBudget(**b) for b in raw.get("budgets", ())),
                   expires=raw.get("expires"), created=raw.get("created", 0.0), revoked=raw.get("revoked"),
                   previous=tuple((h, until) for h, until in raw.get("previous", ())),
                   metadata=raw.get("metadata") or {})

    def described(self, now: float) -> dict:
        """What `keys list` shows: everything but the hashes."""
        return {"id": self.id, "user": self.user, "team": self.team,
                "models": list(self.models) if self.models is not None else "*",
                "budgets": [f"{b.limit:g} {b.unit}/{b.window}" for b in self.budgets],
                "expires": _iso(self.expires), "created": _iso(self.created),
                "revoked": _iso(self.revoked), "state": self.state(now),
                "previous_valid_until": [_iso(until) for _, until in self.previous if until > now],
                "metadata": self.metadata}


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


# --- parsing what people type --------------------------------------------------------

def parse_duration(text: str) -> float:
    """"30d", "12h", "90m", "45s", "2w" → seconds."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not match:
        raise KeyProblem(f"{text!r} is not a duration (e.g. 45s, 90m, 12h, 30d, 2w)")
    return float(match[1]) * _SECONDS[match[2]]


def parse_expiry(text: str, now: float) -> float:
    """A duration from now ("30d") or a date/time in UTC ("2027-01-31", "2027-01-31T12:00:00Z")."""
    try:
        return now + parse_duration(text)
    except KeyProblem:
        pass
    import datetime as dt
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise KeyProblem(f"--expires {text!r} is neither a duration (30d) nor a date (2027-01-31)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


def parse_budget(text: str, unit: str) -> KeyBudget:
    """"25/month" → 25 per calendar month."""
    amount, sep, window = text.partition("/")
    if not sep or window not in WINDOWS:
        raise KeyProblem(f"budget {text!r} must be N/WINDOW, WINDOW one of {', '.join(WINDOWS)}")
    try:
        limit = float(amount)
    except ValueError:
        raise KeyProblem(f"budget {text!r}: {amount!r} is not a number") from None
    if not limit >= 0 or limit == float("inf"):
        raise KeyProblem(f"budget {text!r} must be a non-negative number")
    return KeyBudget(unit, limit, window)


def parse_models(text: str | None) -> tuple[str, ...] | None:
    if text is None or text.strip() == "*":
        return None
    models = tuple(name.strip() for name in text.split(",") if name.strip())
    if not models:
        raise KeyProblem("--models needs model names separated by commas, or *")
    return models


def check_label(what: str, value: str) -> str:
    if not _LABEL_PATTERN.fullmatch(value or ""):
        raise KeyProblem(f"{what} must be 1 to 128 printable characters")
    return value


# --- operations on a store ------------------------------------------------------------

class KeyBook:
    """Create, list, revoke and rotate keys in one store (SQLite or Redis)."""

    def __init__(self, store, reserved_ids: frozenset[str] = frozenset()) -> None:
        self.store = store
        self.reserved_ids = reserved_ids        # the config file's key ids

    async def _bump(self) -> None:
        await maybe_await(self.store.put_record(VERSION_KIND, VERSION_NAME, uuid.uuid4().hex, None))

    async def get(self, key_id: str) -> StoredKey | None:
        found = await maybe_await(self.store.get_record(RECORD_KIND, key_id))
        return StoredKey.from_json(found) if found else None

    async def all(self) -> list[StoredKey]:
        return [StoredKey.from_json(value) for _, value in await maybe_await(self.store.records(RECORD_KIND))]

    async def create(self, *, user: str, team: str, models: tuple[str, ...] | None = None,
                     budgets: tuple[KeyBudget, ...] = (), expires: float | None = None,
                     key_id: str | None = None, metadata: dict | None = None,
                     now: float | None = None) -> tuple[StoredKey, str]:
        """The stored key and the key itself (shown once; only its hash is kept)."""
        now = now or time.time()
        key_id = key_id or f"key-{secrets.token_hex(6)}"
        if not _ID_PATTERN.fullmatch(key_id):
            raise KeyProblem("a key id is 1 to 64 letters, digits, '.', '_' or '-'")
        if key_id in self.reserved_ids:
            raise KeyProblem(f"key id {key_id!r} is already a key of the config file; choose another id")
        if await self.get(key_id) is not None:
            raise KeyProblem(f"key id {key_id!r} already exists in the store")
        if expires is not None and expires <= now:
            raise KeyProblem("the expiry is in the past")
        units = [b.unit for b in budgets]
        if len(set(units)) != len(units):
            raise KeyProblem("one budget per unit (usd, tokens)")
        secret = new_secret()
        stored = StoredKey(id=key_id, sha256=digest_hex(secret), user=check_label("--user", user),
                           team=check_label("--team", team), models=models, budgets=budgets,
                           expires=expires, created=now, metadata=dict(metadata or {}))
        await maybe_await(self.store.put_record(RECORD_KIND, key_id, stored.to_json(), None))
        await self._bump()
        return stored, secret

    async def revoke(self, key_id: str, now: float | None = None) -> StoredKey:
        stored = await self._existing(key_id)
        if stored.revoked is None:
            stored = dataclasses.replace(stored, revoked=now or time.time(), previous=())
            await maybe_await(self.store.put_record(RECORD_KIND, key_id, stored.to_json(), None))
            await self._bump()
        return stored

    async def rotate(self, key_id: str, overlap: float = 0.0, now: float | None = None) -> tuple[StoredKey, str]:
        """A new key for the same id; the old one stays valid `overlap` seconds more."""
        now = now or time.time()
        stored = await self._existing(key_id)
        if stored.state(now) != "active":
            raise KeyProblem(f"key {key_id!r} is {stored.state(now)}; only an active key can be rotated")
        secret = new_secret()
        kept = tuple((h, until) for h, until in stored.previous if until > now)
        if overlap > 0:
            kept += ((stored.sha256, now + overlap),)
        stored = dataclasses.replace(stored, sha256=digest_hex(secret), previous=kept)
        await maybe_await(self.store.put_record(RECORD_KIND, key_id, stored.to_json(), None))
        await self._bump()
        return stored, secret

    async def _existing(self, key_id: str) -> StoredKey:
        stored = await self.get(key_id)
        if stored is None:
            raise KeyProblem(f"no key {key_id!r} in the store")
        return stored


async def keyset_version(store) -> str | None:
    return await maybe_await(store.get_record(VERSION_KIND, VERSION_NAME))
