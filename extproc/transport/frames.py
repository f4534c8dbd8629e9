"""HTTP/2 frames (RFC 9113): their types, flags, settings and error codes, how one is
built, and the checks a received frame must pass before the connection (http2.py)
acts on it.

A check that fails raises ConnectionFault (the connection answers GOAWAY with the code
and closes, RFC 9113 5.4.1) or StreamFault (RST_STREAM on that stream, the connection
goes on, 5.4.2). The checks run on every frame: each is a comparison or two, and the
common frames (DATA, HEADERS) pass them without a call.
"""

from __future__ import annotations

import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADER_SIZE = 9                                 # a frame's header: length, type, flags, stream

# Frame types (RFC 9113 6)
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)

# Flags
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20

# Settings (RFC 9113 6.5.2; ENABLE_CONNECT_PROTOCOL is RFC 8441's)
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE = 1, 2, 3, 4, 5
MAX_HEADER_LIST_SIZE, ENABLE_CONNECT_PROTOCOL = 6, 8

# Error codes (RFC 9113 7)
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED = 0, 1, 2, 3, 4, 5
FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 6, 7, 8, 9, 11

MAX_WINDOW = 2**31 - 1                          # the largest flow-control window (6.9.1)
DEFAULT_WINDOW = 65_535                         # every window before SETTINGS or WINDOW_UPDATE change it
DEFAULT_FRAME = 16_384                          # SETTINGS_MAX_FRAME_SIZE's initial value and its minimum
LARGEST_FRAME = 2**24 - 1                       # ... and its maximum (6.5.2)


class ConnectionFault(Exception):
    """A connection error: GOAWAY with `code` (and `reason` as its debug data), then close."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class StreamFault(Exception):
    """A stream error: RST_STREAM with `code` on `stream`; the other streams go on."""

    def __init__(self, stream: int, code: int, reason: str) -> None:
        super().__init__(reason)
        self.stream = stream
        self.code = code


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + struct.pack(">I", stream) + payload


def goaway_frame(last_stream: int, code: int, reason: str = "") -> bytes:
    return frame(GOAWAY, 0, 0, struct.pack(">II", last_stream, code) + reason.encode()[:256])


def rst_stream_frame(stream: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, stream, struct.pack(">I", code))


def window_update_frame(stream: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", increment))


def unpadded(payload: bytes, flags: int) -> bytes:
    """A DATA or HEADERS payload without its padding (6.1, 6.2): padding that does not
    fit in the frame is a connection error."""
    if not flags & PADDED:
        return payload
    start, end = padded_span(payload)
    return payload[start:end]


def padded_span(payload: bytes | memoryview) -> tuple[int, int]:
    """Where a PADDED frame's data lies in its payload (a DATA frame's may be a view)."""
    if not payload or payload[0] >= len(payload):
        raise ConnectionFault(PROTOCOL_ERROR, "padding longer than the frame")
    return 1, len(payload) - payload[0]


def without_priority(payload: bytes, stream: int) -> bytes:
    """A HEADERS payload (padding removed) without its priority fields (6.2). The
    priorities are ignored (RFC 9113 deprecates them), but a stream may not depend on
    itself (5.3.1): as a connection error here, since the block must still be decoded."""
    if len(payload) < 5:
        raise ConnectionFault(FRAME_SIZE_ERROR, "HEADERS too short for its priority")
    if int.from_bytes(payload[:4], "big") & MAX_WINDOW == stream:
        raise ConnectionFault(PROTOCOL_ERROR, "a stream depending on itself")
    return payload[5:]


def check_priority(stream: int, payload: bytes) -> None:
    """A PRIORITY frame is ignored once it is known to be well formed (6.3)."""
    if stream == 0:
        raise ConnectionFault(PROTOCOL_ERROR, "PRIORITY on stream 0")
    if len(payload) != 5:
        raise StreamFault(stream, FRAME_SIZE_ERROR, "PRIORITY of a length other than 5")
    if int.from_bytes(payload[:4], "big") & MAX_WINDOW == stream:
        raise StreamFault(stream, PROTOCOL_ERROR, "a stream depending on itself")


def check_connection_frame(name: str, stream: int, length: int, fixed: int) -> None:
    """SETTINGS, PING, GOAWAY: on stream 0 only; `fixed` the one length allowed (-1: any,
    -8: at least 8)."""
    if stream != 0:
        raise ConnectionFault(PROTOCOL_ERROR, f"{name} on stream {stream}")
    if (fixed >= 0 and length != fixed) or (fixed == -8 and length < 8):
        raise ConnectionFault(FRAME_SIZE_ERROR, f"{name} of length {length}")


def window_increment(payload: bytes) -> int:
    """A WINDOW_UPDATE's increment (6.9): its length is always 4."""
    if len(payload) != 4:
        raise ConnectionFault(FRAME_SIZE_ERROR, "WINDOW_UPDATE of a length other than 4")
    return int.from_bytes(payload, "big") & MAX_WINDOW


def settings_values(payload: bytes) -> list[tuple[int, int]]:
    """A SETTINGS frame's (identifier, value) pairs, each value in its range (6.5.2);
    unknown identifiers pass (they are ignored)."""
    if len(payload) % 6:
        raise ConnectionFault(FRAME_SIZE_ERROR, "SETTINGS not a multiple of 6 bytes")
    values = []
    for offset in range(0, len(payload), 6):
        key, value = struct.unpack_from(">HI", payload, offset)
        if key == INITIAL_WINDOW_SIZE and value > MAX_WINDOW:
            raise ConnectionFault(FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1")
        if key == MAX_FRAME_SIZE and not DEFAULT_FRAME <= value <= LARGEST_FRAME:
            raise ConnectionFault(PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE outside 16384..16777215")
        if key in (ENABLE_PUSH, ENABLE_CONNECT_PROTOCOL) and value > 1:
            raise ConnectionFault(PROTOCOL_ERROR, "a boolean setting other than 0 or 1")
        values.append((key, value))
    return values
