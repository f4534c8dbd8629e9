"""Claude Code itself (npm `@anthropic-ai/claude-code`, print mode) through real Envoy: a
turn on an Anthropic-dialect backend (nothing translated: its betas, thinking,
context management and metadata reach the provider as sent), on an OpenAI-dialect one
(translated both ways, streamed) and on `smart-claude`, which fails over from one
dialect to the other. tests/run.sh installs the pinned version beside the venv."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

CLAUDE = Path(__file__).resolve().parent.parent / ".venv" / "claude-code" / "node_modules" / ".bin" / "claude"
PROMPT = "Reply with the word pelican"


@pytest.fixture(scope="module")
def claude_code(gateway, tmp_path_factory):
    if not CLAUDE.exists():
        pytest.fail(f"Claude Code is not installed at {CLAUDE}: tests/run.sh installs it (npm)")
    home = tmp_path_factory.mktemp("claude-home")

    def run(model: str, *args: str, headers: str = "", exit_code: int = 0, bearer: bool = False) -> dict:
        # The key as x-api-key (ANTHROPIC_API_KEY) or as Authorization: Bearer (ANTHROPIC_AUTH_TOKEN).
        key = {"ANTHROPIC_AUTH_TOKEN" if bearer else "ANTHROPIC_API_KEY": "sk-demo-alice"}
        env = {
            "PATH": os.environ["PATH"], "HOME": str(home), **key,
            "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{gateway.port}",
            # No calls anywhere but the gateway: no telemetry, error reports or update checks.
            "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1", "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "ANTHROPIC_CUSTOM_HEADERS": headers,       # the mock's controls (x-mock-*)
        }
        done = subprocess.run([str(CLAUDE), "-p", PROMPT, "--model", model, "--output-format", "json", *args],
                              env=env, cwd=home, capture_output=True, text=True, timeout=120)
        assert done.returncode == exit_code, done.stdout[-2000:] + done.stderr[-2000:]
        return json.loads(done.stdout)

    return run


def _sent(gateway, listener: str) -> list[dict]:
    """The Messages or Chat Completions requests of a turn, as the provider got them."""
    return [r for r in gateway.received(listener) if r["path"] in ("/v1/messages", "/v1/chat/completions")]


def _turn(gateway, listener: str) -> dict:
    """The one model request of a turn without tools."""
    sent = _sent(gateway, listener)
    assert len(sent) == 1, [r["path"] for r in sent]
    return sent[0]


def test_a_turn_on_an_anthropic_backend_reaches_it_as_claude_code_sent_it(gateway, claude_code):
    gateway.clear_received()
    earlier = len(gateway.log_records())     # the session stack's log holds other files' calls
    result = claude_code("claude-sonnet-4-6")
    assert not result["is_error"] and PROMPT in result["result"]     # the mock echoes the last user turn
    sent = _turn(gateway, "mock-anthropic")
    body = json.loads(sent["body"])
    assert sent["query"] == {"beta": "true"} and body["stream"] is True
    assert len(body["tools"]) >= 10 and body["thinking"] and body["context_management"] and body["metadata"]
    assert len(sent["headers"]["anthropic-beta"].split(",")) >= 3
    assert sent["headers"]["x-api-key"] == "mock-anthropic-key"
    record = gateway.wait_for_record(predicate=lambda r: r["model"] == "claude-sonnet-4-6" and r["stream"]
                                     and r["output_tokens"] > 0 and r["user"] == "alice", after=earlier)
    assert "translated_to" not in record and not record["usage_estimated"]
    assert record["input_tokens"] == result["usage"]["input_tokens"]
    assert record["output_tokens"] == result["usage"]["output_tokens"]


def test_a_turn_on_an_openai_backend_is_translated_both_ways(gateway, claude_code):
    gateway.clear_received()
    result = claude_code("gpt-4o-mini")
    assert not result["is_error"] and PROMPT in result["result"]
    sent = _turn(gateway, "mock")
    body = json.loads(sent["body"])
    assert sent["path"] == "/v1/chat/completions" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert len(body["tools"]) >= 10 and all(t["type"] == "function" for t in body["tools"])
    assert body["messages"][0]["role"] == "system" and body["reasoning_effort"]
    assert "anthropic-beta" not in sent["headers"] and "x-api-key" not in sent["headers"]
    record = gateway.wait_for_record(predicate=lambda r: r["model"] == "gpt-4o-mini" and r.get("api") == "anthropic"
                                     and r["output_tokens"] > 0)
    assert record["translated_to"] == "openai" and not record["usage_estimated"]
    assert {"anthropic-beta", "context_management"} <= set(record["dropped"])
    assert record["output_tokens"] == result["usage"]["output_tokens"]


def test_a_turn_on_a_provider_of_the_responses_api_only(gateway, claude_code):
    """Messages read as chat, then written as a Responses request; the stream back the same way."""
    gateway.clear_received()
    result = claude_code("gpt-4o-mini-responses")
    assert not result["is_error"] and PROMPT in result["result"]
    [sent] = [r for r in gateway.received("mock") if r["path"] == "/v1/responses"]
    body = json.loads(sent["body"])
    assert body["stream"] is True and body["store"] is False and body["model"] == "gpt-4o-mini"
    assert len(body["tools"]) >= 10 and all(t["type"] == "function" and t["name"] for t in body["tools"])
    assert body["input"][0]["role"] == "system" and body["reasoning"]["effort"]
    record = gateway.wait_for_record(predicate=lambda r: r["model"] == "gpt-4o-mini-responses"
                                     and r["output_tokens"] > 0)
    assert record["translated_to"] == "openai-responses" and not record["usage_estimated"]
    assert record["output_tokens"] == result["usage"]["output_tokens"]


def test_smart_claude_fails_over_from_anthropic_to_openai_mid_turn(gateway, claude_code):
    gateway.clear_received()
    result = claude_code("smart-claude", bearer=True)
    assert not result["is_error"] and PROMPT in result["result"]
    assert _turn(gateway, "mock")["path"] == "/v1/chat/completions"     # mock-backup's listener
    assert gateway.received("mock-anthropic-failing")       # the first backend was tried
    record = gateway.wait_for_record(predicate=lambda r: r["model"] == "smart-claude" and r.get("api") == "anthropic"
                                     and r["output_tokens"] > 0)
    assert record["backend"] == "mock-backup" and record["attempts"] == 2 and record["translated_to"] == "openai"
    assert record["key_id"] == "alice"                      # the key came as Authorization: Bearer


def test_a_tool_call_and_its_result_go_round_through_an_openai_backend(gateway, claude_code):
    """The mock calls Claude Code's Read tool (with an input Read refuses); Claude Code
    answers with an error tool_result, translated to a tool message for the next call."""
    gateway.clear_received()
    result = claude_code("gpt-4o-mini", "--max-turns", "2", headers="x-mock-tool-call: Read",
                         exit_code=1)
    assert result["subtype"] == "error_max_turns"         # the mock calls the tool on every turn
    first, second = (json.loads(r["body"]) for r in _sent(gateway, "mock")[:2])
    called = second["messages"][-2]
    assert called["role"] == "assistant" and called["tool_calls"][0]["function"]["name"] == "Read"
    result_message = second["messages"][-1]
    assert result_message == {"role": "tool", "tool_call_id": called["tool_calls"][0]["id"],
                              "content": result_message["content"]}
    assert result_message["content"].startswith("[tool error] ")
    assert [m["role"] for m in second["messages"][:len(first["messages"])]] == [m["role"] for m in first["messages"]]


def test_a_turn_on_a_gemini_backend_is_translated_both_ways(gateway, claude_code):
    gateway.clear_received()
    result = claude_code("gemini-2.5-flash")
    assert not result["is_error"] and PROMPT in result["result"]
    sent = [r for r in gateway.received("mock-gemini") if r["path"].endswith(":streamGenerateContent")]
    assert sent and sent[-1]["query"] == {"alt": "sse"}
    body = json.loads(sent[-1]["body"])
    assert body["systemInstruction"]["parts"] and body["contents"][-1]["role"] == "user"
    assert len(body["tools"][0]["functionDeclarations"]) >= 10
    record = gateway.wait_for_record(predicate=lambda r: r["model"] == "gemini-2.5-flash" and r.get("api") == "anthropic"
                                     and r["output_tokens"] > 0)
    assert record["translated_to"] == "gemini" and record["output_tokens"] == result["usage"]["output_tokens"]


def test_a_turn_on_claude_at_vertex_keeps_the_messages_api(gateway, claude_code):
    """Claude Code on Claude served by Vertex AI: its Messages body goes untranslated, as
    Vertex takes it (the model in the path, `anthropic_version` in the body), with the
    worker's minted token."""
    gateway.clear_received()
    result = claude_code("vertex/claude-sonnet-4-6")
    assert not result["is_error"] and PROMPT in result["result"]
    sent = [r for r in gateway.received("mock-vertex") if r["path"].endswith("claude-sonnet-4-6:streamRawPredict")]
    assert sent
    body = json.loads(sent[-1]["body"])
    assert body["anthropic_version"] == "vertex-2023-10-16" and "model" not in body
    assert body["system"] and len(body["tools"]) >= 10 and body["stream"] is True
    assert sent[-1]["headers"]["authorization"].startswith("Bearer ya29.mock-")
    record = gateway.wait_for_record(predicate=lambda r: r["model"] == "vertex/claude-sonnet-4-6"
                                     and r.get("api") == "anthropic" and r["output_tokens"] > 0)
    assert record["backend"] == "vertex" and record["output_tokens"] == result["usage"]["output_tokens"]


@pytest.mark.parametrize("model, path_end", [
    ("bedrock/us.anthropic.claude-haiku-4-5-20251001-v1:0", "/invoke-with-response-stream"),
    ("bedrock/amazon.nova-micro-v1:0", "/converse-stream")], ids=["claude", "nova"])
def test_a_turn_on_bedrock(gateway, claude_code, model, path_end):
    """Claude Code on AWS Bedrock, every attempt signed by Envoy: Claude through
    InvokeModel in the Messages API, untranslated; Nova through Converse, translated."""
    gateway.clear_received()
    result = claude_code(model)
    assert not result["is_error"] and PROMPT in result["result"]
    sent = [r for r in gateway.received("mock-bedrock") if r["path"].endswith(path_end)]
    assert sent and sent[-1]["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 ")
    body = json.loads(sent[-1]["body"])
    if "claude" in model:
        assert body["anthropic_version"] == "bedrock-2023-05-31" and "model" not in body and "stream" not in body
        assert body["system"] and len(body["tools"]) >= 10
    else:
        assert body["system"] and len(body["toolConfig"]["tools"]) >= 10
    record = gateway.wait_for_record(predicate=lambda r: r["model"] == model and r.get("api") == "anthropic"
                                     and r["output_tokens"] > 0)
    assert record["backend"] == "bedrock" and record["output_tokens"] == result["usage"]["output_tokens"]
