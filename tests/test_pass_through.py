"""Streams passed through, in the pipeline itself (no Envoy): what each reply asks of
Envoy, the usage read from the trailers message, and the refusals Envoy cannot show
(its reading of the body and the service's always agree through the real filter)."""

from __future__ import annotations

import orjson
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2 as pm
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from google.protobuf import struct_pb2
from test_one_message import CHAT, ENVOY, QUICKSTART, _request_headers, _run

from extproc.config.envoy_contract import envoy_features
from extproc.config.filter_config import load_config
from extproc.pipeline.call import Call
from extproc.runtime.worker import Runtime

STREAM = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
ANNOUNCED = {"stream": True, "model": "gpt-4o-mini", "include_usage": True}
UNASKED = {"stream": True, "model": "gpt-4o-mini"}


@pytest.fixture
def pipeline(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMGW_STATE_DIR", str(tmp_path))
    return Runtime(load_config(QUICKSTART)).pipeline


def _body(body: dict) -> ep.ProcessingRequest:
    return ep.ProcessingRequest(request_body=ep.HttpBody(body=orjson.dumps(body), end_of_stream=True))


def _response_headers(content_type: str, status: int = 200) -> ep.ProcessingRequest:
    return ep.ProcessingRequest(response_headers=ep.HttpHeaders(headers=base_pb2.HeaderMap(headers=[
        base_pb2.HeaderValue(key=k, raw_value=v.encode())
        for k, v in {":status": str(status), "content-type": content_type}.items()])))


def _trailers(usage: dict | None, status: int = 200) -> ep.ProcessingRequest:
    request = ep.ProcessingRequest(response_trailers=ep.HttpTrailers(trailers=base_pb2.HeaderMap(headers=[
        base_pb2.HeaderValue(key="x-gateway-bandwidth-response-delay-ms", raw_value=b"0")])))
    attributes = struct_pb2.Struct()
    attributes.update({"response.code": status})           # the first response-side message
    request.attributes["envoy.filters.http.ext_proc"].CopyFrom(attributes)
    if usage is not None:
        request.metadata_context.filter_metadata["llm_gateway.stream"].update(usage)
    return request


def test_a_stream_passes_through_and_its_usage_comes_with_the_trailers(pipeline):
    call = Call(load_config(QUICKSTART), ENVOY)
    reply = _run(pipeline, call, _request_headers(ANNOUNCED))
    # Decided before the response: its headers and body go by, trailers end it.
    assert reply.mode_override.response_header_mode == pm.ProcessingMode.SKIP
    assert reply.mode_override.response_body_mode == pm.ProcessingMode.NONE
    assert reply.mode_override.response_trailer_mode == pm.ProcessingMode.SEND
    assert reply.mode_override.request_body_mode == pm.ProcessingMode.BUFFERED      # restated
    marker = reply.dynamic_metadata.fields["llm_gateway"].struct_value.fields["stream_end"]
    assert marker.string_value == "trailers"
    reply = _run(pipeline, call, _body(STREAM))
    # The headers the service would have set, Envoy adds from metadata.
    added = reply.dynamic_metadata.fields["llm_gateway"].struct_value.fields["headers"].struct_value
    assert added.fields["x-gateway-backend"].string_value == "mock"
    assert "content-type" not in added.fields                           # the provider's stays

    reply = _run(pipeline, call, _trailers({"input_tokens": 9, "output_tokens": 3, "cached_tokens": 2,
                                            "reasoning_tokens": 1}))
    usage = call.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cached_tokens, usage.reasoning_tokens,
            usage.estimated) == (9, 3, 2, 1, False)
    assert call.finished and call.outcome == "ok" and call.status == 200
    # Envoy's marker trailers do not reach the client; the usage goes to the access log.
    assert list(reply.response_trailers.header_mutation.remove_headers) == [
        "x-gateway-bandwidth-response-delay-ms"]
    logged = reply.dynamic_metadata.fields["llm_gateway"].struct_value.fields
    assert logged["output_tokens"].number_value == 3


def test_trailers_without_usage_charge_the_output_cap(pipeline):
    call = Call(load_config(QUICKSTART), ENVOY)
    _run(pipeline, call, _request_headers(ANNOUNCED))
    _run(pipeline, call, _body({**STREAM, "max_tokens": 40}))
    _run(pipeline, call, _trailers(None))
    assert call.usage.estimated and call.usage.output_tokens == 40 and call.usage.input_tokens > 0


def test_an_error_status_charges_nothing(pipeline):
    call = Call(load_config(QUICKSTART), ENVOY)
    _run(pipeline, call, _request_headers(ANNOUNCED))
    _run(pipeline, call, _body(STREAM))
    _run(pipeline, call, _trailers(None, status=429))
    assert call.status == 429 and call.outcome == "upstream_error" and call.usage is None


def test_response_headers_arriving_after_all_mean_the_usual_path(pipeline):
    """An Envoy config that did not allow the override sends the headers: read as ever."""
    call = Call(load_config(QUICKSTART), ENVOY)
    _run(pipeline, call, _request_headers(ANNOUNCED))
    _run(pipeline, call, _body(STREAM))
    reply = _run(pipeline, call, _response_headers("text/event-stream"))
    assert reply.mode_override.response_body_mode == pm.ProcessingMode.STREAMED
    assert not call.stream_passed_through


@pytest.mark.parametrize("announced,strip", [
    (ANNOUNCED, False),
    (UNASKED, True),
    ({**UNASKED, "include_usage": False}, True),
    ({**UNASKED, "include_usage": "yes"}, True),              # not a JSON boolean: not asked
], ids=["usage asked", "usage not asked", "usage asked as false", "include_usage a string"])
def test_envoy_is_told_which_streams_lose_their_usage_chunk(pipeline, announced, strip):
    call = Call(load_config(QUICKSTART), ENVOY)
    reply = _run(pipeline, call, _request_headers(announced))
    assert call.stream_passed_through
    marks = reply.dynamic_metadata.fields["llm_gateway"].struct_value.fields
    assert marks["stream_end"].string_value == "trailers"
    assert ("usage_chunk" in marks) is strip
    assert not strip or marks["usage_chunk"].string_value == "strip"


@pytest.mark.parametrize("announced,features", [
    ({"stream": False, "model": "gpt-4o-mini", "include_usage": True}, ENVOY),
    ({"stream": True, "model": "smart", "include_usage": True}, ENVOY),   # virtual
    ({"stream": True, "include_usage": True}, ENVOY),                     # model not read
    (None, ENVOY),                                                         # nothing read
    (ANNOUNCED, frozenset()),                          # an Envoy config without the filters
    (UNASKED, envoy_features("headers-from-metadata streams-passed-through")),  # ... without the Lua filter
    (ANNOUNCED, envoy_features("streams-passed-through usage-chunk-stripped")),  # ... without its headers
], ids=["not streamed", "virtual model", "no model", "no metadata", "no features announced",
        "usage chunk not stripped by Envoy", "headers not added by Envoy"])
def test_other_streams_are_not_passed_through(pipeline, announced, features):
    call = Call(load_config(QUICKSTART), features)
    reply = _run(pipeline, call, _request_headers(announced))
    assert reply.mode_override.response_trailer_mode != pm.ProcessingMode.SEND
    assert not call.stream_passed_through


@pytest.mark.parametrize("announced,body", [
    (ANNOUNCED, {**CHAT, "stream": True}),                                # no include_usage
    (ANNOUNCED, {**CHAT, "stream": True, "stream_options": {"include_usage": False}}),
    (ANNOUNCED, {**CHAT, "stream": False, "stream_options": {"include_usage": True}}),
    (ANNOUNCED, {**STREAM, "model": "gpt-4o"}),
    (UNASKED, STREAM),               # its usage chunk would be taken out of what it asked for
], ids=["include_usage missing", "include_usage false", "not streamed", "another model",
        "include_usage where Envoy read none"])
def test_a_body_that_says_otherwise_than_envoy_read_is_refused(pipeline, announced, body):
    call = Call(load_config(QUICKSTART), ENVOY)
    _run(pipeline, call, _request_headers(announced))
    reply = _run(pipeline, call, _body(body))
    assert reply.immediate_response.status.code == 400
    assert b"repeats 'stream', 'stream_options' or 'model'" in reply.immediate_response.body
