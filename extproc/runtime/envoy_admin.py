"""Envoy's admin API, on the owner-only Unix socket Envoy serves it on (`admin.address.pipe`
with mode 0600: only the gateway's user may change Envoy's log level, drain or quit it)
or, for a hand-written config, on HOST:PORT. Used for readiness, draining and stats."""

from __future__ import annotations

import http.client
import socket
import time


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def admin_address(envoy: dict) -> str:
    """Where a config's admin listens: a socket path, or http://HOST:PORT."""
    address = envoy["admin"]["address"]
    if "pipe" in address:
        return address["pipe"]["path"]
    socket_address = address["socket_address"]
    return f"http://{socket_address.get('address', '127.0.0.1')}:{socket_address['port_value']}"


def admin_request(admin: str, path: str, method: str = "GET", timeout: float = 2.0) -> tuple[int, str]:
    """(status, body) of one admin request; `admin` a socket path (or unix:PATH) or an
    http:// URL. Raises OSError when Envoy's admin cannot be reached."""
    if admin.startswith("http://"):
        host_port = admin.removeprefix("http://").rstrip("/")
        host, _, port = host_port.rpartition(":")
        connection: http.client.HTTPConnection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    else:
        connection = _UnixConnection(admin.removeprefix("unix:"), timeout)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    except http.client.HTTPException as error:
        raise OSError(str(error)) from error
    finally:
        connection.close()


def drain_envoy(admin: str, grace: float, *, stop_listening: bool = True) -> bool:
    """Envoy stops taking new connections (`stop_listening`), and this waits until its
    requests in flight (long streams too) have ended, up to `grace` seconds. True when they
    did, or Envoy's admin is gone (nothing left to wait for)."""
    if stop_listening:
        try:
            admin_request(admin, "/drain_listeners?graceful&inboundonly", method="POST")
        except OSError:
            return True
    deadline = time.monotonic() + grace
    while (active := _active_requests(admin)) > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    return active == 0


def _active_requests(admin: str) -> int:
    try:
        text = admin_request(admin, "/stats?filter=downstream_rq_active$")[1]
    except OSError:
        return 0
    return sum(int(line.rsplit(":", 1)[1]) for line in text.splitlines()
               if line.startswith("http.") and not line.startswith("http.admin.") and ":" in line)
