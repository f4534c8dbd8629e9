"""MCP tool definitions pinned per profile, shared by every worker and replica.

A tool's definition (its name, title, description and schemas) is reduced to a digest.
The first `tools/list` a profile gets from a server pins every tool of it; from then on a
tool whose definition differs from its pin, or a tool the server did not list then, is
*pending*: hidden and refused until an operator approves it (`extproc mcp approve`, the
admin API), which makes the definition it was seen with the pin.

Records (the store's records), by kind and name:
  mcp_tools          pin:<profile>/<tool>       {"digest", "definition"}: the approved definition
                     server:<profile>/<server>  "1": the server's first list was pinned
  mcp_tools_pending  <profile>/<tool>           {"digest", "definition", "reason", "seen"}
Profile names are path segments (no "/"), so the first "/" ends the profile.
A worker remembers the digests it found matching their pin (only a tool it has not seen
so costs a store read on a list), and the pending tools as the store had them at most
PENDING_READ_S ago (a tools/call costs a set lookup; an approval, or a change another
worker found, is seen within that time; a change this worker found, at once)."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson

from .base import StoreUnavailable, maybe_await

KIND = "mcp_tools"
PENDING = "mcp_tools_pending"
PENDING_READ_S = 1.0
DEFINITION_FIELDS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")
MAX_DEFINITION_BYTES = 64 * 1024      # kept for the diff; a larger one keeps its digest only
MAX_REMEMBERED = 20_000


def definition_of(tool: dict) -> dict:
    return {name: tool[name] for name in DEFINITION_FIELDS if name in tool}


def digest_of(definition: dict) -> str:
    try:
        canonical = orjson.dumps(definition, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        canonical = repr(definition).encode("utf-8", "replace")
    return hashlib.sha256(canonical).hexdigest()


def diff(was: dict | None, now: dict, limit: int = 300) -> dict:
    """What changed between two definitions, field by field (each side cut at `limit`
    characters): for the audit line and the operator who approves."""
    if was is None:
        return {"new": True, "fields": sorted(now)}
    changed = {}
    for name in sorted(set(was) | set(now)):
        if was.get(name) != now.get(name):
            changed[name] = {"was": _short(was.get(name), limit), "now": _short(now.get(name), limit)}
    return changed


def _short(value: Any, limit: int) -> Any:
    if value is None:
        return None
    text = value if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return text if len(text) <= limit else text[:limit] + "…"


def _stored(digest: str, definition: dict, **more) -> str:
    value = {"digest": digest, "definition": definition, **more}
    encoded = orjson.dumps(value)
    if len(encoded) > MAX_DEFINITION_BYTES:
        encoded = orjson.dumps({"digest": digest, "definition": None, **more})
    return encoded.decode()


def _load(value: str | None) -> dict | None:
    if value is None:
        return None
    try:
        loaded = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return loaded if isinstance(loaded, dict) else None


class ToolPins:
    __slots__ = ("store", "_matching", "_pending", "_pending_read_at")

    def __init__(self, store) -> None:
        self.store = store
        self._matching: dict[str, str] = {}     # "<profile>/<tool>" -> its pinned digest
        self._pending: set[str] = set()         # "<profile>/<tool>" waiting for approval
        self._pending_read_at = float("-inf")

    async def review(self, profile: str, tools: list[tuple[str, str, dict]]) -> list[dict]:
        """`tools`: (server, name, definition) of one list. Returns, for each tool not to
        be shown, {"tool", "reason": "changed" | "new", "diff"}; pins a server's tools on
        its first list. Raises StoreUnavailable."""
        digests = [digest_of(definition) for _, _, definition in tools]
        unknown = [i for i, (_, name, _) in enumerate(tools)
                   if self._matching.get(f"{profile}/{name}") != digests[i]]
        if not unknown:
            return []
        names = [f"pin:{profile}/{tools[i][1]}" for i in unknown]
        servers = sorted({tools[i][0] for i in unknown})
        found = await maybe_await(self.store.get_records(
            KIND, names + [f"server:{profile}/{server}" for server in servers]))
        await self._read_pending()
        stale = []          # pending, but the server lists the pinned definition again
        first_seen = {server for server in servers if f"server:{profile}/{server}" not in found}
        hidden, pins, pending = [], [], []
        now = time.time()
        for i in unknown:
            server, name, definition = tools[i]
            pin = _load(found.get(f"pin:{profile}/{name}"))
            if pin is not None and pin.get("digest") == digests[i]:
                self._remember(f"{profile}/{name}", digests[i])
                if f"{profile}/{name}" in self._pending:
                    stale.append(f"{profile}/{name}")
                continue
            if pin is None and server in first_seen:
                pins.append((f"pin:{profile}/{name}", _stored(digests[i], definition)))
                self._remember(f"{profile}/{name}", digests[i])
                continue
            reason = "new" if pin is None else "changed"
            hidden.append({"tool": name, "reason": reason,
                           "diff": diff(None if pin is None else pin.get("definition") or {}, definition)})
            pending.append((f"{profile}/{name}", _stored(digests[i], definition, reason=reason, seen=now)))
        if pins:
            await maybe_await(self.store.put_records(KIND, pins, None))
        if first_seen:
            await maybe_await(self.store.put_records(KIND, [(f"server:{profile}/{s}", "1") for s in first_seen], None))
        if pending:
            await maybe_await(self.store.put_records(PENDING, pending, None))
            self._pending.update(name for name, _ in pending)
        for name in stale:
            await maybe_await(self.store.delete_record(PENDING, name))
            self._pending.discard(name)
        return hidden

    async def is_pending(self, profile: str, tool: str) -> bool:
        """Whether a call to the tool waits for an operator's approval."""
        await self._read_pending()
        return f"{profile}/{tool}" in self._pending

    def known(self, profile: str, tool: dict) -> bool:
        """Whether this worker found the tool's definition matching its pin (no store read)."""
        return self._matching.get(f"{profile}/{tool.get('name')}") == digest_of(definition_of(tool))

    async def _read_pending(self) -> None:
        if time.monotonic() - self._pending_read_at < PENDING_READ_S:
            return
        try:
            rows = await maybe_await(self.store.records(PENDING))
        except StoreUnavailable:
            if self._pending_read_at == float("-inf"):
                raise                       # nothing read yet: the caller's fail mode decides
            self._pending_read_at = time.monotonic()   # the last set read stands until the store is back
            return
        self._pending = {name for name, _ in rows}
        self._pending_read_at = time.monotonic()

    def _remember(self, name: str, digest: str) -> None:
        if len(self._matching) >= MAX_REMEMBERED:
            self._matching.clear()
        self._matching[name] = digest


async def pending_tools(store, profile: str | None = None) -> list[dict]:
    """Every tool waiting for approval (of one profile, or all), oldest first."""
    rows = [(name, value) for name, value in await maybe_await(store.records(PENDING))
            if profile is None or name.partition("/")[0] == profile]
    pins = await maybe_await(store.get_records(KIND, [f"pin:{name}" for name, _ in rows])) if rows else {}
    found = []
    for name, value in rows:
        where, _, tool = name.partition("/")
        entry = _load(value) or {}
        pin = _load(pins.get(f"pin:{name}"))
        found.append({"profile": where, "tool": tool, "reason": entry.get("reason"),
                      "seen": entry.get("seen"), "digest": entry.get("digest"),
                      "definition": entry.get("definition"),
                      "diff": diff(None if pin is None else pin.get("definition") or {},
                                   entry.get("definition") or {})})
    return sorted(found, key=lambda entry: (entry["seen"] or 0, entry["profile"], entry["tool"]))


async def approve(store, profile: str, tool: str | None) -> list[dict]:
    """Makes the pending definition of `tool` (every pending tool of the profile when None)
    its pin; returns what was approved, with the diff against the pin it replaces."""
    approved = []
    for entry in await pending_tools(store, profile):
        if tool is not None and entry["tool"] != tool:
            continue
        name = f"{profile}/{entry['tool']}"
        was = _load(await maybe_await(store.get_record(KIND, f"pin:{name}")))
        await maybe_await(store.put_record(KIND, f"pin:{name}",
                                           _stored(entry["digest"], entry["definition"] or {}), None))
        await maybe_await(store.delete_record(PENDING, name))
        approved.append({"profile": profile, "tool": entry["tool"], "reason": entry["reason"],
                         "digest": entry["digest"],
                         "diff": diff(None if was is None else was.get("definition") or {},
                                      entry["definition"] or {})})
    return approved
