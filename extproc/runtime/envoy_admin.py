"""Envoy's admin API, on the owner-only Unix socket Envoy serves it on (`admin.address.pipe`
with mode 0600: only the gateway's user may change Envoy's log level, drain or quit it)
or, for a hand-written config, on HOST:PORT. Used for readiness, draining and stats."""

from __future__ import annotations

import http.client
import socket


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
