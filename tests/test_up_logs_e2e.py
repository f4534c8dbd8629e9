"""`extproc up` in the foreground: the terminal shows the banner (URLs, keys, where the
logs are) and no log line per call; the service's JSON lines and Envoy's log go to files
in the state dir. (`up --log` keeps them on the terminal: every GatewayStack runs so.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx

from extproc.config.local_ports import PORT_OFFSET_ENV

OFFSET = 4700          # below tests/gateway_stack.py's ports (15000 and up), apart from the port-offset test's


def test_up_logs_to_files_in_the_state_dir_and_says_where(tmp_path):
    state = tmp_path / "state"
    terminal = tmp_path / "terminal.out"
    env = {k: v for k, v in os.environ.items() if k != PORT_OFFSET_ENV}
    process = subprocess.Popen([sys.executable, "-m", "extproc", "up", "--port-offset", str(OFFSET),
                                "--workers", "1", "--state-dir", str(state)],
                               stdout=open(terminal, "wb"), stderr=subprocess.STDOUT,
                               env={**env, "PYTHONUNBUFFERED": "1"}, cwd=str(tmp_path))
    try:
        deadline = time.monotonic() + 120
        while "Ctrl-C stops everything" not in terminal.read_text():
            assert process.poll() is None, terminal.read_text()[-3000:]
            assert time.monotonic() < deadline, terminal.read_text()[-3000:]
            time.sleep(0.2)
        for n in range(3):
            answered = httpx.post(f"http://127.0.0.1:{10000 + OFFSET}/v1/chat/completions", timeout=30,
                                  headers={"authorization": "Bearer sk-demo-alice"},
                                  json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"hi {n}"}]})
            assert answered.status_code == 200, answered.text
        request_id = answered.headers["x-request-id"]
        service_log = state / "logs" / "gateway.jsonl"
        while request_id not in (service_log.read_text() if service_log.exists() else ""):
            assert time.monotonic() < deadline, "the call's line never reached the service log"
            time.sleep(0.1)
        lines = [json.loads(line) for line in service_log.read_text().splitlines() if line.startswith("{")]
        assert any(line.get("request_id") == request_id and line.get("status") == 200 for line in lines)
        assert (state / "logs" / "envoy.log").exists()
        assert oct((state / "logs" / "gateway.jsonl").stat().st_mode & 0o777) == "0o600"
        shown = terminal.read_text()
        assert f"{state / 'logs' / 'gateway.jsonl'}" in shown and f"{state / 'logs' / 'envoy.log'}" in shown
        assert f"http://127.0.0.1:{10000 + OFFSET}/v1" in shown and "sk-demo-alice" in shown
        assert request_id not in shown and '"request_id"' not in shown, shown[-2000:]
        assert "/v1/chat/completions" not in shown.split("Ctrl-C stops everything")[1]   # no access log line
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
