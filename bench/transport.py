"""The workers' own HTTP/2 + gRPC transport alone (extproc/transport/http2.py, grpc_h2.py): the
CPU it costs per JSON request, without Envoy, the pipeline or a socket. Frames as
Envoy sends them for a call (its headers block, the three messages of a JSON call,
then its reset) are fed to one connection, several calls per read as under load; a
do-nothing MESSAGES handler takes each message's request body as the pipeline does and
answers with a fixed reply. The messages are parsed as the workers parse them
(pipeline/request_bodies.py), under glibc's malloc set as the workers set it.

    .venv/bin/python bench/transport.py [--server own|h2lib|both] [--calls-per-read 8] [--rounds 5]

`--body-kb 4000`: instead, calls whose request body is that large (Envoy's 16 KB DATA
frames, read 64 KB at a time): what the transport costs per megabyte handed over.

`--server h2lib`: the same frames to a server built on python-hyper's `h2` the same
way (an asyncio Protocol driving h2.connection.H2Connection, every message answered
in the data_received that brought it); `both` measures the two in turn and prints
their ratio (docs/decisions/workers-http2.md).

It says whether the transport runs compiled (setup.py, extproc/transport/compiled.py). To
compare with plain Python, point PYTHONPATH at a tree without the compiled modules
(e.g. a copy installed with EXTPROC_PURE_PYTHON=1, or a git worktree).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import messages  # noqa: E402  (the bench's chat call, as ext_proc messages)

from extproc.pipeline.protocol import read_message  # noqa: E402
from extproc.pipeline.request_bodies import TAKEN_FROM, parse_request  # noqa: E402
from extproc.runtime.worker_env import WORKER_MALLOC  # noqa: E402
from extproc.transport import compiled, http2  # noqa: E402
from extproc.transport.grpc_h2 import MESSAGES, GrpcServer, Method  # noqa: E402

PROCESS_PATH = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"


class NullTransport:
    """What the connection writes goes nowhere (counted)."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass


class Answer:
    """A do-nothing MESSAGES handler: the same reply to every message, once it has the
    message's request body in hand, as the pipeline takes it (runtime/processor.py)."""

    REPLY = ep.ProcessingResponse(request_body=ep.BodyResponse()).SerializeToString()

    def __init__(self, call) -> None:
        pass

    def hand_over(self) -> bool:
        return True

    body_bytes = 0

    def message(self, request):
        Answer.body_bytes += len(request.body)
        return self.REPLY

    def closed(self) -> None:
        pass


def envoy_reads(calls: int, per_read: int) -> list[bytes]:
    """The bytes Envoy would send for `calls` calls, `per_read` calls per read."""
    encoder = hpack.Encoder()
    bodies = messages("hello " * 60)
    headers = [(":method", "POST"), (":scheme", "http"), (":path", PROCESS_PATH),
               (":authority", "extproc"), ("content-type", "application/grpc"), ("te", "trailers"),
               ("grpc-timeout", "199m"), ("x-extproc-envoy-features", "access-log-tokens delegates"),
               ("x-envoy-internal", "true"), ("x-forwarded-for", "10.0.0.1")]
    reads, chunk = [], []
    for index in range(calls):
        stream = 1 + 2 * index
        chunk.append(http2.frame(http2.HEADERS, http2.END_HEADERS, stream, encoder.encode(headers)))
        for body in bodies:
            chunk.append(http2.frame(http2.DATA, 0, stream, b"\x00" + len(body).to_bytes(4, "big") + body))
        chunk.append(http2.frame(http2.RST_STREAM, 0, stream, http2.CANCEL.to_bytes(4, "big")))
        if len(chunk) >= per_read * 5:
            reads.append(b"".join(chunk))
            chunk = []
    if chunk:
        reads.append(b"".join(chunk))
    return reads


class H2LibServer(asyncio.Protocol):
    """The same method on python-hyper's `h2`, built as the own server is: each message
    answered (headers, then the reply) in the data_received that brought it, one
    write per read; windows as wide as the own server's, given back as data is read."""

    RESPONSE_HEADERS = [(":status", "200"), ("content-type", "application/grpc")]

    def __init__(self) -> None:
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.calls: dict[int, tuple[bytearray, Answer]] = {}
        self.answered: set[int] = set()         # streams whose response headers are out
        self.buffer = bytearray()               # a frame not all read yet
        self.preface_seen = False
        self.transport: NullTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.h2.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000,
                                 h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: http2.MAX_WINDOW})
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(http2.MAX_WINDOW - http2.DEFAULT_WINDOW)
        transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        # h2 returns a read's events once it has handled every frame in it (a call's
        # RST_STREAM behind its message would close the stream before it is answered):
        # it is given one frame at a time, as the own server reads them.
        buffer = self.buffer
        buffer += data
        offset = 0
        if not self.preface_seen:                   # the preface first, alone
            if len(buffer) < len(http2.PREFACE):
                return
            self._events(self.h2.receive_data(bytes(buffer[:len(http2.PREFACE)])))
            self.preface_seen = True
            offset = len(http2.PREFACE)
        while len(buffer) - offset >= 9 and len(buffer) - offset >= 9 + (
                length := int.from_bytes(buffer[offset:offset + 3], "big")):
            self._events(self.h2.receive_data(bytes(buffer[offset:offset + 9 + length])))
            offset += 9 + length
        del buffer[:offset]
        out = self.h2.data_to_send()
        if out:
            self.transport.write(out)

    def _events(self, events: list) -> None:
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.calls[event.stream_id] = (bytearray(), Answer(None))
            elif isinstance(event, h2.events.DataReceived):
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if event.stream_id in self.calls:
                    self._messages(event.stream_id, event.data)
            elif isinstance(event, (h2.events.StreamReset, h2.events.StreamEnded)):
                self.calls.pop(event.stream_id, None)
                self.answered.discard(event.stream_id)

    def _messages(self, stream_id: int, data: bytes) -> None:
        pending, handler = self.calls[stream_id]
        pending += data
        while len(pending) >= 5 and len(pending) >= 5 + (length := int.from_bytes(pending[1:5], "big")):
            request = read_message(bytes(pending[5:5 + length]))
            del pending[:5 + length]
            reply = handler.message(request)
            if stream_id not in self.answered:
                self.answered.add(stream_id)
                self.h2.send_headers(stream_id, self.RESPONSE_HEADERS)
            self.h2.send_data(stream_id, b"\x00" + len(reply).to_bytes(4, "big") + reply)


def own_server() -> tuple[asyncio.Protocol, Callable[[], bool]]:
    """The workers' connection, and whether it has calls left open."""
    server = GrpcServer({PROCESS_PATH: Method(Answer, read_message, MESSAGES,   # as the workers'
                                              pieces_from=TAKEN_FROM, deserialize_pieces=parse_request)})
    return http2.Connection(server._connection), lambda: bool(server.open_calls())


def h2lib_server() -> tuple[asyncio.Protocol, Callable[[], bool]]:
    protocol = H2LibServer()
    return protocol, lambda: bool(protocol.calls)


SERVERS = {"own": own_server, "h2lib": h2lib_server}


def large_body_reads(calls: int, body_kb: int) -> list[bytes]:
    """The bytes Envoy would send for `calls` calls of one request-body message of
    `body_kb` KB each, in 16 KB DATA frames, cut into 64 KB reads."""
    encoder = hpack.Encoder()
    body = ep.ProcessingRequest(request_body=ep.HttpBody(body=b"x" * (body_kb * 1000), end_of_stream=True))
    serialized = body.SerializeToString()
    message = b"\x00" + len(serialized).to_bytes(4, "big") + serialized
    headers = [(":method", "POST"), (":scheme", "http"), (":path", PROCESS_PATH), (":authority", "extproc"),
               ("content-type", "application/grpc"), ("te", "trailers")]
    sent = bytearray()
    for index in range(calls):
        stream = 1 + 2 * index
        sent += http2.frame(http2.HEADERS, http2.END_HEADERS, stream, encoder.encode(headers))
        for offset in range(0, len(message), http2.DEFAULT_FRAME):
            sent += http2.frame(http2.DATA, 0, stream, message[offset:offset + http2.DEFAULT_FRAME])
        sent += http2.frame(http2.RST_STREAM, 0, stream, http2.CANCEL.to_bytes(4, "big"))
    return [bytes(sent[offset:offset + 65536]) for offset in range(0, len(sent), 65536)]


def run_once(server: str, calls: int, per_read: int, body_kb: int = 0) -> float:
    """CPU seconds per call over `calls` calls on a fresh connection."""
    protocol, left_open = SERVERS[server]()
    transport = NullTransport()
    protocol.connection_made(transport)
    reads = large_body_reads(calls, body_kb) if body_kb else envoy_reads(calls, per_read)
    # Envoy acknowledges the server's settings and opens its connection window wide.
    protocol.data_received(http2.PREFACE + http2.frame(http2.SETTINGS, 0, 0) + http2.frame(http2.SETTINGS, http2.ACK, 0)
                           + http2.frame(http2.WINDOW_UPDATE, 0, 0,
                                         (http2.MAX_WINDOW - http2.DEFAULT_WINDOW).to_bytes(4, "big")))
    taken = Answer.body_bytes
    started = time.process_time()
    for data in reads:
        protocol.data_received(data)
    elapsed = time.process_time() - started
    assert Answer.body_bytes - taken == calls * body_kb * 1000 or not body_kb, "the bodies were not taken"
    replies = 1 if body_kb else 3
    assert transport.written >= calls * replies * (9 + 5 + 2), "the replies were not written"   # a DATA frame each
    assert not left_open(), "calls left open"
    return elapsed / calls


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=["own", "h2lib", "both"], default="own")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--calls-per-read", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--body-kb", type=int, default=0, help="calls of one request body this large")
    args = parser.parse_args()
    state = compiled.compiled()
    kind = "compiled" if all(state.values()) else "plain Python" if not any(state.values()) else f"mixed {state}"
    servers = ["own", "h2lib"] if args.server == "both" else [args.server]
    medians = {}
    if args.body_kb:
        calls = max(5, 40_000 // args.body_kb)
        for server in servers:
            results = [run_once(server, calls, 0, args.body_kb) * 1e6 for _ in range(args.rounds)]
            label = f"transport ({kind})" if server == "own" else "h2 library server (plain Python)"
            print(f"{label}, a {args.body_kb} KB request body in 64 KB reads: "
                  f"{statistics.median(results):.0f} µs per call (median of {args.rounds}; "
                  f"min {min(results):.0f}, max {max(results):.0f})")
        return
    for server in servers:
        run_once(server, 2_000, args.calls_per_read)        # warm up
        results = [run_once(server, args.calls, args.calls_per_read) * 1e6 for _ in range(args.rounds)]
        medians[server] = statistics.median(results)
        label = f"transport ({kind})" if server == "own" else "h2 library server (plain Python)"
        print(f"{label}, {args.calls_per_read} calls per read: "
              f"{medians[server]:.1f} µs per JSON call, {1e6 / medians[server]:,.0f} calls/s "
              f"(median of {args.rounds}; min {min(results):.1f}, max {max(results):.1f})")
    if len(medians) == 2:
        print(f"h2 library / own: {medians['h2lib'] / medians['own']:.2f}x the CPU per call")


if __name__ == "__main__":
    if any(os.environ.get(name) != value for name, value in WORKER_MALLOC.items()):
        # glibc as a worker runs it (runtime/worker_env.py): without it, every large
        # message's buffer is a fresh mapping, and the page faults are most of its cost.
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **WORKER_MALLOC})
    asyncio.run(main())
