"""HTTP/2 on the event loop, as Envoy's gRPC client speaks it: the workers' transport
when `server.transport: h2` (the default; `grpc` serves the same methods with grpc.aio).

Why not grpc.aio: it hands every message across two or three threads (gRPC's poller,
its completion queue, the event loop), ~80 µs of CPU a message and a wake-up each way.
Here the loop reads the socket itself, and every frame read in one `data_received`
is answered with one write. The do-nothing floor (bench/floor.py --transport both):
servicer CPU per JSON request 274 → 40 µs, 1950 → 4456 req/s on one core.

Scope: the server side of one trusted client over a Unix socket. Header blocks are
decoded with `hpack` (python-hyper's; the client's dynamic table matters); the
server's own are literals that never touch its table, so no encoder state is kept.
Flow control is kept both ways; priorities are ignored (RFC 9113 deprecates them).
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections import deque
from collections.abc import Callable
from typing import Protocol

from hpack import Decoder
from hpack.exceptions import HPACKError

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20
MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE = 3, 4, 5
NO_ERROR, PROTOCOL_ERROR, REFUSED_STREAM, CANCEL = 0, 1, 7, 8
MAX_WINDOW = 2**31 - 1
RECEIVE_WINDOW = MAX_WINDOW          # advertised for the connection and each stream
DEFAULT_WINDOW, DEFAULT_FRAME = 65_535, 16_384


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + struct.pack(">I", stream) + payload


def literal(name: bytes, value: bytes) -> bytes:
    """An HPACK literal header field without indexing, new name (RFC 7541 6.2.2)."""
    return b"\x00" + _length(name) + name + _length(value) + value


def _length(data: bytes) -> bytes:
    """An HPACK string length: 7-bit prefix integer, no Huffman (RFC 7541 5.1)."""
    size = len(data)
    if size < 127:
        return bytes((size,))
    out, size = bytearray((127,)), size - 127
    while size >= 128:
        out.append(size % 128 + 128)
        size //= 128
    out.append(size)
    return bytes(out)


class HeaderBlocks:
    """hpack's decoder, remembering what a block decoded to while the client's dynamic
    table stays the same. Envoy opens every ext_proc stream with the same block (its
    `:path` a literal that is never indexed, the rest table references): ~30 µs a
    decode with hpack, a dict lookup here. A block that changed the table is never
    remembered, and every change forgets the blocks before it (their indices may now
    name other entries)."""

    LIMIT = 64

    def __init__(self) -> None:
        self.decoder = Decoder()
        self.known: dict[bytes, tuple] = {}

    def decode(self, block: bytes) -> tuple:
        headers = self.known.get(block)
        if headers is not None:
            return headers
        before = self._table_state()
        headers = tuple(self.decoder.decode(block))
        if self._table_state() != before:
            self.known.clear()
        elif len(self.known) < self.LIMIT:
            self.known[block] = headers
        return headers

    def _table_state(self) -> tuple:
        """Changes with every insertion (at the front: a new object while the old lives)
        and every size update."""
        table = self.decoder.header_table
        entries = table.dynamic_entries
        return id(entries[0]) if entries else None, len(entries), table.maxsize


class Stream:
    """One stream's sending side: what waits for the peer's window."""

    __slots__ = ("id", "window", "queued", "drained", "closing", "unacknowledged")

    def __init__(self, stream_id: int, window: int) -> None:
        self.id = stream_id
        self.window = window
        self.unacknowledged = 0                              # DATA bytes read since its last WINDOW_UPDATE
        self.queued: deque[bytes] = deque()                  # data not yet sent
        self.drained: asyncio.Future | None = None
        self.closing = b""                                   # a trailers block sent once queued data is out


class Application(Protocol):
    """What a Connection tells of its streams; it answers with the Connection's
    `send_headers`, `send_data` and `send_trailers`."""

    def opened(self, stream_id: int, headers: tuple) -> None: ...  # (name, value) pairs
    def data(self, stream_id: int, data: bytes, end: bool) -> None: ...
    def reset(self, stream_id: int) -> None: ...
    def lost(self) -> None: ...

    def hand_over(self) -> bool:
        """Whether to give the client the core between the messages of one read."""
        ...


class Connection(asyncio.Protocol):
    """One client connection, its streams told to the Application that
    `application_for(connection)` returns."""

    def __init__(self, application_for: Callable[[Connection], Application]) -> None:
        self.app = application_for(self)
        self.buffer = bytearray()
        self.preface_seen = False
        self.header_blocks = HeaderBlocks()
        self.header_block: tuple[int, int, bytearray] | None = None  # (stream, flags, block) awaiting CONTINUATION
        self.streams: dict[int, Stream] = {}
        self.peer_window = DEFAULT_WINDOW       # the connection's send window
        self.peer_initial = DEFAULT_WINDOW      # each new stream's
        self.peer_frame = DEFAULT_FRAME
        self.last_stream = 0
        self.unacknowledged = 0                 # DATA bytes read since our last WINDOW_UPDATE
        self.going_away = False
        self.out: list[bytes] = []              # frames to write when this turn of reading ends
        self.reading = False                    # inside data_received: one write at its end
        self.transport: asyncio.Transport | None = None

    # --- reading -------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        settings = struct.pack(">HIHI", MAX_CONCURRENT_STREAMS, 1_000_000, INITIAL_WINDOW_SIZE, RECEIVE_WINDOW)
        transport.write(frame(SETTINGS, 0, 0, settings)
                        + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", RECEIVE_WINDOW - DEFAULT_WINDOW)))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.preface_seen:
            if len(buffer) < len(PREFACE):
                return
            if buffer[:len(PREFACE)] != PREFACE:      # a connection error (RFC 9113 3.4)
                self.close(PROTOCOL_ERROR)
                return
            del buffer[:len(PREFACE)]
            self.preface_seen = True
        offset, size = 0, len(buffer)
        self.reading = True
        try:
            while size - offset >= 9:
                length = int.from_bytes(buffer[offset:offset + 3], "big")
                if size - offset - 9 < length:
                    break
                kind, flags = buffer[offset + 3], buffer[offset + 4]
                if self.out and kind <= HEADERS and self.app.hand_over():
                    # Before the next message (DATA, HEADERS) is handled, the replies so far
                    # leave and the core goes to the client (Envoy shares it): a burst is
                    # then answered call by call, not all at the read's end.
                    self.flush()
                    os.sched_yield()
                stream = int.from_bytes(buffer[offset + 5:offset + 9], "big") & MAX_WINDOW
                payload = bytes(buffer[offset + 9:offset + 9 + length])
                offset += 9 + length
                self._frame(kind, flags, stream, payload)
        except (HPACKError, ValueError, IndexError):
            self.reading = False
            self.close(PROTOCOL_ERROR)
            return
        self.reading = False
        del buffer[:offset]
        if self.unacknowledged > RECEIVE_WINDOW // 2:
            self.out.append(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self.unacknowledged)))
            self.unacknowledged = 0
        self.flush()

    def _frame(self, kind: int, flags: int, stream: int, payload: bytes) -> None:
        if self.header_block is not None and kind != CONTINUATION:
            raise ValueError("a header block interrupted")
        if kind == DATA:
            length = len(payload)                       # padding included: it counts against windows
            self.unacknowledged += length
            if flags & PADDED:
                payload = payload[1:len(payload) - payload[0]]
            if (open_stream := self.streams.get(stream)) is not None:
                open_stream.unacknowledged += length
                if open_stream.unacknowledged > RECEIVE_WINDOW // 2:      # a stream of over 1 GB
                    self.out.append(frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", open_stream.unacknowledged)))
                    open_stream.unacknowledged = 0
                self.app.data(stream, payload, bool(flags & END_STREAM))
        elif kind == HEADERS:
            if flags & PADDED:
                payload = payload[1:len(payload) - payload[0]]
            if flags & PRIORITY_FLAG:
                payload = payload[5:]
            self._header_block(stream, flags, bytearray(payload))
        elif kind == CONTINUATION:
            if self.header_block is None or self.header_block[0] != stream:
                raise ValueError("CONTINUATION out of place")
            first_flags, block = self.header_block[1], self.header_block[2]
            block.extend(payload)
            self._header_block(stream, first_flags | (flags & END_HEADERS), block)
        elif kind == RST_STREAM:
            if self.streams.pop(stream, None) is not None:
                self.app.reset(stream)
        elif kind == SETTINGS:
            if not flags & ACK:
                self._settings(payload)
        elif kind == PING:
            if not flags & ACK:
                self.out.append(frame(PING, ACK, 0, payload))
        elif kind == GOAWAY:
            self.going_away = True          # the streams open go on; Envoy closes when done
        elif kind == WINDOW_UPDATE:
            self._window_update(stream, int.from_bytes(payload[:4], "big") & MAX_WINDOW)
        # PRIORITY, PUSH_PROMISE (never sent to a server) and unknown types: ignored

    def _header_block(self, stream: int, flags: int, block: bytearray) -> None:
        if not flags & END_HEADERS:
            self.header_block = (stream, flags, block)
            return
        self.header_block = None
        headers = self.header_blocks.decode(bytes(block))     # always: it keeps the client's table
        if stream in self.streams:                       # trailers: an end of stream
            if flags & END_STREAM:
                self.app.data(stream, b"", True)
            return
        if stream <= self.last_stream or self.going_away:
            self.out.append(frame(RST_STREAM, 0, stream, struct.pack(">I", REFUSED_STREAM)))
            return
        self.last_stream = stream
        self.streams[stream] = Stream(stream, self.peer_initial)
        self.app.opened(stream, headers)
        if flags & END_STREAM and stream in self.streams:
            self.app.data(stream, b"", True)

    def _settings(self, payload: bytes) -> None:
        for offset in range(0, len(payload) - 5, 6):
            key, value = struct.unpack_from(">HI", payload, offset)
            if key == INITIAL_WINDOW_SIZE:
                for stream in self.streams.values():
                    stream.window += value - self.peer_initial
                self.peer_initial = value
            elif key == MAX_FRAME_SIZE:
                self.peer_frame = value
            # HEADER_TABLE_SIZE needs nothing: this server's blocks never use the table
        self.out.append(frame(SETTINGS, ACK, 0))
        self._send_queued()

    def _window_update(self, stream_id: int, increment: int) -> None:
        if stream_id == 0:
            self.peer_window += increment
        elif (stream := self.streams.get(stream_id)) is not None:
            stream.window += increment
        self._send_queued()

    def connection_lost(self, exc) -> None:
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            if stream.drained is not None and not stream.drained.done():
                stream.drained.cancel()
        self.app.lost()

    # --- writing -------------------------------------------------------------------

    def send_headers(self, stream_id: int, block: bytes, end: bool = False, flush: bool = True) -> None:
        """`flush=False`: the headers leave with the next write (a message right behind them)."""
        if stream_id in self.streams:
            self.out.append(frame(HEADERS, END_HEADERS | (END_STREAM if end else 0), stream_id, block))
            if end:
                del self.streams[stream_id]
            if flush:
                self._wrote()

    def send_data(self, stream_id: int, data: bytes) -> asyncio.Future | None:
        """Queue `data` on the stream; a future that completes once it has all left when
        the peer's window holds it back, else None."""
        stream = self.streams.get(stream_id)
        if stream is None:
            return None
        stream.queued.append(data)
        self._send_stream(stream)
        self._wrote()
        if stream.queued:
            if stream.drained is None or stream.drained.done():
                stream.drained = asyncio.get_running_loop().create_future()
            return stream.drained
        return None

    def send_trailers(self, stream_id: int, block: bytes) -> None:
        """End the stream with `block`, after whatever data still waits for the window."""
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        if stream.queued:
            stream.closing = block
        else:
            self.send_headers(stream_id, block, end=True)

    def reset_stream(self, stream_id: int, code: int = CANCEL) -> None:
        if self.streams.pop(stream_id, None) is not None:
            self.out.append(frame(RST_STREAM, 0, stream_id, struct.pack(">I", code)))
            self._wrote()

    def _send_stream(self, stream: Stream) -> None:
        while stream.queued:
            data = stream.queued[0]
            allowed = min(len(data), stream.window, self.peer_window)
            if allowed <= 0 and data:
                return
            chunk_end = 0
            while chunk_end < allowed:                  # frames of at most the peer's size
                piece = data[chunk_end:chunk_end + min(allowed - chunk_end, self.peer_frame)]
                self.out.append(frame(DATA, 0, stream.id, piece))
                chunk_end += len(piece)
            stream.window -= allowed
            self.peer_window -= allowed
            if allowed < len(data):
                stream.queued[0] = data[allowed:]
                return
            stream.queued.popleft()
        if stream.drained is not None and not stream.drained.done():
            stream.drained.set_result(None)
        if stream.closing:
            self.send_headers(stream.id, stream.closing, end=True)

    def _send_queued(self) -> None:
        for stream in list(self.streams.values()):
            if stream.queued:
                self._send_stream(stream)

    def _wrote(self) -> None:
        if not self.reading:
            self.flush()

    def flush(self) -> None:
        if self.out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self.out))
        self.out.clear()

    def goaway(self) -> None:
        """No new streams; the open ones finish (graceful shutdown)."""
        self.going_away = True
        self.out.append(frame(GOAWAY, 0, 0, struct.pack(">II", self.last_stream, NO_ERROR)))
        self.flush()

    def close(self, code: int = NO_ERROR) -> None:
        self.out.append(frame(GOAWAY, 0, 0, struct.pack(">II", self.last_stream, code)))
        self.flush()
        if self.transport is not None:
            self.transport.close()
