"""The admin API: `identity.admin_api` in the filter config. Keys managed at run time,
spend by dimension, and the response cache's entries.

Off unless configured; its own listener (127.0.0.1:9465 by default), apart from the
metrics endpoint, so scraping never opens a way to keys, spend or the cache, and a
network policy can keep the two apart. Every call needs the admin token
(`Authorization: Bearer`), read from a file or the environment and compared in constant
time: a browser's form posted from another site carries no such header, so a page a
user opens cannot purge the cache or read spend. Each call writes one audit line on
stdout: who (the `x-admin-user` header, the peer address), what, which key id, the
outcome; never a key.

  GET  /admin/keys                   the keys (never a key itself)
  POST /admin/keys                   create: {"user", "team", "models", "budget_usd",
                                     "budget_tokens", "expires", "id", "metadata"}
  POST /admin/keys/<id>/revoke
  POST /admin/keys/<id>/rotate       {"overlap": "1h"}
  GET  /admin/usage?by=DIM[,DIM...]&window=day     spend by dimension (usage_report.py)
  GET  /admin/cache/stats?scope=S&model=M          the response cache (cache_admin.py)
  POST /admin/cache/purge?scope=S&model=M
  GET  /admin/mcp/pending?profile=P                MCP tools waiting for approval (mcp_pins_cli.py)
  POST /admin/mcp/approve            {"profile", "tool"} (no tool: every pending tool of the profile)
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, unquote

from ..config.filter_config import GatewayConfig
from ..store import StoreUnavailable, open_store
from ..store.keys import KeyBook, KeyProblem
from .keys_cli import run_operation
from .mcp_pins_cli import audit as mcp_audit, run_on_store as mcp_tools_on_store
from .processes import serve

MAX_BODY = 64 * 1024
_ONE_KEY = re.compile(r"/admin/keys/([^/]+)/(revoke|rotate)")
# The reports' paths, and what their audit lines call them.
_REPORTS = {"/admin/usage": "usage", "/admin/cache/stats": "cache_stats", "/admin/cache/purge": "cache_purge"}
_NOT_SERVED = (404, json.dumps({"error": {"message": "no such admin endpoint", "type": "not_found",
                                          "code": "not_found"}}).encode())
_WRONG_METHOD = (405, json.dumps({"error": {"message": "GET /admin/usage", "type": "invalid_request_error",
                                            "code": "method_not_allowed"}}).encode())


def _operate(config: GatewayConfig, action: str, key_id: str | None, request: dict) -> dict:
    reserved = frozenset(key.id for key in config.keys_by_hash.values())

    async def run() -> dict:
        store = open_store(config.store, patient=True)
        try:
            return await run_operation(KeyBook(store, reserved), action, key_id, request)
        finally:
            closing = store.close()
            if asyncio.iscoroutine(closing):
                await closing

    return asyncio.run(run())


def start_keys_admin(config: GatewayConfig, usage: Callable[[str], tuple[int, bytes]] | None = None,
                     cache: Callable[[str, str, str], tuple[int, bytes]] | None = None) -> ThreadingHTTPServer:
    """`usage(query)` and `cache(method, path, query)`: the spend report and the response
    cache's routes, read from the config in force (the supervisor's)."""
    settings = config.identity.admin_api
    assert settings is not None
    expected = settings.token.reveal().encode() if settings.token is not None else None
    host, _, port = settings.listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (stdlib name)
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

        def _handle(self, method: str) -> None:
            path, _, query = self.path.partition("?")
            if path in _REPORTS:
                return self._report(method, path, query)
            if path.startswith("/admin/mcp/"):
                return self._mcp_tools(method, path, query)
            action, key_id = _route(method, path)
            if action is None:
                return self._answer(404, {"error": {"message": "no such admin endpoint", "type": "not_found",
                                                    "code": "not_found"}}, "unknown", None)
            if not self._authorized():
                return self._answer(401, {"error": {"message": "the admin token is missing or wrong",
                                                    "type": "authentication_error", "code": "invalid_admin_token"}},
                                    action, key_id)
            try:
                request = self._body() if method == "POST" else {}
                answer = _operate(config, action, key_id, request)
            except KeyProblem as problem:
                status = 404 if str(problem).startswith("no key") else 400
                return self._answer(status, {"error": {"message": str(problem), "type": "invalid_request_error",
                                                       "code": "invalid_request"}}, action, key_id)
            except StoreUnavailable:
                return self._answer(503, {"error": {"message": "the key store is unavailable", "type": "api_error",
                                                    "code": "gateway_error"}}, action, key_id)
            self._answer(201 if action == "create" else 200, answer, action, answer.get("id", key_id))

        def _report(self, method: str, path: str, query: str) -> None:
            """Spend and the response cache: JSON made by their own modules."""
            action = _REPORTS[path]
            if not self._authorized():
                return self._answer(401, {"error": {"message": "the admin token is missing or wrong",
                                                    "type": "authentication_error", "code": "invalid_admin_token"}},
                                    action, None)
            if path == "/admin/usage":
                status, data = (usage(query) if method == "GET" else _WRONG_METHOD) if usage else _NOT_SERVED
            else:
                status, data = cache(method, path[len("/admin"):], query) if cache else _NOT_SERVED
            self._send(status, data)
            _audit(self.headers.get("x-admin-user", "")[:64] or "unknown", self.client_address[0], action, None,
                   status)

        def _mcp_tools(self, method: str, path: str, query: str) -> None:
            """Tool definitions waiting for approval (mcp_pins_cli.py)."""
            action = {("GET", "/admin/mcp/pending"): "pending", ("POST", "/admin/mcp/approve"): "approve"}.get(
                (method, path))
            if action is None:
                return self._answer(404, {"error": {"message": "no such admin endpoint", "type": "not_found",
                                                    "code": "not_found"}}, "unknown", None)
            if not self._authorized():
                return self._answer(401, {"error": {"message": "the admin token is missing or wrong",
                                                    "type": "authentication_error", "code": "invalid_admin_token"}},
                                    f"mcp_{action}", None)
            try:
                request = self._body() if method == "POST" else {}
                profile = request.get("profile") if method == "POST" else \
                    (parse_qs(query).get("profile") or [None])[0]
                tool = request.get("tool")
                if not isinstance(profile, (str, type(None))) or not isinstance(tool, (str, type(None))):
                    raise KeyProblem("profile and tool are strings")
                answer = mcp_tools_on_store(config, action, profile, tool)
            except KeyProblem as problem:
                return self._answer(404 if action == "approve" else 400, {"error": {
                    "message": str(problem), "type": "invalid_request_error", "code": "invalid_request"}},
                    f"mcp_{action}", None)
            except StoreUnavailable:
                return self._answer(503, {"error": {"message": "the store is unavailable", "type": "api_error",
                                                    "code": "gateway_error"}}, f"mcp_{action}", None)
            if action == "approve":
                mcp_audit("admin_api", self.headers.get("x-admin-user", "")[:64] or "unknown", answer["approved"])
            self._answer(200, answer, f"mcp_{action}", None)

        def _authorized(self) -> bool:
            scheme, _, presented = self.headers.get("authorization", "").partition(" ")
            if expected is None or scheme.lower() != "bearer":
                return False
            return hmac.compare_digest(presented.strip().encode("utf-8", "surrogateescape"), expected)

        def _body(self) -> dict:
            try:
                length = int(self.headers.get("content-length") or 0)
            except ValueError:
                raise KeyProblem("bad content-length") from None
            if length > MAX_BODY:
                raise KeyProblem(f"the body is over {MAX_BODY} bytes")
            raw = self.rfile.read(length) if length else b"{}"
            try:
                body = json.loads(raw)
            except ValueError:
                raise KeyProblem("the body is not JSON") from None
            if not isinstance(body, dict):
                raise KeyProblem("the body must be a JSON object")
            return body

        def _answer(self, status: int, body: dict, action: str, key_id: str | None) -> None:
            self._send(status, json.dumps(body).encode())
            _audit(self.headers.get("x-admin-user", "")[:64] or "unknown", self.client_address[0],
                   action, key_id, status)

        def _send(self, status: int, data: bytes) -> None:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:     # the audit line says what matters
            pass

    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
    server.daemon_threads = True
    threading.Thread(target=serve, args=(server,), name="keys-admin-http", daemon=True).start()
    return server


def _route(method: str, path: str) -> tuple[str | None, str | None]:
    if path == "/admin/keys":
        return ("list" if method == "GET" else "create"), None
    match = _ONE_KEY.fullmatch(path)
    if match and method == "POST":
        return match[2], unquote(match[1])[:64]
    return None, None


def _audit(who: str, peer: str, action: str, key_id: str | None, status: int) -> None:
    """One line per call, as the workers' log lines are: JSON on stdout."""
    line = {"ts": time.time(), "audit": "keys_admin", "who": who, "peer": peer, "action": action,
            "key_id": key_id, "status": status}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
