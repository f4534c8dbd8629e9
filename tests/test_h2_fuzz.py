"""The workers' HTTP/2 server fed what hypothesis makes of frame sequences: frames of
every type (and unknown ones) with random flags, stream ids, lengths and payloads,
header blocks both valid (hpack.Encoder's, so the client's table moves) and random,
gRPC messages whole, cut, oversized or compressed, all cut at random points into
reads, while the transport randomly holds its output. Whatever arrives: no exception
escapes, no unexpected error closes the connection (INTERNAL_ERROR), nothing waits
forever, and what the connection holds stays within its limits.

The short run here; bench/h2_fuzz.py --minutes N runs the same target for longer.
"""

from __future__ import annotations

import asyncio
import faulthandler
import struct

from google.protobuf.wrappers_pb2 import BytesValue
from hpack import Encoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extproc.transport import http2
from extproc.transport.frames import INTERNAL_ERROR
from extproc.transport.grpc_h2 import BIDI, MESSAGES, GrpcServer, Method
from extproc.transport.headers import REMEMBERED_BLOCKS
from property_examples import examples

SHOUT, ECHO = "/f.F/Shout", "/f.F/Echo"
# Small limits, so that random input reaches them.
LIMITS = dict(max_concurrent_streams=4, streams_before_ack=8, max_header_list_size=2048, max_message=4096,
              backlog=16_384, write_high_water=4096, write_low_water=1024)
EXAMPLE_TIMEOUT = 30.0           # seconds before a hung example kills the run with every thread's stack
SETTLE = 0.002                   # seconds an example's tasks get between reads, and at its end

examples_run = 0                 # bench/h2_fuzz.py reports it


class Shout:
    """Answers at once, or (b"w...") after a short wait in a task."""

    def __init__(self, call) -> None:
        pass

    def hand_over(self) -> bool:
        return True

    def message(self, request):
        if request.value[:1] == b"w":
            return self.later(request.value)
        return BytesValue(value=request.value.upper())

    async def later(self, value: bytes):
        await asyncio.sleep(SETTLE / 2)
        return BytesValue(value=value.upper())

    def closed(self) -> None:
        pass


async def echo(_, call) -> None:
    import grpc
    while (message := await call.read()) is not grpc.aio.EOF:
        await call.write(message)


METHODS = {SHOUT: Method(Shout, BytesValue.FromString, MESSAGES), ECHO: Method(echo, BytesValue.FromString, BIDI)}


class Transport:
    """Records what the server writes; holds it (as a peer that does not read would)
    until told to drain, telling the protocol to pause and resume as asyncio does."""

    def __init__(self, protocol: http2.Connection, limits: http2.Limits) -> None:
        self.protocol, self.limits = protocol, limits
        self.written = bytearray()
        self.held = 0
        self.paused = False              # the protocol was told to pause writing
        self.reading = True
        self.closing = False

    def write(self, data: bytes) -> None:
        assert not self.closing, "written after close"
        self.written += data
        self.held += len(data)
        if not self.paused and self.held > self.limits.write_high_water:
            self.paused = True
            self.protocol.pause_writing()

    def drain(self) -> None:
        self.held = 0
        if self.paused:
            self.paused = False
            self.protocol.resume_writing()

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return self.held

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True


# --- what a client might send ------------------------------------------------------

EDGE_VALUES = [0, 1, 2, 3, 4, 5, 6, 100, 16_383, 16_384, 16_385, 65_535, 65_536, 2**24 - 1, 2**24, 2**31 - 2,
               2**31 - 1, 2**31, 2**32 - 1]
FLAGS = [0, 0, 0x1, 0x4, 0x5, 0x8, 0x9, 0x20, 0x24, 0x25, 0x2d, 0xff]
PATHS = [SHOUT] * 6 + [ECHO] * 3 + ["/f.F/Nope", "", "/" + "x" * 300]
# Settings a client could mean: each identifier with values in range, and some not.
SETTING_VALUES = {1: [0, 256, 4096, 65_536], 2: [0, 1, 2], 3: [0, 1, 100, 2**31],
                  4: [0, 1, 10, 65_535, 2**31 - 1, 2**31],
                  5: [0, 16_384, 20_000, 2**24 - 1, 2**24], 6: [0, 100, 2**32 - 1], 8: [0, 1, 7], 99: [5]}

values = st.sampled_from(EDGE_VALUES) | st.integers(0, 2**32 - 1)


class Client:
    """What the client has done so far in an example: its HPACK table, its streams."""

    def __init__(self) -> None:
        self.encoder = Encoder()
        self.next_stream = 1
        self.opened: list[int] = []


def settings_payload(draw) -> bytes:
    keys = draw(st.lists(st.sampled_from(sorted(SETTING_VALUES)) | st.integers(0, 65_535), max_size=4))
    return b"".join(struct.pack(">HI", key, draw(st.sampled_from(SETTING_VALUES.get(key, [0])) | values))
                    for key in keys)


def header_block(draw, client: Client) -> bytes:
    """A block from the client's encoder (the server's table follows it), or random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=64))
    headers = [(":method", "POST"), (":scheme", "http"), (":path", draw(st.sampled_from(PATHS))),
               (":authority", "w"), ("content-type", "application/grpc")]
    headers += draw(st.lists(st.tuples(st.sampled_from(["x-a", "x-b", "te", "grpc-timeout", "x-" + "n" * 40]),
                                       st.sampled_from(["1", "trailers", "v" * 700]) | st.text(max_size=8)),
                             max_size=4))
    if draw(st.integers(0, 7)) == 0:
        client.encoder.header_table_size = draw(st.sampled_from([0, 256, 4096, 8192]))
    return client.encoder.encode(headers)


def grpc_payload(draw) -> bytes:
    """Length-prefixed messages: whole, several, cut short, oversized or compressed."""
    out = b""
    for _ in range(draw(st.integers(0, 3))):
        body = BytesValue(value=draw(st.sampled_from([b"a", b"w8", b"x" * 3000]) | st.binary(max_size=16)))
        raw = body.SerializeToString()
        prefix = draw(st.sampled_from([len(raw)] * 6 + [len(raw) + 3, 5000, 2**32 - 1]))
        out += bytes([draw(st.sampled_from([0] * 9 + [1]))]) + prefix.to_bytes(4, "big") + raw
    return out[:draw(st.integers(0, len(out)))] if draw(st.integers(0, 7)) == 0 else out


def fixed_payload(draw, kind: int) -> bytes:
    """PING, RST_STREAM, WINDOW_UPDATE, PRIORITY, GOAWAY: mostly their length, a value up front."""
    size = {http2.PING: 8, http2.RST_STREAM: 4, http2.WINDOW_UPDATE: 4, 2: 5, http2.GOAWAY: 8}[kind]
    if draw(st.integers(0, 9)):
        return draw(values).to_bytes(4, "big") + draw(st.binary(min_size=size - 4, max_size=size - 4))
    return draw(st.binary(max_size=12))


def padded(draw, payload: bytes) -> bytes:
    pad = draw(st.integers(0, 255))
    return bytes([pad]) + payload + b"\0" * draw(st.sampled_from([pad, pad, 0, pad + 1]))


def some_stream(draw, client: Client) -> int:
    """Mostly a stream the client opened (the latest most often), now and then the next."""
    if not client.opened or draw(st.integers(0, 9)) == 0:
        return client.next_stream
    return client.opened[-1] if draw(st.booleans()) else draw(st.sampled_from(client.opened))


def plausible_frames(draw, client: Client) -> list[tuple[int, int, int, bytes]]:
    """A frame (or a split header block) a client could send at this point, with now and
    then a flag or value it should not."""
    kind = draw(st.sampled_from([http2.HEADERS] * 3 + [http2.DATA] * 6 + [http2.RST_STREAM, http2.WINDOW_UPDATE,
                                http2.WINDOW_UPDATE, http2.PING, http2.SETTINGS, 2, http2.GOAWAY]))
    if not client.opened and kind in (http2.DATA, http2.RST_STREAM, 2):
        kind = http2.HEADERS                            # a stream first
    if kind == http2.HEADERS:
        trailers = bool(client.opened) and draw(st.integers(0, 4)) == 0
        stream = draw(st.sampled_from(client.opened)) if trailers else client.next_stream
        if not trailers:
            client.next_stream += 2
            client.opened.append(stream)
        flags = http2.END_HEADERS | (http2.END_STREAM if trailers or draw(st.integers(0, 5)) == 0 else 0)
        block = header_block(draw, client)
        if draw(st.integers(0, 5)) == 0:              # a block cut into HEADERS and CONTINUATIONs
            cuts = sorted(draw(st.lists(st.integers(0, len(block)), min_size=1, max_size=3)))
            parts = [block[x:y] for x, y in zip([0] + cuts, cuts + [len(block)])]
            return ([(kind, flags & ~http2.END_HEADERS, stream, parts[0])]
                    + [(http2.CONTINUATION, 0, stream, part) for part in parts[1:-1]]
                    + [(http2.CONTINUATION, http2.END_HEADERS, stream, parts[-1])])
        if draw(st.integers(0, 7)) == 0:
            return [(kind, flags | http2.PADDED, stream, padded(draw, block))]
        return [(kind, flags, stream, block)]
    if kind == http2.DATA:
        flags = draw(st.sampled_from([0, 0, 0, http2.END_STREAM, http2.PADDED]))
        payload = grpc_payload(draw)
        return [(kind, flags, some_stream(draw, client), padded(draw, payload) if flags & http2.PADDED else payload)]
    if kind == http2.SETTINGS:
        return [(kind, draw(st.sampled_from([0, 0, 0, http2.ACK])), 0, settings_payload(draw))]
    if kind in (http2.PING, http2.GOAWAY):
        return [(kind, draw(st.sampled_from([0, http2.ACK])), 0, fixed_payload(draw, kind))]
    if kind == http2.WINDOW_UPDATE and draw(st.booleans()):
        return [(kind, 0, 0, fixed_payload(draw, kind))]
    return [(kind, 0, some_stream(draw, client), fixed_payload(draw, kind))]


def random_frames(draw, client: Client) -> list[tuple[int, int, int, bytes]]:
    """Any type (unknown ones too), flags and stream id."""
    kind = draw(st.sampled_from(range(10)) | st.integers(0, 255))
    if kind == http2.SETTINGS:
        payload = settings_payload(draw)
    elif kind in (http2.HEADERS, http2.CONTINUATION, http2.PUSH_PROMISE):
        payload = header_block(draw, client)
    elif kind == http2.DATA:
        payload = grpc_payload(draw)
    elif kind in (http2.PING, http2.RST_STREAM, http2.WINDOW_UPDATE, 2, http2.GOAWAY):
        payload = fixed_payload(draw, kind)
    else:
        payload = draw(st.binary(max_size=32))
    stream = draw(st.sampled_from([0, 1, 2, 3, 5, 99, 2**31 - 1]) | st.integers(0, 2**32 - 1))
    return [(kind, draw(st.sampled_from(FLAGS) | st.integers(0, 255)), stream, payload)]


@st.composite
def wires(draw) -> tuple[list[bytes], list[bool]]:
    """A client's bytes cut into reads, and before each read whether its peer drains the
    server's output first."""
    client = Client()
    wire = b""
    opening = draw(st.integers(0, 19))
    if opening:                                 # mostly the preface and SETTINGS, often acknowledged
        wire += http2.PREFACE + http2.frame(http2.SETTINGS, 0, 0, settings_payload(draw) if opening < 4 else b"")
        if opening > 3:
            wire += http2.frame(http2.SETTINGS, http2.ACK, 0)
    for _ in range(draw(st.integers(0, 30))):
        frames = random_frames(draw, client) if draw(st.integers(0, 9)) == 0 else plausible_frames(draw, client)
        for kind, flags, stream, payload in frames:
            length = len(payload) if draw(st.integers(0, 49)) else draw(st.integers(0, 2**24 - 1))
            wire += struct.pack(">I", length)[1:] + bytes((kind, flags)) + struct.pack(">I", stream) + payload
        if draw(st.integers(0, 49)) == 0:
            wire += draw(st.binary(max_size=20))        # garbage between frames
    cuts = sorted(draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    reads = [wire[a:b] for a, b in zip([0] + cuts, cuts + [len(wire)]) if b > a]
    return reads, [draw(st.booleans()) for _ in reads]


# --- the target ----------------------------------------------------------------------

def check_bounds(connection: http2.Connection, limits: http2.Limits, calls) -> None:
    """What the connection holds after a read: within its limits."""
    if not connection.closed:
        assert len(connection.buffer) < len(http2.PREFACE) + 2 * 9 + http2.DEFAULT_FRAME
    assert len(connection.streams) <= limits.streams_before_ack
    assert set(connection.blocked) <= set(connection.streams)
    if connection.header_block is not None:
        assert len(connection.header_block[2]) <= limits.max_header_list_size
    assert len(connection.header_blocks.known) <= REMEMBERED_BLOCKS
    assert not connection.out                                  # all written at the read's end
    assert 0 <= calls.backlog <= limits.backlog
    assert calls.backlog == sum(call.held for call in calls.calls.values())
    assert all(call.held == len(call.pending) for call in calls.calls.values())
    assert set(calls.calls) <= set(connection.streams)        # a call outlives no stream
    for call in calls.calls.values():                        # the reads its views pin: twice what it holds at most
        pinned = {id(chunk.obj): len(chunk.obj) for chunk in call.pending.chunks if isinstance(chunk, memoryview)}
        assert sum(pinned.values()) <= 2 * len(call.pending)


def server_frames(written: bytes) -> list[tuple[int, int, int, bytes]]:
    frames, offset = [], 0
    while offset < len(written):
        assert len(written) - offset >= 9, "a frame cut short"
        length = int.from_bytes(written[offset:offset + 3], "big")
        frames.append((written[offset + 3], written[offset + 4], int.from_bytes(written[offset + 5:offset + 9], "big"),
                       written[offset + 9:offset + 9 + length]))
        assert len(frames[-1][3]) == length, "a frame cut short"
        offset += 9 + length
    return frames


async def exercise(reads: list[bytes], drains: list[bool]) -> list[tuple[int, int, int, bytes]]:
    """Feeds the reads to a fresh connection, checking its bounds after each; the frames
    it wrote."""
    global examples_run
    examples_run += 1
    loop = asyncio.get_running_loop()
    errors: list = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    limits = http2.Limits(**LIMITS)
    server = GrpcServer(METHODS, limits)
    connection = http2.Connection(server._connection, limits)
    calls = next(iter(server.connections))
    transport = Transport(connection, limits)
    connection.connection_made(transport)
    received = 0
    for data, drain in zip(reads, drains):
        if drain or not transport.reading:
            transport.drain()                      # a peer that reads, now
        if transport.closing or not transport.reading:
            break                                  # a transport delivers nothing more
        received += len(data)
        connection.data_received(data)
        check_bounds(connection, limits, calls)
        await asyncio.sleep(SETTLE if server.tasks else 0)
    connection.connection_lost(None)
    if server.tasks:
        await asyncio.wait(list(server.tasks), timeout=1)
    assert not server.tasks, "a call's task outlived its connection"
    assert not errors, errors
    frames = server_frames(bytes(transport.written))
    assert frames[0][0] == http2.SETTINGS
    for kind, _, _, payload in frames:
        assert len(payload) <= max(http2.DEFAULT_FRAME, connection.peer_frame)
        if kind == http2.GOAWAY:
            assert int.from_bytes(payload[4:8], "big") != INTERNAL_ERROR, payload[8:]
    # What a read makes the server write is a small multiple of it (answers, no amplification).
    assert len(transport.written) <= 64 + 20 * received + 3 * 1024 * (1 + len([f for f in frames if f[0] == 1]))
    return frames


def run_example(reads: list[bytes], drains: list[bool]) -> list[tuple[int, int, int, bytes]]:
    """One example in a loop of its own; a hang ends the run with every stack printed."""
    faulthandler.dump_traceback_later(EXAMPLE_TIMEOUT, exit=True)
    try:
        return asyncio.run(exercise(reads, drains))
    finally:
        faulthandler.cancel_dump_traceback_later()


def fuzz(max_examples: int, deadline_ms: int | None = 2000):
    """The hypothesis test over `wires()`, for `max_examples` examples."""
    @settings(max_examples=max_examples, deadline=deadline_ms, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
    @given(wires())
    def target(wire) -> None:
        run_example(*wire)
    return target


def test_random_frame_sequences_neither_break_nor_hang_the_server():
    # A hung example ends the run (run_example); a slow one on a loaded host is no failure.
    fuzz(max_examples=examples(150), deadline_ms=None)()


def test_the_fuzz_target_reaches_the_limits():
    """The target is not vacuous: hand-made wires within its grammar reach a stream
    error, a connection error, a refused stream and a call ended RESOURCE_EXHAUSTED."""
    encoder = Encoder()
    block = encoder.encode([(":method", "POST"), (":scheme", "http"), (":path", SHOUT), (":authority", "w")])
    opening = http2.PREFACE + http2.frame(http2.SETTINGS, 0, 0) + http2.frame(http2.SETTINGS, http2.ACK, 0)
    streams = b"".join(http2.frame(http2.HEADERS, http2.END_HEADERS, s, block) for s in (1, 3, 5, 7, 9))
    huge = http2.frame(http2.DATA, 0, 1, b"\0" + (5000).to_bytes(4, "big"))
    frames = run_example([opening + streams + huge + http2.frame(http2.WINDOW_UPDATE, 0, 3, b"\0\0\0\0")
                          + http2.frame(http2.PING, 0, 1, b"12345678")], [False])
    resets = {(stream, int.from_bytes(payload, "big")) for kind, _, stream, payload in frames
              if kind == http2.RST_STREAM}
    assert resets == {(9, 7), (3, 1)}                            # REFUSED_STREAM past 4; PROTOCOL_ERROR
    assert any(kind == http2.HEADERS and stream == 1 and b"grpc-status\x018" in payload
               for kind, _, stream, payload in frames)           # RESOURCE_EXHAUSTED
    assert frames[-1][0] == http2.GOAWAY and frames[-1][3][4:8] == b"\0\0\0\1"   # PING on stream 1


def test_a_header_block_never_holds_more_than_its_cap():
    """The CONTINUATION that would take a pending header block past
    max_header_list_size closes the connection before its bytes are added."""
    opening = http2.PREFACE + http2.frame(http2.SETTINGS, 0, 0) + http2.frame(http2.SETTINGS, http2.ACK, 0)
    frames = run_example([opening + http2.frame(http2.HEADERS, 0, 1, b"\x00" * 2000)
                          + http2.frame(http2.CONTINUATION, 0, 1, b"\x00" * 100)], [False])
    assert frames[-1][0] == http2.GOAWAY and frames[-1][3][4:8] == (11).to_bytes(4, "big")   # ENHANCE_YOUR_CALM
