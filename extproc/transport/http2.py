"""HTTP/2 on the event loop, as Envoy's gRPC client speaks it: the workers' transport
when `server.transport: h2` (the default; `grpc` serves the same methods with grpc.aio).

Why not grpc.aio: it hands every message across two or three threads (gRPC's poller,
its completion queue, the event loop), ~80 µs of CPU a message and a wake-up each way.
Here the loop reads the socket itself, and every frame read in one `data_received`
is answered with one write. The do-nothing floor (bench/floor.py --transport both):
servicer CPU per JSON request 274 → 40 µs, 1950 → 4456 req/s on one core.
docs/decisions/workers-http2.md weighs it against grpc.aio and the `h2` library.

Scope: the server side of a client over a Unix socket. Envoy is the client, but the
server holds against any peer: every frame is checked as RFC 9113 requires
(frames.py), what a peer can make it hold is bounded (Limits), and a peer that stalls
is let go (`tick`). tests/test_h2_conformance.py and tests/test_h2_fuzz.py hold it to
that. Header blocks: headers.py. Flow control is kept both ways; priorities are
ignored (RFC 9113 deprecates them); the server never pushes.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from collections.abc import Callable

from .frames import (ACK, CANCEL, CONTINUATION, DATA, DEFAULT_FRAME, DEFAULT_WINDOW, END_HEADERS, END_STREAM,
                     ENHANCE_YOUR_CALM, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, GOAWAY, HEADER_SIZE, HEADERS,
                     INITIAL_WINDOW_SIZE, INTERNAL_ERROR, MAX_CONCURRENT_STREAMS, MAX_FRAME_SIZE,
                     MAX_HEADER_LIST_SIZE, MAX_WINDOW, NO_ERROR, PADDED, PING, PREFACE, PRIORITY, PRIORITY_FLAG,
                     PROTOCOL_ERROR, PUSH_PROMISE, REFUSED_STREAM, RST_STREAM, SETTINGS, SETTINGS_TIMEOUT,
                     STREAM_CLOSED, WINDOW_UPDATE, ConnectionFault, StreamFault, check_connection_frame,
                     check_priority, frame, goaway_frame, padded_span, rst_stream_frame, settings_values, unpadded,
                     window_increment, window_update_frame, without_priority)
from .headers import HeaderBlocks, literal
from .sending import Application, Limits, Sender, Stream

__all__ = ["ACK", "CANCEL", "CONTINUATION", "DATA", "DEFAULT_FRAME", "DEFAULT_WINDOW", "END_HEADERS", "END_STREAM",
           "GOAWAY", "HEADERS", "INITIAL_WINDOW_SIZE", "MAX_FRAME_SIZE", "MAX_WINDOW", "PADDED", "PING", "PREFACE",
           "PRIORITY_FLAG", "RST_STREAM", "SETTINGS", "WINDOW_UPDATE", "Application", "Connection", "HeaderBlocks",
           "Limits", "Stream", "frame", "literal"]

log = logging.getLogger("extproc.http2")

IDLE_PING = b"idle-end"         # the PING whose answer lets an idle connection close (`tick`)


class Connection(Sender):
    """One client connection, its streams told to the Application that
    `application_for(connection)` returns."""

    def __init__(self, application_for: Callable[[Connection], Application], limits: Limits | None = None) -> None:
        limits = limits if limits is not None else Limits()
        super().__init__(application_for(self), limits)
        self.buffer = bytearray()
        self.preface_seen = False               # the preface and the frame header of the client's SETTINGS
        self.settings_acked = False             # the client acknowledged ours
        self.header_blocks = HeaderBlocks(limits.max_header_list_size)
        self.header_block: tuple[int, int, bytearray] | None = None  # (stream, flags, block) awaiting CONTINUATION
        self.stream_limit = limits.streams_before_ack       # until the client knows ours (RFC 9113 5.1.2)
        # Receiving: the windows enforced. A stream's is ours once the client has our SETTINGS;
        # before, the default it assumes, if larger. The connection's cannot shrink below the default.
        self.stream_window = max(limits.receive_window, DEFAULT_WINDOW)
        self.connection_window = max(limits.receive_window, DEFAULT_WINDOW)
        self.last_stream = 0                    # the highest stream id the client used: above it, idle streams
        self.unacknowledged = 0                 # DATA bytes read since our last WINDOW_UPDATE
        self.idle_mark = -1                     # last_stream when `tick` last saw no stream open
        self.idle_step = 0                      # 1: a GOAWAY refusing nothing and a PING sent; 2: the last GOAWAY

    # --- reading -------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.since = time.monotonic()
        limits = self.limits
        transport.set_write_buffer_limits(high=limits.write_high_water, low=limits.write_low_water)
        settings = struct.pack(">HIHIHI", MAX_CONCURRENT_STREAMS, limits.max_concurrent_streams,
                               INITIAL_WINDOW_SIZE, limits.receive_window,
                               MAX_HEADER_LIST_SIZE, limits.max_header_list_size)
        out = frame(SETTINGS, 0, 0, settings)
        if self.connection_window > DEFAULT_WINDOW:
            out += window_update_frame(0, self.connection_window - DEFAULT_WINDOW)
        transport.write(out)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.received += len(data)
        buffer = self.buffer
        if not self.preface_seen:
            buffer += data
            if not self._preface():
                return
            data = b""
        self.reading = True
        try:
            # The frames are read from the read's own bytes: a DATA payload is handed on as
            # a view of them, and only a frame cut by the read's end is copied (into
            # `buffer`, completed from the next read). Copying every read into the buffer
            # and every payload out of it cost two copies of a 400 KB body.
            read = 0
            while buffer and not self.closed:
                missing = _missing(buffer)
                if missing == 0:
                    del buffer[:self._read_frames(buffer, 0)]
                elif read < len(data):
                    piece = min(missing, len(data) - read)
                    buffer += memoryview(data)[read:read + piece]
                    read += piece
                else:
                    break
            if not buffer and read < len(data) and not self.closed:
                read = self._read_frames(data, read)
                if read < len(data) and not self.closed:
                    buffer += memoryview(data)[read:]
            self.app.read_done()
        except ConnectionFault as fault:
            self.reading = False
            self.close(fault.code, fault.reason)
            return
        except Exception:                  # a bug here or in the application: this connection's state is lost
            log.exception("closing an HTTP/2 connection on an unexpected error")
            self.reading = False
            self.close(INTERNAL_ERROR, "internal error")
            return
        self.reading = False
        if self.unacknowledged > self.connection_window // 2:
            self.out.append(window_update_frame(0, self.unacknowledged))
            self.unacknowledged = 0
        self.flush()

    def _preface(self) -> bool:
        """Whether the client's connection preface is all here: the fixed bytes and the
        header of a SETTINGS frame (RFC 9113 3.4). Anything else closes the connection."""
        buffer = self.buffer
        seen = min(len(buffer), len(PREFACE))
        if buffer[:seen] != PREFACE[:seen]:
            self.close(PROTOCOL_ERROR, "no HTTP/2 connection preface")
            return False
        if len(buffer) < len(PREFACE) + HEADER_SIZE:
            return False
        if buffer[len(PREFACE) + 3] != SETTINGS or buffer[len(PREFACE) + 4] & ACK:
            self.close(PROTOCOL_ERROR, "the connection preface does not go on with SETTINGS")
            return False
        del buffer[:len(PREFACE)]
        self.position = len(PREFACE)
        self.preface_seen = True
        return True

    def _read_frames(self, source: bytes | bytearray, offset: int) -> int:
        """Reads the whole frames of `source` from `offset`; where it stopped (a frame not
        all there, or the connection closed)."""
        size = len(source)
        shared = isinstance(source, bytes)      # immutable: a view of it stays valid
        while size - offset >= HEADER_SIZE:
            length = int.from_bytes(source[offset:offset + 3], "big")
            if length > DEFAULT_FRAME:         # the most the client may send: this server advertises no more
                raise ConnectionFault(FRAME_SIZE_ERROR, "frame larger than 16384")
            if size - offset - HEADER_SIZE < length:
                break
            kind, flags = source[offset + 3], source[offset + 4]
            if self.out and kind <= HEADERS and self.app.hand_over():
                # Before the next message (DATA, HEADERS) is handled, the replies so far
                # leave and the core goes to the client (Envoy shares it): a burst is
                # then answered call by call, not all at the read's end.
                self.flush()
                os.sched_yield()
            stream = int.from_bytes(source[offset + 5:offset + 9], "big") & MAX_WINDOW
            start = offset + HEADER_SIZE
            offset = start + length
            self.position += HEADER_SIZE + length
            try:
                if shared and kind == DATA and length > 1024:
                    # A view of the read, uncopied: what the application keeps of it keeps
                    # the read alive (grpc_calls.Pending.unpin bounds that).
                    if self.header_block is not None:
                        raise ConnectionFault(PROTOCOL_ERROR, "a header block interrupted")
                    self._data(flags, stream, memoryview(source)[start:offset])
                elif length > 1024:
                    # One copy (a slice, then bytes: two); the view dies at once, before the
                    # buffer is resized.
                    self._frame(kind, flags, stream, bytes(memoryview(source)[start:offset]))
                else:
                    self._frame(kind, flags, stream, bytes(source[start:offset]))
            except StreamFault as fault:
                self._reset(fault.stream, fault.code)
            if self.closed:
                break
        return offset

    def _frame(self, kind: int, flags: int, stream: int, payload: bytes) -> None:
        if self.header_block is not None and kind != CONTINUATION:
            raise ConnectionFault(PROTOCOL_ERROR, "a header block interrupted")
        if kind == DATA:
            self._data(flags, stream, payload)
        elif kind == HEADERS:
            self._headers(flags, stream, payload)
        elif kind == CONTINUATION:
            self._continuation(flags, stream, payload)
        elif kind == RST_STREAM:
            self._rst_stream(stream, payload)
        elif kind == SETTINGS:
            self._settings(flags, stream, payload)
        elif kind == PING:
            self._ping(flags, stream, payload)
        elif kind == GOAWAY:
            check_connection_frame("GOAWAY", stream, len(payload), -8)
            self.going_away = True          # the streams open go on; Envoy closes when done
        elif kind == WINDOW_UPDATE:
            self._window_update(stream, window_increment(payload))
        elif kind == PRIORITY:
            check_priority(stream, payload)
        elif kind == PUSH_PROMISE:
            raise ConnectionFault(PROTOCOL_ERROR, "PUSH_PROMISE from a client")
        # unknown types: ignored (RFC 9113 4.1)

    def _data(self, flags: int, stream_id: int, payload: bytes | memoryview) -> None:
        length = len(payload)                           # padding included: it counts against windows
        self.unacknowledged += length
        if self.unacknowledged > self.connection_window:
            raise ConnectionFault(FLOW_CONTROL_ERROR, "DATA beyond the connection's window")
        if flags & PADDED:
            first, last = padded_span(payload)
            payload = payload[first:last]
        stream = self.streams.get(stream_id)
        if stream is None:
            self._not_open(stream_id, "DATA")           # a closed stream's: ignored
            return
        if stream.remote_ended:
            raise StreamFault(stream_id, STREAM_CLOSED, "DATA after END_STREAM")
        stream.unacknowledged += length
        end = bool(flags & END_STREAM)
        if stream.unacknowledged > self.stream_window // 2:
            if stream.unacknowledged > self.stream_window:
                raise StreamFault(stream_id, FLOW_CONTROL_ERROR, "DATA beyond the stream's window")
            if not end:                                 # (a stream its client ended needs no more)
                self.out.append(window_update_frame(stream_id, stream.unacknowledged))
                stream.unacknowledged = 0
        if end:
            stream.remote_ended = True
        self.app.data(stream_id, payload, end)

    def _not_open(self, stream_id: int, kind: str) -> None:
        """A frame for no open stream: a connection error on stream 0, on a stream the
        client has not opened yet or on one only the server could open (RFC 9113 5.1,
        5.1.1). A closed stream's late frames are ignored (5.1: after a RST_STREAM or
        the server's END_STREAM they may be in flight; DATA still counted above)."""
        if stream_id == 0 or stream_id > self.last_stream or not stream_id & 1:
            raise ConnectionFault(PROTOCOL_ERROR, f"{kind} on stream {stream_id}, which is not open")

    def _headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0 or not stream_id & 1:
            raise ConnectionFault(PROTOCOL_ERROR, f"HEADERS on stream {stream_id}")
        if flags & PADDED:
            payload = unpadded(payload, flags)
        if flags & PRIORITY_FLAG:
            payload = without_priority(payload, stream_id)
        self._header_block(stream_id, flags, bytearray(payload))

    def _continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        if self.header_block is None or self.header_block[0] != stream_id:
            raise ConnectionFault(PROTOCOL_ERROR, "CONTINUATION out of place")
        first_flags, block = self.header_block[1], self.header_block[2]
        self._check_block_size(len(block) + len(payload))      # a CONTINUATION flood ends here
        block.extend(payload)
        self._header_block(stream_id, first_flags | (flags & END_HEADERS), block)

    def _check_block_size(self, size: int) -> None:
        if size > self.limits.max_header_list_size:
            raise ConnectionFault(ENHANCE_YOUR_CALM, "header block larger than SETTINGS_MAX_HEADER_LIST_SIZE")

    def _header_block(self, stream_id: int, flags: int, block: bytearray) -> None:
        self._check_block_size(len(block))
        if not flags & END_HEADERS:
            self.header_block = (stream_id, flags, block)
            return
        self.header_block = None
        headers = self.header_blocks.decode(bytes(block))     # always: it keeps the client's table
        stream = self.streams.get(stream_id)
        if stream is not None:
            self._trailers(stream, flags)
        elif stream_id <= self.last_stream:             # a closed stream's: only trailers may come late
            if not flags & END_STREAM:
                raise StreamFault(stream_id, STREAM_CLOSED, "HEADERS on a closed stream")
        else:
            self._open(stream_id, flags, headers)

    def _trailers(self, stream: Stream, flags: int) -> None:
        if stream.remote_ended:
            raise StreamFault(stream.id, STREAM_CLOSED, "HEADERS after END_STREAM")
        if not flags & END_STREAM:                      # RFC 9113 8.1: trailers end the stream
            raise StreamFault(stream.id, PROTOCOL_ERROR, "trailers without END_STREAM")
        stream.remote_ended = True
        self.app.data(stream.id, b"", True)

    def _open(self, stream_id: int, flags: int, headers: tuple) -> None:
        self.last_stream = stream_id
        if self.going_away or len(self.streams) >= self.stream_limit:
            self.out.append(rst_stream_frame(stream_id, REFUSED_STREAM))   # the client may retry it
            return
        self.last_opened = stream_id
        stream = Stream(stream_id, self.peer_initial)
        self.streams[stream_id] = stream
        end = bool(flags & END_STREAM)
        stream.remote_ended = end
        self.app.opened(stream_id, headers)
        if end and stream_id in self.streams:
            self.app.data(stream_id, b"", True)

    def _rst_stream(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ConnectionFault(FRAME_SIZE_ERROR, "RST_STREAM of a length other than 4")
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            self._not_open(stream_id, "RST_STREAM")
            return
        self._forget(stream)
        self.app.reset(stream_id)

    def _settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        check_connection_frame("SETTINGS", stream_id, len(payload), 0 if flags & ACK else -1)
        if flags & ACK:                 # the client has ours: they hold from now on
            self.settings_acked = True
            self.stream_limit = self.limits.max_concurrent_streams
            self.stream_window = self.limits.receive_window
            return
        for key, value in settings_values(payload):
            if key == INITIAL_WINDOW_SIZE:
                for stream in self.streams.values():
                    stream.window += value - self.peer_initial
                    if stream.window > MAX_WINDOW:
                        raise ConnectionFault(FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE overflows a window")
                self.peer_initial = value
            elif key == MAX_FRAME_SIZE:
                self.peer_frame = value
            # HEADER_TABLE_SIZE needs nothing: this server's blocks never use the table
        self.out.append(frame(SETTINGS, ACK, 0))
        self._send_blocked()

    def _ping(self, flags: int, stream_id: int, payload: bytes) -> None:
        check_connection_frame("PING", stream_id, len(payload), 8)
        if not flags & ACK:
            self.out.append(frame(PING, ACK, 0, payload))
        elif payload == IDLE_PING and self.idle_step == 1:
            self._idle_goaway()

    def _window_update(self, stream_id: int, increment: int) -> None:
        if stream_id == 0:
            if increment == 0:
                raise ConnectionFault(PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self.peer_window += increment
            if self.peer_window > MAX_WINDOW:
                raise ConnectionFault(FLOW_CONTROL_ERROR, "the connection's window above 2^31-1")
            self._send_blocked()
            return
        stream = self.streams.get(stream_id)
        if stream is None:
            self._not_open(stream_id, "WINDOW_UPDATE")
            return
        if increment == 0:
            raise StreamFault(stream_id, PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
        stream.window += increment
        if stream.window > MAX_WINDOW:
            raise StreamFault(stream_id, FLOW_CONTROL_ERROR, "a stream's window above 2^31-1")
        if stream.queued:
            self._send_stream(stream)

    def connection_lost(self, exc) -> None:
        self.closed = True
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            self._forget(stream)
        self.app.lost()


    # --- deadlines -----------------------------------------------------------------

    def tick(self, now: float) -> None:
        """About once a second (grpc_h2.GrpcServer): a connection that does not finish its
        handshake, does not drain its output or stays idle is let go."""
        limits = self.limits
        if self.closed:
            if now - self.since > limits.close_timeout and self.transport is not None:
                self.transport.abort()          # its peer does not read what is left
        elif not (self.preface_seen and self.settings_acked):
            if now - self.since > limits.handshake_timeout:
                self.close(SETTINGS_TIMEOUT if self.preface_seen else PROTOCOL_ERROR, "no handshake in time")
        elif self.writing_paused:
            if now - self.since > limits.write_stall_timeout:
                self.close(ENHANCE_YOUR_CALM, "output not read")
                if self.transport is not None:
                    self.transport.abort()
        else:
            self._idle(now, limits.idle_timeout, limits.close_timeout)

    def _idle(self, now: float, idle_timeout: float, answer_timeout: float) -> None:
        """An idle connection (no stream open, none opened since the last tick) closes
        without refusing a stream in flight (RFC 9113 6.8): a GOAWAY that refuses nothing
        and a PING; the client answers the PING after every stream it opened before it.
        Then the last GOAWAY, and the connection closes once its streams are done (as
        one does after a stop's GOAWAY, or the client's)."""
        if self.going_away and self.idle_step != 1:
            if not self.streams:
                self.close(NO_ERROR, "going away")
            return
        if self.streams or self.header_block is not None or self.last_stream != self.idle_mark:
            self.idle_mark = self.last_stream
            if self.idle_step == 0:
                self.since = now
            return
        if self.idle_step == 0:
            if now - self.since > idle_timeout:
                self.idle_step = 1
                self.since = now
                self.out += [goaway_frame(MAX_WINDOW, NO_ERROR, "idle"), frame(PING, 0, 0, IDLE_PING)]
                self.flush()
        elif now - self.since > answer_timeout:
            self._idle_goaway()             # no answer to the PING

    def _idle_goaway(self) -> None:
        """The last GOAWAY of an idle connection: it closes now, or once its streams end."""
        self.idle_step = 2
        if self.streams:
            self.goaway()
        else:
            self.close(NO_ERROR, "idle")


def _missing(buffer: bytearray) -> int:
    """The bytes the buffer's first frame still lacks: those of its header, then those of
    its payload (0: it is whole, or too large, which reading it refuses)."""
    if len(buffer) < HEADER_SIZE:
        return HEADER_SIZE - len(buffer)
    length = int.from_bytes(buffer[0:3], "big")
    if length > DEFAULT_FRAME:
        return 0
    return max(0, HEADER_SIZE + length - len(buffer))
