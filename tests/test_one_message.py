"""The one-message response in the pipeline itself (no Envoy): what each reply carries
when the service decides to skip the response headers, and the refusals Envoy cannot
show (its reading of the body and the service's always agree through the real filter)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2 as pm
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from google.protobuf import struct_pb2

from ext_proc_messages import handled
from extproc.config.envoy_contract import HEADERS_ADDED_FROM_METADATA, envoy_features
from extproc.config.filter_config import load_config
from extproc.pipeline.call import Call
from extproc.runtime.worker import Runtime

QUICKSTART = str(Path(__file__).resolve().parent.parent / "config" / "quickstart.yaml")
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
# What envoy/quickstart.yaml's ext_proc filter announces in its gRPC metadata.
ENVOY = envoy_features("headers-from-metadata streams-passed-through usage-chunk-stripped")


def _request_headers(announced: dict | None, key: str = "sk-demo-alice") -> ep.ProcessingRequest:
    request = ep.ProcessingRequest(request_headers=ep.HttpHeaders(headers=base_pb2.HeaderMap(headers=[
        base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in {
            ":method": "POST", ":path": "/v1/chat/completions", "authorization": f"Bearer {key}",
            "content-type": "application/json", "x-request-id": "r1"}.items()])))
    if announced is not None:
        request.metadata_context.filter_metadata["llm_gateway.request"].update(announced)
    return request


def _response_body(status: int, body: bytes) -> ep.ProcessingRequest:
    request = ep.ProcessingRequest(response_body=ep.HttpBody(body=body, end_of_stream=True))
    attributes = struct_pb2.Struct()
    attributes.update({"response.code": status})
    request.attributes["envoy.filters.http.ext_proc"].CopyFrom(attributes)
    return request


@pytest.fixture
def pipeline(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMGW_STATE_DIR", str(tmp_path))
    return Runtime(load_config(QUICKSTART)).pipeline


def _run(pipeline, call: Call, request: ep.ProcessingRequest) -> ep.ProcessingResponse:
    return asyncio.run(handled(pipeline, call, request))


def test_a_provider_error_in_one_message_is_made_openai_style_by_the_body_alone(pipeline):
    call = Call(load_config(QUICKSTART), ENVOY)
    headers_reply = _run(pipeline, call, _request_headers({"stream": False, "model": "gpt-4o-mini"}))
    assert headers_reply.mode_override.response_header_mode == pm.ProcessingMode.SKIP
    assert headers_reply.mode_override.request_body_mode == pm.ProcessingMode.BUFFERED  # restated
    body_reply = _run(pipeline, call, ep.ProcessingRequest(
        request_body=ep.HttpBody(body=orjson.dumps(CHAT), end_of_stream=True)))
    added = body_reply.dynamic_metadata.fields["llm_gateway"].struct_value.fields["headers"].struct_value
    assert added.fields["x-gateway-backend"].string_value == "mock"
    assert added.fields["content-type"].string_value == "application/json"

    reply = _run(pipeline, call, _response_body(502, b"<html>Bad gateway</html>"))
    error = orjson.loads(reply.response_body.response.body_mutation.body)["error"]
    assert error["code"] == "upstream_error" and "502" in error["message"]
    # Envoy already passed the headers on: a header mutation here would be dropped unseen.
    assert not reply.response_body.response.HasField("header_mutation")
    assert call.status == 502 and call.finished and call.outcome == "upstream_error"


def test_the_usage_of_a_one_message_answer_is_read(pipeline):
    call = Call(load_config(QUICKSTART), ENVOY)
    _run(pipeline, call, _request_headers({"stream": False, "model": "gpt-4o-mini"}))
    _run(pipeline, call, ep.ProcessingRequest(request_body=ep.HttpBody(body=orjson.dumps(CHAT),
                                                                       end_of_stream=True)))
    answer = {"id": "c1", "object": "chat.completion", "model": "gpt-4o-mini", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9}}
    reply = _run(pipeline, call, _response_body(200, orjson.dumps(answer)))
    assert not reply.response_body.response.HasField("body_mutation")
    assert (call.status, call.usage.input_tokens, call.usage.output_tokens) == (200, 8, 1)
    usage = reply.dynamic_metadata.fields["llm_gateway"].struct_value.fields
    assert usage["output_tokens"].number_value == 1


@pytest.mark.parametrize("announced,body", [
    ({"stream": False, "model": "gpt-4o-mini"}, {**CHAT, "stream": True}),
    ({"stream": False, "model": "gpt-4o-mini"}, {**CHAT, "model": "gpt-4o"}),
], ids=["announced not streamed, body streams", "announced another model"])
def test_a_body_that_says_otherwise_than_envoy_read_is_refused(pipeline, announced, body):
    call = Call(load_config(QUICKSTART), ENVOY)
    _run(pipeline, call, _request_headers(announced))
    reply = _run(pipeline, call, ep.ProcessingRequest(request_body=ep.HttpBody(body=orjson.dumps(body),
                                                                                end_of_stream=True)))
    assert reply.immediate_response.status.code == 400
    assert b"'stream' or 'model' is not what the gateway read" in reply.immediate_response.body


@pytest.mark.parametrize("announced", [
    None,                                             # an Envoy config without the filter
    {"stream": True, "model": "gpt-4o-mini"},
    {"model": "gpt-4o-mini"},                         # "stream" not read
    {"stream": "false", "model": "gpt-4o-mini"},      # not a JSON boolean
    {"stream": False, "model": "smart"},              # virtual: headers name the backend
    {"stream": False, "model": "no-such-model"},
], ids=["no metadata", "streamed", "no stream key", "stream a string", "virtual model", "unknown model"])
def test_other_calls_keep_the_response_headers_message(pipeline, announced):
    call = Call(load_config(QUICKSTART), envoy_features("headers-from-metadata"))  # streams not passed through
    reply = _run(pipeline, call, _request_headers(announced))
    assert not reply.HasField("mode_override") and not call.response_in_body


def test_without_the_feature_announced_the_response_headers_message_stays(pipeline):
    """An Envoy config that does not say it adds the gateway's headers from metadata:
    a one-message answer would reach the client without x-gateway-backend."""
    call = Call(load_config(QUICKSTART), envoy_features("streams-passed-through usage-chunk-stripped"))
    reply = _run(pipeline, call, _request_headers({"stream": False, "model": "gpt-4o-mini"}))
    assert not reply.HasField("mode_override") and not call.response_in_body


def test_every_header_left_to_envoy_is_one_envoy_adds(pipeline):
    """The headers a one-message answer leaves to Envoy (bob has a token budget: its
    x-ratelimit-*) are the ones `extproc check` makes sure every virtual host adds."""
    call = Call(load_config(QUICKSTART), ENVOY)
    _run(pipeline, call, _request_headers({"stream": False, "model": "gpt-4o-mini"}, key="sk-demo-bob"))
    reply = _run(pipeline, call, ep.ProcessingRequest(request_body=ep.HttpBody(body=orjson.dumps(CHAT),
                                                                               end_of_stream=True)))
    added = reply.dynamic_metadata.fields["llm_gateway"].struct_value.fields["headers"].struct_value.fields
    assert {"x-gateway-backend", "x-ratelimit-remaining-tokens"} <= set(added)
    assert set(added) <= set(HEADERS_ADDED_FROM_METADATA)
