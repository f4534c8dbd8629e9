"""Gemini CLI itself (npm `@google/gemini-cli`, `gemini -p ... -m M`, non-interactive)
through real Envoy, pointed at the gateway with `GOOGLE_GEMINI_BASE_URL` and a virtual key
as its `GEMINI_API_KEY`: a turn on the Gemini backend passes in Google's dialect, a turn
on an OpenAI-dialect and on an Anthropic backend is translated both ways.
tests/run.sh installs the pinned version beside the venv."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

GEMINI_CLI = Path(__file__).resolve().parent.parent / ".venv" / "gemini-cli" / "node_modules" / ".bin" / "gemini"
PROMPT = "Reply with the word avocet"


@pytest.fixture(scope="module")
def gemini_cli(gateway, tmp_path_factory):
    if not GEMINI_CLI.exists():
        pytest.fail(f"Gemini CLI is not installed at {GEMINI_CLI}: tests/run.sh installs it (npm)")
    home = tmp_path_factory.mktemp("gemini-home")
    work = tmp_path_factory.mktemp("gemini-work")
    settings = home / ".gemini" / "settings.json"
    settings.parent.mkdir()
    # The key's kind, no telemetry, no update check, no IDE: a CI machine's settings.
    settings.write_text(json.dumps({"security": {"auth": {"selectedType": "gemini-api-key"}},
                                    "privacy": {"usageStatisticsEnabled": False},
                                    "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
                                    "telemetry": {"enabled": False}}))

    def run(model: str) -> str:
        env = {"PATH": os.environ["PATH"], "HOME": str(home), "GEMINI_API_KEY": "sk-demo-alice",
               "GOOGLE_GEMINI_BASE_URL": f"http://127.0.0.1:{gateway.port}", "NO_COLOR": "1",
               "GEMINI_CLI_NO_RELAUNCH": "true", "GEMINI_CLI_TRUST_WORKSPACE": "true"}
        done = subprocess.run([str(GEMINI_CLI), "-p", PROMPT, "-m", model], env=env, cwd=work,
                              capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done.stdout

    return run


@pytest.mark.parametrize("model, listener, path", [
    ("gemini-2.5-flash", "mock-gemini", "/v1beta/models/gemini-2.5-flash:streamGenerateContent"),
    ("gpt-4o-mini", "mock", "/v1/chat/completions"),
    ("claude-sonnet-4-6", "mock-anthropic", "/v1/messages"),
])
def test_a_turn_completes_on_each_backend(gateway, gemini_cli, model, listener, path):
    gateway.clear_received()
    earlier = len(gateway.log_records())          # the session stack's log holds other files' calls
    answer = gemini_cli(model)
    assert PROMPT in answer                       # the mock echoes the last user turn
    sent = [r for r in gateway.received(listener) if r["path"] == path]
    assert sent, [r["path"] for r in gateway.received(listener)]
    assert "sk-demo-alice" not in json.dumps(sent[-1]["headers"]) + json.dumps(sent[-1]["query"])
    record = gateway.wait_for_record(predicate=lambda r: r["model"] == model and r["user"] == "alice"
                                     and r["output_tokens"] > 0, after=earlier)
    assert record["status"] == 200
