"""gRPC calls over transport/http2.py, for the workers' Unix socket (`server.transport: h2`).

Two shapes of handler:
- UNARY, CLIENT_STREAM, BIDI: the ones grpc.aio serves (the cut-stream access log,
  Health's Check), run in a task per call, seeing the part of grpc.aio's servicer
  context they use: `invocation_metadata()`, `read()` (a message, or `grpc.aio.EOF`
  once the client half-closed), `write()`, `abort()`. A stream the client resets
  cancels its handler's task, as grpc.aio does.
- MESSAGES (Envoy's Process streams): an object per call whose `message(request)`
  answers each message in the read that brought it, and whose `closed()` hears that
  the stream is over (MessageCall). No task, future or turn of the loop per message
  (bench/README.md "Messages answered as they are read").
"""

from __future__ import annotations

import asyncio
import logging
import os
import urllib.parse
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import grpc
from google.protobuf.message import DecodeError

from . import http2

log = logging.getLogger("extproc.grpc_h2")

RESPONSE_HEADERS = b"\x88" + http2.literal(b"content-type", b"application/grpc")   # :status 200 (static 8)
OK, UNKNOWN, UNIMPLEMENTED, INTERNAL = 0, 2, 12, 13
# The request headers that are HTTP/2's or gRPC's own, not the caller's metadata.
_NOT_METADATA = frozenset(("content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding",
                           "user-agent"))
# With at most this many calls open, a worker that has replies ready sends them and
# yields the core before it handles the next message of the same read (http2.py):
# Envoy, on the same core, forwards them meanwhile. Bursts of 8 calls in step (bench
# "in step" row): p50 6.5-6.7 -> 4.3-4.4 ms; arrivals spread, one connection, and full
# load (where more calls are open) unchanged within noise (bench/README.md, "Messages
# answered as they are read").
HAND_OVER_BELOW_CALLS = 8
STOP_POLL = 0.05                 # how often a stop looks whether the calls in flight have ended
UNARY, CLIENT_STREAM, BIDI, MESSAGES = "unary", "client_stream", "bidi", "messages"


class Method(NamedTuple):
    # UNARY, CLIENT_STREAM, BIDI: async (request or None, call) -> response or None;
    # MESSAGES: (call) -> a MessageHandler (MessageCall)
    handler: Callable
    deserialize: Callable[[bytes], Any]
    kind: str                    # UNARY: one message in; CLIENT_STREAM: one out; BIDI: read/write


def status_block(code: int, message: str = "") -> bytes:
    block = http2.literal(b"grpc-status", str(code).encode())
    if message:                  # percent-encoded, as gRPC over HTTP/2 specifies
        block += http2.literal(b"grpc-message", urllib.parse.quote(message[:1024], safe=" ").encode())
    return block


class Aborted(Exception):
    def __init__(self, code: int, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


class Call:
    """One gRPC call: the servicer context its handler gets."""

    __slots__ = ("calls", "connection", "stream_id", "metadata", "deserialize", "messages", "pending", "ended",
                 "waiter", "headers_sent", "task")

    def __init__(self, calls: CallsOnConnection, stream_id: int, metadata: tuple, deserialize) -> None:
        self.calls = calls
        self.connection = calls.connection
        self.stream_id = stream_id
        self.metadata = metadata
        self.deserialize = deserialize
        self.messages: deque = deque()
        self.pending = bytearray()          # a message's bytes not all arrived yet
        self.ended = False                  # the client half-closed
        self.waiter: asyncio.Future | None = None
        self.headers_sent = False
        self.task: asyncio.Task | None = None

    def invocation_metadata(self) -> tuple:
        return self.metadata

    async def read(self):
        if not self.messages and not self.ended:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        if self.messages:
            message = self.messages.popleft()
            if isinstance(message, Aborted):
                raise message
            return message
        return grpc.aio.EOF

    async def write(self, message) -> None:
        drained = self.send(message)
        if drained is not None:             # the client's window is full: wait for it
            await drained

    def send(self, message) -> asyncio.Future | None:
        """Queues `message` on the stream (sent at once, or once the client's window
        has room); a future that completes once it has left, when it waits."""
        data = message.SerializeToString()
        if not self.headers_sent:
            self.headers_sent = True
            self.connection.send_headers(self.stream_id, RESPONSE_HEADERS, flush=False)   # one write with the data
        return self.connection.send_data(self.stream_id, b"\x00" + len(data).to_bytes(4, "big") + data)

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        raise Aborted(code.value[0], details)

    def received(self, data: bytes, end: bool) -> None:
        pending = self.pending
        pending += data
        while len(pending) >= 5:
            length = int.from_bytes(pending[1:5], "big")
            if len(pending) < 5 + length:
                break
            if pending[0]:                  # compressed: Envoy never sends it; nothing here decodes it
                self.messages.append(Aborted(UNIMPLEMENTED, "compressed messages are not supported"))
            else:
                try:
                    self.messages.append(self.deserialize(bytes(pending[5:5 + length])))
                except DecodeError:
                    self.messages.append(Aborted(INTERNAL, "could not parse the message"))
            del pending[:5 + length]
        if end:
            self.ended = True
        if self.waiter is not None and not self.waiter.done() and (self.messages or self.ended):
            self.waiter.set_result(None)

    def finish(self, code: int, details: str = "") -> None:
        block = status_block(code, details)
        self.connection.send_trailers(self.stream_id, block if self.headers_sent else RESPONSE_HEADERS + block)

    def cancel(self) -> None:
        """The client reset the stream, the connection was lost, or a stop's grace ran out."""
        if self.task is not None:
            self.task.cancel()


class MessageHandler(Protocol):
    def message(self, request: Any) -> Any:
        """The reply, None (no reply), or a coroutine of the reply when it has to wait."""
        ...

    def closed(self) -> None: ...


class MessageCall(Call):
    """A MESSAGES call. Each message goes to the handler's `message()` in the read that
    brought it, which returns the reply (or None: no reply), or a coroutine when the
    answer has to wait (a Redis round trip, a plugin's call): that one runs in a task,
    and the messages after it queue behind it. The handler's `closed()` runs once, when
    the call is over: ended with a status, or cancelled (after a waiting message's
    coroutine has unwound)."""

    __slots__ = ("handler", "over")

    def __init__(self, calls: CallsOnConnection, stream_id: int, metadata: tuple, deserialize) -> None:
        super().__init__(calls, stream_id, metadata, deserialize)
        self.handler: MessageHandler | None = None     # set once the method's handler is made
        self.over = False

    def received(self, data: bytes, end: bool) -> None:
        super().received(data, end)
        self.pump()

    def pump(self) -> None:
        handler = self.handler
        if handler is None:             # making it failed, which ended the call
            return
        while self.messages and self.task is None and not self.over:
            message = self.messages.popleft()
            if isinstance(message, Aborted):
                self.end(message.code, message.details)
                return
            try:
                result = handler.message(message)
            except Aborted as aborted:
                self.end(aborted.code, aborted.details)
                return
            except Exception:
                self._failed()
                return
            if asyncio.iscoroutine(result):
                self.task = self.calls.server.track(self._rest(result))
            elif result is not None:
                self.send(result)
        if self.ended and not self.messages and self.task is None and not self.over:
            self.end(OK)                    # the client half-closed and has every answer

    async def _rest(self, answer) -> None:
        try:
            result = await answer
        except asyncio.CancelledError:
            self._over()
            raise
        except Aborted as aborted:
            self.task = None
            self.end(aborted.code, aborted.details)
            return
        except Exception:
            self.task = None
            self._failed()
            return
        self.task = None
        if result is not None:
            self.send(result)
        self.pump()

    def end(self, code: int, details: str = "") -> None:
        self.finish(code, details)
        self._over()

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()              # _rest tells the handler once the coroutine unwound
        else:
            self._over()

    def _failed(self) -> None:
        log.exception("unexpected error answering stream %d", self.stream_id)
        self.end(UNKNOWN, "unexpected error in the service")

    def _over(self) -> None:
        if self.over:
            return
        self.over = True
        self.calls.forget(self)
        if self.handler is not None:
            try:
                self.handler.closed()
            except Exception:
                log.exception("unexpected error closing stream %d", self.stream_id)


class CallsOnConnection:
    """The http2.Connection's application: each stream a Call (run in a task of its own,
    but for MESSAGES ones)."""

    def __init__(self, server: GrpcServer, connection: http2.Connection) -> None:
        self.server = server
        self.connection = connection
        self.calls: dict[int, Call] = {}

    def opened(self, stream_id: int, headers) -> None:
        path, metadata = "", []
        for name, value in headers:
            if name == ":path":
                path = value
            elif name[0] != ":" and name not in _NOT_METADATA:
                metadata.append((name, value))
        method = self.server.methods.get(path)
        if method is None:
            self.connection.send_headers(stream_id, RESPONSE_HEADERS + status_block(UNIMPLEMENTED, path), end=True)
            return
        if method.kind == MESSAGES:
            message_call = MessageCall(self, stream_id, tuple(metadata), method.deserialize)
            self.calls[stream_id] = message_call
            try:
                message_call.handler = method.handler(message_call)
            except Exception:
                message_call._failed()
            return
        call = Call(self, stream_id, tuple(metadata), method.deserialize)
        self.calls[stream_id] = call
        call.task = self.server.track(self._run(call, method))

    def hand_over(self) -> bool:
        return self.server.open_calls() <= HAND_OVER_BELOW_CALLS

    def data(self, stream_id: int, data: bytes, end: bool) -> None:
        call = self.calls.get(stream_id)
        if call is not None:
            call.received(data, end)

    def reset(self, stream_id: int) -> None:
        call = self.calls.pop(stream_id, None)
        if call is not None:
            call.cancel()

    def lost(self) -> None:
        self.server.connections.discard(self)
        calls, self.calls = self.calls, {}
        for call in calls.values():
            call.cancel()

    def cancel_all(self) -> None:
        """A stop's grace is over: every call still open is reset and cancelled."""
        for call in list(self.calls.values()):
            self.connection.reset_stream(call.stream_id)
            self.forget(call)
            call.cancel()

    def forget(self, call: Call) -> None:
        if self.calls.get(call.stream_id) is call:
            del self.calls[call.stream_id]

    async def _run(self, call: Call, method: Method) -> None:
        try:
            request = None
            if method.kind == UNARY:
                request = await call.read()
                if request is grpc.aio.EOF:
                    raise Aborted(INTERNAL, "no request message")
            response = await method.handler(request, call)
            if method.kind != BIDI and response is not None:
                await call.write(response)
            call.finish(OK)
        except Aborted as aborted:
            call.finish(aborted.code, aborted.details)
        except Exception:
            log.exception("unexpected error in %s", method.handler.__qualname__)
            call.finish(UNKNOWN, "unexpected error in the service")
        finally:
            self.forget(call)


class GrpcServer:
    """The gRPC methods `methods` (by path) on a Unix socket, on this event loop."""

    def __init__(self, methods: dict[str, Method]) -> None:
        self.methods = methods
        self.connections: set[CallsOnConnection] = set()     # one per client connection
        self.tasks: set[asyncio.Task] = set()
        self._listener: asyncio.AbstractServer | None = None
        self._path = ""

    def _connection(self, connection: http2.Connection) -> CallsOnConnection:
        calls = CallsOnConnection(self, connection)
        self.connections.add(calls)
        return calls

    def track(self, coroutine) -> asyncio.Task:
        """A call's task, kept until done (a stop waits for them)."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def open_calls(self) -> int:
        return sum(len(calls.calls) for calls in self.connections)

    async def start(self, path: str) -> None:
        if os.path.exists(path):
            os.unlink(path)
        self._path = path
        self._listener = await asyncio.get_running_loop().create_unix_server(
            lambda: http2.Connection(self._connection), path)

    async def stop(self, grace: float) -> None:
        """Take no new connection or stream; give the calls in flight `grace` seconds,
        then reset and cancel them; close the connections and remove the socket."""
        if self._listener is not None:
            self._listener.close()
        for calls in list(self.connections):
            calls.connection.goaway()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.open_calls() and loop.time() < deadline:
            await asyncio.sleep(STOP_POLL)
        for calls in list(self.connections):
            calls.cancel_all()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=1)
        for calls in list(self.connections):
            calls.connection.close()
        if self._path and os.path.exists(self._path):
            os.unlink(self._path)
