"""The mock provider speaks AWS Bedrock as bedrock-runtime does: boto3's `bedrock-runtime`
client, signing with the listener's credentials, reads its Converse and ConverseStream
answers, InvokeModel and InvokeModelWithResponseStream with an Anthropic body, tool calls,
failures (as botocore's exceptions) and in-stream exceptions; a wrong secret, an unknown
key, a stale clock or no signature get AWS's 403; answers have the recorded shapes key by
key, and each Bedrock recording replays byte for byte."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import threading
import time
from collections.abc import Iterator

import boto3
import httpx
import orjson
import pytest
import yaml
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, EventStreamError
from gateway_stack import FIXTURES, free_port

from extproc.api.eventstream import EventStreamDecoder
from extproc.api.tokens import count_prompt, count_text
from extproc.mock.bedrock import DEMO_ACCESS_KEY_ID, DEMO_SECRET_ACCESS_KEY, AwsCredentials
from extproc.mock.server import build_app, listeners_from_config

RECORDINGS = FIXTURES / "provider-recordings"
NOVA, CLAUDE = "amazon.nova-micro-v1:0", "us.anthropic.claude-haiku-4-5-20251001-v1:0"
ECHO = "Hello, Bedrock! Ünïcödé and an emoji 😀, then more words."
CUSTOM = {"aws_access_key_id": "AKIDCUSTOM1111", "aws_secret_access_key": "custom-secret", "aws_region": "eu-west-3"}
BEDROCK_RECORDINGS = ["bedrock-converse", "bedrock-converse-stream", "bedrock-invoke-anthropic",
                      "bedrock-converse-error-validation"]


@pytest.fixture(scope="module")
def mock() -> Iterator[dict[str, str]]:
    """The mock's apps, served in this process from the listeners a `mock_provider:`
    section names: `mock` with the demo credentials, `custom` with its own, in eu-west-3."""
    ports = {"mock": free_port(), "custom": free_port()}
    listeners = listeners_from_config({"listeners": [{"name": "mock", "port": ports["mock"]},
                                                     {"name": "custom", "port": ports["custom"], **CUSTOM}]},
                                      str(FIXTURES))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runners = []

    async def start() -> None:
        for listener in listeners:
            runner = web.AppRunner(build_app(listener), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, listener.host, listener.port).start()
            runners.append(runner)
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    finally:
        for runner in runners:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def client(base: str, headers: dict[str, str] | None = None, key: str = DEMO_ACCESS_KEY_ID,
           secret: str = DEMO_SECRET_ACCESS_KEY, region: str = "us-east-1"):
    """boto3's bedrock-runtime client aimed at the mock, one attempt per call, sending
    `headers` (the x-mock-* controls) with every request, signed like the rest."""
    bedrock = boto3.client("bedrock-runtime", endpoint_url=base, region_name=region, aws_access_key_id=key,
                           aws_secret_access_key=secret, config=Config(retries={"total_max_attempts": 1}))

    def add_headers(request: AWSRequest, **_) -> None:
        for name, value in (headers or {}).items():
            request.headers[name] = value
    bedrock.meta.events.register("before-sign.bedrock-runtime.*", add_headers)
    return bedrock


def user(text: str = ECHO) -> dict:
    return {"role": "user", "content": [{"text": text}]}


def claude_body(text: str = ECHO, **extra) -> str:
    return json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 200,
                       "messages": [{"role": "user", "content": text}], **extra})


def signed_post(base: str, path: str, body: bytes, headers: dict | None = None,
                secret: str = DEMO_SECRET_ACCESS_KEY, signed: bool = True) -> httpx.Response:
    """A POST signed with botocore's SigV4Auth (service bedrock), sent as is by httpx."""
    request = AWSRequest(method="POST", url=base + path, data=body,
                         headers={"content-type": "application/json", **(headers or {})})
    if signed:
        SigV4Auth(Credentials(DEMO_ACCESS_KEY_ID, secret), "bedrock", "us-east-1").add_auth(request)
    return httpx.post(base + path, content=body, headers=dict(request.headers.items()), timeout=10)


def error_of(raised: pytest.ExceptionInfo) -> tuple[str, str, int, str]:
    """A botocore error's code, message, status and x-amzn-ErrorType."""
    response = raised.value.response
    return (response["Error"]["Code"], response["Error"]["Message"], response["ResponseMetadata"]["HTTPStatusCode"],
            response["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-errortype", ""))


# --- Converse --------------------------------------------------------------------------------------

def test_converse_echoes_the_last_user_turn_with_the_gateways_usage(mock):
    answer = client(mock["mock"]).converse(modelId=NOVA, system=[{"text": "Be brief."}],
                                           messages=[user("first"), {"role": "assistant", "content": [{"text": "ok"}]},
                                                     user()], inferenceConfig={"maxTokens": 200})
    assert answer["output"]["message"] == {"role": "assistant", "content": [{"text": ECHO}]}
    assert answer["stopReason"] == "end_turn" and answer["metrics"]["latencyMs"] >= 1
    prompt = count_prompt(["Be brief.", "first", "ok", ECHO], 3)
    assert answer["usage"] == {"inputTokens": prompt, "outputTokens": count_text(ECHO),
                               "totalTokens": prompt + count_text(ECHO)}
    assert len(answer["ResponseMetadata"]["RequestId"]) == 36
    [entry] = [e for e in httpx.get(f"{mock['mock']}/_mock/requests").json() if "first" in e["body"]]
    assert entry["path"] == f"/model/{NOVA}/converse" and entry["usage"]["completion_tokens"] == count_text(ECHO)


def test_converse_holds_to_max_tokens_and_stop_sequences(mock):
    bedrock = client(mock["mock"])
    cut = bedrock.converse(modelId=NOVA, messages=[user()], inferenceConfig={"maxTokens": 3})
    assert cut["stopReason"] == "max_tokens" and cut["usage"]["outputTokens"] == 3
    assert ECHO.startswith(cut["output"]["message"]["content"][0]["text"])
    stopped = bedrock.converse(modelId=NOVA, messages=[user()], inferenceConfig={"stopSequences": ["emoji"]})
    assert stopped["stopReason"] == "stop_sequence"
    assert stopped["output"]["message"]["content"][0]["text"] == ECHO[:ECHO.index("emoji")]


def test_converse_stream_rebuilds_the_echo_in_bedrocks_event_order(mock):
    cached = client(mock["mock"], {"x-mock-cached-tokens": "5"})
    events = list(cached.converse_stream(modelId=NOVA, messages=[user()])["stream"])
    kinds = [next(iter(event)) for event in events]
    assert kinds[0] == "messageStart" and kinds[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    assert set(kinds[1:-3]) == {"contentBlockDelta"} and len(kinds) - 4 == len(ECHO.split())     # a word each
    assert "".join(e["contentBlockDelta"]["delta"]["text"] for e in events[1:-3]) == ECHO
    assert events[-2]["messageStop"]["stopReason"] == "end_turn"
    prompt, output = count_prompt([ECHO], 1), count_text(ECHO)
    assert events[-1]["metadata"]["usage"] == {"inputTokens": prompt - 5, "outputTokens": output,
                                               "cacheReadInputTokens": 5, "cacheWriteInputTokens": 0,
                                               "totalTokens": prompt + output}


def test_a_tool_call_comes_as_a_tool_use_block(mock):
    bedrock = client(mock["mock"], {"x-mock-tool-call": "lookup"})
    answer = bedrock.converse(modelId=NOVA, messages=[user()])
    [block] = answer["output"]["message"]["content"]
    assert answer["stopReason"] == "tool_use" and block["toolUse"]["name"] == "lookup"
    assert block["toolUse"]["input"] == {"text": ECHO} and block["toolUse"]["toolUseId"].startswith("tooluse_")
    events = list(client(mock["mock"], {"x-mock-tool-call": "lookup", "x-mock-chunk-chars": "9"})
                  .converse_stream(modelId=NOVA, messages=[user()])["stream"])
    start = events[1]["contentBlockStart"]
    assert start["start"]["toolUse"]["name"] == "lookup" and start["contentBlockIndex"] == 0
    pieces = [e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events if "contentBlockDelta" in e]
    assert len(pieces) > 3 and all(len(p) <= 9 for p in pieces)
    assert json.loads("".join(pieces)) == {"text": ECHO} and events[-2]["messageStop"]["stopReason"] == "tool_use"


@pytest.mark.parametrize("messages, config, words", [
    ([user(), user("again")], None, "must alternate between user and assistant roles"),
    ([{"role": "assistant", "content": [{"text": "hi"}]}, user()], None, "must start with a user message"),
    ([], None, "must start with a user message"),
    ([user("   ")], None, "The text field in the ContentBlock object at messages.0.content.0 is blank"),
    ([{"role": "user", "content": []}], None, "The content field in the Message object at messages.0 is empty"),
    ([{"role": "user", "content": [{"txt": "hi"}]}], None, "must set exactly one of its members"),
    ([{"role": "system", "content": [{"text": "hi"}]}], None,
     "Value 'system' at 'messages.1.member.role' failed to satisfy constraint"),
    ([user()], {"maxTokens": 0}, "Value '0' at 'inferenceConfig.maxTokens' failed to satisfy constraint: "
                                 "Member must have value greater than or equal to 1"),
    ([user()], {"maxTokens": "many", "temperature": 3}, "2 validation errors detected"),
])
def test_converse_refuses_what_bedrock_refuses(mock, messages, config, words):
    body = {"messages": messages, **({"inferenceConfig": config} if config else {})}
    refused = signed_post(mock["mock"], "/model/amazon.nova-micro-v1%3A0/converse", orjson.dumps(body))
    assert refused.status_code == 400 and words in refused.json()["message"]
    assert refused.headers["x-amzn-ErrorType"] == \
        "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"


def test_botocore_raises_bedrocks_validation_exception(mock):
    with pytest.raises(ClientError) as raised:
        client(mock["mock"]).converse(modelId=NOVA, messages=[user(), user()])
    code, message, status, _ = error_of(raised)
    assert (code, status) == ("ValidationException", 400) and message.startswith("A conversation must alternate")


# --- InvokeModel with an Anthropic body -------------------------------------------------------------

def test_invoke_model_answers_through_the_anthropic_mock(mock):
    answer = client(mock["mock"]).invoke_model(modelId=CLAUDE, body=claude_body())
    message = json.loads(answer["body"].read())
    assert message["content"] == [{"type": "text", "text": ECHO}] and message["model"] == "claude-haiku-4-5-20251001"
    assert message["id"].startswith("msg_bdrk_01") and message["stop_reason"] == "end_turn"
    prompt, output = count_prompt([ECHO], 1), count_text(ECHO)
    assert (message["usage"]["input_tokens"], message["usage"]["output_tokens"]) == (prompt, output)
    headers = answer["ResponseMetadata"]["HTTPHeaders"]
    assert (headers["x-amzn-bedrock-input-token-count"], headers["x-amzn-bedrock-output-token-count"]) == \
        (str(prompt), str(output))
    assert int(headers["x-amzn-bedrock-invocation-latency"]) >= 1 and answer["contentType"] == "application/json"


def test_invoke_model_streams_anthropic_events_as_chunks(mock):
    answer = client(mock["mock"], {"x-mock-cache-write-tokens": "4"}).invoke_model_with_response_stream(
        modelId=CLAUDE, body=claude_body())
    events = [json.loads(event["chunk"]["bytes"]) for event in answer["body"]]
    assert [e["type"] for e in events[:2]] == ["message_start", "content_block_start"]
    assert "ping" not in {e["type"] for e in events}
    assert "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta") == ECHO
    assert events[-2]["delta"]["stop_reason"] == "end_turn" and events[-1]["type"] == "message_stop"
    metrics = events[-1]["amazon-bedrock-invocationMetrics"]
    prompt, output = count_prompt([ECHO], 1), count_text(ECHO)
    assert (metrics["inputTokenCount"], metrics["outputTokenCount"], metrics["cacheWriteInputTokenCount"]) == \
        (prompt - 4, output, 4)
    assert metrics["invocationLatency"] >= 1 and answer["contentType"] == "application/json"
    assert events[0]["message"]["id"].startswith("msg_bdrk_01") and "stop_details" not in events[0]["message"]


def test_invoke_model_with_a_tool_call(mock):
    answer = client(mock["mock"], {"x-mock-tool-call": "lookup"}).invoke_model(modelId=CLAUDE, body=claude_body())
    [block] = json.loads(answer["body"].read())["content"]
    assert (block["type"], block["name"], block["input"]) == ("tool_use", "lookup", {"text": ECHO})
    assert block["id"].startswith("toolu_bdrk_01")


@pytest.mark.parametrize("body, model, words", [
    (claude_body(model="claude-haiku-4-5"), CLAUDE, "#: extraneous key [model] is not permitted"),
    (json.dumps({"max_tokens": 9, "messages": []}), CLAUDE, "#: required key [anthropic_version] not found"),
    (claude_body(anthropic_version="2023-06-01"), CLAUDE, "#/anthropic_version: 2023-06-01 is not a valid enum value"),
    (claude_body(max_tokens="9"), CLAUDE, "#/max_tokens: expected type: Integer, found: String"),
    (claude_body(), NOVA, "for Anthropic models only"),
    (claude_body(), "meta.llama3-8b-instruct-v1:0", "for Anthropic models only"),
])
def test_invoke_model_refuses_what_bedrock_refuses(mock, body, model, words):
    with pytest.raises(ClientError) as raised:
        client(mock["mock"]).invoke_model(modelId=model, body=body)
    code, message, status, error_type = error_of(raised)
    assert (code, status) == ("ValidationException", 400) and words in message
    assert error_type.startswith("ValidationException:") and \
        (message.startswith("Malformed input request: #") or "Anthropic models only" in message)


# --- failures -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("status, code", [(429, "ThrottlingException"), (400, "ValidationException"),
                                          (403, "AccessDeniedException"), (404, "ResourceNotFoundException"),
                                          (500, "InternalServerException"), (503, "ServiceUnavailableException")])
def test_a_failure_status_raises_bedrocks_exception(mock, status, code):
    bedrock = client(mock["mock"], {"x-mock-status": str(status), "x-mock-retry-after": "2"})
    for call in (lambda: bedrock.converse(modelId=NOVA, messages=[user()]),
                 lambda: bedrock.invoke_model_with_response_stream(modelId=CLAUDE, body=claude_body())):
        with pytest.raises(ClientError) as raised:
            call()
        raised_code, _, raised_status, error_type = error_of(raised)
        assert (raised_code, raised_status) == (code, status)
        assert error_type == f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"
        assert raised.value.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "2"
    assert isinstance(raised.value, getattr(bedrock.exceptions, code))       # the service's own exception class


def test_an_in_stream_exception_ends_the_stream_after_the_first_delta(mock):
    bedrock = client(mock["mock"], {"x-mock-stream-exception": "throttlingException"})
    received = []
    with pytest.raises(EventStreamError) as raised:
        for event in bedrock.converse_stream(modelId=NOVA, messages=[user()])["stream"]:
            received.append(event)
    assert [next(iter(e)) for e in received] == ["messageStart", "contentBlockDelta"]
    assert raised.value.response["Error"] == {"Code": "throttlingException",
                                              "Message": "Too many requests, please wait before trying again."}
    chunks = []
    with pytest.raises(EventStreamError) as raised:
        for event in bedrock.invoke_model_with_response_stream(modelId=CLAUDE, body=claude_body())["body"]:
            chunks.append(json.loads(event["chunk"]["bytes"])["type"])
    assert chunks == ["message_start", "content_block_start", "content_block_delta"]
    assert raised.value.response["Error"]["Code"] == "throttlingException"


def test_stream_faults_apply_to_event_streams(mock):
    path, body = "/model/amazon.nova-micro-v1%3A0/converse-stream", orjson.dumps({"messages": [user()]})
    whole = signed_post(mock["mock"], path, body).content
    slow = signed_post(mock["mock"], path, body, {"x-mock-write-bytes": "7"})
    decoder = EventStreamDecoder()
    messages = [m for at in range(0, len(slow.content), 7) for m in decoder.feed(slow.content[at:at + 7])]
    assert len(messages) == len(EventStreamDecoder().feed(whole)) and decoder.leftover == 0
    assert "".join(orjson.loads(m.payload)["delta"]["text"] for m in messages
                   if m.headers[":event-type"] == "contentBlockDelta") == ECHO
    with pytest.raises(httpx.HTTPError):
        signed_post(mock["mock"], path, body, {"x-mock-cut-after": "2"})
    with pytest.raises(httpx.HTTPError):
        signed_post(mock["mock"], path, body, {"x-mock-reset": "1"})
    started = time.monotonic()
    signed_post(mock["mock"], path, body, {"x-mock-delay-ms": "150", "x-mock-chunk-delay-ms": "20"})
    assert time.monotonic() - started >= 0.15 + 0.02 * (len(ECHO.split()) + 3)


# --- signatures ------------------------------------------------------------------------------------------

def test_a_wrong_secret_gets_invalid_signature_with_awss_strings(mock):
    with pytest.raises(ClientError) as raised:
        client(mock["mock"], secret="not-the-secret").converse(modelId=NOVA, messages=[user()])
    code, message, status, error_type = error_of(raised)
    assert (code, status) == ("InvalidSignatureException", 403)
    assert error_type == "InvalidSignatureException:http://internal.amazon.com/coral/com.amazon.coral.service/"
    assert message.startswith("The request signature we calculated does not match the signature you provided. "
                              "Check your AWS Secret Access Key and signing method. Consult the service "
                              "documentation for details.")
    assert "should have been\n'POST\n/model/amazon.nova-micro-v1%253A0/converse\n" in message   # encoded twice


def test_an_unknown_key_or_no_signature_is_refused(mock):
    with pytest.raises(ClientError) as raised:
        client(mock["mock"], key="AKIDSOMEONEELSE").converse(modelId=NOVA, messages=[user()])
    assert error_of(raised)[:3] == ("UnrecognizedClientException",
                                    "The security token included in the request is invalid.", 403)
    unsigned = signed_post(mock["mock"], f"/model/{NOVA}/converse", orjson.dumps({"messages": [user()]}),
                           signed=False)
    assert unsigned.status_code == 403 and unsigned.json() == {"Message": "Authorization header is missing"}
    assert unsigned.headers["x-amzn-ErrorType"].startswith("AccessDeniedException:")


def test_a_stale_signature_is_refused(mock, monkeypatch):
    stale = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(minutes=6)
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: stale)
    refused = signed_post(mock["mock"], f"/model/{NOVA}/converse", orjson.dumps({"messages": [user()]}))
    assert refused.status_code == 403 and refused.headers["x-amzn-ErrorType"].startswith("InvalidSignatureException:")
    assert refused.json()["message"].startswith(
        f"Signature expired: {stale.strftime('%Y%m%dT%H%M%SZ')} is now earlier than ")


def test_a_listener_checks_the_credentials_of_its_config(mock):
    [listener] = listeners_from_config({"listeners": [{"name": "c", "port": 1, **CUSTOM}]}, None)
    assert AwsCredentials.from_config(listener.aws).region == "eu-west-3"
    own = client(mock["custom"], key=CUSTOM["aws_access_key_id"], secret=CUSTOM["aws_secret_access_key"],
                 region="eu-west-3")
    assert own.converse(modelId=NOVA, messages=[user()])["output"]["message"]["content"][0]["text"] == ECHO
    with pytest.raises(ClientError) as raised:
        client(mock["custom"]).converse(modelId=NOVA, messages=[user()])       # the demo key is not this one's
    assert error_of(raised)[0] == "UnrecognizedClientException"
    with pytest.raises(ClientError) as raised:
        client(mock["custom"], key=CUSTOM["aws_access_key_id"], secret=CUSTOM["aws_secret_access_key"]) \
            .converse(modelId=NOVA, messages=[user()])                          # signed for us-east-1
    assert error_of(raised)[:2] == ("InvalidSignatureException",
                                    "Credential should be scoped to a valid region, not 'us-east-1'. ")


# --- golden: the recordings' shapes, and the recordings replayed ------------------------------------------

def _recorded(name: str) -> tuple[dict, dict]:
    interaction = yaml.safe_load((RECORDINGS / f"{name}.yaml").read_text())["interactions"][0]
    return interaction["request"], interaction["response"]


def _body(response: dict) -> bytes:
    body = response["body"].encode()
    return base64.b64decode(body) if response["headers"].get("X-Fixture-Body-Encoding") == ["base64"] else body


def shape(value: object) -> object:
    """The keys at every level and the values' types (a list by its first item)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def stream_shapes(stream: bytes) -> dict[str, object]:
    """Each event type's headers and payload shape, the random padding's length aside."""
    return {str(m.headers[":event-type"]): (m.headers, shape(orjson.loads(m.payload)))
            for m in EventStreamDecoder().feed(stream)}


def sent_names(response: httpx.Response) -> set[str]:
    """The header names as they came on the wire, in their case."""
    return {name.decode() for name, _ in response.headers.raw}


def test_answers_have_the_recorded_shapes(mock):
    request, recorded = _recorded("bedrock-converse")
    answer = signed_post(mock["mock"], httpx.URL(request["url"]).raw_path.decode(), request["body"].encode())
    assert shape(answer.json()) == shape(orjson.loads(recorded["body"]))
    assert list(answer.json()) == list(orjson.loads(recorded["body"]))                    # keys sorted as Bedrock's
    assert answer.headers["content-type"] == "application/json" and "x-amzn-RequestId" in sent_names(answer)

    request, recorded = _recorded("bedrock-converse-stream")
    streamed = signed_post(mock["mock"], httpx.URL(request["url"]).raw_path.decode(), request["body"].encode())
    assert streamed.headers["content-type"] == recorded["headers"]["Content-Type"][0]
    assert stream_shapes(streamed.content) == stream_shapes(_body(recorded))
    assert len(streamed.headers["x-amzn-RequestId"]) == len(recorded["headers"]["x-amzn-RequestId"][0])

    request, recorded = _recorded("bedrock-invoke-anthropic")
    invoked = signed_post(mock["mock"], httpx.URL(request["url"]).raw_path.decode(), request["body"].encode())
    message, expected = invoked.json(), orjson.loads(recorded["body"])
    assert shape(message) == shape(expected) and list(message) == list(expected)
    assert list(message["usage"]) == list(expected["usage"])
    assert (len(message["id"]), message["id"][:11]) == (len(expected["id"]), expected["id"][:11])
    recorded_headers = {name for name in recorded["headers"] if name.startswith(("X-Amzn", "x-amzn"))}
    assert recorded_headers <= sent_names(invoked)          # the names, spelled as Bedrock spells them

    request, recorded = _recorded("bedrock-converse-error-validation")
    refused = signed_post(mock["mock"], httpx.URL(request["url"]).raw_path.decode(), b'{"messages": []}')
    assert refused.status_code == recorded["code"] and set(refused.json()) == set(orjson.loads(recorded["body"]))
    assert refused.headers["x-amzn-ErrorType"] == recorded["headers"]["x-amzn-ErrorType"][0]


@pytest.mark.parametrize("name", BEDROCK_RECORDINGS)
def test_each_bedrock_recording_replays_byte_for_byte(mock, name):
    request, recorded = _recorded(name)
    response = signed_post(mock["mock"], httpx.URL(request["url"]).raw_path.decode(), request["body"].encode(),
                           {"x-mock-replay": name})
    assert response.status_code == recorded["code"] and response.content == _body(recorded)
    assert response.headers["content-type"] == recorded["headers"]["Content-Type"][0]
    assert response.headers["x-amzn-RequestId"] == recorded["headers"]["x-amzn-RequestId"][0]
    assert "X-Fixture-Body-Encoding" not in response.headers                # the recording's note, not the wire's


def test_a_replayed_stream_reads_through_boto3_and_keeps_the_stream_faults(mock):
    _, recorded = _recorded("bedrock-converse-stream")
    expected = "".join(orjson.loads(m.payload)["delta"]["text"] for m in EventStreamDecoder().feed(_body(recorded))
                       if m.headers[":event-type"] == "contentBlockDelta")
    events = list(client(mock["mock"], {"x-mock-replay": "bedrock-converse-stream"})
                  .converse_stream(modelId=NOVA, messages=[user()])["stream"])
    assert "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e) == expected
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 63
    request, _ = _recorded("bedrock-converse-stream")
    path = httpx.URL(request["url"]).raw_path.decode()
    slow = signed_post(mock["mock"], path, b"{}",
                       {"x-mock-replay": "bedrock-converse-stream", "x-mock-write-bytes": "5"})
    assert slow.content == _body(recorded)
    with pytest.raises(httpx.HTTPError):
        signed_post(mock["mock"], path, b"{}", {"x-mock-replay": "bedrock-converse-stream", "x-mock-cut-after": "3"})
    unknown = signed_post(mock["mock"], path, b"{}", {"x-mock-replay": "no-such-recording"})
    assert unknown.status_code == 400 and "unknown recording" in unknown.json()["message"]
