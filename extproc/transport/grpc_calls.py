"""One gRPC call over the workers' HTTP/2 (grpc_h2.py serves them): the part of grpc.aio's
servicer context its handler sees, and the MESSAGES call that answers each message in
the read that brought it. What a call holds of its client's data counts in its
connection's backlog (ConnectionCalls), both bounded (http2.Limits)."""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import Coroutine
from typing import Any, Protocol, cast

import grpc
from google.protobuf.message import DecodeError

from .headers import literal
from .http2 import Connection, Limits

log = logging.getLogger("extproc.grpc_h2")

RESPONSE_HEADERS = b"\x88" + literal(b"content-type", b"application/grpc")   # :status 200 (static 8)
OK, UNKNOWN, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL = 0, 2, 8, 12, 13


def status_block(code: int, message: str = "") -> bytes:
    block = literal(b"grpc-status", str(code).encode())
    if message:                  # percent-encoded, as gRPC over HTTP/2 specifies
        block += literal(b"grpc-message", urllib.parse.quote(message[:1024], safe=" ").encode())
    return block


class Aborted(Exception):
    def __init__(self, code: int, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


class Pending:
    """The bytes a call's client sent that are not yet taken: the DATA frames' payloads as
    they came, a long one as a view of the read that brought it (http2.py), joined once
    per message as it is taken (or handed over as its pieces: `take_pieces`). A 400 KB
    message in 16 KB frames is so copied once; appended to one buffer, it would be copied
    over as the buffer grows and again as it is taken (14% of a loaded worker's CPU under
    400 KB requests, by perf). The views stay while they are at least half of the reads
    they keep alive (`unpin`)."""

    __slots__ = ("chunks", "size", "viewed")

    def __init__(self) -> None:
        self.chunks: list[bytes | memoryview] = []
        self.size = 0
        self.viewed = False                 # a view appended since the last `unpin`

    def __len__(self) -> int:
        return self.size

    def append(self, data: bytes | memoryview) -> None:
        if data:
            self.chunks.append(data)
            self.size += len(data)
            if not isinstance(data, bytes):
                self.viewed = True

    def unpin(self) -> None:
        """At a read's end: the views kept, copied when the reads they pin are more than
        twice as large as what is kept (a few frames of a read that brought others), so
        that a call never holds more than twice what its connection's backlog counts."""
        self.viewed = False
        pinned, owner = 0, None
        for chunk in self.chunks:
            if isinstance(chunk, memoryview) and chunk.obj is not owner:
                owner = chunk.obj
                pinned += len(cast(bytes, owner))       # (a read's bytes: http2.py views no other)
        if pinned > 2 * self.size:
            self.chunks = [bytes(chunk) if isinstance(chunk, memoryview) else chunk for chunk in self.chunks]

    def clear(self) -> None:
        self.chunks.clear()
        self.size = 0

    def peek(self, count: int) -> bytes:
        """The first `count` bytes (at most), left in place."""
        first = self.chunks[0] if self.chunks else b""
        if len(first) >= count:
            return bytes(first[:count])
        return b"".join(self.chunks[:count])[:count]     # (a chunk holds one byte at least)

    def take(self, count: int) -> bytes:
        """The first `count` bytes (`count` <= len(self)), taken off."""
        return b"".join(self.take_pieces(count))     # (one piece of bytes: join hands it back, uncopied)

    def take_pieces(self, count: int) -> list[bytes | memoryview]:
        """The first `count` bytes, taken off as the pieces they came in (cut where
        `count` falls), for a reader that copies out only what it keeps."""
        chunks = self.chunks
        self.size -= count
        taken: list[bytes | memoryview] = []
        while count:
            chunk = chunks[0]
            if len(chunk) <= count:
                taken.append(chunk)
                chunks.pop(0)
                count -= len(chunk)
            else:
                taken.append(chunk[:count])
                chunks[0] = chunk[count:]
                count = 0
        if self.chunks:
            # What is left may be a few bytes of the reads whose other bytes were taken:
            # the views are checked again now, not at a read that may not come for them.
            self.unpin()
        return taken


class ConnectionCalls:
    """What a call sees of the calls on its connection: the connection, what they may
    hold, and how a call leaves or runs a task. grpc_h2.CallsOnConnection is the one;
    declared here, calls need nothing of the server's module (compiled, a native base
    class keeps these attributes as quick to reach as the subclass's own)."""

    connection: Connection
    limits: Limits
    max_message: int
    backlog: int
    replies_to_hand_over: bool

    def forget(self, call: Call) -> None:
        raise NotImplementedError

    def track(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task:
        raise NotImplementedError


class Call:
    """One gRPC call: the servicer context its handler gets. The messages that have
    arrived wait in `pending` as they came, each taken off (and parsed) when its handler
    is ready for it: what a call holds is that buffer's length, counted in its
    connection's backlog (ConnectionCalls)."""

    __slots__ = ("calls", "connection", "stream_id", "metadata", "deserialize", "pieces_from", "deserialize_pieces",
                 "pending", "held", "ended",
                 "waiter", "headers_sent", "task")

    def __init__(self, calls: ConnectionCalls, stream_id: int, metadata: tuple, method: Any) -> None:
        self.calls = calls
        self.connection = calls.connection
        self.stream_id = stream_id
        self.metadata = metadata
        self.deserialize = method.deserialize                   # (grpc_h2.Method's)
        self.pieces_from: int = method.pieces_from
        self.deserialize_pieces = method.deserialize_pieces
        self.pending = Pending()            # messages arrived and not yet taken, the last maybe in part
        self.held = 0                       # len(pending) as the connection's backlog counts it
        self.ended = False                  # the client half-closed
        self.waiter: asyncio.Future | None = None
        self.headers_sent = False
        self.task: asyncio.Task | None = None

    def invocation_metadata(self) -> tuple:
        return self.metadata

    async def read(self):
        while (size := self._front()) == 0 and not self.ended:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        if size <= 0:                       # half-closed (a message cut short is dropped), or refused
            return grpc.aio.EOF
        message = self._take(size)
        self._over_backlog()                # (a message taken only lowers it)
        if isinstance(message, Aborted):
            raise message
        return message

    async def write(self, message) -> None:
        drained = self.send(message)
        if drained is not None:             # the client's window is full: wait for it
            await drained

    def send(self, message) -> asyncio.Future | None:
        """Queues `message` (its bytes, or a protobuf message) on the stream (sent at once,
        or once the client's window has room); a future that completes once it has left,
        when it waits."""
        data: bytes = message if isinstance(message, bytes) else message.SerializeToString()
        if not self.headers_sent:
            self.headers_sent = True
            self.connection.send_headers(self.stream_id, RESPONSE_HEADERS, flush=False)   # one write with the data
        return self.connection.send_data(self.stream_id, b"\x00" + len(data).to_bytes(4, "big") + data)

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        raise Aborted(code.value[0], details)

    def received(self, data: bytes | memoryview, end: bool) -> None:
        self.pending.append(data)
        if end:
            self.ended = True
        if self._over_backlog():
            return
        front = self._front()
        if front < 0:
            self._too_large()
        elif self.waiter is not None and not self.waiter.done() and (front or self.ended):
            self.waiter.set_result(None)

    def _front(self) -> int:
        """The bytes of the message at the front of `pending` once they have all arrived,
        else 0; -1 when it would be larger than max_message."""
        pending = self.pending
        if len(pending) < 5:
            return 0
        length = int.from_bytes(pending.peek(5)[1:5], "big")
        if length > self.calls.max_message:
            return -1
        return 5 + length if len(pending) >= 5 + length else 0

    def _take(self, size: int):
        """The message at the front (`size` bytes with its prefix), parsed; an Aborted for
        one that cannot be."""
        pending = self.pending
        compressed = pending.take(5)[0]
        length = size - 5
        in_pieces = 0 <= self.pieces_from <= length
        message: Any = pending.take_pieces(length) if in_pieces else pending.take(length)
        if compressed:                      # Envoy never compresses; nothing here decodes it
            return Aborted(UNIMPLEMENTED, "compressed messages are not supported")
        try:
            return self.deserialize_pieces(message) if in_pieces else self.deserialize(message)
        except DecodeError:
            return Aborted(INTERNAL, "could not parse the message")

    def _over_backlog(self) -> bool:
        """Counts what the call holds in its connection's backlog; above the backlog's
        limit the call ends RESOURCE_EXHAUSTED (where grpc would hold back the window)."""
        held = len(self.pending)
        if held == self.held:               # as good as always: each message taken whole
            return False
        calls = self.calls
        calls.backlog += held - self.held
        self.held = held
        if calls.backlog <= calls.limits.backlog:
            return False
        self.exhausted("the calls on this connection hold too much unread data")
        return True

    def _too_large(self) -> None:
        """The next message is over max_message (grpc.max_receive_message_length's
        RESOURCE_EXHAUSTED): the call ends before its bytes arrive."""
        self.exhausted(f"a message larger than {self.calls.max_message} bytes")

    def exhausted(self, details: str) -> None:
        self.finish(RESOURCE_EXHAUSTED, details)
        self.calls.forget(self)
        self.cancel()

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

    def hand_over(self) -> bool:
        """Whether its last reply should reach the client before the rest of the read is
        handled (grpc_h2.HAND_OVER_BELOW_CALLS), or may wait for the read's end."""
        ...

    def closed(self) -> None: ...


class MessageCall(Call):
    """A MESSAGES call. Each message goes to the handler's `message()` in the read that
    brought it, which returns the reply (or None: no reply), or a coroutine when the
    answer has to wait (a Redis round trip, a plugin's call): that one runs in a task,
    and the messages after it queue behind it. The handler's `closed()` runs once, when
    the call is over: ended with a status, or cancelled (after a waiting message's
    coroutine has unwound)."""

    __slots__ = ("handler", "over", "waiting")

    def __init__(self, calls: ConnectionCalls, stream_id: int, metadata: tuple, method: Any) -> None:
        super().__init__(calls, stream_id, metadata, method)
        self.handler: MessageHandler | None = None     # set once the method's handler is made
        self.over = False
        self.waiting: Coroutine | None = None           # an answer's coroutine, until its task runs it

    def received(self, data: bytes | memoryview, end: bool) -> None:
        self.pending.append(data)
        if end:
            self.ended = True
        self.pump()

    def pump(self) -> None:
        handler = self.handler
        if handler is None or self.over:    # making it failed, which ended the call; or it is over
            return
        while self.task is None and not self.over:
            size = self._front()
            if size <= 0:
                break
            message = self._take(size)
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
            # A reply's bytes, nearly always: asyncio.iscoroutine's ABC check costs ~1% of a
            # loaded worker's time when asked of every reply.
            if type(result) is not bytes and asyncio.iscoroutine(result):
                self.waiting = result
                self.task = self.calls.track(self._rest())
                self.task.add_done_callback(self._task_done)
            elif result is not None:
                self.send(result)
                if handler.hand_over():
                    self.calls.replies_to_hand_over = True
        if self.over or self._over_backlog():
            return
        front = self._front()
        if front < 0:
            self._too_large()
        elif self.ended and self.task is None and front == 0:
            self.end(OK)                    # the client half-closed and has every answer

    async def _rest(self) -> None:
        answer, self.waiting = self.waiting, None
        if answer is None:
            return
        try:
            result = await answer
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

    def _task_done(self, task: asyncio.Task) -> None:
        """A cancelled answer is over once its coroutine has unwound; one cancelled before
        its task began never ran (and is closed here): either way the handler hears it."""
        if task.cancelled():
            self.task = None                # (it holds the cancellation, whose frames hold the handler)
            if self.waiting is not None:
                self.waiting.close()
                self.waiting = None
            self._over()

    def end(self, code: int, details: str = "") -> None:
        self.finish(code, details)
        self._over()

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()              # _task_done tells the handler once the coroutine unwound
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
        handler, self.handler = self.handler, None
        # The handler holds this call (its context) and the call held the handler: a cycle
        # only Python's full collection frees. Under agent histories that kept ~100 calls'
        # bodies alive (each received, parsed and its texts: megabytes) until it ran, and a
        # worker's memory rose by hundreds of MB. Let go, the call is freed when it ends.
        if handler is not None:
            try:
                handler.closed()
            except Exception:
                log.exception("unexpected error closing stream %d", self.stream_id)
