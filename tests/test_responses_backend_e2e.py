"""A provider that speaks only OpenAI's Responses API (`type: openai-responses`), through
real Envoy: the openai SDK's chat calls and the anthropic SDK's Messages calls reach it as
Responses requests and read its answers, JSON and streams, tool calls both ways, in their
own dialect; its errors come back in each caller's shape; Responses callers pass as they
are; an endpoint it has no match for is refused naming it."""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest
from gateway_stack import GatewayStack, quickstart_config

MODEL = "responses-mini"
TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "Looks a word up",
                                           "parameters": {"type": "object",
                                                          "properties": {"text": {"type": "string"}}}}}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    config = quickstart_config()
    config["providers"]["responses-only"] = {"type": "openai-responses", "url": "http://127.0.0.1:10101",
                                             "api_key": {"value": "mock-provider-key"}}
    config["models"][MODEL] = {"backends": [{"provider": "responses-only", "model": "gpt-4o-mini"}],
                               "price": {"input": 0.15, "output": 0.60}}
    gateway = GatewayStack(tmp_path_factory.mktemp("responses-backend"), config).start()
    yield gateway
    gateway.stop()


def sent(stack: GatewayStack) -> list[dict]:
    """What the provider received, each request's path and body."""
    return [{"path": r["path"], "body": json.loads(r["body"]) if isinstance(r["body"], str) else r["body"]}
            for r in stack.received("mock")]


def test_a_chat_call_reaches_it_as_a_responses_request_and_reads_the_answer(stack):
    client = openai.OpenAI(base_url=stack.base_url, api_key="sk-demo-alice", max_retries=0)
    stack.clear_received()
    answer = client.chat.completions.create(model=MODEL, max_tokens=50,
                                            messages=[{"role": "system", "content": "Be brief."},
                                                      {"role": "user", "content": "say heron"}])
    assert "heron" in answer.choices[0].message.content and answer.choices[0].finish_reason == "stop"
    assert answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0
    [request] = sent(stack)
    assert request["path"] == "/v1/responses"
    body = request["body"]
    assert body["model"] == "gpt-4o-mini" and body["max_output_tokens"] == 50 and body["store"] is False
    assert [item["role"] for item in body["input"]] == ["system", "user"]
    record = stack.wait_for_record(predicate=lambda r: r.get("model") == MODEL)
    assert record["translated_to"] == "openai-responses" and record["input_tokens"] > 0


def test_a_chat_stream_with_a_tool_call_and_its_result(stack):
    client = openai.OpenAI(base_url=stack.base_url, api_key="sk-demo-alice", max_retries=0)
    chunks = list(client.chat.completions.create(
        model=MODEL, stream=True, stream_options={"include_usage": True}, tools=TOOLS,
        messages=[{"role": "user", "content": "find stork"}], extra_headers={"x-mock-tool-call": "lookup"}))
    calls = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or ()]
    name = next(t.function.name for t in calls if t.function.name)
    arguments = "".join(t.function.arguments or "" for t in calls)
    assert name == "lookup" and json.loads(arguments) == {"text": "find stork"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    call_id = next(t.id for t in calls if t.id)
    stack.clear_received()
    second = client.chat.completions.create(model=MODEL, tools=TOOLS, messages=[
        {"role": "user", "content": "find stork"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": "lookup", "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "a wading bird"}])
    assert second.choices[0].finish_reason == "stop" and second.choices[0].message.tool_calls is None
    items = sent(stack)[-1]["body"]["input"]
    assert [item.get("type") for item in items] == ["message", "function_call", "function_call_output"]
    assert items[1]["call_id"] == items[2]["call_id"] and items[2]["output"] == "a wading bird"
    # The guardrails read ids too: the mock's random id may hold a digit run that is a card
    # number, redacted alike in both places (the call and its output stay paired).
    assert items[1]["call_id"] == call_id or "[CARD]" in items[1]["call_id"]


def test_a_messages_call_json_and_stream(stack):
    client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{stack.port}", api_key="sk-demo-alice", max_retries=0)
    message = client.messages.create(model=MODEL, max_tokens=60, messages=[{"role": "user", "content": "say ibis"}])
    assert message.type == "message" and "ibis" in message.content[0].text and message.stop_reason == "end_turn"
    with client.messages.stream(model=MODEL, max_tokens=60, tools=[
            {"name": "lookup", "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}}}],
            messages=[{"role": "user", "content": "find crane"}],
            extra_headers={"x-mock-tool-call": "lookup"}) as stream:
        final = stream.get_final_message()
    use = next(block for block in final.content if block.type == "tool_use")
    assert use.name == "lookup" and use.input == {"text": "find crane"} and final.stop_reason == "tool_use"
    assert final.usage.output_tokens > 0


def test_errors_reach_each_caller_in_its_shape(stack):
    chat = httpx.post(f"{stack.base_url}/chat/completions", headers={"authorization": "Bearer sk-demo-alice",
                                                                    "x-mock-status": "429"},
                      json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    assert chat.status_code == 429 and chat.json()["error"]["message"]
    messages = httpx.post(f"{stack.base_url}/messages", headers={"x-api-key": "sk-demo-alice",
                                                                "anthropic-version": "2023-06-01",
                                                                "x-mock-status": "429"},
                          json={"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
                          timeout=30)
    assert messages.status_code == 429 and messages.json()["type"] == "error"


def test_a_responses_call_passes_as_it_is_and_embeddings_are_refused(stack):
    client = openai.OpenAI(base_url=stack.base_url, api_key="sk-demo-alice", max_retries=0)
    stack.clear_received()
    answer = client.responses.create(model=MODEL, input="say egret")
    assert "egret" in answer.output_text
    assert sent(stack)[-1]["body"]["input"] == "say egret"
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model=MODEL, input="x")
    assert "Responses API only" in refused.value.message
