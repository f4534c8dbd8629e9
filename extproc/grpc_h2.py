"""gRPC calls over extproc/http2.py, for the workers' Unix socket (`server.transport: h2`).

The handlers are the ones grpc.aio serves (`Processor.Process`, the cut-stream access
log, Health's Check) and see the part of grpc.aio's servicer context they use:
`invocation_metadata()`, `read()` (a message, or `grpc.aio.EOF` once the client
half-closed), `write()`, `abort()`. A stream the client resets cancels its handler's
task, as grpc.aio does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import urllib.parse
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

import grpc
from google.protobuf.message import DecodeError

from . import http2

log = logging.getLogger("extproc.grpc_h2")

RESPONSE_HEADERS = b"\x88" + http2.literal(b"content-type", b"application/grpc")   # :status 200 (static 8)
OK, UNKNOWN, UNIMPLEMENTED, INTERNAL = 0, 2, 12, 13
# The request headers that are HTTP/2's or gRPC's own, not the caller's metadata.
_NOT_METADATA = frozenset(("content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding",
                           "user-agent"))
UNARY, CLIENT_STREAM, BIDI = "unary", "client_stream", "bidi"


class Method(NamedTuple):
    handler: Callable            # async (request or None, call) -> response or None
    deserialize: Callable[[bytes], object]
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

    __slots__ = ("connection", "stream_id", "metadata", "deserialize", "messages", "pending", "ended",
                 "waiter", "headers_sent", "task")

    def __init__(self, connection: http2.Connection, stream_id: int, metadata: tuple, deserialize) -> None:
        self.connection = connection
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
        data = message.SerializeToString()
        if not self.headers_sent:
            self.headers_sent = True
            self.connection.send_headers(self.stream_id, RESPONSE_HEADERS, flush=False)   # one write with the data
        drained = self.connection.send_data(self.stream_id, b"\x00" + len(data).to_bytes(4, "big") + data)
        if drained is not None:             # the client's window is full: wait for it
            await drained

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


class CallsOnConnection:
    """The http2.Connection's application: each stream a Call run in a task of its own."""

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
        call = Call(self.connection, stream_id, tuple(metadata), method.deserialize)
        self.calls[stream_id] = call
        call.task = asyncio.get_running_loop().create_task(self._run(call, method))
        self.server.tasks.add(call.task)
        call.task.add_done_callback(self.server.tasks.discard)

    def data(self, stream_id: int, data: bytes, end: bool) -> None:
        call = self.calls.get(stream_id)
        if call is not None:
            call.received(data, end)

    def reset(self, stream_id: int) -> None:
        call = self.calls.pop(stream_id, None)
        if call is not None and call.task is not None:
            call.task.cancel()

    def lost(self) -> None:
        self.server.connections.discard(self.connection)
        calls, self.calls = self.calls, {}
        for call in calls.values():
            if call.task is not None:
                call.task.cancel()

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
        except asyncio.CancelledError:
            if self.calls.get(call.stream_id) is call:      # cancelled by a stop, not by the client
                self.connection.reset_stream(call.stream_id)
            raise
        except Exception:
            log.exception("unexpected error in %s", method.handler.__qualname__)
            call.finish(UNKNOWN, "unexpected error in the service")
        finally:
            self.calls.pop(call.stream_id, None)


class GrpcServer:
    """The gRPC methods `methods` (by path) on a Unix socket, on this event loop."""

    def __init__(self, methods: dict[str, Method]) -> None:
        self.methods = methods
        self.connections: set[http2.Connection] = set()
        self.tasks: set[asyncio.Task] = set()
        self._listener: asyncio.AbstractServer | None = None
        self._path = ""

    def _connection(self, connection: http2.Connection) -> CallsOnConnection:
        self.connections.add(connection)
        return CallsOnConnection(self, connection)

    async def start(self, path: str) -> None:
        if os.path.exists(path):
            os.unlink(path)
        self._path = path
        self._listener = await asyncio.get_running_loop().create_unix_server(
            lambda: http2.Connection(self._connection), path)

    async def stop(self, grace: float) -> None:
        """Take no new connection or stream; give the calls in flight `grace` seconds,
        then cancel them; close the connections and remove the socket."""
        if self._listener is not None:
            self._listener.close()
        for connection in list(self.connections):
            connection.goaway()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=grace)
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=1)
        for connection in list(self.connections):
            connection.close()
        if self._path and os.path.exists(self._path):
            os.unlink(self._path)
