"""The workers' own HTTP/2 + gRPC transport alone (extproc/transport/http2.py, grpc_h2.py): the
CPU it costs per JSON request, without Envoy, the pipeline or a socket. Frames as
Envoy sends them for a call (its headers block, the three messages of a JSON call,
then its reset) are fed to one connection, several calls per read as under load; a
do-nothing MESSAGES handler answers each message with a fixed reply.

    .venv/bin/python bench/transport.py [--calls-per-read 8] [--rounds 5]

It says whether the transport runs compiled (setup.py, extproc/transport/compiled.py). To
compare with plain Python, point PYTHONPATH at a tree without the compiled modules
(e.g. a copy installed with EXTPROC_PURE_PYTHON=1, or a git worktree).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import hpack
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import messages  # noqa: E402  (the bench's chat call, as ext_proc messages)

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


class Answer:
    """A do-nothing MESSAGES handler: the same reply to every message."""

    REPLY = ep.ProcessingResponse(request_body=ep.BodyResponse())

    def __init__(self, call) -> None:
        pass

    def message(self, request):
        return self.REPLY

    def closed(self) -> None:
        pass


def envoy_reads(calls: int, per_read: int) -> list[bytes]:
    """The bytes Envoy would send for `calls` calls, `per_read` calls per read."""
    encoder = hpack.Encoder()
    bodies = [m.SerializeToString() for m in messages("hello " * 60)]
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


def run_once(calls: int, per_read: int) -> float:
    """CPU seconds per call over `calls` calls on a fresh connection."""
    server = GrpcServer({PROCESS_PATH: Method(Answer, ep.ProcessingRequest.FromString, MESSAGES)})
    connection = http2.Connection(server._connection)
    transport = NullTransport()
    connection.connection_made(transport)
    reads = envoy_reads(calls, per_read)
    # Envoy opens its connection window wide, as the workers do theirs.
    connection.data_received(http2.PREFACE + http2.frame(http2.SETTINGS, 0, 0) + http2.frame(
        http2.WINDOW_UPDATE, 0, 0, (http2.MAX_WINDOW - http2.DEFAULT_WINDOW).to_bytes(4, "big")))
    started = time.process_time()
    for data in reads:
        connection.data_received(data)
    elapsed = time.process_time() - started
    assert transport.written > calls * 3 * 20, "the replies were not written"
    assert not server.open_calls(), "calls left open"
    return elapsed / calls


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--calls-per-read", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    state = compiled.compiled()
    kind = "compiled" if all(state.values()) else "plain Python" if not any(state.values()) else f"mixed {state}"
    run_once(2_000, args.calls_per_read)        # warm up
    results = [run_once(args.calls, args.calls_per_read) * 1e6 for _ in range(args.rounds)]
    print(f"transport ({kind}), {args.calls_per_read} calls per read: "
          f"{statistics.median(results):.1f} µs per JSON call (median of {args.rounds}; "
          f"min {min(results):.1f}, max {max(results):.1f})")


if __name__ == "__main__":
    asyncio.run(main())
