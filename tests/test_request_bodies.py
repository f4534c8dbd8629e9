"""Envoy's request-body message read with its body sliced from the bytes
(pipeline/request_bodies.py) reads as protobuf reads it: for Envoy's layout, for any
concatenation of messages protobuf merges (a second body, another phase, a second
`request_body`), for bytes cut anywhere, and for any bytes at all."""

from __future__ import annotations

import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st
from property_examples import examples

from extproc.pipeline import request_bodies
from extproc.pipeline.protocol import request_of
from extproc.pipeline.request_bodies import TAKEN_FROM, parse_request

LARGE = TAKEN_FROM + 1000


def as_protobuf_reads(data: bytes | list) -> tuple | type[DecodeError]:
    """What the pipeline gets (every field of the request), or that it is refused."""
    try:
        return parse_request(data).fields()
    except DecodeError:
        return DecodeError


def expected(data: bytes) -> tuple | type[DecodeError]:
    try:
        return request_of(ep.ProcessingRequest.FromString(data)).fields()
    except DecodeError:
        return DecodeError


def envoy_message(body: bytes, end: bool = True, with_context: bool = True) -> ep.ProcessingRequest:
    message = ep.ProcessingRequest(request_body=ep.HttpBody(body=body, end_of_stream=end))
    if with_context:
        message.metadata_context.filter_metadata["llm_gateway.request"].update({"model": "gpt-4o-mini", "n": 2})
        message.attributes["envoy.filters.http.ext_proc"].update({"request.path": "/v1/chat/completions"})
        message.observability_mode = False
    return message


def test_envoys_request_body_message_has_its_body_taken_once(monkeypatch):
    body = b'{"model":"gpt-4o-mini","messages":[' + b"x" * LARGE + b"]}"
    data = envoy_message(body).SerializeToString()
    read_whole = []
    monkeypatch.setattr(request_bodies, "_whole", lambda pieces: read_whole.append(pieces))
    read = parse_request(data)
    assert read.body == body and not read_whole
    frames = pieces(data, list(range(3, len(data), 16384)))        # as the transport hands it
    from_frames = parse_request(frames)
    assert from_frames.body == body and type(from_frames.body) is bytes and not read_whole
    assert read.phase == "request_body" and read.end_of_stream
    assert read.metadata == {"llm_gateway.request": {"model": "gpt-4o-mini", "n": 2.0}}
    monkeypatch.undo()
    assert as_protobuf_reads(data) == expected(data)


def test_a_small_body_and_other_phases_are_read_whole():
    small = envoy_message(b"{}").SerializeToString()
    assert as_protobuf_reads(small) == expected(small)
    headers = ep.ProcessingRequest(request_headers=ep.HttpHeaders(end_of_stream=False)).SerializeToString()
    assert as_protobuf_reads(headers) == expected(headers)
    response = ep.ProcessingRequest(response_body=ep.HttpBody(body=b"y" * LARGE)).SerializeToString()
    assert parse_request(response).body == b"y" * LARGE          # the response's is read as before


# What protobuf merges when messages are concatenated: each of these after Envoy's message
# changes what the whole reads as, and the sliced path must read the same.
TAILS = {
    "a second request body": ep.ProcessingRequest(request_body=ep.HttpBody(body=b"second")),
    "a second request body, no body in it": ep.ProcessingRequest(request_body=ep.HttpBody(end_of_stream=False)),
    "another phase": ep.ProcessingRequest(response_body=ep.HttpBody(body=b"r")),
    "request headers": ep.ProcessingRequest(request_headers=ep.HttpHeaders()),
    "more metadata": envoy_message(b"", with_context=True),
    "nothing": ep.ProcessingRequest(),
}


@pytest.mark.parametrize("tail", TAILS, ids=list(TAILS))
def test_what_protobuf_would_merge_reads_as_protobuf_reads_it(tail):
    data = envoy_message(b"z" * LARGE).SerializeToString() + TAILS[tail].SerializeToString()
    assert as_protobuf_reads(data) == expected(data)


def test_a_second_body_inside_the_first_request_body_is_protobufs_last_one():
    inner = ep.HttpBody(body=b"a" * LARGE).SerializeToString() + ep.HttpBody(body=b"b" * 3).SerializeToString()
    data = bytes([request_bodies.REQUEST_BODY_TAG]) + _varint(len(inner)) + inner
    assert as_protobuf_reads(data) == expected(data)
    assert parse_request(data).body == b"bbb"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append(value & 0x7F | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def pieces(data: bytes, cuts: list[int]) -> list:
    """The bytes as the transport hands them: cut where the frames and reads fell, some
    pieces views of a larger read."""
    read = b"\x00" * 7 + data
    places = sorted({min(cut, len(data)) for cut in cuts} | {0, len(data)})
    return [memoryview(read)[7 + a:7 + b] if index % 2 else data[a:b]
            for index, (a, b) in enumerate(zip(places, places[1:])) if b > a]


@settings(max_examples=examples(60), deadline=None)
@given(body=st.binary(min_size=0, max_size=64), padding=st.integers(0, 3 * TAKEN_FROM),
       cut=st.integers(0, 60), end=st.booleans(), context=st.booleans(),
       tail=st.sampled_from(list(TAILS)) | st.none(), cuts=st.lists(st.integers(0, 4 * TAKEN_FROM), max_size=8))
def test_cut_or_concatenated_messages_read_as_protobuf_reads_them(body, padding, cut, end, context, tail, cuts):
    data = envoy_message(body + b"p" * padding, end, context).SerializeToString()
    if tail is not None:
        data += TAILS[tail].SerializeToString()
    for candidate in (data, data[:len(data) - cut], data[:cut] + data[cut + 1:]):
        assert as_protobuf_reads(candidate) == expected(candidate)
        assert as_protobuf_reads(pieces(candidate, [*cuts, cut, 1, 3, 20])) == expected(candidate)


@settings(max_examples=examples(200), deadline=None)
@given(prefix=st.binary(max_size=12), rest=st.binary(max_size=40), cuts=st.lists(st.integers(0, 30), max_size=4))
def test_any_bytes_that_start_like_a_request_body_read_as_protobuf_reads_them(prefix, rest, cuts):
    data = bytes([request_bodies.REQUEST_BODY_TAG]) + prefix + b"\x00" * TAKEN_FROM + rest
    assert as_protobuf_reads(data) == expected(data)
    assert as_protobuf_reads(pieces(data, cuts)) == expected(data)


def test_no_bytes_at_all_is_an_empty_message():
    assert parse_request([]).fields() == request_of(ep.ProcessingRequest()).fields() == parse_request(b"").fields()
    assert parse_request(b"").phase == ""
