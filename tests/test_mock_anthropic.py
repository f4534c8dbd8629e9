"""The mock provider speaks Anthropic's Messages API as Anthropic does: the official
`anthropic` SDK, as a client of `extproc mock-provider`, reads its answers, streams,
thinking blocks, tool calls, token counts, model lists and errors; its usage is the
gateway's own count; and every Anthropic recording replays byte for byte."""

from __future__ import annotations

import subprocess

import anthropic
import httpx
import orjson
import pytest
import yaml
from gateway_stack import FIXTURES, free_port, wait_for_port
from warm_start import launch_extproc

from extproc.api.anthropic import prompt_texts, usage_from
from extproc.api.tokens import count_prompt, count_text, get_encoding, token_ids

KEY = "mock-anthropic-key"
MODEL = "claude-haiku-4-5"
RECORDINGS = FIXTURES / "anthropic-recordings"
ECHO = "Hello, mock! Ünïcödé and an emoji 😀, then more words."


@pytest.fixture(scope="module")
def mock(tmp_path_factory) -> dict[str, str]:
    """`extproc mock-provider` serving two listeners: `mock`, and `overloaded`, whose
    `failure:` defaults answer every call 529. Their base URLs, by name."""
    ports = {"mock": free_port(), "overloaded": free_port()}
    config = tmp_path_factory.mktemp("mock") / "mock.yaml"
    config.write_text(yaml.safe_dump({"mock_provider": {"listeners": [
        {"name": "mock", "port": ports["mock"], "api_key": KEY},
        {"name": "overloaded", "port": ports["overloaded"], "api_key": KEY, "failure": {"status": 529}}]}}))
    process = launch_extproc(["mock-provider", "--config", str(config),
                              "--fixtures", str(FIXTURES)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for port in ports.values():
            wait_for_port(port, process=process)
        yield {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def client(mock) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=mock["mock"], api_key=KEY, max_retries=0)


def user(content) -> list[dict]:
    return [{"role": "user", "content": content}]


def prompt_tokens(**body) -> int:
    """The prompt's tokens as the gateway counts them."""
    texts, messages = prompt_texts(body)
    return count_prompt(texts, messages, "o200k_base")


def sse_frames(raw: bytes) -> list[tuple[str, dict]]:
    """(event name, data) of each frame, checking the frame's form on the way."""
    frames = []
    for frame in raw.split(b"\n\n")[:-1]:
        event, data = frame.split(b"\n")
        assert event.startswith(b"event: ") and data.startswith(b"data: ")
        payload = orjson.loads(data[6:])
        assert payload["type"] == event[7:].decode()
        frames.append((payload["type"], payload))
    assert raw.endswith(b"\n\n")
    return frames


def post_messages(mock: dict, body: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.post(f"{mock['mock']}/v1/messages", json=body, timeout=10,
                      headers={"x-api-key": KEY, "anthropic-version": "2023-06-01", **(headers or {})})


# --- answers -------------------------------------------------------------------------

def test_a_json_answer_echoes_the_last_user_turn_with_the_gateways_usage(client, mock):
    system = "You are terse."
    messages = [*user("first turn"), {"role": "assistant", "content": "ok"},
                *user([{"type": "text", "text": ECHO[:20]}, {"type": "text", "text": ECHO[20:]}])]
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=200, system=system, messages=messages)
    message = raw.parse()
    assert raw.headers["request-id"].startswith("req_011C")
    assert raw.headers["anthropic-ratelimit-requests-limit"]
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == ECHO                  # text blocks joined, as received
    assert (message.stop_reason, message.stop_sequence, message.model) == ("end_turn", None, MODEL)
    assert message.id.startswith("msg_01")
    prompt = prompt_tokens(system=system, messages=messages)
    assert message.usage.input_tokens == prompt
    assert message.usage.output_tokens == count_text(ECHO)
    assert (message.usage.cache_read_input_tokens, message.usage.cache_creation_input_tokens) == (0, 0)
    [entry] = [e for e in httpx.get(f"{mock['mock']}/_mock/requests").json()
               if "You are terse." in e["body"]]
    assert entry["usage"] == {"prompt_tokens": prompt, "completion_tokens": count_text(ECHO),
                              "cached_tokens": 0, "cache_write_tokens": 0}


def test_a_string_content_is_echoed_as_is_and_cut_to_max_tokens(client):
    message = client.messages.create(model=MODEL, max_tokens=4, messages=user(ECHO))
    assert message.stop_reason == "max_tokens"
    assert message.content[0].text == get_encoding("o200k_base").decode(token_ids(ECHO)[:4])
    assert message.usage.output_tokens == 4


def test_a_stop_sequence_ends_the_answer_before_it(client):
    message = client.messages.create(model=MODEL, max_tokens=100, messages=user(ECHO), stop_sequences=["emoji"])
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "emoji")
    assert message.content[0].text == ECHO[:ECHO.index("emoji")]


def test_max_tokens_is_required_as_anthropic_requires_it(mock):
    response = post_messages(mock, {"model": MODEL, "messages": user("hi")})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == {"type": "invalid_request_error", "message": "max_tokens: Field required"}
    assert body["request_id"] == response.headers["request-id"]


def test_a_bearer_token_is_accepted_like_an_api_key(mock):
    client = anthropic.Anthropic(base_url=mock["mock"], auth_token=KEY, api_key=None, max_retries=0)
    assert client.messages.create(model=MODEL, max_tokens=50, messages=user("hi")).content[0].text == "hi"


# --- streams -------------------------------------------------------------------------

def test_a_stream_rebuilds_through_the_sdk_into_the_echo(client):
    with client.messages.stream(model=MODEL, max_tokens=200, messages=user(ECHO)) as stream:
        pieces = list(stream.text_stream)
        message = stream.get_final_message()
    assert len(pieces) > 3 and "".join(pieces) == ECHO
    assert message.content[0].text == ECHO and message.stop_reason == "end_turn"
    assert message.usage.input_tokens == prompt_tokens(messages=user(ECHO))
    assert message.usage.output_tokens == count_text(ECHO)


def test_a_stream_goes_in_the_recorded_order_with_cumulative_usage(mock):
    body = {"model": MODEL, "max_tokens": 200, "stream": True, "messages": user(ECHO)}
    raw = post_messages(mock, body, {"x-mock-chunk-chars": "5"}).content
    frames = sse_frames(raw)
    names = [name for name, _ in frames]
    deltas = len(range(0, len(ECHO), 5))
    assert names == ["message_start", "content_block_start", "ping", *["content_block_delta"] * deltas,
                     "content_block_stop", "message_delta", "message_stop"]
    assert b'event: ping\ndata: {"type": "ping"}\n\n' in raw          # serialized as Anthropic does
    assert b" }\n\n" in raw                                          # padded, as Anthropic's JSON is
    start, delta = frames[0][1]["message"], frames[-2][1]
    prompt = prompt_tokens(messages=user(ECHO))
    assert start["usage"]["input_tokens"] == prompt and start["usage"]["output_tokens"] <= 1
    assert start["stop_reason"] is None and start["content"] == []
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"] == {"input_tokens": prompt, "cache_creation_input_tokens": 0,
                              "cache_read_input_tokens": 0, "output_tokens": count_text(ECHO)}
    texts = [f["delta"]["text"] for name, f in frames if name == "content_block_delta"]
    assert texts == [ECHO[i:i + 5] for i in range(0, len(ECHO), 5)]


def test_stream_faults_apply_to_anthropic_streams(client, mock):
    body = {"model": MODEL, "max_tokens": 200, "stream": True, "messages": user(ECHO)}
    whole = post_messages(mock, body).content
    in_bytes = post_messages(mock, body, {"x-mock-write-bytes": "3"}).content
    assert len(in_bytes) == len(whole)                   # the same stream, written 3 bytes at a time
    assert post_messages(mock, body, {"x-mock-unended": "1"}).content.endswith(b"}")
    with pytest.raises(httpx.HTTPError):
        post_messages(mock, body, {"x-mock-cut-after": "4"})
    with client.messages.stream(model=MODEL, max_tokens=200, messages=user(ECHO),
                                extra_headers={"x-mock-write-bytes": "7"}) as stream:
        assert stream.get_final_message().content[0].text == ECHO


# --- thinking and tools ----------------------------------------------------------------

def test_thinking_comes_first_with_its_signature(client):
    thinking = {"type": "enabled", "budget_tokens": 1024}
    message = client.messages.create(model=MODEL, max_tokens=2048, thinking=thinking, messages=user(ECHO))
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.content[0].thinking.startswith("Thinking about: Hello")
    assert message.content[0].signature
    assert message.content[1].text == ECHO
    assert message.usage.output_tokens == count_text(message.content[0].thinking) + count_text(ECHO)
    with client.messages.stream(model=MODEL, max_tokens=2048, thinking={"type": "adaptive"},
                                messages=user(ECHO)) as stream:
        kinds = [event.delta.type for event in stream if event.type == "content_block_delta"]
        streamed = stream.get_final_message()
    assert kinds.index("signature_delta") == kinds.index("text_delta") - 1 > kinds.index("thinking_delta")
    assert streamed.content[0].signature == message.content[0].signature
    assert streamed.content[0].thinking == message.content[0].thinking and streamed.content[1].text == ECHO


def test_a_tool_call_carries_the_echo_as_its_input(client):
    message = client.messages.create(model=MODEL, max_tokens=200, messages=user(ECHO),
                                     extra_headers={"x-mock-tool-call": "lookup"})
    [call] = message.content
    assert (call.type, call.name, call.input, message.stop_reason) == ("tool_use", "lookup", {"text": ECHO}, "tool_use")
    assert call.id.startswith("toolu_01")
    assert message.usage.output_tokens == count_text(orjson.dumps({"text": ECHO}).decode())
    with client.messages.stream(model=MODEL, max_tokens=200, messages=user(ECHO),
                                extra_headers={"x-mock-tool-call": "lookup"}) as stream:
        kinds = {event.delta.type for event in stream if event.type == "content_block_delta"}
        streamed = stream.get_final_message()
    assert kinds == {"input_json_delta"}
    assert (streamed.content[0].name, streamed.content[0].input, streamed.stop_reason) == \
        ("lookup", {"text": ECHO}, "tool_use")


# --- caching -----------------------------------------------------------------------------

def test_cache_reads_and_writes_leave_input_tokens_as_anthropic_counts_them(client, mock):
    prompt = prompt_tokens(messages=user(ECHO))
    cache = {"x-mock-cached-tokens": "5", "x-mock-cache-write-tokens": "7"}
    usage = client.messages.create(model=MODEL, max_tokens=200, messages=user(ECHO), extra_headers=cache).usage
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (5, 7)
    assert usage.cache_creation.ephemeral_5m_input_tokens == 7 and usage.cache_creation.ephemeral_1h_input_tokens == 0
    assert usage.input_tokens == prompt - 12
    gateway_usage = usage_from(usage.model_dump())                # the gateway counts every prompt token
    assert (gateway_usage.input_tokens, gateway_usage.cached_tokens, gateway_usage.cache_write_tokens) == (prompt, 5, 7)
    frames = sse_frames(post_messages(mock, {"model": MODEL, "max_tokens": 200, "stream": True,
                                             "messages": user(ECHO)}, cache).content)
    assert frames[-2][1]["usage"]["cache_read_input_tokens"] == 5
    assert frames[0][1]["message"]["usage"]["cache_creation"]["ephemeral_5m_input_tokens"] == 7
    everything = client.messages.create(model=MODEL, max_tokens=200, messages=user(ECHO),
                                        extra_headers={"x-mock-cached-tokens": "100000",
                                                       "x-mock-cache-write-tokens": "9"}).usage
    assert (everything.input_tokens, everything.cache_read_input_tokens,
            everything.cache_creation_input_tokens) == (0, prompt, 0)


# --- count_tokens and models ----------------------------------------------------------------

def test_count_tokens_counts_the_prompt_as_the_gateway_does(client):
    tools = [{"name": "lookup", "description": "Looks up.", "input_schema": {"type": "object"}}]
    counted = client.messages.count_tokens(model=MODEL, system="Be brief.", messages=user(ECHO), tools=tools)
    assert counted.input_tokens == prompt_tokens(system="Be brief.", messages=user(ECHO), tools=tools)
    beta = client.beta.messages.count_tokens(model=MODEL, messages=user(ECHO))       # ?beta=true
    assert beta.input_tokens == prompt_tokens(messages=user(ECHO))


def test_models_list_in_anthropics_shape_and_openais_without_the_version(client, mock):
    models = list(client.models.list())
    assert models and all(m.type == "model" and m.id.startswith("claude-") and m.display_name for m in models)
    assert [m.created_at for m in models] == sorted((m.created_at for m in models), reverse=True)
    assert [m.id for m in client.models.list(limit=1).data] == [models[0].id]
    assert httpx.get(f"{mock['mock']}/v1/models").json()["object"] == "list"      # an OpenAI client's


# --- errors ---------------------------------------------------------------------------------

def test_a_wrong_key_gets_anthropics_authentication_error(mock):
    client = anthropic.Anthropic(base_url=mock["mock"], api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as raised:
        client.messages.create(model=MODEL, max_tokens=10, messages=user("hi"))
    body = raised.value.body
    assert body["error"] == {"type": "authentication_error", "message": "invalid x-api-key"}
    assert body["request_id"] == raised.value.response.headers["request-id"]
    assert raised.value.response.headers["x-should-retry"] == "false"


@pytest.mark.parametrize("status, error_class, error_type", [
    (529, anthropic.OverloadedError, "overloaded_error"),
    (429, anthropic.RateLimitError, "rate_limit_error"),
    (500, anthropic.InternalServerError, "api_error")])
def test_a_failure_status_gets_its_anthropic_error(client, status, error_class, error_type):
    with pytest.raises(error_class) as raised:
        client.messages.create(model=MODEL, max_tokens=10, messages=user("hi"),
                               extra_headers={"x-mock-status": str(status), "x-mock-retry-after": "3"})
    assert raised.value.status_code == status and raised.value.body["error"]["type"] == error_type
    assert raised.value.response.headers["retry-after"] == "3"
    assert raised.value.response.headers["x-should-retry"] == "true"


def test_a_listeners_failure_defaults_apply_to_anthropic_calls(mock):
    client = anthropic.Anthropic(base_url=mock["overloaded"], api_key=KEY, max_retries=0)
    with pytest.raises(anthropic.OverloadedError):
        client.messages.create(model=MODEL, max_tokens=10, messages=user("hi"))
    with pytest.raises(anthropic.OverloadedError):
        client.messages.count_tokens(model=MODEL, messages=user("hi"))
    aimed_elsewhere = {"x-mock-only": "overloaded", "x-mock-status": "500"}     # not at this listener
    answered = anthropic.Anthropic(base_url=mock["mock"], api_key=KEY, max_retries=0).messages.create(
        model=MODEL, max_tokens=10, messages=user("hi"), extra_headers=aimed_elsewhere)
    assert answered.content[0].text == "hi"


def test_an_error_event_inside_a_200_stream_raises_in_the_sdk(client, mock):
    failing = client.messages.stream(model=MODEL, max_tokens=200, messages=user(ECHO),
                                     extra_headers={"x-mock-stream-error": "overloaded_error"})
    with pytest.raises(anthropic.APIStatusError) as raised, failing as stream:
        list(stream)
    assert raised.value.body["error"]["type"] == "overloaded_error"
    raw = post_messages(mock, {"model": MODEL, "max_tokens": 200, "stream": True, "messages": user(ECHO)},
                        {"x-mock-stream-error": "overloaded_error"})
    assert raw.status_code == 200
    names = [name for name, _ in sse_frames(raw.content)]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta", "error"]
    assert raw.content.endswith(b'event: error\ndata: {"type": "error", "error": '
                                b'{"type": "overloaded_error", "message": "Overloaded"}}\n\n')


# --- golden: the recordings replayed ------------------------------------------------------------

def _recorded(name: str) -> tuple[dict, dict]:
    interaction = yaml.safe_load((RECORDINGS / f"{name}.yaml").read_text())["interactions"][0]
    return interaction["request"], interaction["response"]


@pytest.mark.parametrize("name", sorted(p.stem for p in RECORDINGS.glob("*.yaml")))
def test_each_anthropic_recording_replays_byte_for_byte(mock, name):
    request, recorded = _recorded(name)
    path = httpx.URL(request["url"]).raw_path.decode()
    response = httpx.post(f"{mock['mock']}{path}", content=request["body"].encode(), timeout=10,
                          headers={"x-api-key": KEY, "anthropic-version": "2023-06-01", "x-mock-replay": name})
    assert response.status_code == recorded["code"]
    assert response.content == recorded["body"].encode()
    request_id = {k.lower(): v for k, v in recorded["headers"].items()}.get("request-id")
    if request_id:
        assert response.headers["request-id"] == request_id[0]


def test_replay_finds_recordings_of_either_dialect_and_refuses_unknown_names(mock):
    openai = httpx.post(f"{mock['mock']}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": []},
                        headers={"authorization": f"Bearer {KEY}", "x-mock-replay": "chat-basic"})
    assert openai.content == yaml.safe_load((FIXTURES / "openai-recordings" / "chat-basic.yaml").read_text())[
        "interactions"][0]["response"]["body"].encode()
    unknown = post_messages(mock, {"model": MODEL}, {"x-mock-replay": "no-such-recording"})
    assert unknown.status_code == 400 and unknown.json()["error"]["type"] == "invalid_request_error"
