"""Codex CLI itself (npm `@openai/codex`, `codex exec`) through real Envoy, its provider
pointed at the gateway with `wire_api = "responses"`: a turn on an OpenAI-dialect backend
streams the Responses API as OpenAI sends it (created, in_progress, the item and its
content part added, deltas, each done, completed), which Codex needs to print anything;
a turn on an Anthropic backend is translated both ways. And the openai SDK's own
Responses calls on both. tests/run.sh installs the pinned version beside the venv."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

CODEX = Path(__file__).resolve().parent.parent / ".venv" / "codex" / "node_modules" / ".bin" / "codex"
PROMPT = "Reply with the word heron"


@pytest.fixture(scope="module")
def codex(gateway, tmp_path_factory):
    if not CODEX.exists():
        pytest.fail(f"Codex CLI is not installed at {CODEX}: tests/run.sh installs it (npm)")
    home = tmp_path_factory.mktemp("codex-home")
    work = tmp_path_factory.mktemp("codex-work")

    def run(model: str) -> str:
        (home / "config.toml").write_text(
            f'model = "{model}"\nmodel_provider = "gateway"\ncheck_for_update_on_startup = false\n\n'
            '[model_providers.gateway]\nname = "gateway"\n'
            f'base_url = "http://127.0.0.1:{gateway.port}/v1"\nenv_key = "GATEWAY_KEY"\nwire_api = "responses"\n')
        out = work / f"{model.replace('/', '_')}.txt"
        env = {"PATH": os.environ["PATH"], "HOME": str(home), "CODEX_HOME": str(home),
               "GATEWAY_KEY": "sk-demo-alice"}
        done = subprocess.run([str(CODEX), "exec", "--skip-git-repo-check", "-o", str(out), PROMPT],
                              env=env, cwd=work, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return out.read_text()

    return run


def test_a_turn_on_an_openai_backend_prints_the_answer(gateway, codex):
    gateway.clear_received()
    since = gateway.log_count()
    answer = codex("gpt-4o-mini")
    assert PROMPT in answer                  # the mock echoes the last user turn
    sent = [r for r in gateway.received("mock") if r["path"] == "/v1/responses"]
    assert len(sent) == 1
    body = json.loads(sent[0]["body"])
    assert body["stream"] is True and body["model"] == "gpt-4o-mini" and body["tools"]
    record = gateway.wait_for_record(after=since, predicate=lambda r: r["path"] == "/v1/responses" and r["stream"]
                                     and r["user"] == "alice" and r["output_tokens"] > 0)
    assert record["model"] == "gpt-4o-mini" and record["status"] == 200


def test_a_turn_on_a_provider_of_the_responses_api_only_passes_as_codex_sent_it(gateway, codex):
    gateway.clear_received()
    since = gateway.log_count()
    answer = codex("gpt-4o-mini-responses")
    assert PROMPT in answer
    [sent] = [r for r in gateway.received("mock") if r["path"] == "/v1/responses"]
    body = json.loads(sent["body"])
    assert body["model"] == "gpt-4o-mini" and body["stream"] is True and body["tools"]
    record = gateway.wait_for_record(after=since, predicate=lambda r: r["model"] == "gpt-4o-mini-responses"
                                     and r["output_tokens"] > 0)
    assert "translated_to" not in record and record["status"] == 200


def test_the_openai_sdk_reads_the_responses_stream_item_by_item(alice):
    with alice.responses.stream(model="gpt-4o-mini", input=PROMPT) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    assert final.output_text == PROMPT and final.usage.output_tokens > 0


def test_a_turn_on_an_anthropic_backend_is_translated_both_ways(gateway, codex):
    gateway.clear_received()
    since = gateway.log_count()
    answer = codex("claude-sonnet-4-6")
    assert PROMPT in answer
    sent = [r for r in gateway.received("mock-anthropic") if r["path"] == "/v1/messages"]
    assert len(sent) == 1
    body = json.loads(sent[0]["body"])
    assert body["stream"] is True and body["model"] == "claude-sonnet-4-6"
    assert {tool["name"] for tool in body["tools"]} >= {"exec_command"}        # its function tools
    record = gateway.wait_for_record(after=since, predicate=lambda r: r["path"] == "/v1/responses"
                                     and r["model"] == "claude-sonnet-4-6" and r["output_tokens"] > 0)
    assert record["translated_to"] == "anthropic" and record["status"] == 200
    assert "tools[].web_search" in record["dropped"]           # what Anthropic cannot run is named


def test_the_sdk_on_an_anthropic_backend_json_and_stream(alice):
    answer = alice.responses.create(model="claude-sonnet-4-6", input=PROMPT, instructions="Be brief")
    assert answer.output_text == PROMPT and answer.status == "completed" and answer.usage.output_tokens > 0
    with alice.responses.stream(model="claude-sonnet-4-6", input=PROMPT) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"] and kinds[-1] == "response.completed"
    assert final.output_text == PROMPT and final.usage.input_tokens > 0


def test_a_function_call_round_trip_on_an_anthropic_backend(gateway, alice):
    tools = [{"type": "function", "name": "lookup", "description": "Looks a word up",
              "parameters": {"type": "object", "properties": {"text": {"type": "string"}}}}]
    first = alice.responses.create(model="claude-sonnet-4-6", input="find stork", tools=tools,
                                   extra_headers={"x-mock-tool-call": "lookup"})
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "lookup" and json.loads(call.arguments) == {"text": "find stork"}
    gateway.clear_received()
    second = alice.responses.create(model="claude-sonnet-4-6", tools=tools, input=[
        {"role": "user", "content": "find stork"},
        {"type": "function_call", "call_id": call.call_id, "name": "lookup", "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "a wading bird"}])
    assert second.status == "completed"
    sent = json.loads([r for r in gateway.received("mock-anthropic") if r["path"] == "/v1/messages"][-1]["body"])
    turns = sent["messages"]
    assert [turn["role"] for turn in turns] == ["user", "assistant", "user"]
    use = next(block for block in turns[1]["content"] if block["type"] == "tool_use")
    result = next(block for block in turns[2]["content"] if block["type"] == "tool_result")
    assert use["id"] == call.call_id == result["tool_use_id"] and use["input"] == {"text": "find stork"}
    assert "a wading bird" in json.dumps(result["content"])


def test_previous_response_id_on_an_anthropic_backend_is_refused_naming_it(alice):
    import openai
    with pytest.raises(openai.NotFoundError) as unknown:         # not the caller's: as for GET
        alice.responses.create(model="claude-sonnet-4-6", input="more", previous_response_id="resp_abc")
    assert "previous_response_id" in unknown.value.message
    stored = alice.responses.create(model="gpt-4o-mini", input="remember me")   # the caller's own
    with pytest.raises(openai.BadRequestError) as refused:      # kept by a provider Anthropic is not
        alice.responses.create(model="claude-sonnet-4-6", input="more", previous_response_id=stored.id)
    assert "previous_response_id" in refused.value.message


def test_a_turn_on_a_gemini_backend_is_translated_both_ways(gateway, codex):
    gateway.clear_received()
    since = gateway.log_count()
    answer = codex("gemini-2.5-flash")
    assert PROMPT in answer
    sent = [r for r in gateway.received("mock-gemini") if r["path"].endswith(":streamGenerateContent")]
    assert len(sent) == 1
    body = json.loads(sent[0]["body"])
    assert {d["name"] for d in body["tools"][0]["functionDeclarations"]} >= {"exec_command"}
    record = gateway.wait_for_record(after=since, predicate=lambda r: r["path"] == "/v1/responses"
                                     and r["model"] == "gemini-2.5-flash" and r["output_tokens"] > 0)
    assert record["translated_to"] == "gemini" and record["status"] == 200


def test_a_turn_on_claude_at_vertex_is_translated_both_ways(gateway, codex):
    gateway.clear_received()
    since = gateway.log_count()
    answer = codex("vertex/claude-sonnet-4-6")
    assert PROMPT in answer
    sent = [r for r in gateway.received("mock-vertex") if r["path"].endswith("claude-sonnet-4-6:streamRawPredict")]
    assert len(sent) == 1
    body = json.loads(sent[0]["body"])
    assert body["anthropic_version"] == "vertex-2023-10-16" and "model" not in body
    assert {tool["name"] for tool in body["tools"]} >= {"exec_command"}
    record = gateway.wait_for_record(after=since, predicate=lambda r: r["path"] == "/v1/responses"
                                     and r["model"] == "vertex/claude-sonnet-4-6" and r["output_tokens"] > 0)
    assert record["translated_to"] == "anthropic" and record["status"] == 200


@pytest.mark.parametrize("model, path_end", [
    ("bedrock/us.anthropic.claude-haiku-4-5-20251001-v1:0", "/invoke-with-response-stream"),
    ("bedrock/amazon.nova-micro-v1:0", "/converse-stream")], ids=["claude", "nova"])
def test_a_turn_on_bedrock(gateway, codex, model, path_end):
    gateway.clear_received()
    since = gateway.log_count()
    answer = codex(model)
    assert PROMPT in answer
    sent = [r for r in gateway.received("mock-bedrock") if r["path"].endswith(path_end)]
    assert len(sent) == 1 and sent[0]["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 ")
    body = json.loads(sent[0]["body"])
    names = {tool["name"] for tool in body["tools"]} if "claude" in model \
        else {tool["toolSpec"]["name"] for tool in body["toolConfig"]["tools"]}
    assert "exec_command" in names
    record = gateway.wait_for_record(after=since, predicate=lambda r: r["path"] == "/v1/responses"
                                     and r["model"] == model and r["output_tokens"] > 0)
    assert record["translated_to"] == ("anthropic" if "claude" in model else "bedrock") and record["status"] == 200
