"""The sending half of the workers' HTTP/2 connection (http2.py reads): its limits, its
streams, and what leaves on them: headers, data within the peer's windows and frame
size, trailers, resets, GOAWAY. Output waits in the connection while the transport
holds more than the high-water mark, and reading stops meanwhile: a peer that sends
but never reads cannot make a worker hold more than a read's worth of answers.
"""

from __future__ import annotations

import asyncio
import fcntl
import struct
import termios
import time
from collections import deque
from typing import Protocol

from .frames import (CANCEL, DATA, DEFAULT_FRAME, DEFAULT_WINDOW, END_HEADERS, END_STREAM, HEADERS, MAX_WINDOW,
                     NO_ERROR, frame, goaway_frame, rst_stream_frame)

# The largest gRPC message taken: a request body of the largest size a provider may be
# configured to accept (64 MiB, config/providers.py) with its ext_proc envelope.
MAX_MESSAGE = 72 << 20


class Limits:
    """What one connection lets its peer use, and how long it waits for it: the workers'
    defaults (tests make them small). docs/decisions/workers-http2.md gives the reasons."""

    def __init__(self, *, max_concurrent_streams: int = 1000, streams_before_ack: int = 100_000,
                 max_header_list_size: int = 16_384, receive_window: int = MAX_WINDOW, max_message: int = MAX_MESSAGE,
                 backlog: int = 256 << 20, handshake_timeout: float = 5.0, idle_timeout: float = 600.0,
                 close_timeout: float = 5.0, write_stall_timeout: float = 60.0, write_high_water: int = 1 << 20,
                 write_low_water: int = 256 << 10) -> None:
        # Advertised in SETTINGS, enforced once the peer has acknowledged them:
        self.max_concurrent_streams = max_concurrent_streams   # REFUSED_STREAM beyond
        self.max_header_list_size = max_header_list_size       # decoded; also the cap on a block's bytes
        self.receive_window = receive_window                   # each stream's (the connection's, if larger)
        # Before that acknowledgement the client may not know the limit yet (Envoy puts a burst of
        # streams on a new connection at once): it may open this many.
        self.streams_before_ack = streams_before_ack
        # The gRPC layer's (grpc_h2.py), RESOURCE_EXHAUSTED beyond:
        self.max_message = max_message                         # as grpc.max_receive_message_length
        self.backlog = backlog                                 # bytes a connection's calls hold unhandled
        # Deadlines, in seconds:
        self.handshake_timeout = handshake_timeout             # preface, SETTINGS, and ours acknowledged
        self.idle_timeout = idle_timeout                       # no stream open: GOAWAY NO_ERROR, gracefully
        self.close_timeout = close_timeout                     # a closing connection's output to drain
        self.write_stall_timeout = write_stall_timeout         # output held above the high-water mark
        # Bytes waiting in the transport: above the high mark reading stops, below the low it resumes.
        self.write_high_water = write_high_water
        self.write_low_water = write_low_water


class Stream:
    """One open stream: its sending side (what waits for the peer's window), and what
    the peer may still send on it."""

    __slots__ = ("id", "window", "queued", "drained", "closing", "unacknowledged", "remote_ended", "blocked")

    def __init__(self, stream_id: int, window: int) -> None:
        self.id = stream_id
        self.window = window
        self.unacknowledged = 0                              # DATA bytes read since its last WINDOW_UPDATE
        self.queued: deque[bytes] = deque()                  # data not yet sent
        self.drained: asyncio.Future | None = None
        self.closing = b""                                   # a trailers block sent once queued data is out
        self.remote_ended = False                            # the peer sent END_STREAM (half-closed remote)
        self.blocked = False                                 # in its connection's `blocked`


class Application(Protocol):
    """What a Connection tells of its streams; it answers with the Connection's
    `send_headers`, `send_data` and `send_trailers`."""

    def opened(self, stream_id: int, headers: tuple) -> None: ...  # (name, value) pairs

    def data(self, stream_id: int, data: bytes | memoryview, end: bool) -> None:
        """A DATA frame's payload; above 1 KB, a view of the bytes read (immutable): kept,
        it keeps the whole read alive, which `read_done` is the place to bound."""
        ...

    def read_done(self) -> None:
        """A read's frames are all told: the views of it kept past now are checked."""
        ...

    def reset(self, stream_id: int) -> None: ...
    def lost(self) -> None: ...

    def hand_over(self) -> bool:
        """Whether to give the client the core between the messages of one read."""
        ...


class Sender(asyncio.Protocol):
    """A connection's state both halves share, and its sending half."""

    def __init__(self, app: Application, limits: Limits) -> None:
        self.app = app
        self.limits = limits
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, Stream] = {}
        self.blocked: dict[int, Stream] = {}    # streams whose data waits for a window or the transport
        self.peer_window = DEFAULT_WINDOW       # the connection's send window
        self.peer_initial = DEFAULT_WINDOW      # each new stream's
        self.peer_frame = DEFAULT_FRAME         # at least 16,384 (frames.settings_values)
        self.last_opened = 0                    # the highest stream the application saw (GOAWAY's last stream)
        self.going_away = False                 # no new stream is taken
        self.out: list[bytes] = []              # frames to write when this turn of reading ends
        self.reading = False                    # inside data_received: one write at its end
        self.closed = False                     # closing or lost: nothing more is read or sent
        self.writing_paused = False             # the transport holds more than the high-water mark
        self.since = time.monotonic()           # when the deadline running now (http2.Connection.tick) began
        # Where the client's bytes stand: how many were read from the socket, and the end of
        # the frame being handled (http2.Connection). A frame's place says what the client
        # had sent before it: a worker out of a hang learns whether an end of stream was
        # sent before or after its reply could have reached the client.
        self.received = 0
        self.position = 0
        self.flushes = 0                        # writes made
        self.placing = False                    # while set, each write notes where the client's bytes stood
        self.flush_places: list[tuple[int, int]] = []   # (write, its `horizon`), while placing

    def horizon(self) -> int:
        """The place, in the client's bytes, up to which it had sent when this is asked:
        what was read and what waits in the socket (a system call: asked only out of a
        hang). A frame ending at or before it was sent before anything written now could
        reach the client."""
        waiting = 0
        transport = self.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                try:
                    waiting = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
                except (OSError, ValueError):
                    waiting = 0
        return self.received + waiting

    # --- what the application sends ------------------------------------------------

    def send_headers(self, stream_id: int, block: bytes, end: bool = False, flush: bool = True) -> None:
        """`flush=False`: the headers leave with the next write (a message right behind them)."""
        if stream_id in self.streams:
            self.out.append(frame(HEADERS, END_HEADERS | (END_STREAM if end else 0), stream_id, block))
            if end:
                self._forget(self.streams.pop(stream_id))
            if flush:
                self._wrote()

    def send_data(self, stream_id: int, data: bytes) -> asyncio.Future | None:
        """Queue `data` on the stream; a future that completes once it has all left when
        the peer's window (or a full transport) holds it back, else None."""
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
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            self._forget(stream)
            self.out.append(rst_stream_frame(stream_id, code))
            self._wrote()

    # --- data within the windows ---------------------------------------------------

    def _send_stream(self, stream: Stream) -> None:
        while stream.queued:
            if self.writing_paused:
                self._block(stream)
                return
            data = stream.queued[0]
            allowed = min(len(data), stream.window, self.peer_window)
            if allowed <= 0 and data:
                self._block(stream)
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
                self._block(stream)
                return
            stream.queued.popleft()
        if stream.blocked:
            stream.blocked = False
            del self.blocked[stream.id]
        if stream.drained is not None and not stream.drained.done():
            stream.drained.set_result(None)
        if stream.closing:
            self.send_headers(stream.id, stream.closing, end=True)

    def _block(self, stream: Stream) -> None:
        """The stream's data waits: for a window, or for the transport to drain."""
        if not stream.blocked:
            stream.blocked = True
            self.blocked[stream.id] = stream

    def _send_blocked(self) -> None:
        """A window opened or the transport drained: what waited goes, as far as it can."""
        for stream in list(self.blocked.values()):
            if self.writing_paused or self.peer_window <= 0:
                return
            self._send_stream(stream)

    def _forget(self, stream: Stream) -> None:
        """The stream is closed: nothing of it is sent any more."""
        if stream.blocked:
            stream.blocked = False
            del self.blocked[stream.id]
        if stream.drained is not None and not stream.drained.done():
            stream.drained.cancel()

    def _reset(self, stream_id: int, code: int) -> None:
        """A stream error (RFC 9113 5.4.2): RST_STREAM, and the application hears the
        stream is gone if it was open."""
        self.out.append(rst_stream_frame(stream_id, code))
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            self._forget(stream)
            self.app.reset(stream_id)

    # --- the transport ---------------------------------------------------------------

    def _wrote(self) -> None:
        if not self.reading:
            self.flush()

    def flush(self) -> None:
        if self.out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self.out))
            self.flushes += 1
            if self.placing:            # (-1: not all of it left: placed once it has)
                self.flush_places.append((self.flushes, -1 if self.transport.get_write_buffer_size() else
                                          self.horizon()))
        self.out.clear()

    def pause_writing(self) -> None:
        """The transport holds more than the high-water mark: read no more, send no more
        data (it waits in its stream) until it drains."""
        self.writing_paused = True
        if not self.closed:
            self.since = time.monotonic()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        if not self.closed:
            self.since = time.monotonic()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
        self._send_blocked()
        self._wrote()

    def goaway(self) -> None:
        """No new streams; the open ones finish (graceful shutdown)."""
        self.going_away = True
        self.out.append(goaway_frame(self.last_opened, NO_ERROR))
        self.flush()

    def close(self, code: int = NO_ERROR, reason: str = "") -> None:
        """GOAWAY with `code` and close once the output has left (or, with a peer that
        does not read, at close_timeout: http2.Connection.tick)."""
        if self.closed:
            return
        self.out.append(goaway_frame(self.last_opened, code, reason))
        self.flush()
        self.closed = True
        self.going_away = True
        self.since = time.monotonic()
        if self.transport is not None:
            self.transport.close()
