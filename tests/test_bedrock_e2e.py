"""AWS Bedrock through real Envoy: callers of every dialect reach a Bedrock model through
its Converse API, each attempt signed by Envoy's aws_request_signing filter after its
body is final (the mock checks every signature with botocore and refuses a wrong one);
ConverseStream's binary event stream reaches each caller as its own SSE; Bedrock's errors
come in the caller's shape; a virtual model fails over from a throttled Bedrock to
Anthropic's API."""

from __future__ import annotations

import contextlib
import json
import time
import uuid

import anthropic
import httpx
import pytest
from google import genai
import openai as openai_errors
from openai import OpenAI

from gateway_stack import check_provider_change

TEXT = "Say ptarmigan"
NOVA = "bedrock/amazon.nova-micro-v1:0"
CONVERSE = "/model/amazon.nova-micro-v1:0/converse"       # as recorded (decoded; sent as %3A)
HAIKU_ID = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
HAIKU = f"bedrock/{HAIKU_ID}"
INVOKE = f"/model/{HAIKU_ID}/invoke"


@pytest.fixture(scope="module")
def clients(gateway) -> dict:
    root = f"http://127.0.0.1:{gateway.port}"
    return {"openai": OpenAI(base_url=f"{root}/v1", api_key="sk-demo-alice", max_retries=0),
            "anthropic": anthropic.Anthropic(base_url=root, api_key="sk-demo-alice", max_retries=0),
            "google": genai.Client(api_key="sk-demo-alice", http_options={"base_url": root})}


def ask(clients: dict, dialect: str, model: str, stream: bool, text: str = TEXT) -> str:
    if dialect == "openai":
        if stream:
            chunks = clients["openai"].chat.completions.create(
                model=model, messages=[{"role": "user", "content": text}], stream=True)
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return clients["openai"].chat.completions.create(
            model=model, messages=[{"role": "user", "content": text}]).choices[0].message.content
    if dialect == "anthropic":
        messages = [{"role": "user", "content": text}]
        if stream:
            with clients["anthropic"].messages.stream(model=model, max_tokens=200, messages=messages) as events:
                return events.get_final_text()
        return clients["anthropic"].messages.create(model=model, max_tokens=200, messages=messages).content[0].text
    if stream:
        return "".join(c.text or "" for c in clients["google"].models.generate_content_stream(model=model, contents=text))
    return clients["google"].models.generate_content(model=model, contents=text).text


def sent_to_bedrock(gateway, listener: str = "mock-bedrock") -> list[dict]:
    return [r for r in gateway.received(listener) if r["path"].startswith("/model/")]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("dialect", ["openai", "anthropic", "google"])
def test_every_dialect_reaches_a_bedrock_model_signed_by_envoy(gateway, clients, dialect, stream):
    gateway.clear_received()
    assert ask(clients, dialect, NOVA, stream) == TEXT
    [sent] = sent_to_bedrock(gateway)
    assert sent["path"] == CONVERSE + ("-stream" if stream else "")
    # Signed by Envoy with the provider's credentials, over the body it sent.
    assert sent["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDMOCKBEDROCK0000/")
    assert "/us-east-1/bedrock/aws4_request" in sent["headers"]["authorization"]
    body = json.loads(sent["body"])
    assert body["messages"] == [{"role": "user", "content": [{"text": TEXT}]}] and "model" not in body
    assert "sk-demo-alice" not in json.dumps(sent)
    record = gateway.wait_for_record(predicate=lambda r: r["model"] == NOVA and r["stream"] is stream
                                     and r.get("api") == {"openai": "openai", "anthropic": "anthropic",
                                                          "google": "gemini"}[dialect])
    assert record["status"] == 200 and record["backend"] == "bedrock" and record["output_tokens"] > 0
    assert record["translated_to"] == "bedrock" and record["cost_usd"] > 0


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("dialect", ["openai", "anthropic", "google"])
def test_claude_on_bedrock_is_reached_through_invoke_model_in_anthropics_dialect(gateway, clients, dialect, stream):
    gateway.clear_received()
    assert ask(clients, dialect, HAIKU, stream) == TEXT
    [sent] = sent_to_bedrock(gateway)
    assert sent["path"] == INVOKE + ("-with-response-stream" if stream else "")
    assert sent["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDMOCKBEDROCK0000/")
    body = json.loads(sent["body"])
    assert body["anthropic_version"] == "bedrock-2023-05-31" and "model" not in body and "stream" not in body
    assert body["messages"] == [{"role": "user", "content": TEXT}] or \
        body["messages"] == [{"role": "user", "content": [{"type": "text", "text": TEXT}]}]
    record = gateway.wait_for_record(predicate=lambda r: r["model"] == HAIKU and r["stream"] is stream
                                     and r.get("api") == {"openai": "openai", "anthropic": "anthropic",
                                                          "google": "gemini"}[dialect])
    assert record["status"] == 200 and record["backend"] == "bedrock" and record["output_tokens"] > 0
    assert record["cost_usd"] > 0
    assert record.get("translated_to") == (None if dialect == "anthropic" else "anthropic")


def test_claude_code_s_thinking_signature_and_cache_tokens_pass_through_bedrock(gateway, clients):
    """An Anthropic caller on Claude on Bedrock gets Anthropic's own events, re-framed
    from AWS's event stream into SSE: the thinking block's signature and the cache
    counts arrive as Anthropic wrote them."""
    request = {"model": HAIKU, "max_tokens": 400, "stream": True,
               "thinking": {"type": "enabled", "budget_tokens": 200},
               "messages": [{"role": "user", "content": TEXT}]}
    with httpx.stream("POST", f"http://127.0.0.1:{gateway.port}/v1/messages", json=request, timeout=20,
                      headers={"x-api-key": "sk-demo-alice", "anthropic-version": "2023-06-01",
                               "x-mock-cached-tokens": "3", "x-mock-cache-write-tokens": "2"}) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        raw = b"".join(answer.iter_raw()).decode()
    events = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: ")]
    names = [line[7:] for line in raw.splitlines() if line.startswith("event: ")]
    assert names == [event["type"] for event in events]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    start = events[0]["message"]["usage"]
    assert start["cache_read_input_tokens"] == 3 and start["cache_creation_input_tokens"] == 2
    signatures = [e["delta"]["signature"] for e in events
                  if e["type"] == "content_block_delta" and e["delta"]["type"] == "signature_delta"]
    assert signatures and signatures[0]
    with clients["anthropic"].messages.stream(**{k: v for k, v in request.items() if k != "stream"}) as stream:
        final = stream.get_final_message()
    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.content[0].signature == signatures[0] and final.content[1].text == TEXT


def test_count_tokens_for_claude_on_bedrock_is_the_gateways_own(gateway, clients):
    gateway.clear_received()
    counted = clients["anthropic"].messages.count_tokens(model=HAIKU, messages=[{"role": "user", "content": TEXT}])
    assert counted.input_tokens > 0 and sent_to_bedrock(gateway) == []


def test_a_bedrock_refusal_of_a_claude_call_keeps_its_message(gateway, clients):
    with pytest.raises(anthropic.BadRequestError) as raised:
        clients["anthropic"].messages.create(model=HAIKU, max_tokens=10, messages=[{"role": "user", "content": "x"}],
                                             extra_headers={"x-mock-status": "400"})
    assert raised.value.body["error"]["type"] == "invalid_request_error"
    assert raised.value.body["error"]["message"] != "The provider answered 400."


def test_a_tool_call_round_trip_on_bedrock(gateway, clients):
    tools = [{"type": "function", "function": {"name": "lookup", "description": "Look a word up.",
                                               "parameters": {"type": "object",
                                                              "properties": {"text": {"type": "string"}}}}}]
    first = clients["openai"].chat.completions.create(
        model=NOVA, messages=[{"role": "user", "content": "find grebe"}], tools=tools,
        extra_headers={"x-mock-tool-call": "lookup"})
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "lookup"
    assert json.loads(call.function.arguments) == {"text": "find grebe"}
    gateway.clear_received()
    second = clients["openai"].chat.completions.create(model=NOVA, tools=tools, messages=[
        {"role": "user", "content": "find grebe"}, first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "a diving bird"}])
    assert second.choices[0].finish_reason == "stop" and not second.choices[0].message.tool_calls
    [sent] = sent_to_bedrock(gateway)
    body = json.loads(sent["body"])
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"][0]["toolUse"]["name"] == "lookup"
    assert body["messages"][2]["content"][0]["toolResult"]["toolUseId"] == \
        body["messages"][1]["content"][0]["toolUse"]["toolUseId"]
    assert body["toolConfig"]["tools"][0]["toolSpec"]["name"] == "lookup"


@pytest.mark.parametrize("status", [400, 429])
def test_bedrocks_errors_come_in_the_callers_shape(gateway, clients, status):
    with pytest.raises(anthropic.APIStatusError) as raised:
        clients["anthropic"].messages.create(model=NOVA, max_tokens=10, messages=[{"role": "user", "content": "x"}],
                                             extra_headers={"x-mock-status": str(status)})
    assert raised.value.status_code == status
    assert raised.value.body["type"] == "error"
    assert raised.value.body["error"]["type"] == {400: "invalid_request_error", 429: "rate_limit_error"}[status]


def test_an_exception_inside_the_stream_ends_the_callers_stream_with_an_error(gateway):
    answer = httpx.post(f"http://127.0.0.1:{gateway.port}/v1/chat/completions",
                        headers={"authorization": "Bearer sk-demo-alice", "x-mock-stream-exception": "throttlingException"},
                        json={"model": NOVA, "stream": True, "messages": [{"role": "user", "content": TEXT}]},
                        timeout=20)
    assert answer.status_code == 200
    events = [line[6:] for line in answer.text.splitlines() if line.startswith("data: ")]
    assert any('"error"' in event for event in events)


def test_smart_bedrock_fails_over_from_a_throttled_bedrock_to_anthropic(gateway, clients):
    gateway.clear_received()
    assert ask(clients, "openai", "smart-bedrock", False) == TEXT
    [throttled] = sent_to_bedrock(gateway, "mock-bedrock-throttled")
    assert throttled["path"] == INVOKE
    assert throttled["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 ")
    [answered] = [r for r in gateway.received("mock-anthropic") if r["path"] == "/v1/messages"]
    assert json.loads(answered["body"])["model"] == "claude-haiku-4-5"
    assert "authorization" not in answered["headers"]       # the signature stayed with its attempt
    assert ask(clients, "anthropic", "smart-bedrock", True) == TEXT


@pytest.mark.parametrize("change, message", [
    ({"region": None}, "region: is required for a bedrock provider"),
    ({"api_key": {"value": "k"}}, "signed by Envoy (SigV4)"),
    ({"aws_credentials": {"access_key_id": "AKID"}}, "names a credentials `file`"),
])
def test_check_names_what_is_wrong_with_a_bedrock_provider(tmp_path, change, message):
    assert message in check_provider_change(tmp_path, "bedrock", change)


# --- recorded traffic, faults, what is counted ---------------------------------------------------

@pytest.mark.parametrize("recording, model, stream, text", [
    ("bedrock-converse", NOVA, False, "So, the result is \\( 4242 \\)."),
    ("bedrock-converse-stream", NOVA, True, None),
    ("bedrock-invoke-anthropic", HAIKU, False, "4200 + 42 = 4242"),
], ids=["converse", "converse-stream", "invoke"])
def test_recorded_bedrock_answers_reach_an_openai_caller_whole(gateway, clients, recording, model, stream, text):
    """Bedrock's own recorded bytes (the stream's binary frames as AWS sent them), replayed
    by the mock, reach an OpenAI caller as Chat Completions with their text and usage."""
    headers = {"x-mock-replay": recording}
    messages = [{"role": "user", "content": "What is 4200 + 42?"}]
    if stream:
        chunks = list(clients["openai"].chat.completions.create(
            model=model, messages=messages, stream=True, stream_options={"include_usage": True}, extra_headers=headers))
        answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        usage = chunks[-1].usage
        assert "4242" in answer and [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    else:
        completion = clients["openai"].chat.completions.create(model=model, messages=messages, extra_headers=headers)
        answer, usage = completion.choices[0].message.content, completion.usage
        assert answer.endswith(text) and completion.choices[0].finish_reason == "stop"
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0


def test_a_recorded_bedrock_refusal_reaches_each_caller_in_its_shape(gateway, clients):
    headers = {"x-mock-replay": "bedrock-converse-error-validation"}
    with pytest.raises(anthropic.BadRequestError) as refused:
        clients["anthropic"].messages.create(model=NOVA, max_tokens=10, messages=[{"role": "user", "content": "x"}],
                                             extra_headers=headers)
    assert refused.value.body["error"]["message"] == "The provided model identifier is invalid."
    with pytest.raises(openai_errors.BadRequestError) as refused_too:
        clients["openai"].chat.completions.create(model=NOVA, messages=[{"role": "user", "content": "x"}],
                                                  extra_headers=headers)
    assert "The provided model identifier is invalid." in str(refused_too.value)


@pytest.mark.parametrize("model", [NOVA, HAIKU], ids=["converse-stream", "invoke-stream"])
def test_a_stream_cut_mid_frame_is_never_garbage_to_the_caller_and_is_still_counted(gateway, model):
    """The mock writes the event stream 7 bytes at a time and drops the connection after
    the 150th write, inside a frame: the caller's SSE stops short (or ends with an error
    event), each event it got whole; the call is logged with its usage estimated."""
    rid = f"cut-{uuid.uuid4()}"
    received = b""
    with contextlib.suppress(httpx.HTTPError):
        with httpx.stream("POST", f"{gateway.base_url}/chat/completions", timeout=20,
                          headers={"authorization": "Bearer sk-demo-alice", "x-request-id": rid,
                                   "x-mock-write-bytes": "7", "x-mock-cut-after": "150", "x-mock-chunk-delay-ms": "1"},
                          json={"model": model, "stream": True,
                                "messages": [{"role": "user", "content": " ".join(f"w{i}" for i in range(40))}]}) as r:
            assert r.status_code == 200
            for piece in r.iter_raw():
                received += piece
    assert b":event-type" not in received and b"\x00" not in received     # no binary framing leaks
    events = [line[6:] for line in received.decode().splitlines() if line.startswith("data: ")]
    assert events and all(json.loads(event) for event in events if event != "[DONE]")
    assert not received.rstrip().endswith(b"data: [DONE]")                # never claimed complete
    record = gateway.wait_for_record(rid)
    assert record["model"] == model and record["input_tokens"] > 0


def test_bedrock_calls_are_counted_in_the_meters_budgets_share(gateway, clients, monkeypatch):
    """Meters are budgets without a limit, settled through the same counters: a Bedrock
    call's tokens, as the answer reported them, are there within a flush (read as
    `extproc usage --by model` reads them)."""
    from extproc.config.filter_config import load_config
    from extproc.guardrails.config import detectors_not_made
    from extproc.runtime.usage_report import usage_by
    monkeypatch.setenv("LLMGW_STATE_DIR", str(gateway.state_dir))
    with detectors_not_made():
        config = load_config(str(gateway.workdir / "gateway.yaml"), strict_credentials=False)

    def counted() -> tuple[float, float]:
        report = usage_by(config, ("model",), "day")
        rows = [row for row in report["rows"] if row["model"] == HAIKU]
        return (rows[0]["input_tokens"], rows[0]["output_tokens"]) if rows else (0, 0)

    # The calls of the tests before this one reach the counters at the worker's next
    # exchange (every 0.5 s): counted once they have stopped moving.
    before, steady_since = counted(), time.monotonic()
    while time.monotonic() - steady_since < 1.5:
        time.sleep(0.25)
        now = counted()
        if now != before:
            before, steady_since = now, time.monotonic()
    answer = clients["anthropic"].messages.create(model=HAIKU, max_tokens=50,
                                                  messages=[{"role": "user", "content": "count these tokens"}])
    expected = (before[0] + answer.usage.input_tokens, before[1] + answer.usage.output_tokens)
    deadline = time.monotonic() + 5
    while counted() != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert counted() == expected
