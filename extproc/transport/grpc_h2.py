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
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import grpc

from . import http2
from .grpc_calls import (INTERNAL, OK, RESPONSE_HEADERS, UNIMPLEMENTED, UNKNOWN, Aborted, Call, ConnectionCalls,
                         MessageCall, status_block)

__all__ = ["BIDI", "CLIENT_STREAM", "MESSAGES", "OK", "UNARY", "Aborted", "Call", "CallsOnConnection", "GrpcServer",
           "MessageCall", "Method", "status_block"]

log = logging.getLogger("extproc.grpc_h2")

# The request headers that are HTTP/2's or gRPC's own, not the caller's metadata.
_NOT_METADATA = frozenset(("content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding",
                           "user-agent"))
# With at most this many calls open, a worker that has replies ready sends them and
# yields the core before it handles the next message of the same read (http2.py):
# Envoy, on the same core, forwards them meanwhile. Bursts of 8 calls in step (bench
# "in step" row): p50 6.5-6.7 -> 4.3-4.4 ms; arrivals spread, one connection, and full
# load (where more calls are open) unchanged within noise (bench/README.md, "Messages
# answered as they are read"). Only replies whose handler asks for it are handed over
# (MessageHandler.hand_over): each hand-over is a switch to Envoy and back, ~30 µs of
# the worker's CPU with the caches it loses; a streamed chunk's reply, a token on its
# way, gains nothing worth that (bench/dialects.py, long streams: 79 -> 51-56 µs per event).
HAND_OVER_BELOW_CALLS = 8
STOP_POLL = 0.05                 # how often a stop looks whether the calls in flight have ended
TICK = 1.0                       # how often the connections look at their deadlines (http2.Connection.tick)
UNARY, CLIENT_STREAM, BIDI, MESSAGES = "unary", "client_stream", "bidi", "messages"


class Method(NamedTuple):
    # UNARY, CLIENT_STREAM, BIDI: async (request or None, call) -> response or None;
    # MESSAGES: (call) -> a MessageHandler (MessageCall)
    handler: Callable
    deserialize: Callable[[bytes], Any]
    kind: str                    # UNARY: one message in; CLIENT_STREAM: one out; BIDI: read/write
    # Messages of at least `pieces_from` bytes (-1: none) go to `deserialize_pieces` as the
    # pieces they came in (bytes and views of the reads: it copies out what it keeps).
    pieces_from: int = -1
    deserialize_pieces: Any = None          # Callable[[list[bytes | memoryview]], Any]


class CallsOnConnection(ConnectionCalls):
    """The http2.Connection's application: each stream a Call (run in a task of its own,
    but for MESSAGES ones)."""

    def __init__(self, server: GrpcServer, connection: http2.Connection) -> None:
        self.server = server
        self.connection = connection
        self.limits = server.limits
        self.max_message = server.limits.max_message
        self.calls: dict[int, Call] = {}
        self.backlog = 0                    # bytes its calls hold, arrived and not yet handled
        self.replies_to_hand_over = False   # a reply waiting to leave asks to be handed over
        self.viewed: list[Call] = []        # the calls handed views of the read (Pending.unpin)

    def opened(self, stream_id: int, headers) -> None:
        path, metadata = "", []
        for name, value in headers:
            if name == ":path":
                path = value
            elif name[:1] != ":" and name not in _NOT_METADATA:     # (a name may be empty)
                metadata.append((name, value))
        method = self.server.methods.get(path)
        if method is None:
            # (the path echoed only in part: a short block must not make a long answer)
            self.connection.send_headers(stream_id, RESPONSE_HEADERS + status_block(UNIMPLEMENTED, path[:100]),
                                         end=True)
            return
        if method.kind == MESSAGES:
            message_call = MessageCall(self, stream_id, tuple(metadata), method)
            self.calls[stream_id] = message_call
            try:
                message_call.handler = method.handler(message_call)
            except Exception:
                message_call._failed()
            return
        call = Call(self, stream_id, tuple(metadata), method)
        self.calls[stream_id] = call
        call.task = self.server.track(self._run(call, method))

    def hand_over(self) -> bool:
        """Asked with replies waiting to leave: they leave at once when one of them asks
        and few calls are open; otherwise they wait for the read's end (or the next ask)."""
        if not self.replies_to_hand_over:
            return False
        self.replies_to_hand_over = False
        return self.server.open_calls() <= HAND_OVER_BELOW_CALLS

    def data(self, stream_id: int, data: bytes | memoryview, end: bool) -> None:
        call = self.calls.get(stream_id)
        if call is not None:
            call.received(data, end)
            if call.pending.viewed and (not self.viewed or self.viewed[-1] is not call):
                self.viewed.append(call)

    def read_done(self) -> None:
        if self.viewed:
            for call in self.viewed:
                if call.pending.viewed:
                    call.pending.unpin()
            self.viewed.clear()

    def reset(self, stream_id: int) -> None:
        call = self.calls.pop(stream_id, None)
        if call is not None:
            self.forget(call)               # (what it held)
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

    def track(self, coroutine) -> asyncio.Task:
        return self.server.track(coroutine)

    def forget(self, call: Call) -> None:
        """The call is over: it leaves the connection, and so does what it held."""
        if self.calls.get(call.stream_id) is call:
            del self.calls[call.stream_id]
        if call.held:
            self.backlog -= call.held
            call.held = 0
            call.pending.clear()

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
    """The gRPC methods `methods` (by path) on a Unix socket, on this event loop; what
    each connection lets its client use: `limits`."""

    def __init__(self, methods: dict[str, Method], limits: http2.Limits | None = None) -> None:
        self.methods = methods
        self.limits = limits if limits is not None else http2.Limits()
        self.connections: set[CallsOnConnection] = set()     # one per client connection
        self.tasks: set[asyncio.Task] = set()
        self.tick = TICK
        self._listener: asyncio.AbstractServer | None = None
        self._ticker: asyncio.Task | None = None
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
            lambda: http2.Connection(self._connection, self.limits), path)
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            now = time.monotonic()
            for calls in list(self.connections):
                calls.connection.tick(now)

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
        if self._ticker is not None:
            self._ticker.cancel()
        if self._path and os.path.exists(self._path):
            os.unlink(self._path)
