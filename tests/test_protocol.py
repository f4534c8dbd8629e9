"""Replies' dynamic metadata, written as bytes (wire/writing.py), which must give Envoy
exactly what protobuf's Struct.update would (Envoy's access log, headers and failover
read these fields). Envoy's header lists read as the stages see them."""

from __future__ import annotations

from google.protobuf import struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.pipeline.protocol import Reply, ep, header_map, read_message

_SCALARS = st.none() | st.booleans() | st.integers(-2**60, 2**60) | \
    st.floats(allow_nan=False) | st.text(max_size=20)
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4) |
                       st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)
_NAMESPACES = st.dictionaries(st.sampled_from(["llm_gateway", "llm_gateway.route"]),
                              st.dictionaries(st.text(max_size=10), _VALUES, max_size=6), min_size=1)


@settings(max_examples=300, deadline=None)
@given(_NAMESPACES, st.sampled_from(["request_headers", "request_body", "response_body",
                                     "response_trailers"]))
def test_reply_metadata_is_what_struct_update_gives(metadata, phase):
    reply = Reply()
    for namespace, fields in metadata.items():
        reply.add_metadata(fields, namespace)
    expected = struct_pb2.Struct()
    expected.update(metadata)
    assert ep.ProcessingResponse.FromString(reply.build(phase)).dynamic_metadata == expected


def test_usage_metadata_keeps_its_types():
    """The shapes the pipeline sends: numbers, a bool, strings, nested headers."""
    reply = Reply()
    reply.add_metadata({"input_tokens": 60, "usage_estimated": False, "backend": "mock",
                        "cost": 0.25, "headers": {"x-gateway-backend": "mock"}})
    fields = ep.ProcessingResponse.FromString(reply.build("response_body")).dynamic_metadata.fields[
        "llm_gateway"].struct_value.fields
    assert fields["input_tokens"].number_value == 60
    assert fields["usage_estimated"].WhichOneof("kind") == "bool_value"
    assert fields["backend"].string_value == "mock"
    assert fields["cost"].number_value == 0.25
    assert fields["headers"].struct_value.fields["x-gateway-backend"].string_value == "mock"


_NAMES = st.sampled_from([":path", ":method", "authorization", "x-request-id", "cookie", "accept"])
_HEADERS = st.lists(st.tuples(_NAMES, st.binary(max_size=12), st.text(max_size=12)), max_size=8)


def _read_one_by_one(listed) -> dict[str, str]:
    """Each header in turn: its raw value (else its value), a repeated name's values joined."""
    result: dict[str, str] = {}
    for key, raw, value in listed:
        text = raw.decode("utf-8", "replace") if raw else value
        result[key] = f"{result[key]},{text}" if key in result else text
    return result


@settings(max_examples=300, deadline=None)
@given(_HEADERS)
def test_a_header_list_reads_as_each_header_in_turn(listed):
    """Envoy sends raw values; a repeated name, an empty raw value beside a value, and
    bytes that are not UTF-8 read as they would one header at a time."""
    message = ep.HttpHeaders()
    for key, raw, value in listed:
        message.headers.headers.add(key=key, raw_value=raw, value=value)
    assert header_map(message.headers) == _read_one_by_one(listed)
    sent = ep.ProcessingRequest(request_headers=message).SerializeToString()
    assert read_message(sent).headers == _read_one_by_one(listed)
