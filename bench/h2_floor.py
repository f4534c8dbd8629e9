"""A do-nothing ext_proc servicer on a minimal HTTP/2 server of its own (asyncio +
uvloop, one thread, no gRPC core), for bench/floor.py's `--transport h2`.

It answers how much of the floor is grpc-python's transport rather than Python or
Envoy's ext_proc filter: grpc.aio hands every message across two or three threads
(README "gRPC's threads"); this reads and writes the socket from the event loop
itself, and answers every message read in one data_received call with one write.

A measuring tool, not a server to deploy: it speaks only to Envoy's ext_proc client
on a Unix socket. It never decodes a header block (every stream is taken to be
`Process`, so HPACK's dynamic table never matters: a real server would decode ~10
headers per stream, mostly indexed), trusts Envoy's flow-control windows to be far
larger than its small replies, and keeps no priorities.
"""

from __future__ import annotations

import asyncio
import os
import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY = 0x4, 0x8, 0x20
MAX_WINDOW = 2**31 - 1
SETTINGS_MAX_CONCURRENT_STREAMS, SETTINGS_INITIAL_WINDOW_SIZE = 3, 4

# HPACK: ":status: 200" is static entry 8; content-type (static name 31) and
# grpc-status as literals without indexing, so the encoder keeps no state either.
RESPONSE_HEADERS = b"\x88" + b"\x0f\x10" + bytes([16]) + b"application/grpc"
TRAILERS = b"\x00" + bytes([11]) + b"grpc-status" + b"\x01" + b"0"


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + struct.pack(">I", stream) + payload


class Connection(asyncio.Protocol):
    """One HTTP/2 connection from Envoy; `handle(message) -> reply` per gRPC message."""

    def __init__(self, handle):
        self.handle = handle
        self.buffer = bytearray()
        self.preface_seen = False
        self.streams: dict[int, bytearray] = {}   # stream id -> gRPC bytes not yet a whole message
        self.answered: set[int] = set()           # streams whose response headers went out
        self.unacknowledged = 0                   # DATA bytes read since the last WINDOW_UPDATE

    def connection_made(self, transport) -> None:
        self.transport = transport
        settings = struct.pack(">HIHI", SETTINGS_MAX_CONCURRENT_STREAMS, 100_000,
                               SETTINGS_INITIAL_WINDOW_SIZE, MAX_WINDOW)
        transport.write(frame(SETTINGS, 0, 0, settings)
                        + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", MAX_WINDOW - 65_535)))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.preface_seen:
            if len(buffer) < len(PREFACE):
                return
            if buffer[:len(PREFACE)] != PREFACE:
                self.transport.close()
                return
            del buffer[:len(PREFACE)]
            self.preface_seen = True
        out: list[bytes] = []
        offset, size = 0, len(buffer)
        while size - offset >= 9:
            length = int.from_bytes(buffer[offset:offset + 3], "big")
            if size - offset - 9 < length:
                break
            kind, flags = buffer[offset + 3], buffer[offset + 4]
            stream = int.from_bytes(buffer[offset + 5:offset + 9], "big") & MAX_WINDOW
            payload = bytes(buffer[offset + 9:offset + 9 + length])
            offset += 9 + length
            self.on_frame(kind, flags, stream, payload, out)
        del buffer[:offset]
        if self.unacknowledged > MAX_WINDOW // 2:       # the connection's receive window
            out.append(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self.unacknowledged)))
            self.unacknowledged = 0
        if out:
            self.transport.write(b"".join(out))

    def on_frame(self, kind: int, flags: int, stream: int, payload: bytes, out: list[bytes]) -> None:
        if kind == DATA:
            self.unacknowledged += len(payload)
            if flags & PADDED:
                payload = payload[1:len(payload) - payload[0]]
            pending = self.streams.get(stream)
            if pending is None:
                return                                  # reset already, or never opened
            pending += payload
            while len(pending) >= 5:
                length = int.from_bytes(pending[1:5], "big")
                if len(pending) < 5 + length:
                    break
                reply = self.handle(bytes(pending[5:5 + length]))
                del pending[:5 + length]
                if stream not in self.answered:
                    self.answered.add(stream)
                    out.append(frame(HEADERS, END_HEADERS, stream, RESPONSE_HEADERS))
                out.append(frame(DATA, 0, stream, b"\x00" + struct.pack(">I", len(reply)) + reply))
            if flags & END_STREAM:
                self.finish(stream, out)
        elif kind == HEADERS:
            if stream not in self.streams:
                self.streams[stream] = bytearray()      # a new call (its header block unread)
            if flags & END_STREAM:
                self.finish(stream, out)
        elif kind == RST_STREAM:
            self.streams.pop(stream, None)
            self.answered.discard(stream)
        elif kind == SETTINGS and not flags & ACK:
            out.append(frame(SETTINGS, ACK, 0))
        elif kind == PING and not flags & ACK:
            out.append(frame(PING, ACK, 0, payload))
        elif kind == GOAWAY:
            self.transport.close()
        # WINDOW_UPDATE, PRIORITY, CONTINUATION (a header block this server never reads): nothing to do

    def finish(self, stream: int, out: list[bytes]) -> None:
        """The client half-closed: end the call with grpc-status 0."""
        self.streams.pop(stream, None)
        if stream in self.answered:
            self.answered.discard(stream)
            out.append(frame(HEADERS, END_STREAM | END_HEADERS, stream, TRAILERS))
        else:
            out.append(frame(HEADERS, END_STREAM | END_HEADERS, stream, RESPONSE_HEADERS + TRAILERS))


def serve(path: str, handle) -> None:
    """Serve Connection on a Unix socket at `path` until killed."""
    import uvloop

    async def main() -> None:
        if os.path.exists(path):
            os.unlink(path)
        server = await asyncio.get_running_loop().create_unix_server(lambda: Connection(handle), path)
        await server.serve_forever()

    uvloop.run(main())
