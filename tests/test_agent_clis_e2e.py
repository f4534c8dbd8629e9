"""Qwen Code and OpenCode, real agent CLIs of OpenAI's Chat Completions API (npm
`@qwen-code/qwen-code`, `opencode-ai` with `@ai-sdk/openai-compatible`), each completing a
turn through real Envoy on an OpenAI-dialect backend and on an Anthropic one (translated).
Their tool schemas hold JSON Schema type lists (`"type": ["integer", "null"]`), which the
gateway reads as data. tests/run.sh installs the pinned versions beside the venv."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

VENV = Path(__file__).resolve().parent.parent / ".venv"
QWEN = VENV / "qwen-code" / "node_modules" / ".bin" / "qwen"
OPENCODE = VENV / "opencode" / "node_modules" / ".bin" / "opencode"
PROMPT = "Reply with the word pelican"
MODELS = ["gpt-4o-mini", "claude-sonnet-4-6"]


def _installed(binary: Path) -> None:
    if not binary.exists():
        pytest.fail(f"{binary} is not installed: tests/run.sh installs it (npm)")


@pytest.mark.parametrize("model", MODELS)
def test_qwen_code_completes_a_turn(gateway, tmp_path, model):
    _installed(QWEN)
    gateway.clear_received()
    earlier = len(gateway.log_records())     # the session stack's log holds other files' calls
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
           "OPENAI_BASE_URL": f"http://127.0.0.1:{gateway.port}/v1", "OPENAI_API_KEY": "sk-demo-alice",
           "OPENAI_MODEL": model}
    done = subprocess.run([str(QWEN), "-p", PROMPT, "--auth-type", "openai"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert PROMPT in done.stdout and "API Error" not in done.stdout    # the mock echoes the last user turn
    listener, path = ("mock", "/v1/chat/completions") if model == "gpt-4o-mini" else ("mock-anthropic", "/v1/messages")
    sent = [json.loads(r["body"]) for r in gateway.received(listener) if r["path"] == path]
    # Its tools reached the provider, type lists and all (as translated for an Anthropic one).
    assert sent and any(body.get("tools") for body in sent)
    record = gateway.wait_for_record(predicate=lambda r: r["model"] == model and r["status"] == 200
                                     and r["user"] == "alice" and r["output_tokens"] > 0, after=earlier)
    assert record["path"] == "/v1/chat/completions"


@pytest.mark.parametrize("model", MODELS)
def test_opencode_completes_a_turn(gateway, tmp_path, model):
    _installed(OPENCODE)
    config = tmp_path / ".config" / "opencode"
    config.mkdir(parents=True)
    (config / "opencode.json").write_text(json.dumps({
        "$schema": "https://opencode.ai/config.json", "autoupdate": False, "share": "disabled",
        "provider": {"gw": {"npm": "@ai-sdk/openai-compatible", "name": "gateway",
                            "options": {"baseURL": f"http://127.0.0.1:{gateway.port}/v1", "apiKey": "sk-demo-alice"},
                            "models": {name: {"name": name} for name in MODELS}}}}))
    work = tmp_path / "work"
    work.mkdir()
    earlier = len(gateway.log_records())
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "OPENCODE_DISABLE_AUTOUPDATE": "1",
           "OPENCODE_DISABLE_MODELS_FETCH": "1"}
    done = subprocess.run([str(OPENCODE), "run", "-m", f"gw/{model}", PROMPT], env=env, cwd=work,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert PROMPT in done.stdout
    record = gateway.wait_for_record(predicate=lambda r: r["model"] == model and r["status"] == 200
                                     and r["user"] == "alice" and r["output_tokens"] > 0, after=earlier)
    assert record["path"] == "/v1/chat/completions"
