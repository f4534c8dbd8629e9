"""`extproc cache stats | purge [--scope S] [--model M]` and the admin API's
`GET /admin/cache/stats`, `POST /admin/cache/purge` (same `scope`, `model` query
parameters; behind the admin token: keys_admin.py): the response cache's entries,
grouped by scope and model, and their removal."""

from __future__ import annotations

import asyncio
import inspect
import json
from urllib.parse import parse_qs

from ..config.filter_config import GatewayConfig
from ..store import StoreUnavailable
from ..store.cache_vectors import open_vectors
from ..store.response_cache import open_cache

SCOPE_PREFIXES = ("team:", "key:", "user:")


def check_scope(scope: str | None) -> str | None:
    """A scope as entries name it: team:T, key:K, user:U or global; ValueError otherwise."""
    if scope is None or scope == "global" or (scope.startswith(SCOPE_PREFIXES) and len(scope.split(":", 1)[1]) > 0):
        return scope
    raise ValueError("--scope is team:<team>, key:<key id>, user:<user> or global.")


async def _run(config: GatewayConfig, operation: str, scope: str | None, model: str | None):
    store = open_cache(config.cache, config.store, patient=True)
    # A purge removes the semantic rules' vectors too (they would find nothing).
    vectors = open_vectors(config.cache, config.store) if operation == "purge" and config.cache.semantic else None
    try:
        result = await _done(getattr(store, operation)(scope, model))
        if vectors is not None:
            await _done(vectors.purge(scope, model))
        return result
    finally:
        for opened in (store, vectors):
            if opened is not None:
                await _done(opened.close())


async def _done(result):
    return await result if inspect.isawaitable(result) else result


def cache_stats(config: GatewayConfig, scope: str | None = None, model: str | None = None) -> dict:
    return asyncio.run(_run(config, "stats", check_scope(scope), model))


def cache_purge(config: GatewayConfig, scope: str | None = None, model: str | None = None) -> int:
    return asyncio.run(_run(config, "purge", check_scope(scope), model))


def stats_table(stats: dict) -> str:
    lines = [("SCOPE", "MODEL", "ENTRIES", "LIVE", "BYTES")]
    for group in stats["groups"]:
        lines.append((group["scope"], group["model"], f"{group['entries']:,}", f"{group['live']:,}",
                      f"{group['bytes']:,}"))
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    table = "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in lines)
    return (f"{table}\n\n{stats['entries']:,} entries, {stats['bytes']:,} of {stats['max_bytes']:,} bytes "
            f"({stats['store']})")


def admin_cache(config: GatewayConfig, method: str, path: str, query: str) -> tuple[int, bytes]:
    """The admin API's /admin/cache/stats (GET) and /admin/cache/purge (POST), `path`
    without its /admin prefix."""
    params = parse_qs(query)
    scope = (params.get("scope") or [None])[0]
    model = (params.get("model") or [None])[0]
    try:
        if path == "/cache/stats" and method == "GET":
            return 200, json.dumps(cache_stats(config, scope, model)).encode()
        if path == "/cache/purge" and method == "POST":
            return 200, json.dumps({"purged": cache_purge(config, scope, model)}).encode()
    except ValueError as error:
        return 400, json.dumps({"error": {"message": str(error), "type": "invalid_request_error"}}).encode()
    except StoreUnavailable:
        return 503, json.dumps({"error": {"message": "The response cache's store is unavailable.",
                                          "type": "api_error"}}).encode()
    return 405, json.dumps({"error": {"message": "GET /cache/stats or POST /cache/purge.",
                                      "type": "invalid_request_error"}}).encode()
