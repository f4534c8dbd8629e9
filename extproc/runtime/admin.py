"""The admin HTTP endpoint: /metrics, /healthz, /readyz, and nothing else.

It has no authentication (Prometheus and probes scrape it), so it serves nothing secret
and changes nothing: spend per key, user and team and the response cache's stats and
purge are the admin API's, behind its token (keys_admin.py). Any other path or method
is a 404 (a POST: 405).

Runs in the supervisor process, which aggregates the workers' metrics through
prometheus-client's multiprocess mode. Binds to localhost unless told otherwise.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from ..observability.metrics import POOL_ENDPOINT_FAMILIES
from .processes import serve


class DepartedLeftOut:
    """The workers' metrics without the series of pool replicas that left their pool (set
    to NaN by the workers: observability/metrics.py, GONE), which the multiprocess files
    cannot forget."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def collect(self):
        for family in self.inner.collect():
            if family.name.startswith(POOL_ENDPOINT_FAMILIES):
                family.samples = [sample for sample in family.samples if sample.value == sample.value]
            yield family


def start_admin(address: str, ready: Callable[[], tuple[bool, str]], collectors=()) -> ThreadingHTTPServer:
    """`collectors`: metrics the supervisor computes itself at each scrape, beside the
    workers' (the budgets' remaining, read from the store)."""
    host, _, port = address.rpartition(":")
    registry = CollectorRegistry()
    registry.register(DepartedLeftOut(multiprocess.MultiProcessCollector(None)))
    for collector in collectors:
        registry.register(collector)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (stdlib name)
            path = self.path.partition("?")[0]
            if path == "/metrics":
                self._send_metrics()
            elif path == "/healthz":
                self._send(200, b"ok\n", "text/plain")
            elif path == "/readyz":
                ok, why = ready()
                self._send(200 if ok else 503, (why + "\n").encode(), "text/plain")
            else:
                self._send(404, b"not found\n", "text/plain")

        def do_POST(self) -> None:  # noqa: N802 (stdlib name)
            self._send(405, b"this endpoint changes nothing: the admin API does (identity.admin_api)\n",
                       "text/plain")

        def _send_metrics(self) -> None:
            # The processes' files are read as they are: one a new process is creating
            # (still empty: prometheus-client's "unpack_from requires a buffer") fails the
            # read, and a read a moment later is whole. One that keeps failing is a 500
            # saying so, never a connection closed without an answer (Prometheus: "EOF").
            for attempt in range(3):
                try:
                    body = generate_latest(registry)
                except Exception as error:  # noqa: BLE001 - any of the collectors' reads
                    failed = error
                    time.sleep(0.01 * (attempt + 1))
                    continue
                self._send(200, body, CONTENT_TYPE_LATEST)
                return
            self._send(500, f"metrics not readable: {type(failed).__name__}\n".encode(), "text/plain")

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
