"""Gemini CLI itself (npm `@google/gemini-cli`, `gemini -p`) in a forced tool loop through
real Envoy: the mock answers every call with the same call of the CLI's `list_directory`
tool (`x-mock-tool-call`, sent by the CLI as a custom header), the CLI runs it and sends
the result back, again and again (its own loop detection off, as a user may set it).
Gemini CLI names no run (its `x-gemini-api-privileged-user-id` is the same for every
run): the gateway infers the run from its growing conversation and stops the loop
within the quickstart's count (429 agent_loop)."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from test_agent_runs_e2e import QUICKSTART_REPEATS, runs_cli
from test_gemini_cli_e2e import GEMINI_CLI


def test_a_gemini_cli_run_in_a_tool_loop_is_inferred_and_stopped(gateway, tmp_path):
    if not GEMINI_CLI.exists():
        pytest.fail(f"Gemini CLI is not installed at {GEMINI_CLI}: tests/run.sh installs it (npm)")
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    settings = home / ".gemini" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"security": {"auth": {"selectedType": "gemini-api-key"}},
                                    "privacy": {"usageStatisticsEnabled": False},
                                    "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
                                    "telemetry": {"enabled": False},
                                    "model": {"disableLoopDetection": True}}))
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "GEMINI_API_KEY": "sk-demo-alice",
           "GOOGLE_GEMINI_BASE_URL": f"http://127.0.0.1:{gateway.port}", "NO_COLOR": "1",
           "GEMINI_CLI_NO_RELAUNCH": "true", "GEMINI_CLI_TRUST_WORKSPACE": "true",
           "GEMINI_CLI_CUSTOM_HEADERS": "x-mock-tool-call: list_directory"}
    started = time.time()
    # The CLI retries a 429 with backoff for minutes (it reads no x-should-retry): the test
    # waits for the stop in the run's record, then ends the CLI.
    printed = (tmp_path / "gemini-cli.out").open("wb")
    cli = subprocess.Popen([str(GEMINI_CLI), "-p", "List the files here", "-m", "gemini-2.5-flash"],
                           env=env, cwd=work, stdin=subprocess.DEVNULL, stdout=printed, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            runs = [run for run in runs_cli(gateway, "list", "--key", "alice")
                    if run["client"] == "gemini-cli" and run["first_ts"] >= started - 1]
            looped = max((run for run in runs if run["outcome"] == "stopped_loop"),
                         key=lambda run: run["calls"], default=None)
            if looped is not None and looped["calls"] - looped["refused"] >= QUICKSTART_REPEATS + 1:
                break
            if time.monotonic() >= deadline or cli.poll() is not None:
                summary = [(r["client"], r["calls"], r["refused"], r["outcome"], round(r["first_ts"] - started, 1))
                           for r in runs_cli(gateway, "list")[:12]]
                pytest.fail(f"no run stopped: {summary}; {(tmp_path / 'gemini-cli.out').read_text()[-2000:]}")
            time.sleep(0.5)
    finally:
        cli.kill()
        cli.wait()
        printed.close()
    assert looped["inferred"] is True and looped["source"] == "inferred"
    # The first call carries nothing back; then the call is carried back 1..8 times, refused at 9.
    assert QUICKSTART_REPEATS + 1 <= looped["calls"] - looped["refused"] <= QUICKSTART_REPEATS + 2, \
        runs_cli(gateway, "show", looped["id"])["calls"]
    assert looped["refused"] >= 1 and looped["cost_usd"] < 0.10
