"""A ProcessingResponse written as bytes: one phase's reply (headers set and removed, a
body, the route cache cleared), a mode override, dynamic metadata. Fields go out in
their numbers' order, as protobuf writes them; a set oneof member is written even when
empty (an empty reply still names its phase).

Each message is the join of its parts, its length worked out before: one bytes object
a message, not one a field (compiled, a bytearray's appends and a concatenation per
field each cost more)."""

from __future__ import annotations

import struct
from typing import Any, Final

_DOUBLE: Final = struct.Struct("<d")
_BYTE: Final = tuple(bytes((value,)) for value in range(256))
# HeaderValueOption.append_action OVERWRITE_IF_EXISTS_OR_ADD: a header set replaces the
# client's (tests/test_wire.py checks the number against protobuf's enum).
OVERWRITE_IF_EXISTS_OR_ADD: Final = 2
_OVERWRITE: Final = b"\x18" + bytes((OVERWRITE_IF_EXISTS_OR_ADD,))
_NULL: Final = b"\x08\x00"
_TRUE: Final = b"\x20\x01"
_FALSE: Final = b"\x20\x00"


def varint(value: int) -> bytes:
    """A non-negative integer (a length, a tag) as its varint."""
    if value < 0x80:
        return _BYTE[value]
    if value < 0x4000:
        return _BYTE[(value & 0x7F) | 0x80] + _BYTE[value >> 7]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# A name's field 1 (a header's or a Struct entry's key: tag, length, UTF-8), by name: the
# gateway writes the same few dozen names in every reply. Bounded, for names it did not choose.
_NAMES: Final[dict[str, bytes]] = {}
_MAX_NAMES: Final = 4096


def _name_field(name: str) -> bytes:
    found = _NAMES.get(name)
    if found is None:
        data = name.encode("utf-8")
        found = b"".join((b"\x0a", varint(len(data)), data))
        if len(_NAMES) < _MAX_NAMES:
            _NAMES[name] = found
    return found


def _field(tag: int, data: bytes) -> bytes:
    """A length-delimited field (`tag`: a field number below 16, shifted, | 2)."""
    return b"".join((_BYTE[tag], varint(len(data)), data))


def phase_reply(phase: int, set_headers: dict[str, str], remove_headers: list[str], body: bytes | None,
                clear_route_cache: bool, mode: bytes, metadata: dict[str, Any] | None) -> bytes:
    """The reply to a headers or body message: `phase`, the oneof's field number
    (request_headers 1 ... response_body 4); `mode`: a ProcessingMode's bytes, or b""."""
    common: list[bytes] = []
    if set_headers or remove_headers:
        common.append(_field(0x12, _mutation(set_headers, remove_headers)))
    if body is not None:
        common.append(_field(0x1A, _field(0x0A, body)))
    if clear_route_cache:
        common.append(b"\x28\x01")
    parts = [_field(phase << 3 | 2, _field(0x0A, b"".join(common)) if common else b"")]
    if metadata:
        parts.append(_field(0x42, struct_bytes(metadata)))
    if mode:
        parts.append(_field(0x4A, mode))
    return b"".join(parts)


def trailers_reply(phase: int, remove_headers: list[str], metadata: dict[str, Any] | None) -> bytes:
    """The reply to a trailers message (request_trailers 5, response_trailers 6): trailers
    to drop, and metadata."""
    reply = _field(phase << 3 | 2, _field(0x0A, _mutation({}, remove_headers)))
    return reply + _field(0x42, struct_bytes(metadata)) if metadata else reply


def _mutation(set_headers: dict[str, str], remove_headers: list[str]) -> bytes:
    """HeaderMutation: set_headers 1 (HeaderValueOption: header 1 as key 1 and raw_value 3,
    append_action 3), remove_headers 2."""
    parts: list[bytes] = []
    for key, value in set_headers.items():
        key_field, value_bytes = _name_field(key), value.encode("utf-8")
        header_size = len(key_field) + _sized(len(value_bytes))
        option_size = 1 + len(varint(header_size)) + header_size + 2
        parts.extend((b"\x0a", varint(option_size), b"\x0a", varint(header_size),
                      key_field, b"\x1a", varint(len(value_bytes)), value_bytes, _OVERWRITE))
    for name in remove_headers:
        name_bytes = name.encode("utf-8")
        parts.extend((b"\x12", varint(len(name_bytes)), name_bytes))
    return b"".join(parts)


def _sized(size: int) -> int:
    """The bytes of a length-delimited field of `size` bytes: its tag, length and content."""
    return 1 + (1 if size < 0x80 else len(varint(size))) + size


def struct_bytes(fields: dict[str, Any]) -> bytes:
    """A google.protobuf.Struct of a dict, as protobuf's `Struct.update` makes it: None
    null, bools, strings, numbers (as doubles), dicts and lists (or tuples) within."""
    parts: list[bytes] = []
    for key, value in fields.items():
        if not isinstance(key, str):
            raise TypeError(f"a Struct's keys are strings, not {type(key).__name__}")
        key_field = _name_field(key)
        if isinstance(value, str):          # (most: written without a Value's own bytes)
            text = value.encode("utf-8")
            value_size = _sized(len(text))
            entry_size = len(key_field) + _sized(value_size)
            parts.extend((b"\x0a", varint(entry_size), key_field,
                          b"\x12", varint(value_size), b"\x1a", varint(len(text)), text))
        else:
            kind = _value(value)
            entry_size = len(key_field) + _sized(len(kind))
            parts.extend((b"\x0a", varint(entry_size), key_field, b"\x12", varint(len(kind)), kind))
    return b"".join(parts)


def _value(value: Any) -> bytes:
    """A Value's bytes."""
    if isinstance(value, str):
        return _field(0x1A, value.encode("utf-8"))
    if value is None:
        return _NULL
    if isinstance(value, bool):
        return _TRUE if value else _FALSE
    if isinstance(value, int) or isinstance(value, float):
        return b"\x11" + _DOUBLE.pack(float(value))
    if isinstance(value, dict):
        return _field(0x2A, struct_bytes(value))
    if isinstance(value, list) or isinstance(value, tuple):
        return _field(0x32, b"".join([_field(0x0A, _value(item)) for item in value]))
    raise ValueError(f"Unexpected type {type(value).__name__} in a Struct")
