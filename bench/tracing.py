"""Benchmark: what tracing costs on the JSON path. Envoy alone, the gateway without
tracing, the gateway with `observability.tracing` (every call sampled: the worker makes
each call's span and sends them in batches over OTLP/gRPC to a receiver on core 1), and
with tracing configured but no call sampled, in interleaved rounds on the same core budget.

    .venv/bin/python bench/tracing.py [--seconds 10] [--rounds 3] [--connections 32]

As bench/run.py: each side's Envoy and worker pinned to core 0, the mock, the receiver
and wrk to core 1; the quickstart pipeline with a token budget. Reports req/s, the
service's and Envoy's CPU per request, the ratio of each to Envoy alone, and the worker's
CPU by thread (its event loop against gRPC's threads for the export).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
from gateway_stack import GatewayStack, free_port, quickstart_config, wait_for_port  # noqa: E402
from run import PROMPT, ensure_wrk, wrk  # noqa: E402
from sides import KEYS, children, cmdline, cpu_seconds, envoy_alone, pin  # noqa: E402

# An OTLP/gRPC receiver that counts spans (its own process, on core 1), on the
# protocol's own TraceService definition.
RECEIVER = """
import sys
from concurrent import futures
import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as t, trace_service_pb2_grpc as g
from extproc.observability.span_export import scope_spans_of
class Receiver(g.TraceServiceServicer):
    count = 0
    def Export(self, request, context):
        Receiver.count += sum(len(s.spans) for r in request.resource_spans for s in scope_spans_of(r))
        print(Receiver.count, flush=True)
        return t.ExportTraceServiceResponse()
server = grpc.server(futures.ThreadPoolExecutor(2))
g.add_TraceServiceServicer_to_server(Receiver(), server)
server.add_insecure_port("127.0.0.1:" + sys.argv[1])
server.start()
server.wait_for_termination()
"""


def thread_seconds(pid: int) -> dict[str, float]:
    """CPU seconds of each of a process's threads, summed by thread name (the event loop's
    is `python`; gRPC's channel runs its own, for the export)."""
    seconds: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        seconds[name] = seconds.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


def gateway(cleanup: contextlib.ExitStack, workdir: Path, tracing_port: int | None,
            percent: float = 100) -> tuple[GatewayStack, list[int], list[int]]:
    config = quickstart_config()
    config["budgets"].append({"name": "bench-team-tokens", "scope": "team", "match": "research",
                              "unit": "tokens", "limit": 10**12, "window": "month"})
    if tracing_port is not None:
        config.setdefault("observability", {})["tracing"] = {"otlp_endpoint": f"127.0.0.1:{tracing_port}",
                                                             "sampling_percent": percent}
    workdir.mkdir(parents=True, exist_ok=True)
    stack = GatewayStack(workdir, config, workers=1)
    cleanup.callback(stack.stop)
    stack.start()
    workers = [p for p in children(stack.process.pid) if " worker " in cmdline(p)]
    envoys = [p for p in children(stack.process.pid) if "envoy" in cmdline(p).split(" ")[0]]
    for pid in workers + envoys + [stack.process.pid]:
        pin(pid, 0)
    for pid in children(stack.process.pid):
        if "mock-provider" in cmdline(pid):
            pin(pid, 1)
    return stack, workers, envoys


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    binary = ensure_wrk()
    with contextlib.ExitStack() as cleanup:
        workdir = Path(tempfile.mkdtemp(prefix="llmgw-bench-tracing-"))
        receiver_port = free_port()
        receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(receiver_port)],
                                    stdout=subprocess.PIPE, text=True)
        cleanup.callback(receiver.terminate)
        pin(receiver.pid, 1)
        wait_for_port(receiver_port)
        off, off_workers, off_envoys = gateway(cleanup, workdir / "off", None)
        on, on_workers, on_envoys = gateway(cleanup, workdir / "on", receiver_port)
        unsampled, unsampled_workers, unsampled_envoys = gateway(cleanup, workdir / "on-0", receiver_port, 0)
        alone, alone_port = envoy_alone(workdir, off.mock_ports["mock"])
        cleanup.callback(alone.send_signal, signal.SIGTERM)
        pin(alone.pid, 0)
        sides = {"envoy alone": (f"http://127.0.0.1:{alone_port}/v1/chat/completions", [], [alone.pid]),
                 "tracing off": (f"{off.base_url}/chat/completions", off_workers, off_envoys),
                 "tracing on": (f"{on.base_url}/chat/completions", on_workers, on_envoys),
                 # Tracing configured, no call sampled: what the config costs without spans.
                 "sampled 0%": (f"{unsampled.base_url}/chat/completions", unsampled_workers, unsampled_envoys)}
        body = '{"model":"gpt-4o-mini","stream":false,"messages":[{"role":"user","content":"%s"}]}' % PROMPT
        results: dict[str, list[dict]] = {side: [] for side in sides}
        for _ in range(args.rounds):
            for side, (url, workers, envoys) in sides.items():
                before = (sum(map(cpu_seconds, workers)), sum(map(cpu_seconds, envoys)))
                threads_before = [thread_seconds(pid) for pid in workers]
                key = KEYS["envoy alone"] if side == "envoy alone" else KEYS["gateway"]
                result = wrk(binary, url, key, body, args.seconds, args.connections)
                requests = max(1, result["requests"])
                result["service_us"] = (sum(map(cpu_seconds, workers)) - before[0]) / requests * 1e6
                result["envoy_us"] = (sum(map(cpu_seconds, envoys)) - before[1]) / requests * 1e6
                result["threads_us"] = {}
                for pid, earlier in zip(workers, threads_before):
                    for name, seconds in thread_seconds(pid).items():
                        used = (seconds - earlier.get(name, 0.0)) / requests * 1e6
                        result["threads_us"][name] = result["threads_us"].get(name, 0.0) + used
                results[side].append(result)
        receiver.terminate()
        spans = [line for line in receiver.communicate(timeout=5)[0].split()]
    summary = {}
    for side, runs in results.items():
        summary[side] = {"rps": statistics.median(r["rps"] for r in runs),
                         "p50_ms": statistics.median(r["p50"] for r in runs),
                         "service_us": statistics.median(r["service_us"] for r in runs),
                         "envoy_us": statistics.median(r["envoy_us"] for r in runs),
                         "non_2xx": sum(r["errors"] for r in runs)}
    alone_rps = summary["envoy alone"]["rps"]
    print(f"{args.rounds} interleaved rounds x {args.seconds}s, {args.connections} connections, JSON chat; "
          f"spans received: {spans[-1] if spans else 0}")
    print(f"{'side':<12} {'req/s':>9} {'vs Envoy':>9} {'p50 ms':>8} {'service CPU/req':>16} "
          f"{'Envoy CPU/req':>14} {'total CPU/req':>14} {'non-2xx':>8}")
    for side, row in summary.items():
        total = row["service_us"] + row["envoy_us"]
        print(f"{side:<12} {row['rps']:>9.0f} {row['rps'] / alone_rps:>8.2f}x {row['p50_ms']:>8.2f} "
              f"{row['service_us']:>13.0f} us {row['envoy_us']:>11.0f} us {total:>11.0f} us {row['non_2xx']:>8}")
    on_total = summary["tracing on"]["service_us"] + summary["tracing on"]["envoy_us"]
    off_total = summary["tracing off"]["service_us"] + summary["tracing off"]["envoy_us"]
    zero_total = summary["sampled 0%"]["service_us"] + summary["sampled 0%"]["envoy_us"]
    print(f"tracing on / off: CPU per request {on_total / off_total:.3f}x, "
          f"req/s {summary['tracing on']['rps'] / summary['tracing off']['rps']:.3f}x")
    print(f"sampled 0% / off: CPU per request {zero_total / off_total:.3f}x, "
          f"req/s {summary['sampled 0%']['rps'] / summary['tracing off']['rps']:.3f}x")
    for side in ("tracing off", "tracing on"):
        names = sorted({name for run in results[side] for name in run["threads_us"]})
        shares = {name: statistics.median(run["threads_us"].get(name, 0.0) for run in results[side])
                  for name in names}
        print(f"worker CPU per request by thread, {side}: "
              + ", ".join(f"{name} {us:.1f} us" for name, us in shares.items() if us >= 0.05))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
