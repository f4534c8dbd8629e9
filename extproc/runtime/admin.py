"""The admin HTTP endpoint: /metrics, /healthz, /readyz, /usage (spend by dimension),
/cache/stats and /cache/purge (the response cache: cache_admin.py).

Runs in the supervisor process, which aggregates the workers' metrics through
prometheus-client's multiprocess mode. Binds to localhost unless told otherwise.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from .processes import serve


def start_admin(address: str, ready: Callable[[], tuple[bool, str]], collectors=(),
                usage: Callable[[str], tuple[int, bytes]] | None = None,
                cache: Callable[[str, str, str], tuple[int, bytes]] | None = None) -> ThreadingHTTPServer:
    """`collectors`: metrics the supervisor computes itself at each scrape, beside the
    workers' (the budgets' remaining, read from the store)."""
    host, _, port = address.rpartition(":")
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    for collector in collectors:
        registry.register(collector)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (stdlib name)
            path, _, query = self.path.partition("?")
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send(200, b"ok\n", "text/plain")
            elif path == "/readyz":
                ok, why = ready()
                self._send(200 if ok else 503, (why + "\n").encode(), "text/plain")
            elif path == "/usage" and usage is not None:
                status, body = usage(query)          # the store's report (usage_report.py)
                self._send(status, body, "application/json")
            elif path.startswith("/cache/") and cache is not None:
                self._send(*cache("GET", path, query), "application/json")
            else:
                self._send(404, b"not found\n", "text/plain")

        def do_POST(self) -> None:  # noqa: N802 (stdlib name)
            path, _, query = self.path.partition("?")
            if path.startswith("/cache/") and cache is not None:
                self._send(*cache("POST", path, query), "application/json")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:   # scrapes are not worth a log line each
            pass

    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
    server.daemon_threads = True
    threading.Thread(target=serve, args=(server,), name="admin-http", daemon=True).start()
    return server
