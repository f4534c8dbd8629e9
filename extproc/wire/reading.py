"""A ProcessingRequest read from its bytes in one pass: its phase, its headers (or
trailers) as a dict, its body, and its metadata and attributes as Python values.

What protobuf would read otherwise, this gives up on (None), for protobuf to read: a
oneof set twice to different members, a singular message field met twice within a map
entry or a Value (protobuf merges those), a known field with another wire type (protobuf
keeps it as an unknown field), a field of the message itself it does not know, any
field of a map entry but its key and value, a length past its message's end, a string
that is not UTF-8, nesting past `MAX_DEPTH`. Fields met
twice otherwise read as protobuf reads them: the last scalar wins, repeated headers add
up, a map's key met again replaces its value.
"""

from __future__ import annotations

import struct
from typing import Any

# ProcessingRequest's oneof `request`: its field numbers' names.
PHASES = ("", "", "request_headers", "response_headers", "request_body", "response_body",
          "request_trailers", "response_trailers")
MAX_DEPTH = 64                  # Values within Values; protobuf's own limit is 100
_DOUBLE = struct.Struct("<d")


class Unusual(Exception):
    """Bytes this reader leaves to protobuf."""


class Request:
    """One ProcessingRequest as the pipeline reads it."""

    def __init__(self) -> None:
        self.phase = ""                         # the set member of the oneof, "" when none is
        # The headers (or trailers) message's map, names repeated joined with "," (a value
        # is its raw_value as UTF-8, bad bytes replaced; its `value` when that is empty).
        self.headers: dict[str, str] = {}
        self.end_of_stream = False
        self.body = b""
        # metadata_context's filter_metadata, namespace -> its Struct as a dict (None: the
        # message has no metadata_context). A Value is None (null or unset), a float, a
        # str, a bool, a dict or a list.
        self.metadata: dict[str, dict[str, Any]] | None = None
        self.attributes: dict[str, dict[str, Any]] = {}     # filter name -> its Struct

    def fields(self) -> tuple:
        """Every field, for comparing two reads."""
        return (self.phase, self.headers, self.end_of_stream, self.body, self.metadata, self.attributes)


def read_request(data: bytes) -> Request | None:
    """The request, or None: protobuf reads it (or refuses it)."""
    try:
        return _request(data)
    except (Unusual, IndexError, UnicodeDecodeError, struct.error):
        return None


def _varint(data: bytes, at: int, stop: int) -> tuple[int, int]:
    """The varint at `at`, which must end before `stop` (its message's end), and where it ends."""
    if at >= stop:
        raise Unusual("past the end")
    byte = data[at]
    if byte < 0x80:
        return byte, at + 1
    value = byte & 0x7F
    shift = 7
    at += 1
    while True:
        if at >= stop:
            raise Unusual("past the end")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7
        if shift > 63:
            raise Unusual("varint")


def _length(data: bytes, at: int, stop: int) -> tuple[int, int]:
    """A length-delimited field's end, and where its content starts."""
    size, at = _varint(data, at, stop)
    end = at + size
    if end > stop:
        raise Unusual("past the end")
    return end, at


def _skip(data: bytes, at: int, tag: int, stop: int) -> int:
    """Past a field this reader does not read."""
    if tag >> 3 == 0:                       # no field has number 0: protobuf refuses it
        raise Unusual("field 0")
    kind = tag & 7
    if kind == 0:
        return _varint(data, at, stop)[1]
    if kind == 2:
        return _length(data, at, stop)[0]
    if kind == 1:
        at += 8
    elif kind == 5:
        at += 4
    else:                                   # groups, and wire types that do not exist
        raise Unusual("wire type")
    if at > stop:
        raise Unusual("past the end")
    return at


def _request(data: bytes) -> Request:
    request = Request()
    at = 0
    stop = len(data)
    while at < stop:
        tag, at = _varint(data, at, stop)
        field = tag >> 3
        if 2 <= field <= 7:
            if tag & 7 != 2 or request.phase not in ("", PHASES[field]):
                raise Unusual("phase")
            request.phase = PHASES[field]
            end, at = _length(data, at, stop)
            if field <= 3 or field >= 6:
                _headers(data, at, end, request, field >= 6)
            else:
                _body(data, at, end, request)
            at = end
        elif field == 8:                    # metadata_context: envoy.config.core.v3.Metadata
            if tag & 7 != 2:
                raise Unusual("metadata")
            end, at = _length(data, at, stop)
            if request.metadata is None:
                request.metadata = {}
            _metadata(data, at, end, request.metadata)
            at = end
        elif field == 9:                    # attributes: map<string, Struct>
            if tag & 7 != 2:
                raise Unusual("attributes")
            end, at = _length(data, at, stop)
            _struct_entry(data, at, end, request.attributes)
            at = end
        elif field == 10:                   # observability_mode: not read
            if tag & 7 != 0:
                raise Unusual("wire type")
            at = _varint(data, at, stop)[1]
        elif field == 11:                   # protocol_config: three enums and a bool, not read
            if tag & 7 != 2:
                raise Unusual("wire type")
            end, at = _length(data, at, stop)
            while at < end:                 # (protobuf refuses it if its fields are broken)
                inner, at = _varint(data, at, end)
                at = _skip(data, at, inner, end)
        else:
            raise Unusual("field")
    return request


def _headers(data: bytes, at: int, stop: int, request: Request, trailers: bool) -> None:
    """HttpHeaders (headers 1, attributes 2, end_of_stream 3), or HttpTrailers (trailers 1)."""
    while at < stop:
        tag, at = _varint(data, at, stop)
        if tag == 0x0A:
            end, at = _length(data, at, stop)
            _header_map(data, at, end, request.headers)
            at = end
        elif tag == 0x18 and not trailers:
            value, at = _varint(data, at, stop)
            request.end_of_stream = value != 0
        elif tag >> 3 == 1 or not trailers and tag >> 3 <= 3:
            raise Unusual("wire type")      # (or the deprecated attributes, which Envoy never sends)
        else:
            at = _skip(data, at, tag, stop)


def _header_map(data: bytes, at: int, stop: int, into: dict[str, str]) -> None:
    """HeaderMap: repeated HeaderValue (key 1, value 2, raw_value 3)."""
    while at < stop:
        tag, at = _varint(data, at, stop)
        if tag != 0x0A:
            if tag >> 3 == 1:
                raise Unusual("wire type")
            at = _skip(data, at, tag, stop)
            continue
        end, at = _length(data, at, stop)
        key = text = ""
        raw = b""
        while at < end:
            inner, at = _varint(data, at, end)
            if inner == 0x0A or inner == 0x12 or inner == 0x1A:
                field_end, at = _length(data, at, end)
                if inner == 0x0A:
                    key = data[at:field_end].decode()
                elif inner == 0x12:
                    text = data[at:field_end].decode()
                else:
                    raw = data[at:field_end]
                at = field_end
            elif inner >> 3 <= 3:
                raise Unusual("wire type")
            else:
                at = _skip(data, at, inner, end)
        value = raw.decode("utf-8", "replace") if raw else text
        into[key] = into[key] + "," + value if key in into else value


def _body(data: bytes, at: int, stop: int, request: Request) -> None:
    """HttpBody: body 1, end_of_stream 2 (3 and 4, flags the gateway does not read)."""
    while at < stop:
        tag, at = _varint(data, at, stop)
        if tag == 0x0A:
            end, at = _length(data, at, stop)
            request.body = data[at:end]
            at = end
        elif tag == 0x10:
            value, at = _varint(data, at, stop)
            request.end_of_stream = value != 0
        elif tag == 0x18 or tag == 0x20:
            at = _varint(data, at, stop)[1]
        elif tag >> 3 <= 4:
            raise Unusual("wire type")
        else:
            at = _skip(data, at, tag, stop)


def _metadata(data: bytes, at: int, stop: int, into: dict[str, dict[str, Any]]) -> None:
    """Metadata: filter_metadata 1 (map<string, Struct>); typed_filter_metadata 2, not read."""
    while at < stop:
        tag, at = _varint(data, at, stop)
        if tag == 0x0A:
            end, at = _length(data, at, stop)
            _struct_entry(data, at, end, into)
            at = end
        elif tag >> 3 <= 2:                 # (typed_filter_metadata: not forwarded to the gateway)
            raise Unusual("typed metadata")
        else:
            at = _skip(data, at, tag, stop)


def _entry(data: bytes, at: int, stop: int) -> tuple[str, int, int]:
    """A map entry's key (1), and where its value (2) lies: (-1, -1) when it has none."""
    key = ""
    start = end = -1
    while at < stop:
        tag, at = _varint(data, at, stop)
        if tag == 0x0A:
            field_end, at = _length(data, at, stop)
            key = data[at:field_end].decode()
            at = field_end
        elif tag == 0x12:
            if start >= 0:                  # met twice: protobuf merges the two
                raise Unusual("value twice")
            end, start = _length(data, at, stop)
            at = end
        else:                               # (protobuf may keep an entry with more apart)
            raise Unusual("map entry")
    return key, start, end


def _struct_entry(data: bytes, at: int, stop: int, into: dict[str, dict[str, Any]]) -> None:
    """A map<string, Struct> entry, into `into` (a key met again replaces its Struct)."""
    key, start, end = _entry(data, at, stop)
    fields: dict[str, Any] = {}
    if start >= 0:
        _struct(data, start, end, fields, 0)
    into[key] = fields


def _struct(data: bytes, at: int, stop: int, into: dict[str, Any], depth: int) -> None:
    """Struct: fields 1, map<string, Value>."""
    if depth > MAX_DEPTH:
        raise Unusual("depth")
    while at < stop:
        tag, at = _varint(data, at, stop)
        if tag == 0x0A:
            end, at = _length(data, at, stop)
            key, start, value_end = _entry(data, at, end)
            into[key] = _value(data, start, value_end, depth + 1) if start >= 0 else None
            at = end
        elif tag >> 3 == 1:
            raise Unusual("wire type")
        else:
            at = _skip(data, at, tag, stop)


def _value(data: bytes, at: int, stop: int, depth: int) -> Any:
    """Value: null 1, number 2, string 3, bool 4, struct 5, list 6 (one of them; none: None)."""
    if depth > MAX_DEPTH:
        raise Unusual("depth")
    value: Any = None
    kinds = 0
    while at < stop:
        tag, at = _varint(data, at, stop)
        field = tag >> 3
        kinds += 1 if 1 <= field <= 6 else 0
        if kinds > 1:                       # a second member: protobuf keeps the last, or merges
            raise Unusual("kinds")
        if tag == 0x08:
            at = _varint(data, at, stop)[1]
            value = None
        elif tag == 0x11:
            if at + 8 > stop:
                raise Unusual("past the end")
            value = _DOUBLE.unpack_from(data, at)[0]
            at += 8
        elif tag == 0x1A or tag == 0x2A or tag == 0x32:
            end, at = _length(data, at, stop)
            if tag == 0x1A:
                value = data[at:end].decode()
            elif tag == 0x2A:
                fields: dict[str, Any] = {}
                _struct(data, at, end, fields, depth + 1)
                value = fields
            else:
                value = _list(data, at, end, depth + 1)
            at = end
        elif tag == 0x20:
            number, at = _varint(data, at, stop)
            value = number != 0
        elif 1 <= field <= 6:
            raise Unusual("wire type")
        else:
            at = _skip(data, at, tag, stop)
    return value


def _list(data: bytes, at: int, stop: int, depth: int) -> list:
    """ListValue: values 1, repeated Value."""
    items: list = []
    while at < stop:
        tag, at = _varint(data, at, stop)
        if tag == 0x0A:
            end, at = _length(data, at, stop)
            items.append(_value(data, at, end, depth + 1))
            at = end
        elif tag >> 3 == 1:
            raise Unusual("wire type")
        else:
            at = _skip(data, at, tag, stop)
    return items
