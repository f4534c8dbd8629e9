"""Claude Code itself (npm `@anthropic-ai/claude-code`, print mode) in a forced tool loop
through real Envoy: the mock answers every call with the same call of Claude Code's
`Bash` tool (`x-mock-tool-call`, sent by Claude Code as a custom header), Claude Code
answers it (its input is not what Bash takes: an error result) and asks again. The
gateway recognises the turn's calls as one run from Claude Code's own
`x-claude-code-session-id`, with no run header, and stops the loop within the
quickstart's count (429 agent_loop)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from test_agent_runs_e2e import QUICKSTART_REPEATS, runs_cli

CLAUDE = Path(__file__).resolve().parent.parent / ".venv" / "claude-code" / "node_modules" / ".bin" / "claude"


def test_a_claude_code_run_in_a_tool_loop_is_one_run_and_is_stopped(gateway, tmp_path):
    if not CLAUDE.exists():
        pytest.fail(f"Claude Code is not installed at {CLAUDE}: tests/run.sh installs it (npm)")
    env = {
        "PATH": os.environ["PATH"], "HOME": str(tmp_path), "ANTHROPIC_API_KEY": "sk-demo-alice",
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{gateway.port}",
        "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1", "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "CLAUDE_CODE_MAX_RETRIES": "1",
        "ANTHROPIC_CUSTOM_HEADERS": "x-mock-tool-call: Bash",
    }
    started = time.time()
    done = subprocess.run([str(CLAUDE), "-p", "List the files here", "--model", "claude-sonnet-4-6",
                           "--output-format", "json", "--max-turns", "40"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    output = done.stdout + done.stderr
    assert "agent_loop" in output or "Agent loop stopped" in output or "429" in output, output[-3000:]
    deadline = time.monotonic() + 10
    while True:
        runs = [run for run in runs_cli(gateway, "list", "--key", "alice")
                if run["client"] == "claude-code" and run["first_ts"] >= started - 1]
        if runs and runs[0]["outcome"] == "stopped_loop" and \
                runs[0]["calls"] - runs[0]["refused"] >= QUICKSTART_REPEATS + 1:
            break
        assert time.monotonic() < deadline, runs
        time.sleep(0.2)
    assert len(runs) == 1, runs                     # the turn's calls: one run
    run = runs[0]
    assert run["source"] == "x-claude-code-session-id"
    assert run["calls"] - run["refused"] <= QUICKSTART_REPEATS + 2, \
        runs_cli(gateway, "show", run["id"])["calls"]
    assert run["calls"] <= 20
