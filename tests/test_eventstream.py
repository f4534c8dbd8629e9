"""AWS's event-stream framing (extproc/api/eventstream.py): messages written and read back,
every header value type AWS defines, the recorded ConverseStream body read as botocore
reads it whatever the chunking, and the broken streams refused with a clear error."""

from __future__ import annotations

import base64
import datetime
import struct
import uuid
import zlib

import pytest
import yaml
from botocore.eventstream import EventStreamBuffer
from gateway_stack import FIXTURES

from extproc.api.eventstream import (
    MAX_MESSAGE_LENGTH,
    EventStreamDecoder,
    EventStreamError,
    Message,
    encode_message,
)

RECORDING = FIXTURES / "provider-recordings" / "bedrock-converse-stream.yaml"


@pytest.fixture(scope="module")
def recorded() -> bytes:
    response = yaml.safe_load(RECORDING.read_text())["interactions"][0]["response"]
    assert response["headers"]["X-Fixture-Body-Encoding"] == ["base64"]
    return base64.b64decode(response["body"])


def frame(head: bytes, payload: bytes, total: int | None = None, headers_length: int | None = None) -> bytes:
    """A message built by hand, lengths overridable (to make impossible ones), CRCs right."""
    total = 16 + len(head) + len(payload) if total is None else total
    prelude = struct.pack(">II", total, len(head) if headers_length is None else headers_length)
    start = prelude + struct.pack(">I", zlib.crc32(prelude)) + head + payload
    return start + struct.pack(">I", zlib.crc32(start))


def typed(name: str, kind: int, value: bytes = b"") -> bytes:
    return bytes((len(name),)) + name.encode() + bytes((kind,)) + value


def decode_all(data: bytes, size: int) -> list[Message]:
    decoder, messages = EventStreamDecoder(), []
    for at in range(0, len(data), size):
        messages += decoder.feed(data[at:at + size])
    assert decoder.leftover == 0
    decoder.close()
    return messages


@pytest.mark.parametrize("headers, payload", [
    ({}, b""),
    ({":event-type": "chunk"}, b'{"bytes":"eyJ0eXBlIjoibWVzc2FnZV9zdG9wIn0="}'),
    ({":event-type": "contentBlockDelta", ":content-type": "application/json", ":message-type": "event"},
     '{"delta":{"text":"Ünïcödé 😀"}}'.encode()),
    ({":exception-type": "throttlingException", ":message-type": "exception"}, b'{"message":"slow down"}'),
    ({"x" * 255: "y" * 65535}, bytes(range(256)) * 64),
])
def test_a_message_reads_back_as_written(headers, payload):
    data = encode_message(headers, payload)
    assert struct.unpack(">I", data[:4])[0] == len(data)
    [message] = EventStreamDecoder().feed(data)
    assert message == Message(headers, payload)
    assert list(message.headers) == list(headers)          # in the order written
    parsed = list(_botocore(data))[0]                         # botocore reads what we write
    assert (parsed.headers, parsed.payload) == (headers, payload)


def _botocore(data: bytes):
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return buffer


NOW = datetime.datetime(2026, 1, 30, 12, 48, 28, 317000, tzinfo=datetime.UTC)
IDENTIFIER = uuid.UUID("f4d4a223-3daa-4b1d-ab87-d079cd1ccfa1")


@pytest.mark.parametrize("kind, raw, expected", [
    (0, b"", True),
    (1, b"", False),
    (2, struct.pack(">b", -7), -7),
    (3, struct.pack(">h", -30000), -30000),
    (4, struct.pack(">i", 2_000_000_000), 2_000_000_000),
    (5, struct.pack(">q", -(2 ** 62)), -(2 ** 62)),
    (6, struct.pack(">H", 3) + b"\x00\xff\x10", b"\x00\xff\x10"),
    (7, struct.pack(">H", 5) + "Ünï".encode(), "Ünï"),
    (8, struct.pack(">q", int(NOW.timestamp() * 1000)), NOW),
    (9, IDENTIFIER.bytes, IDENTIFIER),
], ids=["true", "false", "byte", "short", "integer", "long", "bytes", "string", "timestamp", "uuid"])
def test_every_header_value_type_is_read(kind, raw, expected):
    data = frame(typed("h", kind, raw) + typed(":message-type", 7, b"\x00\x05event"), b"{}")
    [message] = EventStreamDecoder().feed(data)
    assert message.headers == {"h": expected, ":message-type": "event"} and message.payload == b"{}"
    assert type(message.headers["h"]) is type(expected)


def test_the_recording_reads_as_botocore_reads_it(recorded):
    ours = decode_all(recorded, len(recorded))
    theirs = list(_botocore(recorded))
    assert len(ours) == len(theirs) == 19
    assert [(m.headers, m.payload) for m in ours] == [(m.headers, m.payload) for m in theirs]
    assert ours[0].headers == {":event-type": "messageStart", ":content-type": "application/json",
                               ":message-type": "event"}
    assert b"".join(encode_message(m.headers, m.payload) for m in ours) == recorded    # re-encoded byte for byte


@pytest.mark.parametrize("size", [1, 2, 3, 7, 12, 13, 64, 185, 1000])
def test_any_chunking_gives_the_same_messages(recorded, size):
    assert decode_all(recorded, size) == decode_all(recorded, len(recorded))


def test_a_cut_at_every_byte_offset_gives_the_same_messages(recorded):
    whole = decode_all(recorded, len(recorded))
    ends = [0]
    for message in whole:
        ends.append(ends[-1] + len(encode_message(message.headers, message.payload)))
    for offset in range(len(recorded) + 1):
        decoder = EventStreamDecoder()
        first = decoder.feed(recorded[:offset])
        assert len(first) == sum(1 for end in ends[1:] if end <= offset), offset
        assert decoder.leftover == offset - max(end for end in ends if end <= offset)
        assert first + decoder.feed(recorded[offset:]) == whole, offset
        assert decoder.leftover == 0


def test_a_stream_cut_mid_frame_leaves_bytes_over(recorded):
    decoder = EventStreamDecoder()
    messages = decoder.feed(recorded[:-5])
    assert len(messages) == 18 and decoder.leftover == len(recorded) - 5 - sum(
        len(encode_message(m.headers, m.payload)) for m in messages)
    with pytest.raises(EventStreamError, match="ended 224 bytes into a message"):
        decoder.close()
    assert len(decoder.feed(recorded[-5:])) == 1 and decoder.leftover == 0
    decoder.close()


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes((data[at] ^ 0x01,)) + data[at + 1:]


GOOD = encode_message({":event-type": "chunk"}, b'{"bytes":"e30="}')


@pytest.mark.parametrize("data, error", [
    (_flip(GOOD, 9), "prelude CRC mismatch"),                     # the prelude's CRC
    (_flip(GOOD, 2), "prelude CRC mismatch"),                     # a length the CRC no longer covers
    (_flip(GOOD, 20), "message CRC mismatch"),                    # a header byte
    (_flip(GOOD, len(GOOD) - 6), "message CRC mismatch"),         # a payload byte
    (_flip(GOOD, len(GOOD) - 1), "message CRC mismatch"),         # the message CRC itself
    (frame(b"", b"", total=MAX_MESSAGE_LENGTH + 1), "impossible message length 16777217"),
    (frame(b"", b"", total=2 ** 32 - 1), "impossible message length"),
    (frame(b"", b"", total=15), "impossible message length 15"),
    (frame(typed("a", 7, b"\x00\x01b"), b"", headers_length=50), "impossible headers length 50"),
    (frame(typed("a", 10), b""), "unknown value type 10"),
    (frame(typed("a", 7, b"\x00\x09b"), b""), "runs past the headers' end"),
    (frame(typed("a", 7, b"\x00\x02\xff\xfe"), b""), "malformed headers"),
], ids=["prelude-crc", "length", "header-byte", "payload-byte", "message-crc", "over-16-MiB", "2^32-1",
        "under-minimum", "headers-longer-than-message", "unknown-type", "string-past-end", "not-utf8"])
def test_a_broken_stream_is_refused_with_a_clear_error(data, error):
    with pytest.raises(EventStreamError, match=error):
        decode_all(data, 1)            # byte by byte: the check happens once the bytes are there
    with pytest.raises(ValueError, match=error):                   # EventStreamError is a ValueError
        EventStreamDecoder().feed(GOOD + data)


def test_an_absurd_length_is_refused_from_its_prelude_alone():
    prelude = struct.pack(">II", 3 * 2 ** 30, 0)
    with pytest.raises(EventStreamError, match="impossible message length"):
        EventStreamDecoder().feed(prelude + struct.pack(">I", zlib.crc32(prelude)))       # 12 bytes, no waiting


def test_what_cannot_be_encoded_is_refused():
    with pytest.raises(EventStreamError, match="1 to 255 bytes"):
        encode_message({"x" * 256: "v"}, b"")
    with pytest.raises(EventStreamError, match="at most 65535 bytes"):
        encode_message({"h": "v" * 65536}, b"")
    with pytest.raises(EventStreamError, match="over the limits"):
        encode_message({}, b"\0" * MAX_MESSAGE_LENGTH)
