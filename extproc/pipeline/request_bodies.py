"""Envoy's request-body message read with its body taken out of the message's bytes once.

Read whole, a body is copied once more after the transport's join: out of the message's
bytes into the request. Under load each copy of a large body costs more than its memcpy:
it evicts the caches the pipeline's Python runs from (docs/decisions/workers-http2.md).
Here the body is joined once from the pieces the message came in (or sliced from its
bytes), and what is left is read: a few bytes of flags, metadata and attributes.

Only Envoy's own layout takes this path: the `request_body` field first, its `body`
first in it, nothing after them that protobuf would merge into either (another
`request_body`, another phase of the oneof, a second `body`). Any other message is
parsed whole, as protobuf reads it.
"""

from __future__ import annotations

from ..wire.writing import varint
from .protocol import Request, read_message

REQUEST_BODY_TAG = 0x22         # field 4 (request_body), length-delimited
BODY_TAG = 0x0A                 # HttpBody field 1 (body), length-delimited
# Below this a body is parsed with its message: the joins and the second parse (~2-7 µs)
# cost more than the copies they save. Measured warm, the two are even at ~100 KB (400 KB
# in 16 KB pieces: 18 against 44 µs); under load a copy costs more.
TAKEN_FROM = 96 << 10


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """The varint at `at` and where it ends; (-1, at) when it runs past the data."""
    value = shift = 0
    while at < len(data) and shift < 64:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
    return -1, at


def parse_request(message: bytes | list) -> Request:
    """A message read from its bytes, or from the pieces they came in (grpc_h2's
    `Method.pieces`: the DATA frames' payloads, views of the reads that brought them), of
    which a request body's are joined once, into its body. Raises DecodeError, as
    `ProcessingRequest.FromString`, on bytes protobuf cannot read."""
    pieces = [message] if isinstance(message, bytes) else message
    if len(pieces) == 1 and len(pieces[0]) < TAKEN_FROM:         # (most messages: one frame's)
        return read_message(pieces[0])
    size = sum(map(len, pieces))
    if size < TAKEN_FROM or pieces[0][0] != REQUEST_BODY_TAG:
        return _whole(pieces)
    # The two tags and their lengths: 22 bytes at most.
    head = bytes(pieces[0][:24]) if len(pieces[0]) >= 24 else _joined(pieces, 0, min(24, size), size)
    length, start = _varint(head, 1)
    end = start + length
    if length < 0 or end > size or start >= len(head) or head[start] != BODY_TAG:
        return _whole(pieces)
    body_size, body_start = _varint(head, start + 1)
    body_end = body_start + body_size
    if body_size < 0 or body_end > end:
        return _whole(pieces)
    after = _joined(pieces, body_end, size, size)           # what follows the body: a few bytes
    rest = read_message(after[end - body_end:])
    # The body message's fields after its body (end_of_stream), read as a message of its own.
    tail = after[:end - body_end]
    flags = read_message(bytes((REQUEST_BODY_TAG,)) + varint(len(tail)) + tail)
    if rest.phase or flags.body:
        return _whole(pieces)                   # protobuf would merge them: as it reads
    rest.phase, rest.end_of_stream = "request_body", flags.end_of_stream
    rest.body = _joined(pieces, body_start, body_end, size)
    return rest


def _whole(pieces: list) -> Request:
    return read_message(b"".join(pieces))


def _joined(pieces: list, start: int, stop: int, size: int) -> bytes:
    """The bytes from `start` to `stop` of the pieces laid end to end (`size` bytes in
    all), copied once. The pieces it starts and ends in are found from the nearer end:
    a body's are the first and the last; the ones between are taken whole, unread."""
    if start >= stop:
        return b""
    if start * 2 < size:                    # the piece `start` lies in, and where it begins
        first, first_at = 0, 0
        while first_at + len(pieces[first]) <= start:
            first_at += len(pieces[first])
            first += 1
    else:
        first, first_at = len(pieces) - 1, size - len(pieces[-1])
        while first_at > start:
            first -= 1
            first_at -= len(pieces[first])
    last, last_end = len(pieces) - 1, size  # the piece byte `stop - 1` lies in, and where it ends
    while last_end - len(pieces[last]) >= stop:
        last_end -= len(pieces[last])
        last -= 1
    if first == last:
        return bytes(memoryview(pieces[first])[start - first_at:stop - first_at])
    head = memoryview(pieces[first])[start - first_at:]
    tail = memoryview(pieces[last])[:len(pieces[last]) - (last_end - stop)]
    return b"".join([head, *pieces[first + 1:last], tail])
