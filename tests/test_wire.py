"""Envoy's messages read from their bytes (wire/reading.py) exactly as protobuf reads them,
and replies written (wire/writing.py) exactly as protobuf would build them: on arbitrary
messages, on two messages run together (protobuf merges them), and on broken bytes."""

from __future__ import annotations

import math

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from google.protobuf import struct_pb2
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.pipeline.protocol import (EMPTY_REPLIES, RESPONSE_IN_BODY, Reply, ep, read_message,
                                       request_of)
from extproc.wire import writing
from extproc.wire.reading import read_request

_SCALARS = st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=12)
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4) |
                       st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=16)
_STRUCTS = st.dictionaries(st.text(max_size=10), _VALUES, max_size=5)
_HEADERS = st.lists(st.tuples(st.sampled_from([":path", ":status", "authorization", "x-request-id", "cookie", "é"]),
                              st.binary(max_size=12), st.text(max_size=8)), max_size=6)
_PHASES = st.sampled_from([None, "request_headers", "response_headers", "request_body", "response_body",
                           "request_trailers", "response_trailers"])


def _struct(fields: dict) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(fields)
    return struct


@st.composite
def messages(draw) -> ep.ProcessingRequest:
    message = ep.ProcessingRequest()
    phase = draw(_PHASES)
    if phase is not None:
        part = getattr(message, phase)
        part.SetInParent()
        if phase.endswith("_body"):
            part.body = draw(st.binary(max_size=40))
            part.end_of_stream = draw(st.booleans())
        else:
            header_map = part.trailers if phase.endswith("_trailers") else part.headers
            for key, raw, value in draw(_HEADERS):
                header_map.headers.add(key=key, raw_value=raw, value=value)
            if phase.endswith("_headers"):
                part.end_of_stream = draw(st.booleans())
    if draw(st.booleans()):
        message.metadata_context.SetInParent()
        for namespace, fields in draw(st.dictionaries(st.text(max_size=12), _STRUCTS, max_size=3)).items():
            message.metadata_context.filter_metadata[namespace].CopyFrom(_struct(fields))
    for name, fields in draw(st.dictionaries(st.text(max_size=12), _STRUCTS, max_size=2)).items():
        message.attributes[name].CopyFrom(_struct(fields))
    message.observability_mode = draw(st.booleans())
    if draw(st.booleans()):                 # (Envoy sends it with a stream's first message)
        message.protocol_config.request_body_mode = draw(st.integers(0, 5))
        message.protocol_config.send_body_without_waiting_for_header_response = draw(st.booleans())
    return message


@settings(max_examples=400, deadline=None)
@given(messages())
def test_a_message_reads_as_protobuf_reads_it(message):
    read = read_request(message.SerializeToString())
    assert read is not None, "protobuf's own layout is read without protobuf"
    assert read.fields() == request_of(message).fields()


def _equal(one, other) -> bool:
    """Equal, a NaN equal to a NaN (broken bytes make them)."""
    if type(one) is not type(other):
        return False
    if isinstance(one, float):
        return one == other or math.isnan(one) and math.isnan(other)
    if isinstance(one, dict):
        return one.keys() == other.keys() and all(_equal(one[key], other[key]) for key in one)
    if isinstance(one, (list, tuple)):
        return len(one) == len(other) and all(map(_equal, one, other))
    return one == other


def _same_as_protobuf(data: bytes) -> None:
    """Whatever the bytes, the reader gives what protobuf gives, or leaves them to it."""
    read = read_request(data)
    try:
        parsed = ep.ProcessingRequest.FromString(data)
    except DecodeError:
        assert read is None
        return
    expected = request_of(parsed)
    if read is not None:
        assert _equal(read.fields(), expected.fields())
    assert _equal(read_message(data).fields(), expected.fields())


@settings(max_examples=400, deadline=None)
@given(messages(), messages())
def test_two_messages_run_together_read_as_protobuf_merges_them(first, second):
    _same_as_protobuf(first.SerializeToString() + second.SerializeToString())


@settings(max_examples=600, deadline=None)
@given(messages(), st.data())
def test_broken_bytes_read_as_protobuf_reads_them_or_are_refused_as_it_refuses_them(message, data):
    raw = bytearray(message.SerializeToString())
    for _ in range(data.draw(st.integers(1, 3))):
        if not raw:
            break
        at = data.draw(st.integers(0, len(raw) - 1))
        how = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if how == "flip":
            raw[at] ^= data.draw(st.integers(1, 255))
        elif how == "cut":
            del raw[at:]
        else:
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=4))
    _same_as_protobuf(bytes(raw))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60))
def test_any_bytes_read_as_protobuf_reads_them(data):
    _same_as_protobuf(data)


def test_a_nan_and_the_infinities_read_as_protobuf_reads_them():
    message = ep.ProcessingRequest(response_body=ep.HttpBody(body=b"{}", end_of_stream=True))
    message.attributes["envoy.filters.http.ext_proc"].CopyFrom(
        _struct({"nan": math.nan, "inf": math.inf, "-inf": -math.inf}))
    read = read_request(message.SerializeToString())
    values = read.attributes["envoy.filters.http.ext_proc"]
    assert math.isnan(values["nan"]) and values["inf"] == math.inf and values["-inf"] == -math.inf


def _protobuf_reply(phase: str, reply: Reply) -> ep.ProcessingResponse:
    """The reply as protobuf's objects build it, field by field."""
    response = ep.ProcessingResponse()
    getattr(response, phase).SetInParent()
    if phase == "response_trailers":
        response.response_trailers.header_mutation.remove_headers.extend(reply.remove_headers)
    else:
        common = getattr(response, phase).response
        for key, value in reply.set_headers.items():
            common.header_mutation.set_headers.add(
                header=base_pb2.HeaderValue(key=key, raw_value=value.encode()),
                append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)
        if reply.remove_headers:
            common.header_mutation.remove_headers.extend(reply.remove_headers)
        if reply.body is not None:
            common.body_mutation.body = reply.body
        if reply.clear_route_cache:
            common.clear_route_cache = True
        if reply.mode_override:
            response.mode_override.CopyFrom(processing_mode_pb2.ProcessingMode.FromString(reply.mode_override))
    if reply.metadata:
        response.dynamic_metadata.update(reply.metadata)
    return response


_NAMES = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), min_size=1, max_size=12)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["request_headers", "request_body", "response_headers", "response_body",
                        "response_trailers"]),
       st.dictionaries(_NAMES, st.text(max_size=20), max_size=4), st.lists(_NAMES, max_size=3),
       st.none() | st.binary(max_size=30), st.booleans(), st.booleans(),
       st.none() | st.dictionaries(st.sampled_from(["llm_gateway", "llm_gateway.route"]), _STRUCTS, max_size=2))
def test_a_reply_is_written_as_protobuf_builds_it(phase, set_headers, remove, body, clear, mode, metadata):
    reply = Reply()
    reply.set_headers.update(set_headers)
    reply.remove_headers.extend(remove)
    reply.body, reply.clear_route_cache = body, clear
    reply.mode_override = RESPONSE_IN_BODY if mode else None
    for namespace, fields in (metadata or {}).items():
        reply.add_metadata(fields, namespace)
    written = ep.ProcessingResponse.FromString(reply.build(phase))
    if not (set_headers or remove or body is not None or mode or reply.metadata):
        assert reply.build(phase) == EMPTY_REPLIES[phase]
        assert written.WhichOneof("response") == phase
        return
    assert written == _protobuf_reply(phase, reply)


def test_the_append_action_is_protobufs():
    assert writing.OVERWRITE_IF_EXISTS_OR_ADD == base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def test_a_struct_is_written_as_struct_update_writes_it():
    """Ints as doubles, tuples as lists, None as null; what update refuses, refused."""
    fields = {"n": 3, "big": 2**70, "t": (1, "a"), "none": None, "deep": {"x": [True, {"y": -0.0}]}}
    assert struct_pb2.Struct.FromString(writing.struct_bytes(fields)) == _struct(fields)
    for bad in ({"x": object()}, {"x": b"bytes"}):
        try:
            _struct(bad)
        except ValueError:
            pass
        else:
            raise AssertionError("protobuf took it")
        try:
            writing.struct_bytes(bad)
        except ValueError:
            continue
        raise AssertionError("the writer took what protobuf refuses")


def test_long_fields_take_longer_lengths():
    """Lengths of 128 bytes and more (two-byte and three-byte varints), at every level."""
    long, longer = "x" * 200, "é" * 9000
    reply = Reply()
    reply.set_headers.update({"x-long": long, "x-" + long: longer})
    reply.remove_headers.extend([long, "a"])
    reply.body = b"b" * 70000
    reply.clear_route_cache = True
    reply.add_metadata({"headers": {long: longer, "n": [long, {"k": longer}]}, long: 1.5})
    for phase in ("request_body", "response_headers", "response_trailers"):
        assert ep.ProcessingResponse.FromString(reply.build(phase)) == _protobuf_reply(phase, reply)
