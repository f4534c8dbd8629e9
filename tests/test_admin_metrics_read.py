"""The admin's /metrics reads the processes' metric files as they are: a file a new
process is still creating (empty) fails a read, and the admin reads again a moment later;
one that stays unreadable is a 500 that says so, never a connection closed without an
answer (which Prometheus reports as a target down with "EOF")."""

from __future__ import annotations

import httpx

from gateway_stack import free_port
from extproc.runtime.admin import start_admin


def _admin(monkeypatch, folder):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    port = free_port()
    server = start_admin(f"127.0.0.1:{port}", lambda: (True, "ready"))
    return server, f"http://127.0.0.1:{port}/metrics"


def test_a_file_that_stays_unreadable_is_a_500_saying_so(tmp_path, monkeypatch):
    (tmp_path / "counter_4242.db").write_bytes(b"")
    server, url = _admin(monkeypatch, tmp_path)
    try:
        answer = httpx.get(url, timeout=5)
        assert answer.status_code == 500 and answer.text.startswith("metrics not readable: error")
        (tmp_path / "counter_4242.db").unlink()
        assert httpx.get(url, timeout=5).status_code == 200
    finally:
        server.shutdown()


def test_a_read_that_fails_once_is_made_again(tmp_path, monkeypatch):
    """As a read meeting a new process's empty file fails (prometheus-client's struct.error)."""
    from extproc.runtime import admin

    real, failures = admin.generate_latest, []

    def fails_once(registry):
        if not failures:
            failures.append(1)
            raise ValueError("unpack_from requires a buffer of at least 4 bytes")
        return real(registry)

    monkeypatch.setattr(admin, "generate_latest", fails_once)
    server, url = _admin(monkeypatch, tmp_path)
    try:
        answer = httpx.get(url, timeout=5)
        assert answer.status_code == 200 and failures == [1], answer.text
    finally:
        server.shutdown()
