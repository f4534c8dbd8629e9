"""The floor: what the ext_proc transport costs before any gateway logic. A do-nothing
servicer (uvloop, Unix socket, the read/write API, replies with the fields the gateway
sets) behind the quickstart's Envoy config, on the same core budget as bench/run.py:
Envoy + servicer on core 0, mock + wrk on core 1. On the workers' own HTTP/2
(extproc/transport/grpc_h2.py, the default), on grpc.aio, or both in turn:

    .venv/bin/python bench/floor.py [--seconds 8] [--transport h2|grpc|both] [--rounds N]

Message patterns: 3 per JSON request (the gateway's: request headers, request body,
then the response body with its headers skipped, see docs/architecture.md), 2 (request side only),
"2 unread" (the request headers, routed there, and the trailers Envoy adds at the
answer's end: the gateway's path for a call whose policy reads nothing of its body,
stages/body_unread.py) and 1 (the request headers alone: no usage at all). The gateway can't beat the 3-message row; the
gap between the rows is what each message costs. Each
row also gives the p50 of requests sent one at a time, next to Envoy alone's:
the latency any grpc-python ext_proc adds before doing anything.

    .venv/bin/python bench/floor.py --paced-rps 300

adds, for Envoy alone and each row, the p50 under that request rate paced over
bench/run.py's paced connections (in step; with --spread, each pause drawn at random):
with the gateway's half maximum as the rate, what any Python ext_proc adds at half load
before doing anything.

    .venv/bin/python bench/floor.py --burn-us 500

makes the servicer spend that much CPU per request (in its request-body reply), as
the gateway's pipeline does: what that work really costs once gRPC and Envoy, on the
same core, get fewer events per wake-up.

    .venv/bin/python bench/floor.py --connections 1

drives every row with one connection (a request at a time, closed loop): what each
side's CPU per request becomes when nothing is batched (bench/README.md, "What bounds
the design").

    .venv/bin/python bench/floor.py --patterns 3 --replies gateway [--access-log]

answers each phase with the gateway's own reply to the bench's JSON call (captured from
the quickstart pipeline in process: bench/gateway_replies.py), and keeps the quickstart's
access log: what Envoy spends on what the gateway's replies ask of it, the servicer
still doing nothing (bench/README.md, "Envoy's share beside the worker").

    .venv/bin/python bench/floor.py --history-kb 400 [--request-reader lua|json_to_metadata|none]

sends bench/run.py's agent-sized body (`json 400KB resent`) instead of the short prompt:
what handing a large body to any ext_proc servicer costs Envoy and the servicer. The
second flag chooses what reads `stream` and `model` from the body before ext_proc (so
that streams can pass through unseen): the gateway's Lua reader, json_to_metadata's
request rules (the alternative it replaced), or nothing, to show each one's share.
"""

from __future__ import annotations

import argparse
import contextlib
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
import httpx  # noqa: E402
from gateway_stack import free_port, wait_for_port  # noqa: E402
from run import PACED_CONNECTIONS, PROMPT, ensure_wrk, history_body, wrk  # noqa: E402
from sides import cpu_seconds, envoy_alone, pin  # noqa: E402
import gateway_replies  # noqa: E402
from floor_envoy import PATTERNS, envoy_config  # noqa: E402


def sequential_p50(url: str, key: str, body: str, samples: int = 300) -> float:
    """Median latency of requests sent one at a time (ms), after a warm-up."""
    return sequential_latency(url, key, body, samples)[0]


def sequential_latency(url: str, key: str, body: str, samples: int = 300) -> tuple[float, float]:
    """Median and 99th percentile latency of requests sent one at a time (ms), after a warm-up."""
    times = []
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    with httpx.Client(headers=headers, timeout=30) as client:
        for index in range(samples + 20):
            started = time.perf_counter()
            client.post(url, content=body).raise_for_status()
            if index >= 20:
                times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), statistics.quantiles(times, n=100)[98]


def paced_p50(binary: str, url: str, key: str, body: str, args) -> str:
    """", p50 X ms paced at N req/s" when --paced-rps asks for it, else ""."""
    if not getattr(args, "paced_rps", None):
        return ""
    result = wrk(binary, url, key, body, args.seconds, PACED_CONNECTIONS, 1000 * PACED_CONNECTIONS / args.paced_rps,
                 spread=args.spread)
    return f"; paced at {args.paced_rps:.0f} req/s{' spread' if args.spread else ''}, p50 {result['p50']:.2f} ms"


REPLAYED: dict = {}     # --replies gateway: the gateway's own reply to each phase (gateway_replies.py)


def reply_to(request, burn_us: float, route_at: str = "request_body", trailers: bool = False) -> bytes:
    """The do-nothing servicer's answer to a message (read as the workers read it:
    pipeline/protocol.py's read_message): the phase's empty response, and the one at
    `route_at` routed like the gateway routes it (`trailers`: marked for the trailers Envoy
    adds at the answer's end, as the gateway marks them); with --replies gateway, the
    gateway's own reply to that phase. Built and serialized each time."""
    from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

    phase = request.phase
    response = ep.ProcessingResponse()
    if phase == route_at:
        until = time.perf_counter() + burn_us / 1e6
        while time.perf_counter() < until:    # stands for the gateway's own work
            pass
    if REPLAYED:
        response.CopyFrom(REPLAYED[phase])
        return response.SerializeToString()
    getattr(response, phase).SetInParent()
    if phase == route_at:
        common = getattr(response, phase).response
        common.clear_route_cache = True
        for key, value in (("x-gateway-cluster", b"mock"), ("authorization", b"Bearer mock-provider-key")):
            header = common.header_mutation.set_headers.add()
            header.header.key, header.header.raw_value = key, value
        if trailers:            # (with what the gateway would name the call by)
            response.dynamic_metadata.update({"llm_gateway": {
                "stream_end": "trailers", "headers": {"x-gateway-backend": "mock"}, "key_id": "alice",
                "team": "research", "model": "gpt-4o-mini", "request_id": "0f8e4a53-7b3c-4d5e-9a1b-2c3d4e5f6a7b"}})
    return response.SerializeToString()


def serve(path: str, burn_us: float, transport: str, route_at: str = "request_body", trailers: bool = False) -> None:
    """The servicer on `transport`: grpc.aio, or the workers' own HTTP/2 (extproc/transport/grpc_h2.py),
    its Process method as the workers serve it (a large request body's message parsed as
    theirs: pipeline/request_bodies.py)."""
    import grpc
    import uvloop
    from envoy.service.accesslog.v3 import als_pb2

    from extproc.pipeline.protocol import read_message
    from extproc.pipeline.request_bodies import TAKEN_FROM, parse_request
    from extproc.runtime.worker import ACCESS_LOG_PATH, PROCESS_PATH
    from extproc.transport.grpc_h2 import CLIENT_STREAM, MESSAGES, GrpcServer, Method

    entries = [0]

    async def access_logs(_, context):
        while (message := await context.read()) is not grpc.aio.EOF:
            entries[0] += len(message.http_logs.log_entry)
        return als_pb2.StreamAccessLogsResponse()

    async def process(_, context):
        while (request := await context.read()) is not grpc.aio.EOF:
            await context.write(reply_to(request, burn_us, route_at, trailers))

    class Replies:
        """A MESSAGES handler, as the workers serve Process: each reply in the read."""

        def __init__(self, call) -> None:
            pass

        def hand_over(self) -> bool:
            return True

        def message(self, request):
            return reply_to(request, burn_us, route_at, trailers)

        def closed(self) -> None:
            pass

    async def main() -> None:
        if transport == "h2":
            server = GrpcServer({PROCESS_PATH: Method(Replies, read_message, MESSAGES,
                                                      pieces_from=TAKEN_FROM, deserialize_pieces=parse_request),
                                 ACCESS_LOG_PATH: Method(access_logs, als_pb2.StreamAccessLogsMessage.FromString,
                                                         CLIENT_STREAM)})
            await server.start(path)
            await asyncio.Event().wait()            # until the bench kills it
            return
        handlers = grpc.method_handlers_generic_handler("envoy.service.ext_proc.v3.ExternalProcessor", {
            "Process": grpc.stream_stream_rpc_method_handler(
                process, request_deserializer=read_message, response_serializer=bytes)})
        server = grpc.aio.server(options=[("grpc.max_concurrent_streams", 100_000),
                                          ("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers((handlers,))
        server.add_insecure_port(f"unix:{path}")
        await server.start()
        await server.wait_for_termination()

    uvloop.run(main())


def under_load(binary: str, url: str, key: str, body: str, args, pids: list[int]) -> tuple[dict, list[float]]:
    """wrk's result at --connections, and each process's CPU per request (µs) meanwhile."""
    before = [cpu_seconds(pid) for pid in pids]
    result = wrk(binary, url, key, body, args.seconds, args.connections)
    requests = max(1, result["requests"])
    return result, [(cpu_seconds(pid) - spent) / requests * 1e6 for pid, spent in zip(pids, before)]


@contextlib.contextmanager
def floor_stack(workdir: Path, mock_port: int, messages: str, transport: str, args):
    """A pattern's do-nothing servicer and its Envoy, started on core 0: (its URL, their
    pids) while the block runs, then stopped."""
    from extproc.config.envoy_config import envoy_binary
    from extproc.config.envoy_mcp import AGGREGATOR_SECRET_ENV
    from extproc.runtime.worker_env import WORKER_GRPC_EXPERIMENTS, WORKER_MALLOC
    socket = str(workdir / f"floor-{messages.replace(' ', '-')}-{transport}.sock")
    path, port = envoy_config(workdir, socket, mock_port, messages, getattr(args, "request_reader", "lua"),
                              getattr(args, "access_log", False))
    if os.path.exists(socket):          # a round before's: wait for this servicer's own
        os.unlink(socket)
    # gRPC's endpoints and malloc as the gateway's workers run them (extproc/runtime/supervisor.py).
    servicer = subprocess.Popen(["taskset", "-c", "0", sys.executable, __file__, "--burn-us",
                                 str(getattr(args, "burn_us", 0)), "--transport", transport, "--serve", socket,
                                 "--route-at", PATTERNS[messages]["route_at"],
                                 *(["--trailers"] if "response_trailer_mode" in PATTERNS[messages]
                                   or PATTERNS[messages].get("logged") else []),
                                 *(["--replies-file", args.replies_file] if getattr(args, "replies_file", None)
                                   else [])],
                                env={"GRPC_EXPERIMENTS": WORKER_GRPC_EXPERIMENTS, **WORKER_MALLOC, **os.environ})
    # (the quickstart's MCP route reads its aggregator's secret from the environment)
    envoy = subprocess.Popen(["taskset", "-c", "0", envoy_binary(), "-c", str(path), "--concurrency", "1",
                              "--disable-hot-restart", "--log-level", "error"],
                             env={**os.environ, AGGREGATOR_SECRET_ENV: "floor-bench"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process=envoy)
        while not os.path.exists(socket):
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/v1/chat/completions", [servicer.pid, envoy.pid]
    finally:
        for process in (envoy, servicer):
            process.terminate()
            process.wait()


def measure_row(binary: str, workdir: Path, mock_port: int, messages: str, transport: str, body: str,
                args) -> dict:
    """One pattern's row: its servicer and Envoy started on core 0, measured under load
    (args.seconds, args.connections) and one request at a time, then stopped."""
    with floor_stack(workdir, mock_port, messages, transport, args) as (url, pids):
        result, (per_request, envoy_per_request) = under_load(binary, url, "k", body, args, pids)
        one_p50, one_p99 = sequential_latency(url, "k", body)
        return {"rps": result["rps"], "p50": result["p50"], "p99": result["p99"], "errors": result["errors"],
                "servicer_us": per_request, "envoy_us": envoy_per_request, "one_p50": one_p50,
                "one_p99": one_p99, "paced": paced_p50(binary, url, "k", body, args)}

def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--burn-us", type=float, default=0, help="servicer CPU per request, µs")
    parser.add_argument("--paced-rps", type=float, help="also the p50 at this paced rate")
    parser.add_argument("--spread", action="store_true", help="paced arrivals spread at random, not in step")
    parser.add_argument("--transport", choices=("grpc", "h2", "both"), default="h2",
                        help="h2: the workers' own HTTP/2 (extproc/transport/grpc_h2.py); grpc: grpc.aio")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the rows, interleaved")
    parser.add_argument("--connections", type=int, default=32,
                        help="wrk's connections for the req/s and CPU rows (1: one request at a time)")
    parser.add_argument("--history-kb", type=int, help="send an agent's resent history of this size")
    parser.add_argument("--request-reader", choices=("lua", "json_to_metadata", "none"), default="lua",
                        help="what reads the body's stream and model before ext_proc in the servicer's rows")
    parser.add_argument("--replies", choices=("empty", "gateway"), default="empty",
                        help="gateway: each phase answered with the gateway's own reply to the bench's "
                             "JSON call (3 messages only): Envoy's work for the gateway's replies")
    parser.add_argument("--access-log", action="store_true", help="keep the quickstart's access log")
    parser.add_argument("--serve", help=argparse.SUPPRESS)     # internal: the servicer, on this socket
    parser.add_argument("--replies-file", help=argparse.SUPPRESS)
    parser.add_argument("--route-at", default="request_body", help=argparse.SUPPRESS)
    parser.add_argument("--trailers", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--patterns", default="3,2,2 unread,1",
                        help="the message patterns measured, comma-separated (3, 2, 2 unread, 1)")
    args = parser.parse_args()
    if args.serve:
        if args.replies_file:
            REPLAYED.update(gateway_replies.load(args.replies_file))
        serve(args.serve, args.burn_us, args.transport, args.route_at, args.trailers)
        return
    binary = ensure_wrk()
    workdir = Path(tempfile.mkdtemp(prefix="llmgw-floor-"))
    if args.replies == "gateway":
        if args.patterns.replace(" ", "") != "3" or args.history_kb:
            parser.error("--replies gateway replays the short JSON call's three replies: --patterns 3 alone")
        args.replies_file = str(workdir / "gateway-replies.bin")
        gateway_replies.capture(Path(args.replies_file))
    mock_port = free_port()
    mock = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-m", "extproc", "mock-provider",
                             "--port", str(mock_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(mock_port, process=mock)
    body = '{"model":"gpt-4o-mini","stream":false,"messages":[{"role":"user","content":"%s"}]}' % PROMPT
    if args.history_kb:
        body = history_body(args.history_kb, fresh=False)
    what = f"a servicer spending {args.burn_us:.0f} us per request" if args.burn_us else "a do-nothing servicer"
    sent = f"a {args.history_kb} KB history" if args.history_kb else "a short prompt"
    filters = f", request reader: {args.request_reader}" + (", the gateway's replies" if args.replies == "gateway"
                                                          else "") + (", access log" if args.access_log else "")
    print(f"{what} + Envoy{filters} on core 0; mock + wrk on core 1; {args.seconds}s, "
          f"{args.connections} connections; {sent}")
    alone, alone_port = envoy_alone(workdir, mock_port)
    pin(alone.pid, 0)
    try:
        alone_url = f"http://127.0.0.1:{alone_port}/v1/chat/completions"
        result, (per_request,) = under_load(binary, alone_url, "mock-provider-key", body, args, [alone.pid])
        p50 = sequential_p50(alone_url, "mock-provider-key", body)
        paced = paced_p50(binary, alone_url, "mock-provider-key", body, args)
        alone.terminate()
        alone.wait()
        print(f"Envoy alone: {result['rps']:.0f} req/s, p50 {result['p50']:.2f} ms, CPU per request "
              f"{per_request:.0f} us; one request at a time, p50 {p50:.2f} ms{paced}")
        transports = ("grpc", "h2") if args.transport == "both" else (args.transport,)
        patterns = [pattern.strip() for pattern in args.patterns.split(",")]
        rows = [(messages, transport) for _ in range(args.rounds) for messages in patterns
                for transport in transports]
        for messages, transport in rows:
            row = measure_row(binary, workdir, mock_port, messages, transport, body, args)
            print(f"{transport:>4}, {messages} messages per request: {row['rps']:.0f} req/s, "
                  f"p50 {row['p50']:.1f} ms, CPU per request: servicer {row['servicer_us']:.0f} us, "
                  f"Envoy {row['envoy_us']:.0f} us, "
                  f"non-2xx {row['errors']}; one request at a time, p50 {row['one_p50']:.2f} ms{row['paced']}")
    finally:
        for process in (alone, mock):
            process.terminate()
            process.wait()


if __name__ == "__main__":
    main()
