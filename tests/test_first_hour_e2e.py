"""What a new user meets in the first hour, through the quickstart: a misspelt model is
answered with the names the key may use instead, in each caller's dialect; `extproc
--help` lists only the commands a person runs."""

from __future__ import annotations


import httpx
import pytest
from warm_start import run_extproc


@pytest.mark.parametrize("key, asked, suggested, not_suggested", [
    ("sk-demo-alice", "claude-sonet-4-6", "'claude-sonnet-4-6'", None),
    ("sk-demo-alice", "gpt4o-mini", "'gpt-4o-mini'", None),
    ("sk-demo-bob", "gpt-4o-min", "'gpt-4o-mini'", "'gpt-4o'"),      # bob may use gpt-4o-mini only
])
def test_an_unknown_model_suggests_the_closest_names_the_key_may_use(gateway, key, asked, suggested,
                                                                     not_suggested):
    base = gateway.base_url.removesuffix("/v1")
    chat = httpx.post(f"{base}/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, timeout=30,
                      json={"model": asked, "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 404 and chat.json()["error"]["code"] == "model_not_found"
    message = chat.json()["error"]["message"]
    assert f"The model '{asked}' does not exist. Did you mean {suggested}" in message
    if not_suggested:
        assert not_suggested not in message
    anthropic = httpx.post(f"{base}/v1/messages", headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                           json={"model": asked, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
                           timeout=30)
    assert anthropic.status_code == 404 and anthropic.json()["error"]["type"] == "not_found_error"
    assert suggested in anthropic.json()["error"]["message"]


def test_a_model_nothing_resembles_gets_no_suggestion(gateway):
    chat = httpx.post(f"{gateway.base_url}/chat/completions", headers={"authorization": "Bearer sk-demo-alice"},
                      json={"model": "zzzz", "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    assert chat.status_code == 404 and chat.json()["error"]["message"] == "The model 'zzzz' does not exist."


def test_help_lists_only_the_commands_a_person_runs():
    shown = run_extproc(["--help"], capture_output=True, text=True,
                        timeout=60).stdout
    listed = shown.split("positional arguments:")[1].split("options:")[0]
    commands = [line.split()[0] for line in listed.splitlines() if line.startswith("    ") and line.split()]
    assert "SUPPRESS" not in shown and "worker" not in commands and "mcp-aggregator" not in commands
    for command in ("up", "serve", "check", "keys", "usage", "envoy-config"):
        assert command in commands
