"""The scripts in examples/ run against a quickstart gateway and do what they say: each
exits 0 and prints what it promises, and each exits non-zero when the gateway refuses it.

The quickstart's mock provider echoes the last user message, so what a script sent can
be read back from what it printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TESTED = {"chat.py", "stream.py", "tools.py", "embeddings.py", "agent.py", "curl.sh", "mcp_tools.py"}


def run(gateway, name: str, *args: str, key: str = "sk-demo-alice", stdin: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    if name.endswith(".sh") and shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    command = ["bash" if name.endswith(".sh") else sys.executable, str(EXAMPLES / name), *args]
    environment = {**os.environ, "GATEWAY_BASE_URL": gateway.base_url, "GATEWAY_API_KEY": key, **(env or {})}
    for variable in ("GATEWAY_MODEL", "GATEWAY_EMBEDDING_MODEL", "AGENT_SUMMARY_MODEL", "AGENT_REVIEW_MODEL"):
        if variable not in (env or {}):
            environment.pop(variable, None)
    return subprocess.run(command, env=environment, input=stdin, capture_output=True, text=True, timeout=120)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def test_every_example_is_tested():
    scripts = {p.name for p in EXAMPLES.iterdir() if p.suffix in (".py", ".sh")}
    assert scripts == TESTED, "an example without a test here (or a test of one gone)"


def test_chat(gateway):
    out = ok(run(gateway, "chat.py", "Write a haiku about load balancers."))
    assert "Write a haiku about load balancers." in out        # the mock's echo
    assert "backend: mock " in out and "model: gpt-4o-mini" in out
    assert "usage: " in out and " output = " in out


def test_stream_fails_over_and_ends_with_its_usage(gateway):
    out = ok(run(gateway, "stream.py", "Stream these words back, please."))
    assert "Stream these words back, please." in out
    assert "backend: mock-backup" in out                       # `smart`'s first backend is down
    assert "first token after" in out and "usage: " in out


def test_tools_runs_the_tool_and_sends_its_result(gateway):
    out = ok(run(gateway, "tools.py", "How do I rotate a virtual key?"))
    assert 'tool call: search_docs({"text": "How do I rotate a virtual key?"})' in out
    assert "tool result: Rotating a key" in out
    assert "answer: How do I rotate a virtual key?" in out
    assert "over 2 calls" in out


def test_embeddings(gateway):
    out = ok(run(gateway, "embeddings.py", "budget refused"))
    assert "4 vectors of 1536 dimensions (text-embedding-3-small)" in out
    assert "usage: " in out


def test_agent_uses_two_models_and_tags_its_calls(gateway):
    out = ok(run(gateway, "agent.py"))
    assert "== summary (gpt-4o-mini)" in out and "== review (gpt-4o)" in out
    assert "fetch_invoice" in out                               # the sample diff reached both models
    lines = [line.split() for line in out.splitlines() if line.startswith(("summarise ", "review "))]
    assert [(line[0], line[1]) for line in lines] == [("summarise", "gpt-4o-mini"), ("review", "gpt-4o")]
    assert all(int(line[3]) > 0 and int(line[4]) > 0 for line in lines)
    for task, model in (("summarise", "gpt-4o-mini"), ("review", "gpt-4o")):
        record = gateway.wait_for_record(predicate=lambda r, task=task: (r.get("tags") or {}).get("task") == task)
        assert record["tags"] == {"agent": "code-review", "task": task}
        assert record["model"] == model and record["status"] == 200


def test_agent_reads_a_diff_from_stdin(gateway):
    diff = "--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-limit = 10\n+limit = 10_000  # marker-7f3a\n"
    out = ok(run(gateway, "agent.py", "-", stdin=diff))
    assert "marker-7f3a" in out


def test_curl(gateway):
    out = ok(run(gateway, "curl.sh"))
    assert '"id":"gpt-4o-mini"' in out                          # the models list
    assert "x-gateway-backend: mock" in out.lower()
    assert "Hello from curl!" in out and "data: [DONE]" in out
    assert "[CARD]" in out and "4111 1111" not in out           # redacted (ids may hold "4111")
    assert '"code":"model_not_found"' in out and "HTTP 404: as expected" in out


def test_mcp_tools(gateway):
    out = ok(run(gateway, "mcp_tools.py"))
    assert "tools: echo, get_time, fetch_note, lookup_contact, send_email" in out
    assert "echo: Mail me at [EMAIL]" in out                    # redacted before the server
    assert "quarantined" in out and "'prompt-injection'" in out and "attacker" not in out
    out = ok(run(gateway, "mcp_tools.py", key="sk-demo-bob"))
    assert "tools: echo, get_time\n" in out and "fetch_note refused:" in out and "not allowed" in out


@pytest.mark.parametrize("name", sorted(TESTED))
def test_a_refused_call_exits_non_zero(gateway, name):
    result = run(gateway, name, key="sk-not-a-gateway-key")
    assert result.returncode != 0, result.stdout
    assert "401" in result.stderr or "invalid_api_key" in result.stdout + result.stderr
