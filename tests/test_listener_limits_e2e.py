"""Client connections through real Envoy cannot exhaust the gateway: the overload
manager's connection cap is below Envoy's descriptor limit, and a client that connects
and sends no request headers is disconnected after the header timeout."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx


def _envoy_soft_nofile(gateway) -> int:
    """The open-file soft limit of the Envoy that `extproc up` started."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"--disable-hot-restart" in argv and (proc / "exe").resolve().name == "envoy" \
                    and _descends_from(int(proc.name), gateway.process.pid):
                for line in (proc / "limits").read_text().splitlines():
                    if line.startswith("Max open files"):
                        return int(line.split()[3])
        except OSError:
            continue
    raise AssertionError("no Envoy process under extproc up")


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        pid = int((Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1]).split()[1])
    return False


def _bootstrap(gateway) -> dict:
    dump = gateway.envoy_admin("/config_dump").json()
    return next(c for c in dump["configs"] if c["@type"].endswith("BootstrapConfigDump"))["bootstrap"]


def test_the_connection_cap_is_below_envoys_descriptor_limit(gateway):
    [monitor] = [m for m in _bootstrap(gateway)["overload_manager"]["resource_monitors"]
                 if m["name"] == "envoy.resource_monitors.global_downstream_max_connections"]
    cap = int(monitor["typed_config"]["max_active_downstream_connections"])
    soft_limit = _envoy_soft_nofile(gateway)
    # Each client connection may hold an upstream descriptor as well.
    assert 2 * cap < soft_limit, (cap, soft_limit)


def test_a_client_that_sends_no_headers_is_disconnected(gateway):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as silent:
        silent.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")   # never finished
        try:
            closed = silent.recv(4096)
        except ConnectionResetError:
            closed = b""
    waited = time.monotonic() - started
    # Envoy answers 408 (or just closes) once request_headers_timeout (10 s) passes.
    assert closed == b"" or closed.startswith(b"HTTP/1.1 408"), closed[:100]
    assert 5 < waited < 25, waited


def test_envoys_admin_is_an_owner_only_socket(gateway):
    """No TCP admin: only the gateway's user may open the socket (log level, drain, quit)."""
    import stat
    address = _bootstrap(gateway)["admin"]["address"]
    assert "socket_address" not in address and address["pipe"]["path"] == str(gateway.envoy_admin_socket)
    mode = stat.S_IMODE(gateway.envoy_admin_socket.stat().st_mode)
    assert stat.S_ISSOCK(gateway.envoy_admin_socket.stat().st_mode) and mode & 0o077 == 0, oct(mode)
    assert gateway.envoy_admin("/ready").status_code == 200


def test_the_read_only_view_of_envoys_admin_serves_reads_and_refuses_every_change(gateway):
    """127.0.0.1:<admin_read> (9901 in the quickstart): GET of stats, readiness, clusters and
    listeners, passed to the socket; log levels, health failing, draining and quitting: 403."""
    view = f"http://127.0.0.1:{gateway.envoy_admin_port}"
    assert httpx.get(f"{view}/ready", timeout=5).text.strip() == "LIVE"
    assert "cluster_manager.cluster_added" in httpx.get(f"{view}/stats", timeout=5).text
    assert "envoy_cluster_manager_cluster_added" in httpx.get(f"{view}/stats/prometheus", timeout=5).text
    for method, path in [("POST", "/logging?level=debug"), ("GET", "/logging?http=debug"),
                         ("POST", "/healthcheck/fail"), ("POST", "/drain_listeners"),
                         ("POST", "/quitquitquit"), ("GET", "/config_dump"), ("POST", "/stats")]:
        done = httpx.request(method, f"{view}{path}", timeout=5)
        assert done.status_code == 403, (method, path, done.status_code)
    assert gateway.envoy_admin("/ready").status_code == 200          # still live, still serving
    assert "debug" not in gateway.envoy_admin("/logging", method="POST").text.split("http:")[1][:10]
