"""The quickstart's guardrails leave the agents' own prompts alone: Claude Code and Codex
CLI, each run once straight at the mock provider and once through the gateway (real
Envoy), reach the provider with their system prompts, developer instructions and tool
definitions byte for byte as they wrote them, while a person's address in the user's turn
is redacted and a secret is redacted wherever it stands, the system prompt included.

Each agent's system prompt is given an operator's line with a maintainer's address and a
deploy key (Claude Code's `--append-system-prompt`, Codex's `developer_instructions`):
the address stays, the key becomes `[SECRET]`."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

VENV = Path(__file__).resolve().parent.parent / ".venv"
CLAUDE = VENV / "claude-code" / "node_modules" / ".bin" / "claude"
CODEX = VENV / "codex" / "node_modules" / ".bin" / "codex"
SECRET = "sk-proj-" + "Q7vXk2Lp9RmT4wZc8NbY3hJd6FsA1gEu"      # the shape of an OpenAI project key
OPERATOR = f"Maintainer of this repository: jane.maintainer@example.org. Deploy key: {SECRET}."
USER_TURN = "Reply with the word pelican. My address is bob.user@example.net"


def _claude(base_url: str, key: str, home: Path, work: Path) -> None:
    if not CLAUDE.exists():
        pytest.fail(f"Claude Code is not installed at {CLAUDE}: tests/run.sh installs it (npm)")
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "ANTHROPIC_API_KEY": key, "ANTHROPIC_BASE_URL": base_url,
           "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1", "DISABLE_AUTOUPDATER": "1",
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "CLAUDE_CODE_MAX_RETRIES": "1"}
    subprocess.run([str(CLAUDE), "-p", USER_TURN, "--model", "claude-sonnet-4-6", "--max-turns", "1",
                    "--append-system-prompt", OPERATOR], env=env, cwd=work, capture_output=True, text=True,
                   timeout=120)


def _codex(base_url: str, key: str, model: str, home: Path, work: Path) -> None:
    if not CODEX.exists():
        pytest.fail(f"Codex CLI is not installed at {CODEX}: tests/run.sh installs it (npm)")
    (home / "config.toml").write_text(
        f'model = "{model}"\nmodel_provider = "gateway"\ncheck_for_update_on_startup = false\n'
        f'developer_instructions = "{OPERATOR}"\n\n'
        '[model_providers.gateway]\nname = "gateway"\n'
        f'base_url = "{base_url}/v1"\nenv_key = "GATEWAY_KEY"\nwire_api = "responses"\n')
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "CODEX_HOME": str(home), "GATEWAY_KEY": key}
    subprocess.run([str(CODEX), "exec", "--skip-git-repo-check", USER_TURN], env=env, cwd=work,
                   capture_output=True, text=True, timeout=120)


def _turns(gateway, listener: str, path: str, since: int) -> list[dict]:
    """The agent's turn calls the mock received after the first `since` entries (those
    that offer tools: Claude Code also sends a short call of its own, without)."""
    bodies = [json.loads(r["body"]) for r in gateway.received(listener)[since:] if r["path"] == path]
    return [b for b in bodies if b.get("tools")]


def _claude_parts(body: dict) -> dict:
    return {"system": body["system"], "tools": body["tools"]}


def _codex_parts(body: dict) -> dict:
    # (each item's id is made anew per session: the rest is the agent's text)
    developer = [{k: v for k, v in item.items() if k != "id"} for item in body["input"]
                 if isinstance(item, dict) and item.get("role") in ("developer", "system")]
    return {"instructions": body.get("instructions"), "developer": developer, "tools": body["tools"]}


def _same(through: dict, direct: dict) -> None:
    """The parts the provider got through the gateway are the agent's: a diff when not."""
    import difflib
    if through != direct:
        lines = [json.dumps(p, indent=1, sort_keys=True).splitlines() for p in (direct, through)]
        diff = "\n".join(list(difflib.unified_diff(*lines, "sent", "received", lineterm=""))[:60])
        pytest.fail(f"the gateway changed the agent's own parts:\n{diff}")


def _with_secret_redacted(parts: dict) -> dict:
    return json.loads(json.dumps(parts).replace(SECRET, "[SECRET]"))


@pytest.fixture
def folders(tmp_path):
    made = {}
    for name in ("home", "work"):     # one home: the agents write its path into their prompts
        made[name] = tmp_path / name
        made[name].mkdir()
    return made


def test_claude_codes_system_prompt_and_tools_reach_the_provider_as_written(gateway, folders):
    since = len(gateway.received("mock-anthropic"))
    _claude(gateway.mock_url("mock-anthropic"), "mock-anthropic-key", folders["home"], folders["work"])
    [direct] = _turns(gateway, "mock-anthropic", "/v1/messages", since)[:1]
    since = len(gateway.received("mock-anthropic"))
    _claude(f"http://127.0.0.1:{gateway.port}", "sk-demo-alice", folders["home"], folders["work"])
    [through] = _turns(gateway, "mock-anthropic", "/v1/messages", since)[:1]
    assert OPERATOR in json.dumps(direct["system"])
    _same(_claude_parts(through), _with_secret_redacted(_claude_parts(direct)))
    sent = json.dumps(through)
    assert SECRET not in sent and "bob.user@example.net" not in sent and "[EMAIL]" in sent


def test_codexs_instructions_and_tools_reach_the_provider_as_written(gateway, folders):
    marker = uuid.uuid4().hex[:8]
    work = folders["work"] / marker
    work.mkdir()
    since = len(gateway.received("mock"))
    _codex(gateway.mock_url("mock"), "mock-provider-key", "gpt-4o-mini", folders["home"], work)
    [direct] = _turns(gateway, "mock", "/v1/responses", since)[:1]
    since = len(gateway.received("mock"))
    _codex(f"http://127.0.0.1:{gateway.port}", "sk-demo-alice", "gpt-4o-mini-responses", folders["home"], work)
    [through] = _turns(gateway, "mock", "/v1/responses", since)[:1]
    assert OPERATOR in json.dumps(_codex_parts(direct))
    _same(_codex_parts(through), _with_secret_redacted(_codex_parts(direct)))
    sent = json.dumps(through)
    assert SECRET not in sent and "bob.user@example.net" not in sent and "[EMAIL]" in sent
