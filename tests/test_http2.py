"""The workers' own HTTP/2 + gRPC transport (extproc/transport/http2.py, grpc_h2.py)
against an independent implementation: grpc's C-core client over the Unix socket.
Envoy itself is the client in every e2e test (`server.transport: h2` is the default)."""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import struct
import weakref

import grpc
import pytest
from google.protobuf.wrappers_pb2 import BytesValue, Int64Value
from grpc_health.v1 import health, health_pb2

from extproc.transport import http2
from extproc.transport.grpc_h2 import BIDI, CLIENT_STREAM, MESSAGES, UNARY, GrpcServer, Method

ECHO, SUM, FAIL, HOLD, SHOUT = "/test.T/Echo", "/test.T/Sum", "/test.T/Fail", "/test.T/Hold", "/test.T/Shout"
CHECK = "/grpc.health.v1.Health/Check"
SHOUT_PIECES = "/test.T/ShoutPieces"          # large messages handed over as their pieces
PIECES_FROM = 70_000


class Shout:
    """A MESSAGES handler: each message upper-cased, at once; those starting with b"wait"
    wait first (a coroutine, run in a task), and may then abort or fail; b"fail" fails
    at once. What happened goes to `events`."""

    def __init__(self, call, events: list) -> None:
        self.call, self.events = call, events
        events.append(("opened", dict(call.invocation_metadata()).get("x-test")))

    def hand_over(self) -> bool:
        return True

    def message(self, request):
        value = request.value
        self.events.append(("message", value, asyncio.current_task() is not None))
        if value.startswith(b"wait"):
            return self.later(value)
        if value == b"fail":
            raise RuntimeError("a bug")
        return BytesValue(value=value.upper())

    async def later(self, value: bytes):
        try:
            await asyncio.sleep(30 if value == b"wait long" else 0.05)
        except asyncio.CancelledError:
            self.events.append(("cancelled", value))
            raise
        self.events.append(("resumed", value, asyncio.current_task() is not None))
        if value == b"wait abort":
            await self.call.abort(grpc.StatusCode.PERMISSION_DENIED, "no")
        if value == b"wait fail":
            raise RuntimeError("a bug")
        return BytesValue(value=value.upper())

    def closed(self) -> None:
        self.events.append(("closed",))


class Handlers:
    def __init__(self) -> None:
        self.metadata: tuple = ()
        self.held_ended = asyncio.Event()
        self.hold_started = asyncio.Event()
        self.events: list = []
        self.made: list[weakref.ref] = []           # every Shout handler made, weakly
        self.pieces: list[list[type]] = []          # the types of each large message's pieces

    def from_pieces(self, pieces: list) -> BytesValue:
        self.pieces.append([type(piece) for piece in pieces])
        return BytesValue.FromString(b"".join(pieces))

    def shout(self, call) -> Shout:
        handler = Shout(call, self.events)
        self.made.append(weakref.ref(handler))
        return handler

    async def echo(self, _, call) -> None:
        self.metadata = call.invocation_metadata()
        while (message := await call.read()) is not grpc.aio.EOF:
            await call.write(message)

    async def sum(self, _, call):
        total = 0
        while (message := await call.read()) is not grpc.aio.EOF:
            total += message.value
        return Int64Value(value=total)

    async def fail(self, _, call):
        raise RuntimeError("a bug")

    async def hold(self, _, call) -> None:
        self.hold_started.set()
        try:
            await asyncio.sleep(30)
        finally:
            self.held_ended.set()


def methods(handlers: Handlers, health_servicer) -> dict:
    return {
        ECHO: Method(handlers.echo, BytesValue.FromString, BIDI),
        SUM: Method(handlers.sum, Int64Value.FromString, CLIENT_STREAM),
        FAIL: Method(handlers.fail, BytesValue.FromString, BIDI),
        HOLD: Method(handlers.hold, BytesValue.FromString, BIDI),
        SHOUT: Method(handlers.shout, BytesValue.FromString, MESSAGES),
        SHOUT_PIECES: Method(handlers.shout, BytesValue.FromString, MESSAGES, pieces_from=PIECES_FROM,
                             deserialize_pieces=handlers.from_pieces),
        CHECK: Method(health_servicer.Check, health_pb2.HealthCheckRequest.FromString, UNARY),
    }


def run(tmp_path, scenario) -> None:
    """`scenario(channel, handlers, server)` against a fresh server on a Unix socket."""
    async def main() -> None:
        handlers, health_servicer = Handlers(), health.aio.HealthServicer()
        await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        server = GrpcServer(methods(handlers, health_servicer))
        path = str(tmp_path / "t.sock")
        await server.start(path)
        try:
            limits = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
            async with grpc.aio.insecure_channel(f"unix:{path}", options=limits) as channel:
                await scenario(channel, handlers, server)
        finally:
            await server.stop(1)
    asyncio.run(asyncio.wait_for(main(), 60))


def bytes_stream(channel, path: str):
    """A bidirectional call of BytesValue messages to `path`."""
    return channel.stream_stream(path, request_serializer=BytesValue.SerializeToString,
                                 response_deserializer=BytesValue.FromString)


def test_messages_of_every_size_both_ways_through_flow_control(tmp_path):
    """Messages larger than a frame, than the default 64 KB window and than grpc's
    window after it, come back whole and in order on one stream and on several at once."""
    sizes = [0, 1, 16_383, 16_385, 65_535, 70_000, 1_000_000, 5_000_000]

    async def scenario(channel, handlers, _):
        call = bytes_stream(channel, ECHO)(metadata=(("x-extproc-role", "upstream"),))
        for size in sizes:
            payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
            await call.write(BytesValue(value=payload))
            assert (await call.read()).value == payload
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
        assert ("x-extproc-role", "upstream") in handlers.metadata
        assert not any(name.startswith(":") or name == "content-type" for name, _ in handlers.metadata)

        async def one(index: int) -> bytes:
            call = bytes_stream(channel, ECHO)()
            await call.write(BytesValue(value=bytes([index]) * 3_000_000))
            reply = await call.read()
            await call.done_writing()
            return reply.value
        replies = await asyncio.gather(*(one(i) for i in range(6)))
        assert replies == [bytes([i]) * 3_000_000 for i in range(6)]
    run(tmp_path, scenario)


def test_large_messages_handed_over_as_the_pieces_they_came_in(tmp_path):
    """A method that takes messages from a size as their pieces gets those (views of the
    socket's reads among them, the bytes sent in order), and the smaller ones as bytes."""
    sizes = [0, PIECES_FROM - 10, PIECES_FROM + 5, 1_000_000, 5_000_000]

    async def scenario(channel, handlers, _):
        call = bytes_stream(channel, SHOUT_PIECES)()
        for size in sizes:
            payload = bytes(range(97, 123)) * (size // 26) + b"x" * (size % 26)
            await call.write(BytesValue(value=payload))
            assert (await call.read()).value == payload.upper()
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF
        assert len(handlers.pieces) == 3                 # the three from PIECES_FROM on
        assert any(memoryview in types for types in handlers.pieces)
    run(tmp_path, scenario)


def test_unary_client_streaming_status_and_errors(tmp_path):
    async def scenario(channel, _, __):
        check = channel.unary_unary(CHECK, request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                                    response_deserializer=health_pb2.HealthCheckResponse.FromString)
        assert (await check(health_pb2.HealthCheckRequest())).status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as unknown_service:
            await check(health_pb2.HealthCheckRequest(service="nope"))
        assert unknown_service.value.code() == grpc.StatusCode.NOT_FOUND     # the servicer's abort()

        add = channel.stream_unary(SUM, request_serializer=Int64Value.SerializeToString,
                                   response_deserializer=Int64Value.FromString)
        assert (await add(iter([Int64Value(value=v) for v in (1, 2, 39)]))).value == 42

        fail = bytes_stream(channel, FAIL)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await fail().read()
        assert failed.value.code() == grpc.StatusCode.UNKNOWN
        assert "a bug" not in failed.value.details()            # no internals to the client

        with pytest.raises(grpc.aio.AioRpcError) as unknown_method:
            await channel.unary_unary("/test.T/Nope")(b"")
        assert unknown_method.value.code() == grpc.StatusCode.UNIMPLEMENTED

        call = bytes_stream(channel, ECHO)()          # the connection still serves
        await call.write(BytesValue(value=b"still here"))
        assert (await call.read()).value == b"still here"
        await call.done_writing()
    run(tmp_path, scenario)


def test_a_cancelled_call_cancels_its_handler_and_stop_ends_the_rest(tmp_path):
    async def scenario(channel, handlers, server):
        hold = bytes_stream(channel, HOLD)
        call = hold()
        await call.write(BytesValue(value=b"x"))
        await asyncio.wait_for(handlers.hold_started.wait(), 5)
        call.cancel()                                           # RST_STREAM
        await asyncio.wait_for(handlers.held_ended.wait(), 5)
        assert not server.tasks

        handlers.held_ended.clear()
        call = hold()
        await call.write(BytesValue(value=b"x"))
        for _ in range(100):
            if server.tasks:
                break
            await asyncio.sleep(0.01)
        await server.stop(0.2)                                  # grace over: the handler is cancelled
        assert handlers.held_ended.is_set()
        with pytest.raises(grpc.aio.AioRpcError):
            await call.read()
    run(tmp_path, scenario)


def test_messages_answered_in_the_read_that_brought_them_and_in_order(tmp_path):
    """A MESSAGES handler answers outside any task; a message whose answer waits goes on
    in a task and the ones behind it queue; the half-close ends the call with OK and
    `closed()` comes once, after the last answer."""
    async def scenario(channel, handlers, server):
        call = bytes_stream(channel, SHOUT)(metadata=(("x-test", "t1"),))
        for value in (b"a", b"wait", b"b"):                     # all three written at once
            await call.write(BytesValue(value=value))
        assert [(await call.read()).value for _ in range(3)] == [b"A", b"WAIT", b"B"]
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
        assert handlers.events == [("opened", "t1"), ("message", b"a", False), ("message", b"wait", False),
                                   ("resumed", b"wait", True), ("message", b"b", True), ("closed",)]
        assert not server.tasks and server.open_calls() == 0
    run(tmp_path, scenario)


def test_message_handlers_failing_aborting_reset_and_stopped(tmp_path):
    async def scenario(channel, handlers, server):
        for value, code in ((b"fail", grpc.StatusCode.UNKNOWN), (b"wait fail", grpc.StatusCode.UNKNOWN),
                            (b"wait abort", grpc.StatusCode.PERMISSION_DENIED)):
            handlers.events.clear()
            call = bytes_stream(channel, SHOUT)()
            await call.write(BytesValue(value=value))
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await call.read()
            assert failed.value.code() == code and "a bug" not in failed.value.details()
            assert handlers.events[-1] == ("closed",)

        handlers.events.clear()                                  # the client resets a waiting call
        call = bytes_stream(channel, SHOUT)()
        await call.write(BytesValue(value=b"wait long"))
        while len(handlers.events) < 2:
            await asyncio.sleep(0.01)
        call.cancel()
        for _ in range(100):
            if handlers.events[-1] == ("closed",):
                break
            await asyncio.sleep(0.01)
        assert handlers.events[-2:] == [("cancelled", b"wait long"), ("closed",)]   # closed once unwound

        handlers.events.clear()                                  # a stop ends a call that waits for nothing
        call = bytes_stream(channel, SHOUT)()
        await call.write(BytesValue(value=b"a"))
        assert (await call.read()).value == b"A"
        assert server.open_calls() == 1 and not server.tasks
        await server.stop(0.2)
        assert handlers.events[-1] == ("closed",) and server.open_calls() == 0
        with pytest.raises(grpc.aio.AioRpcError):
            await call.read()
    run(tmp_path, scenario)


def test_an_ended_call_and_its_handler_are_freed_without_the_cycle_collector(tmp_path):
    """The handler holds its call (the gateway's holds the call's bodies, parsed: megabytes
    for an agent's history), and the call its handler while it lasts. Once the call is
    over, however it ended, nothing of the transport may keep them in a cycle that only
    Python's full collection would free: with the collector off, they are freed at once."""
    async def scenario(channel, handlers, server):
        async def ended(value: bytes, cancel: bool = False) -> None:
            handlers.events.clear()
            call = bytes_stream(channel, SHOUT)()
            await call.write(BytesValue(value=value))
            if cancel:
                while len(handlers.events) < 2:
                    await asyncio.sleep(0.01)
                call.cancel()
            else:
                if value != b"fail":
                    assert (await call.read()).value == value.upper()
                await call.done_writing()
                with pytest.raises(grpc.aio.AioRpcError) if value == b"fail" else _no_error():
                    await call.read()
            for _ in range(200):
                if handlers.events[-1:] == [("closed",)]:
                    break
                await asyncio.sleep(0.01)
            assert handlers.events[-1] == ("closed",)

        # The failure's log line written as a worker writes it, the record then dropped
        # (pytest's own capture keeps every record, and with it the failure's frames).
        logger, written = logging.getLogger("extproc.grpc_h2"), io.StringIO()
        handler = logging.StreamHandler(written)
        logger.addHandler(handler)
        logger.propagate = False
        gc.collect()
        gc.disable()
        try:
            await ended(b"a")                                   # half-closed: OK
            await ended(b"wait")                                # answered from a task
            await ended(b"fail")                                # the handler failed
            await ended(b"wait long", cancel=True)              # the client reset it, waiting
            for _ in range(10):                                 # the loop's last callbacks
                await asyncio.sleep(0)
            assert server.open_calls() == 0 and len(handlers.made) == 4
            assert [ref() for ref in handlers.made] == [None] * 4
            assert "unexpected error answering stream" in written.getvalue()
        finally:
            gc.enable()
            logger.removeHandler(handler)
            logger.propagate = True
    run(tmp_path, scenario)


class _no_error:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> bool:
        return False


def test_a_waiting_answer_reset_in_the_same_read_still_closes_its_handler(tmp_path):
    """A message whose answer waits, and the client's RST_STREAM in the same read: the
    answer's task is cancelled before it ever ran, and the handler still hears
    `closed()` (its per-request state, budget reservations included, is released)."""
    from hpack import Encoder

    async def main() -> None:
        handlers, health_servicer = Handlers(), health.aio.HealthServicer()
        server = GrpcServer(methods(handlers, health_servicer))
        path = str(tmp_path / "t.sock")
        await server.start(path)
        try:
            reader, writer = await asyncio.open_unix_connection(path)
            block = Encoder().encode([(":method", "POST"), (":scheme", "http"), (":path", SHOUT),
                                      (":authority", "x"), ("content-type", "application/grpc")])
            body = BytesValue(value=b"wait long").SerializeToString()
            writer.write(http2.PREFACE + http2.frame(http2.SETTINGS, 0, 0) + http2.frame(http2.SETTINGS, http2.ACK, 0)
                         + http2.frame(http2.HEADERS, http2.END_HEADERS, 1, block)
                         + http2.frame(http2.DATA, 0, 1, b"\x00" + len(body).to_bytes(4, "big") + body)
                         + http2.frame(http2.RST_STREAM, 0, 1, struct.pack(">I", http2.CANCEL)))
            for _ in range(200):
                if handlers.events[-1:] == [("closed",)]:
                    break
                await asyncio.sleep(0.01)
            assert handlers.events == [("opened", None), ("message", b"wait long", False), ("closed",)]
            assert not server.tasks and server.open_calls() == 0
            writer.close()
        finally:
            await server.stop(0.1)
    asyncio.run(asyncio.wait_for(main(), 30))


class RawConnection:
    """http2.Connection fed bytes directly, its writes collected."""

    class Transport:
        def __init__(self) -> None:
            self.written = bytearray()
            self.writes: list[bytes] = []
            self.closed = False

        def write(self, data: bytes) -> None:
            self.written += data
            self.writes.append(data)

        def is_closing(self) -> bool:
            return self.closed

        def close(self) -> None:
            self.closed = True

        def abort(self) -> None:
            self.closed = True

        def set_write_buffer_limits(self, high: int, low: int) -> None:
            pass

        def pause_reading(self) -> None:
            pass

        def resume_reading(self) -> None:
            pass

    class App:
        def __init__(self) -> None:
            self.events: list = []
            self.handing_over = False

        def hand_over(self) -> bool:
            return self.handing_over

        def opened(self, stream_id, headers):
            self.events.append(("opened", stream_id, dict(headers)))

        def data(self, stream_id, data, end):
            self.events.append(("data", stream_id, bytes(data), end))

        def read_done(self):
            pass

        def reset(self, stream_id):
            self.events.append(("reset", stream_id))

        def lost(self):
            self.events.append(("lost",))

    def __init__(self, limits: http2.Limits | None = None) -> None:
        self.app = self.App()
        self.connection = http2.Connection(lambda _: self.app, limits)
        self.transport = self.Transport()
        self.connection.connection_made(self.transport)
        self.connection.data_received(http2.PREFACE + http2.frame(http2.SETTINGS, 0, 0)
                                      + http2.frame(http2.SETTINGS, http2.ACK, 0))

    def frames(self) -> list[tuple[int, int, int, bytes]]:
        out, data = [], bytes(self.transport.written)
        while data:
            length = int.from_bytes(data[:3], "big")
            out.append((data[3], data[4], int.from_bytes(data[5:9], "big"), data[9:9 + length]))
            data = data[9 + length:]
        self.transport.written.clear()
        return out


def headers_block(path: str) -> bytes:
    from hpack import Encoder
    return Encoder().encode([(":method", "POST"), (":scheme", "http"), (":path", path),
                             (":authority", "x"), ("content-type", "application/grpc"), ("x-a", "b" * 300)])


def test_frames_as_a_client_may_cut_them():
    """Split header blocks (CONTINUATION), padding, priority, frames cut at any byte, a
    second HEADERS as trailers, PING, a stream id going backwards, a broken block."""
    raw = RawConnection()
    block = headers_block("/p")
    first, rest = block[:10], block[10:]
    padded = bytes([3]) + b"\0" * 5 + first + b"\0" * 3          # pad length, priority, fragment, padding
    wire = (http2.frame(http2.HEADERS, http2.PADDED | http2.PRIORITY_FLAG, 1, padded)
            + http2.frame(http2.CONTINUATION, http2.END_HEADERS, 1, rest)
            + http2.frame(http2.DATA, http2.PADDED, 1, bytes([2]) + b"abc" + b"\0\0")
            + http2.frame(http2.HEADERS, http2.END_HEADERS | http2.END_STREAM, 1, b"")
            + http2.frame(http2.PING, 0, 0, b"12345678"))
    for index in range(0, len(wire), 7):                        # 7 bytes at a time
        raw.connection.data_received(wire[index:index + 7])
    opened, data, end = raw.app.events[0], raw.app.events[1], raw.app.events[2]
    assert opened[:2] == ("opened", 1) and opened[2][":path"] == "/p" and opened[2]["x-a"] == "b" * 300
    assert data == ("data", 1, b"abc", False) and end == ("data", 1, b"", True)
    assert (http2.PING, http2.ACK, 0, b"12345678") in raw.frames()

    raw.frames()
    raw.connection.send_trailers(1, b"\x88")                     # the server ends stream 1
    raw.connection.data_received(http2.frame(http2.HEADERS, http2.END_HEADERS, 1, b"\x82"))
    assert [f[:3] for f in raw.frames()] == [(http2.HEADERS, http2.END_HEADERS | http2.END_STREAM, 1),
                                             (http2.RST_STREAM, 0, 1)]                     # no reopening
    raw.connection.data_received(http2.frame(http2.HEADERS, http2.END_HEADERS, 3, b"\xff\xff\xff\xff"))
    assert raw.transport.closed and raw.frames()[-1][0] == http2.GOAWAY                      # a broken block


def test_replies_leave_before_the_next_message_of_a_read_when_handing_over(monkeypatch):
    """Two calls' messages in one read: with few calls open, the first call's reply is
    written (and the core yielded) before the second call is even opened."""
    for handing_over in (False, True):
        raw = RawConnection()
        raw.app.handing_over = handing_over
        replying = raw.app.data

        def data(stream_id, payload, end, replying=replying, raw=raw):
            replying(stream_id, payload, end)
            raw.connection.send_data(stream_id, b"reply to " + payload)
        raw.app.data = data
        yields = []
        monkeypatch.setattr(http2.os, "sched_yield", lambda: yields.append(1))
        raw.transport.writes.clear()
        raw.connection.data_received(b"".join(
            http2.frame(http2.HEADERS, http2.END_HEADERS, stream, headers_block("/p"))
            + http2.frame(http2.DATA, 0, stream, b"m%d" % stream) for stream in (1, 3)))
        if handing_over:
            assert len(raw.transport.writes) == 2 and yields == [1]
            assert b"reply to m1" in raw.transport.writes[0] and b"m3" not in raw.transport.writes[0]
        else:
            assert len(raw.transport.writes) == 1 and not yields
        assert [e[:2] for e in raw.app.events] == [("opened", 1), ("data", 1), ("opened", 3), ("data", 3)]


def test_only_replies_whose_handler_asks_are_handed_over(monkeypatch):
    """Two calls' messages in one read, on the gRPC server: the first call's reply leaves
    (and the core is yielded) before the second message only when its handler asks; a
    streamed answer's chunks do not (runtime/processor.py)."""
    for asks in (False, True):
        class Replies:
            def __init__(self, call) -> None:
                pass

            def hand_over(self) -> bool:
                return asks

            def message(self, request):
                return BytesValue(value=request.value.upper())

            def closed(self) -> None:
                pass

        server = GrpcServer({SHOUT: Method(Replies, BytesValue.FromString, MESSAGES)})
        connection = http2.Connection(server._connection, None)
        transport = RawConnection.Transport()
        connection.connection_made(transport)
        connection.data_received(http2.PREFACE + http2.frame(http2.SETTINGS, 0, 0)
                                 + http2.frame(http2.SETTINGS, http2.ACK, 0))
        yields = []
        monkeypatch.setattr(http2.os, "sched_yield", lambda: yields.append(1))
        transport.writes.clear()
        message = BytesValue(value=b"m").SerializeToString()
        connection.data_received(b"".join(
            http2.frame(http2.HEADERS, http2.END_HEADERS, stream, headers_block(SHOUT))
            + http2.frame(http2.DATA, 0, stream, b"\x00" + len(message).to_bytes(4, "big") + message)
            for stream in (1, 3)))
        assert (len(transport.writes), yields) == ((2, [1]) if asks else (1, []))
        assert transport.written.count(b"M") == 2            # both answered either way


def test_sending_waits_for_the_peers_window_and_frame_size():
    raw = RawConnection()
    raw.connection.data_received(http2.frame(http2.SETTINGS, 0, 0, struct.pack(">HIHI", http2.INITIAL_WINDOW_SIZE,
                                                                               10, http2.MAX_FRAME_SIZE, 16_384)))
    raw.connection.data_received(http2.frame(http2.HEADERS, http2.END_HEADERS, 1, headers_block("/p")))
    raw.frames()

    async def scenario():
        drained = raw.connection.send_data(1, b"x" * 25)
        raw.connection.send_trailers(1, b"\x88")
        assert drained is not None and not drained.done()
        sent = [f for f in raw.frames() if f[0] == http2.DATA]
        assert [len(f[3]) for f in sent] == [10]                # the stream's window
        raw.connection.data_received(http2.frame(http2.WINDOW_UPDATE, 0, 1, struct.pack(">I", 100)))
        frames = raw.frames()
        assert [len(f[3]) for f in frames if f[0] == http2.DATA] == [15]
        assert frames[-1][:2] == (http2.HEADERS, http2.END_HEADERS | http2.END_STREAM)   # trailers after the data
        assert drained.done()
        # The connection's window (65,535 by default) bounds every stream together.
        raw.connection.data_received(http2.frame(http2.HEADERS, http2.END_HEADERS, 3, headers_block("/p")))
        raw.connection.data_received(http2.frame(http2.WINDOW_UPDATE, 0, 3, struct.pack(">I", 10**6)))
        raw.frames()
        raw.connection.send_data(3, b"y" * 70_000)
        frames = raw.frames()
        assert sum(len(f[3]) for f in frames if f[0] == http2.DATA) == 65_535 - 25
        assert max(len(f[3]) for f in frames) == 16_384
    asyncio.run(scenario())


def test_windows_given_back_as_data_is_read():
    """Each stream's receive window is replenished once half used (here 100 bytes), and
    the connection's too (never below the 65,535 it starts with)."""
    raw = RawConnection(http2.Limits(receive_window=100))
    raw.connection.data_received(http2.frame(http2.HEADERS, http2.END_HEADERS, 1, headers_block("/p")))
    raw.frames()
    raw.connection.data_received(http2.frame(http2.DATA, 0, 1, b"x" * 40))
    assert not [f for f in raw.frames() if f[0] == http2.WINDOW_UPDATE]
    raw.connection.data_received(http2.frame(http2.DATA, 0, 1, b"x" * 20))
    updates = {(f[2], int.from_bytes(f[3], "big")) for f in raw.frames() if f[0] == http2.WINDOW_UPDATE}
    assert updates == {(1, 60)}
    raw.connection.data_received(http2.frame(http2.DATA, 0, 1, b"x" * 20))     # counted afresh: 20 of 50
    assert not [f for f in raw.frames() if f[0] == http2.WINDOW_UPDATE]
    for stream in range(3, 3 + 2 * 400, 2):                      # 400 streams, 100 bytes each
        raw.connection.data_received(http2.frame(http2.HEADERS, http2.END_HEADERS, stream, headers_block("/p"))
                                     + http2.frame(http2.DATA, http2.END_STREAM, stream, b"x" * 100))
    connection_updates = [int.from_bytes(f[3], "big") for f in raw.frames() if f[0] == http2.WINDOW_UPDATE and not f[2]]
    assert connection_updates == [80 + 327 * 100]                # once over half of 65,535


def test_header_blocks_remembered_only_while_the_table_is_unchanged():
    """The same bytes name other headers once the client's table has changed."""
    from hpack import Encoder
    encoder, blocks = Encoder(), http2.HeaderBlocks()
    inserting = encoder.encode([("x-a", "1")])                 # a literal added to the table
    referencing = encoder.encode([("x-a", "1")])               # the newest entry, by index
    assert blocks.decode(inserting) == (("x-a", "1"),)
    assert blocks.decode(referencing) == (("x-a", "1"),)
    assert referencing in blocks.known and inserting not in blocks.known
    assert blocks.decode(referencing) == (("x-a", "1"),)      # from memory
    assert blocks.decode(encoder.encode([("x-b", "2")])) == (("x-b", "2"),)   # x-b is now the newest
    assert not blocks.known
    assert blocks.decode(referencing) == (("x-b", "2"),)      # the same bytes, another header


def test_megabytes_each_way_through_envoy(tmp_path):
    """Through real Envoy on the workers' HTTP/2: a 3 MB prompt whose redaction rewrites
    the whole body, to a virtual model (its upstream filter rewrites it again per
    attempt), answered by an echo of 3 MB that the worker reads back."""
    import httpx
    from gateway_stack import GatewayStack, quickstart_config

    config = quickstart_config()
    config["guardrails"]["max_scan_chars"] = 10_000_000
    # What is measured is the transport: on a loaded host the 3 MB read must not run into
    # the 1 s scan deadline and fail closed.
    config["guardrails"]["max_scan_ms"] = 60_000
    stack = GatewayStack(tmp_path, config).start()
    try:
        text = "lorem ipsum dolor sit amet " * 111_112 + "write to jane.doe@example.com"
        response = httpx.post(f"{stack.base_url}/chat/completions", timeout=60,
                              headers={"authorization": "Bearer sk-demo-alice", "x-request-id": "big-one"},
                              json={"model": "smart", "messages": [{"role": "user", "content": text}]})
        assert response.status_code == 200, response.text[:300]
        answer = response.json()["choices"][0]["message"]["content"]
        assert len(answer) > 3_000_000 and answer.endswith("write to [EMAIL]")
        received = [r for name in stack.mock_ports for r in stack.received(name)
                    if r["headers"].get("x-request-id") == response.headers["x-request-id"]]
        assert received and all("jane.doe" not in r["body"] for r in received)
        assert received[-1]["body"].count("lorem") == 111_112
        record = stack.wait_for_record("big-one")
        assert record["status"] == 200 and record["input_tokens"] > 600_000
    finally:
        stack.stop()
