"""Codex CLI itself (npm `@openai/codex`, `codex exec`) in a forced tool loop through real
Envoy: the mock answers every call with the same call of Codex's `shell` tool
(`x-mock-tool-call`, sent by Codex as a provider header), Codex runs it and sends the
result back, again and again. The gateway recognises the calls as one run from Codex's
own `session-id` header, with no run header, and stops the loop within the quickstart's
count (429 agent_loop), well under $0.10."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from test_agent_runs_e2e import QUICKSTART_REPEATS, runs_cli

CODEX = Path(__file__).resolve().parent.parent / ".venv" / "codex" / "node_modules" / ".bin" / "codex"


def test_a_codex_run_in_a_tool_loop_is_one_run_and_is_stopped(gateway, tmp_path):
    if not CODEX.exists():
        pytest.fail(f"Codex CLI is not installed at {CODEX}: tests/run.sh installs it (npm)")
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (home / "config.toml").write_text(
        'model = "gpt-4o-mini"\nmodel_provider = "gateway"\ncheck_for_update_on_startup = false\n'
        'approval_policy = "never"\nsandbox_mode = "read-only"\n\n'
        '[model_providers.gateway]\nname = "gateway"\n'
        f'base_url = "http://127.0.0.1:{gateway.port}/v1"\nenv_key = "GATEWAY_KEY"\nwire_api = "responses"\n'
        'request_max_retries = 1\nstream_max_retries = 1\n'
        'http_headers = { "x-mock-tool-call" = "shell" }\n')
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "CODEX_HOME": str(home), "GATEWAY_KEY": "sk-demo-alice"}
    started = time.time()
    done = subprocess.run([str(CODEX), "exec", "--skip-git-repo-check", "List the files here"],
                          env=env, cwd=work, capture_output=True, text=True, timeout=180)
    output = done.stdout + done.stderr
    # Codex 0.169 prints the status of a 429, not its message: the run's record says why.
    assert done.returncode != 0 and "429" in output, output[-3000:]
    # (each worker's calls reach the store in a batch of its own; each `runs` command is a
    # Python process, seconds apiece on a host busy with the rest of the suite)
    deadline = time.monotonic() + 30
    while True:
        runs = [run for run in runs_cli(gateway, "list", "--key", "alice")
                if run["client"] == "codex" and run["first_ts"] >= started - 1]
        if runs and runs[0]["outcome"] == "stopped_loop" and \
                runs[0]["calls"] - runs[0]["refused"] >= QUICKSTART_REPEATS + 1:
            break
        if time.monotonic() >= deadline:
            seen = [{k: run.get(k) for k in ("id", "source", "inferred", "outcome", "calls", "refused")}
                    for run in runs]
            calls = [[(c.get("status"), c.get("outcome"), c.get("error")) for c in runs_cli(gateway, "show", r["id"])["calls"]]
                     for r in runs]
            pytest.fail(f"runs: {seen}\ntheir calls: {calls}\nCodex: {output[-1500:]}")
        time.sleep(0.2)
    assert len(runs) == 1, runs                     # Codex's calls: one run
    run = runs[0]
    assert run["source"] in ("session-id", "body:prompt_cache_key")
    # The first call carries nothing back (and the mock's first tool call may differ: its arguments
    # echo the last user text); then the call is carried back 1..8 times, and refused at 9.
    assert QUICKSTART_REPEATS + 1 <= run["calls"] - run["refused"] <= QUICKSTART_REPEATS + 2, \
        runs_cli(gateway, "show", run["id"])["calls"]
    assert run["calls"] <= 20 and run["cost_usd"] < 0.10
