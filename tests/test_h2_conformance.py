"""The workers' HTTP/2 server (extproc/transport/http2.py, grpc_h2.py) against a peer that
breaks RFC 9113: python-hyper's `h2` speaks for the client where it can, frames it
refuses to send are written raw (http2.frame). Each rule: the server answers the
offending frames with the right GOAWAY or RST_STREAM within a deadline, never hangs,
and a fresh connection is still answered afterwards."""

from __future__ import annotations

import asyncio
import struct
from typing import Callable, NamedTuple

import h2.config
import h2.connection
import h2.events
import pytest
from google.protobuf.wrappers_pb2 import BytesValue

from extproc.transport import http2
from extproc.transport.frames import (
    COMPRESSION_ERROR,
    ENABLE_PUSH,
    ENHANCE_YOUR_CALM,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    NO_ERROR,
    PRIORITY,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    REFUSED_STREAM,
    SETTINGS_TIMEOUT,
    STREAM_CLOSED,
)
from extproc.transport.grpc_h2 import BIDI, MESSAGES, GrpcServer, Method

SHOUT, HOLD = "/t.T/Shout", "/t.T/Hold"
frame = http2.frame
DEADLINE = 2.0                       # seconds the server has to answer
MAX_WINDOW = http2.MAX_WINDOW
(DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION, ACK, END_STREAM,
 END_HEADERS, PADDED, PRIORITY_FLAG) = (http2.DATA, http2.HEADERS, http2.RST_STREAM, http2.SETTINGS, http2.PING,
                                        http2.GOAWAY, http2.WINDOW_UPDATE, http2.CONTINUATION, http2.ACK,
                                        http2.END_STREAM, http2.END_HEADERS, http2.PADDED, http2.PRIORITY_FLAG)
RESOURCE_EXHAUSTED = 8


class Shout:
    """Each message upper-cased at once; b"wait" ones wait a long time first."""

    def __init__(self, call) -> None:
        pass

    def hand_over(self) -> bool:
        return True

    def message(self, request):
        if request.value.startswith(b"wait"):
            return self.later()
        return BytesValue(value=request.value.upper())

    async def later(self):
        await asyncio.sleep(60)

    def closed(self) -> None:
        pass


async def hold(_, call) -> None:
    """Keeps its stream open and never reads."""
    await asyncio.sleep(60)


METHODS = {SHOUT: Method(Shout, BytesValue.FromString, MESSAGES), HOLD: Method(hold, BytesValue.FromString, BIDI)}


def message(value: bytes) -> bytes:
    """A gRPC length-prefixed BytesValue."""
    body = BytesValue(value=value).SerializeToString()
    return b"\x00" + len(body).to_bytes(4, "big") + body


def request_headers(path: str) -> list[tuple[str, str]]:
    return [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "worker"),
            ("content-type", "application/grpc"), ("te", "trailers")]


class Frame(NamedTuple):
    kind: int
    flags: int
    stream: int
    payload: bytes

    @property
    def code(self) -> int:
        """RST_STREAM's or GOAWAY's error code."""
        return int.from_bytes(self.payload[4:8] if self.kind == GOAWAY else self.payload[:4], "big")

    @property
    def last_stream(self) -> int:
        return int.from_bytes(self.payload[:4], "big") & MAX_WINDOW


class Peer:
    """A client connection over the worker's socket: `h2` makes the valid frames (and
    keeps the HPACK table the server follows), the server's answers are parsed here,
    frame by frame, so that nothing `h2` would reject hides them."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.received = bytearray()
        self.frames: list[Frame] = []
        self.eof = False

    @classmethod
    async def connect(cls, path: str, handshake: bool = True) -> Peer:
        peer = cls(*await asyncio.open_unix_connection(path))
        if handshake:
            peer.h2.initiate_connection()
            peer.send(peer.h2.data_to_send())
            await peer.expect(lambda f: f.kind == SETTINGS and not f.flags & ACK)
            peer.send(frame(SETTINGS, ACK, 0))          # the server's settings hold from now on
        return peer

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def open(self, stream: int, path: str = HOLD, end: bool = False) -> bytes:
        """The HEADERS that open `stream` on `path` (h2's encoding)."""
        self.h2.send_headers(stream, request_headers(path), end_stream=end)
        return self.h2.data_to_send()

    def block(self, headers: list[tuple[str, str]]) -> bytes:
        """A header block in h2's encoder, as if h2 had sent it (the table moves on)."""
        return self.h2.encoder.encode(headers)

    async def _read(self, timeout: float) -> None:
        data = await asyncio.wait_for(self.reader.read(1 << 16), timeout)
        if not data:
            self.eof = True
        self.received += data
        while len(self.received) >= 9:
            length = int.from_bytes(self.received[:3], "big")
            if len(self.received) < 9 + length:
                break
            head = bytes(self.received[:9 + length])
            del self.received[:9 + length]
            self.frames.append(Frame(head[3], head[4], int.from_bytes(head[5:9], "big") & MAX_WINDOW, head[9:]))

    async def expect(self, predicate: Callable[[Frame], bool], timeout: float = DEADLINE) -> Frame:
        """The first frame from the server (since the last one expected) that matches."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            while self.frames:
                found = self.frames.pop(0)
                if predicate(found):
                    return found
            if self.eof:
                raise AssertionError("the server closed the connection first")
            await self._read(max(deadline - loop.time(), 0.001))

    async def closed(self, timeout: float = DEADLINE) -> None:
        """The server closes the connection within `timeout`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.eof:
            await self._read(max(deadline - asyncio.get_running_loop().time(), 0.001))
        self.close()

    async def still_answers(self) -> None:
        """The connection still works: a PING comes back."""
        self.send(frame(PING, 0, 0, b"still-up"))
        await self.expect(lambda f: f.kind == PING and f.flags & ACK and f.payload == b"still-up")

    def close(self) -> None:
        self.writer.close()


async def call(path: str, value: bytes = b"hi") -> tuple[int, bytes]:
    """A whole gRPC call on a fresh connection, `h2` on both sides of the parsing: its
    grpc-status and the reply's value."""
    reader, writer = await asyncio.open_unix_connection(path)
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    client.initiate_connection()
    client.send_headers(1, request_headers(SHOUT))
    client.send_data(1, message(value), end_stream=True)
    writer.write(client.data_to_send())
    reply, status = bytearray(), None
    try:
        while status is None:
            data = await asyncio.wait_for(reader.read(1 << 16), DEADLINE)
            assert data, "the server closed the connection"
            for event in client.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    reply += event.data
                    client.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.TrailersReceived):
                    status = int(dict(event.headers)["grpc-status"])
            writer.write(client.data_to_send())
    finally:
        writer.close()
    return status, BytesValue.FromString(bytes(reply[5:])).value if reply else b""


def serve(tmp_path, scenario, limits: http2.Limits | None = None, tick: float = 0.05) -> None:
    """`scenario(path, server)` against a fresh server on a Unix socket; afterwards a
    fresh connection must still be answered."""
    async def main() -> None:
        server = GrpcServer(METHODS, limits)
        server.tick = tick
        path = str(tmp_path / "w.sock")
        await server.start(path)
        try:
            await scenario(path, server)
            assert await call(path, b"after") == (0, b"AFTER")
        finally:
            await server.stop(0.1)
    asyncio.run(asyncio.wait_for(main(), 30))


class Rule(NamedTuple):
    """One rule: what the client sends once connected (given its Peer), and what the
    server must answer: ("goaway", code, last stream id) or ("reset", stream, code)."""
    name: str
    send: Callable[[Peer], bytes]
    answer: tuple
    limits: http2.Limits | None = None


def settings(*pairs: tuple[int, int]) -> bytes:
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", key, value) for key, value in pairs))


def oversized_list(peer: Peer) -> bytes:
    """A block of a few bytes that decodes to more than the 16 KiB header list allowed:
    one 4 KB field put in the client's table by stream 1, then referenced five times."""
    big = [("x-big", "v" * 4000)]
    return (frame(HEADERS, END_HEADERS, 1, peer.block(request_headers(HOLD) + big))
            + frame(HEADERS, END_HEADERS, 3, peer.block(request_headers(HOLD) + big * 5)))


CONNECTION_RULES = [
    # SETTINGS values (RFC 9113 6.5.2) and shape (6.5)
    Rule("max frame size 0", lambda p: settings((http2.MAX_FRAME_SIZE, 0)), ("goaway", PROTOCOL_ERROR, 0)),
    Rule("max frame size 16383", lambda p: settings((http2.MAX_FRAME_SIZE, 16_383)), ("goaway", PROTOCOL_ERROR, 0)),
    Rule("max frame size 2^24", lambda p: settings((http2.MAX_FRAME_SIZE, 2**24)), ("goaway", PROTOCOL_ERROR, 0)),
    Rule("initial window 2^31", lambda p: settings((http2.INITIAL_WINDOW_SIZE, 2**31)),
         ("goaway", FLOW_CONTROL_ERROR, 0)),
    Rule("enable push 2", lambda p: settings((ENABLE_PUSH, 2)), ("goaway", PROTOCOL_ERROR, 0)),
    Rule("settings of 7 bytes", lambda p: frame(SETTINGS, 0, 0, b"\0" * 7), ("goaway", FRAME_SIZE_ERROR, 0)),
    Rule("settings ack with a payload", lambda p: frame(SETTINGS, ACK, 0, b"\0" * 6), ("goaway", FRAME_SIZE_ERROR, 0)),
    Rule("settings on stream 1", lambda p: frame(SETTINGS, 0, 1), ("goaway", PROTOCOL_ERROR, 0)),
    Rule("initial window overflows an open stream's",
         lambda p: p.open(1) + frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", MAX_WINDOW - 65_535))
         + settings((http2.INITIAL_WINDOW_SIZE, 65_536)), ("goaway", FLOW_CONTROL_ERROR, 1)),
    # frame size (4.2): the server advertises none, so 16,384
    Rule("DATA of 16385 bytes", lambda p: p.open(1) + frame(DATA, 0, 1, b"x" * 16_385),
         ("goaway", FRAME_SIZE_ERROR, 1)),
    Rule("an unknown frame of 16385 bytes", lambda p: frame(0x42, 0, 0, b"x" * 16_385),
         ("goaway", FRAME_SIZE_ERROR, 0)),
    Rule("a frame header announcing 16 MiB", lambda p: b"\xff\xff\xff\x00\x00\x00\x00\x00\x01",
         ("goaway", FRAME_SIZE_ERROR, 0)),
    # header blocks (4.3, 6.10, 10.5)
    Rule("CONTINUATION flood", lambda p: frame(HEADERS, 0, 1, p.block(request_headers(HOLD)))
         + b"".join(frame(CONTINUATION, 0, 1, b"\x00\x01a\x01b" * 2000) for _ in range(4)),
         ("goaway", ENHANCE_YOUR_CALM, 0)),
    Rule("header list over 16 KiB", oversized_list, ("goaway", ENHANCE_YOUR_CALM, 1)),
    Rule("a block that does not decode", lambda p: frame(HEADERS, END_HEADERS, 1, b"\xff\xff\xff\xff"),
         ("goaway", COMPRESSION_ERROR, 0)),
    Rule("CONTINUATION without HEADERS", lambda p: frame(CONTINUATION, END_HEADERS, 1, b"\x82"),
         ("goaway", PROTOCOL_ERROR, 0)),
    Rule("CONTINUATION on another stream", lambda p: frame(HEADERS, 0, 1, p.block(request_headers(HOLD)))
         + frame(CONTINUATION, END_HEADERS, 3, b""), ("goaway", PROTOCOL_ERROR, 0)),
    Rule("a header block interrupted", lambda p: frame(HEADERS, 0, 1, p.block(request_headers(HOLD)))
         + frame(PING, 0, 0, b"12345678"), ("goaway", PROTOCOL_ERROR, 0)),
    # flow control (6.9)
    Rule("connection WINDOW_UPDATE of 0", lambda p: frame(WINDOW_UPDATE, 0, 0, b"\0\0\0\0"),
         ("goaway", PROTOCOL_ERROR, 0)),
    Rule("connection window above 2^31-1", lambda p: frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", MAX_WINDOW)),
         ("goaway", FLOW_CONTROL_ERROR, 0)),
    Rule("DATA beyond the connection's window",
         lambda p: p.open(1) + p.open(3) + b"".join(frame(DATA, 0, 1 + 2 * (i % 2), b"x" * 16_384) for i in range(4)),
         ("goaway", FLOW_CONTROL_ERROR, 3), http2.Limits(receive_window=65_535)),
    # frames on the wrong stream (5.1, 5.1.1, 6.x)
    Rule("DATA on stream 0", lambda p: frame(DATA, 0, 0, b"x"), ("goaway", PROTOCOL_ERROR, 0)),
    Rule("HEADERS on stream 0", lambda p: frame(HEADERS, END_HEADERS, 0, p.block(request_headers(HOLD))),
         ("goaway", PROTOCOL_ERROR, 0)),
    Rule("RST_STREAM on stream 0", lambda p: frame(RST_STREAM, 0, 0, b"\0\0\0\x08"), ("goaway", PROTOCOL_ERROR, 0)),
    Rule("PRIORITY on stream 0", lambda p: frame(PRIORITY, 0, 0, b"\0\0\0\x01\x10"), ("goaway", PROTOCOL_ERROR, 0)),
    Rule("PING on stream 1", lambda p: frame(PING, 0, 1, b"12345678"), ("goaway", PROTOCOL_ERROR, 0)),
    Rule("GOAWAY on stream 1", lambda p: frame(GOAWAY, 0, 1, b"\0" * 8), ("goaway", PROTOCOL_ERROR, 0)),
    Rule("HEADERS on an even stream", lambda p: frame(HEADERS, END_HEADERS, 2, p.block(request_headers(HOLD))),
         ("goaway", PROTOCOL_ERROR, 0)),
    Rule("DATA on a stream not opened", lambda p: frame(DATA, 0, 99, b"x"), ("goaway", PROTOCOL_ERROR, 0)),
    Rule("RST_STREAM on a stream not opened", lambda p: frame(RST_STREAM, 0, 5, b"\0\0\0\x08"),
         ("goaway", PROTOCOL_ERROR, 0)),
    Rule("WINDOW_UPDATE on a stream not opened", lambda p: frame(WINDOW_UPDATE, 0, 5, b"\0\0\0\x01"),
         ("goaway", PROTOCOL_ERROR, 0)),
    Rule("PUSH_PROMISE from a client", lambda p: p.open(1) + frame(PUSH_PROMISE, END_HEADERS, 1, b"\0\0\0\x02\x82"),
         ("goaway", PROTOCOL_ERROR, 1)),
    Rule("HEADERS depending on its own stream",
         lambda p: frame(HEADERS, END_HEADERS | PRIORITY_FLAG, 1, b"\0\0\0\x01\x10" + p.block(request_headers(HOLD))),
         ("goaway", PROTOCOL_ERROR, 0)),
    # fixed lengths (6.3, 6.4, 6.7, 6.8, 6.9)
    Rule("PING of 7 bytes", lambda p: frame(PING, 0, 0, b"1234567"), ("goaway", FRAME_SIZE_ERROR, 0)),
    Rule("PING of 9 bytes", lambda p: frame(PING, 0, 0, b"123456789"), ("goaway", FRAME_SIZE_ERROR, 0)),
    Rule("RST_STREAM of 3 bytes", lambda p: p.open(1) + frame(RST_STREAM, 0, 1, b"\0\0\0"),
         ("goaway", FRAME_SIZE_ERROR, 1)),
    Rule("WINDOW_UPDATE of 5 bytes", lambda p: frame(WINDOW_UPDATE, 0, 0, b"\0\0\0\0\x01"),
         ("goaway", FRAME_SIZE_ERROR, 0)),
    Rule("GOAWAY of 7 bytes", lambda p: frame(GOAWAY, 0, 0, b"\0" * 7), ("goaway", FRAME_SIZE_ERROR, 0)),
    # padding (6.1, 6.2)
    Rule("DATA padding as long as the payload", lambda p: p.open(1) + frame(DATA, PADDED, 1, b"\x04abc"),
         ("goaway", PROTOCOL_ERROR, 1)),
    Rule("DATA padded without a pad length", lambda p: p.open(1) + frame(DATA, PADDED, 1, b""),
         ("goaway", PROTOCOL_ERROR, 1)),
    Rule("HEADERS padding longer than the payload",
         lambda p: frame(HEADERS, END_HEADERS | PADDED, 1, b"\xff" + p.block(request_headers(HOLD))),
         ("goaway", PROTOCOL_ERROR, 0)),
    # the connection preface (3.4)
    Rule("the preface not followed by SETTINGS", None, ("goaway", PROTOCOL_ERROR, 0)),
]

STREAM_RULES = [
    Rule("stream WINDOW_UPDATE of 0", lambda p: p.open(1) + frame(WINDOW_UPDATE, 0, 1, b"\0\0\0\0"),
         ("reset", 1, PROTOCOL_ERROR)),
    Rule("stream window above 2^31-1", lambda p: p.open(1) + frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", MAX_WINDOW)),
         ("reset", 1, FLOW_CONTROL_ERROR)),
    Rule("DATA beyond the stream's window", lambda p: p.open(1) + frame(DATA, 0, 1, b"x" * 1001),
         ("reset", 1, FLOW_CONTROL_ERROR), http2.Limits(receive_window=1000)),
    Rule("DATA after the client's END_STREAM", lambda p: p.open(1, end=True) + frame(DATA, 0, 1, b"x"),
         ("reset", 1, STREAM_CLOSED)),
    Rule("trailers without END_STREAM", lambda p: p.open(1) + frame(HEADERS, END_HEADERS, 1, p.block([("x-t", "1")])),
         ("reset", 1, PROTOCOL_ERROR)),
    Rule("HEADERS on a closed stream", lambda p: p.open(1) + frame(RST_STREAM, 0, 1, b"\0\0\0\x08")
         + frame(HEADERS, END_HEADERS, 1, p.block(request_headers(HOLD))), ("reset", 1, STREAM_CLOSED)),
    Rule("PRIORITY of 4 bytes", lambda p: p.open(1) + frame(PRIORITY, 0, 1, b"\0\0\0\x03"),
         ("reset", 1, FRAME_SIZE_ERROR)),
    Rule("PRIORITY on its own stream", lambda p: p.open(1) + frame(PRIORITY, 0, 1, b"\0\0\0\x01\x10"),
         ("reset", 1, PROTOCOL_ERROR)),
]


@pytest.mark.parametrize("rule", CONNECTION_RULES, ids=[r.name for r in CONNECTION_RULES])
def test_connection_errors_answered_with_goaway_and_a_close(tmp_path, rule):
    async def scenario(path, _):
        if rule.send is None:                   # the preface, then a PING where SETTINGS must be
            peer = await Peer.connect(path, handshake=False)
            peer.send(http2.PREFACE + frame(PING, 0, 0, b"12345678"))
        else:
            peer = await Peer.connect(path)
            peer.send(rule.send(peer))
        _, code, last_stream = rule.answer
        goaway = await peer.expect(lambda f: f.kind == GOAWAY)
        assert (goaway.code, goaway.last_stream) == (code, last_stream), goaway.payload[8:]
        await peer.closed()
    serve(tmp_path, scenario, rule.limits)


@pytest.mark.parametrize("rule", STREAM_RULES, ids=[r.name for r in STREAM_RULES])
def test_stream_errors_answered_with_rst_stream_and_the_connection_goes_on(tmp_path, rule):
    async def scenario(path, _):
        peer = await Peer.connect(path)
        peer.send(rule.send(peer))
        _, stream, code = rule.answer
        reset = await peer.expect(lambda f: f.kind in (RST_STREAM, GOAWAY))
        assert (reset.kind, reset.stream, reset.code) == (RST_STREAM, stream, code)
        await peer.still_answers()
        peer.close()
    serve(tmp_path, scenario, rule.limits)


def test_late_frames_of_a_closed_stream_are_ignored(tmp_path):
    """DATA, WINDOW_UPDATE and RST_STREAM may still arrive for a stream the server ended
    or the client reset: they cost nothing and change nothing."""
    async def scenario(path, _):
        peer = await Peer.connect(path)
        peer.send(peer.open(1, SHOUT) + frame(DATA, 0, 1, message(b"a")))
        await peer.expect(lambda f: f.kind == DATA and f.stream == 1)
        peer.send(frame(RST_STREAM, 0, 1, b"\0\0\0\x08") + frame(DATA, 0, 1, message(b"late"))
                  + frame(WINDOW_UPDATE, 0, 1, b"\0\0\0\x10") + frame(RST_STREAM, 0, 1, b"\0\0\0\x08"))
        await peer.still_answers()
        assert not [f for f in peer.frames if f.kind in (RST_STREAM, GOAWAY)]
        peer.close()
    serve(tmp_path, scenario)


def test_refused_past_the_concurrent_streams_advertised_once_acknowledged(tmp_path):
    """Before the client acknowledges the server's SETTINGS it may not know the limit
    (Envoy puts a burst of streams on a new connection at once): up to
    streams_before_ack are taken. After, a stream beyond the limit is refused, and a
    new one is taken again once an open one has ended."""
    limits = http2.Limits(max_concurrent_streams=3, streams_before_ack=5)

    async def scenario(path, server):
        early = await Peer.connect(path, handshake=False)
        early.h2.initiate_connection()
        early.send(early.h2.data_to_send() + b"".join(early.open(s) for s in (1, 3, 5, 7, 9, 11)))
        refused = await early.expect(lambda f: f.kind == RST_STREAM)
        assert (refused.stream, refused.code) == (11, REFUSED_STREAM)   # the sixth: past streams_before_ack
        early.close()

        peer = await Peer.connect(path)
        peer.send(b"".join(peer.open(s) for s in (1, 3, 5, 7)))
        refused = await peer.expect(lambda f: f.kind == RST_STREAM)
        assert (refused.stream, refused.code) == (7, REFUSED_STREAM)
        peer.send(frame(RST_STREAM, 0, 3, b"\0\0\0\x08") + peer.open(9))
        await peer.still_answers()
        assert not [f for f in peer.frames if f.kind == RST_STREAM]     # 9 taken: 1, 5, 9 open
        assert len(next(c for c in server.connections if c.connection.settings_acked).calls) == 3
        peer.close()
    serve(tmp_path, scenario, limits)


def test_a_message_over_the_size_limit_ends_its_call_resource_exhausted(tmp_path):
    """A length prefix above the largest message taken (72 MiB, as
    grpc.max_receive_message_length in the workers' grpc.aio options) ends the call at
    once, before its bytes arrive."""
    from extproc.transport.sending import MAX_MESSAGE

    async def scenario(path, _):
        peer = await Peer.connect(path)
        peer.send(peer.open(1, SHOUT) + frame(DATA, 0, 1, b"\x00" + (MAX_MESSAGE + 1).to_bytes(4, "big")))
        trailers = await peer.expect(lambda f: f.kind == HEADERS and f.flags & END_STREAM)
        assert b"grpc-status\x01" + str(RESOURCE_EXHAUSTED).encode() in trailers.payload
        await peer.still_answers()
        peer.close()
    serve(tmp_path, scenario)


@pytest.mark.parametrize("path,first", [(HOLD, b""), (SHOUT, message(b"wait"))], ids=["unread", "queued"])
def test_data_a_call_does_not_take_is_bounded(tmp_path, path, first):
    """Messages piling up on a call whose handler does not read them (or waits on an
    earlier one) end it RESOURCE_EXHAUSTED once its connection's calls hold more than
    the backlog allowed."""
    async def scenario(socket, server):
        peer = await Peer.connect(socket)
        peer.send(peer.open(1, path) + frame(DATA, 0, 1, first))
        for _ in range(20):                                    # 20 x 10 KB, of a backlog of 100 KB
            peer.send(frame(DATA, 0, 1, message(b"m" * 10_000)))
        trailers = await peer.expect(lambda f: f.kind == HEADERS and f.flags & END_STREAM)
        assert b"grpc-status\x01" + str(RESOURCE_EXHAUSTED).encode() in trailers.payload
        await peer.still_answers()
        assert all(c.backlog <= 100_000 for c in server.connections)
        peer.close()
    serve(tmp_path, scenario, http2.Limits(backlog=100_000))


@pytest.mark.parametrize("sends,code", [(b"", PROTOCOL_ERROR), (b"PRI * HTTP/2.0", PROTOCOL_ERROR),
                                        (None, SETTINGS_TIMEOUT)], ids=["nothing", "half a preface", "no ack"])
def test_a_handshake_not_finished_in_time_is_closed(tmp_path, sends, code):
    """Nothing, half a preface, or a client that never acknowledges the server's
    SETTINGS: GOAWAY and closed once handshake_timeout has passed."""
    async def scenario(path, _):
        peer = await Peer.connect(path, handshake=False)
        if sends is None:
            peer.h2.initiate_connection()
            peer.send(peer.h2.data_to_send())
        else:
            peer.send(sends)
        goaway = await peer.expect(lambda f: f.kind == GOAWAY, timeout=0.3 + DEADLINE)
        assert goaway.code == code
        await peer.closed()
    serve(tmp_path, scenario, http2.Limits(handshake_timeout=0.3))


def test_an_idle_connection_goes_away_without_refusing_a_stream(tmp_path):
    """No stream for idle_timeout: a GOAWAY that refuses nothing and a PING. A stream the
    client opened before it saw them is still served; the PING's answer brings the
    last GOAWAY (NO_ERROR, that stream's id) and, its streams done, the close."""
    async def scenario(path, _):
        peer = await Peer.connect(path)
        first = await peer.expect(lambda f: f.kind == GOAWAY, timeout=0.3 + DEADLINE)
        assert (first.code, first.last_stream) == (NO_ERROR, MAX_WINDOW)
        ping = await peer.expect(lambda f: f.kind == PING and not f.flags & ACK)
        peer.send(peer.open(1, SHOUT) + frame(DATA, END_STREAM, 1, message(b"in flight")))
        peer.send(frame(PING, ACK, 0, ping.payload))
        reply = await peer.expect(lambda f: f.kind == DATA and f.stream == 1)
        assert reply.payload == message(b"IN FLIGHT")
        last = await peer.expect(lambda f: f.kind == GOAWAY)
        assert (last.code, last.last_stream) == (NO_ERROR, 1)
        await peer.closed()
    serve(tmp_path, scenario, http2.Limits(idle_timeout=0.3))


def test_after_the_clients_goaway_its_streams_finish_then_the_connection_closes(tmp_path):
    """A client's GOAWAY: the stream it has open is still served, a new one is refused,
    and once none is left open the server closes the connection (GOAWAY NO_ERROR)."""
    async def scenario(path, _):
        peer = await Peer.connect(path)
        peer.send(peer.open(1, SHOUT) + frame(GOAWAY, 0, 0, b"\0" * 8) + peer.open(3, SHOUT))
        refused = await peer.expect(lambda f: f.kind == RST_STREAM)
        assert (refused.stream, refused.code) == (3, REFUSED_STREAM)
        peer.send(frame(DATA, END_STREAM, 1, message(b"last")))
        assert (await peer.expect(lambda f: f.kind == DATA)).payload == message(b"LAST")
        goaway = await peer.expect(lambda f: f.kind == GOAWAY, timeout=DEADLINE)
        assert (goaway.code, goaway.last_stream) == (NO_ERROR, 1)
        await peer.closed()
    serve(tmp_path, scenario)


def test_a_client_that_does_not_read_is_held_to_the_high_water_mark_then_dropped(tmp_path):
    """PINGs flooding in, their answers never read: the server stops reading once its
    output passes the high-water mark (what it holds stays near it), and drops the
    connection after write_stall_timeout."""
    limits = http2.Limits(write_high_water=64 * 1024, write_low_water=16 * 1024, write_stall_timeout=0.5)

    async def scenario(path, server):
        peer = await Peer.connect(path)
        flood = frame(PING, 0, 0, b"12345678") * 4096
        peak = 0
        try:
            for _ in range(400):                       # 28 MB of PINGs, if the server took them all
                peer.writer.write(flood)
                await asyncio.wait_for(peer.writer.drain(), 0.2)
                peak = max([peak] + [c.connection.transport.get_write_buffer_size() for c in server.connections
                                     if c.connection.transport is not None])
        except (asyncio.TimeoutError, ConnectionError):
            pass                                           # the server stopped reading, then dropped us
        for _ in range(60):
            peak = max([peak] + [c.connection.transport.get_write_buffer_size() for c in server.connections
                                 if c.connection.transport is not None])
            if not server.connections:
                break
            await asyncio.sleep(0.05)
        assert not server.connections                      # dropped
        assert 64 * 1024 < peak < 64 * 1024 + 256 * 1024 * 2     # the mark, and a read's answers (PING: 1:1)
        peer.writer.transport.abort()
        peer.close()
    serve(tmp_path, scenario, limits)


def test_unknown_frames_and_extensions_are_ignored(tmp_path):
    """Frame types the server does not know (RFC 9113 4.1, 5.5), unknown settings and
    PRIORITY frames change nothing."""
    async def scenario(path, _):
        peer = await Peer.connect(path)
        peer.send(frame(0x42, 0xff, 0, b"anything") + frame(0x43, 0, 7, b"") + settings((0x99, 12345))
                  + frame(PRIORITY, 0, 9, b"\0\0\0\x01\x10"))
        await peer.still_answers()
        assert not [f for f in peer.frames if f.kind in (RST_STREAM, GOAWAY)]
        peer.close()
    serve(tmp_path, scenario)


def test_h2_as_a_well_behaved_client_is_answered(tmp_path):
    """`h2` itself, end to end: a call answered, many in a row on new connections."""
    async def scenario(path, _):
        for index in range(20):
            assert await call(path, b"n%d" % index) == (0, b"N%d" % index)
    serve(tmp_path, scenario)
