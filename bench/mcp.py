"""Benchmark: an MCP tool call through a profile against Envoy alone, same server, one run;
and through a profile combining two servers (the quickstart's `workspace`).

    flock /tmp/cpu.lock .venv/bin/python bench/mcp.py [--calls 300] [--rounds 3]

Starts the quickstart (`extproc up`: Envoy, one ext_proc worker, the demo MCP server
built with the official SDK) with one extra route, `/direct/mcp`, from the same Envoy to
the same server cluster with the ext_proc filter off: Envoy alone. On each path an
initialized session calls `echo` sequentially, rounds interleaved; printed per path: p50
and mean latency, and the worker's CPU per call (from /proc). The gateway's path runs
its four ext_proc messages (request headers and body, response headers and body), the
key, the tool policy, guardrails on the arguments and the result, the session binding
and the audit line. The combined path adds the aggregator (the official SDK's low-level
server and a client session per server) and a second pass through Envoy (its loopback
listener); its row adds the aggregator's CPU per call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from gateway_stack import GatewayStack  # noqa: E402

ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}}


class DirectRoute(GatewayStack):
    def edit_envoy(self, envoy: dict) -> None:
        routes = envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
            "typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
        [profile] = [r for r in routes if r.get("name") == "mcp-demo"]
        direct = json.loads(json.dumps(profile))
        direct["name"] = "direct"
        direct["match"] = {"prefix": "/direct/mcp"}
        direct["typed_per_filter_config"] = {"envoy.filters.http.ext_proc": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute",
            "disabled": True}}
        direct["request_headers_to_add"] = [{"header": {"key": "authorization", "value": "Bearer mcp-demo-token"},
                                          "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]
        routes.insert(routes.index(profile), direct)


def session(client: httpx.Client, url: str, key: str) -> dict:
    headers = {**ACCEPT, "authorization": f"Bearer {key}"}
    started = client.post(url, json=INIT, headers=headers)
    started.raise_for_status()
    headers["mcp-session-id"] = started.headers["mcp-session-id"]
    client.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    return headers


def calls(client: httpx.Client, url: str, headers: dict, count: int, tool: str = "echo") -> list[float]:
    times = []
    for index in range(count):
        body = {"jsonrpc": "2.0", "id": index + 10, "method": "tools/call",
                "params": {"name": tool, "arguments": {"text": f"benchmark call {index}"}}}
        started = time.perf_counter()
        answer = client.post(url, json=body, headers=headers)
        times.append(time.perf_counter() - started)
        assert answer.status_code == 200 and f"benchmark call {index}" in answer.text, answer.text
    return times


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def aggregator_pids(stack: GatewayStack) -> list[int]:
    return [pid for pid in stack.descendants() if b"mcp-aggregator" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        stack = DirectRoute(Path(workdir), workers=1).start()
        try:
            base = f"http://127.0.0.1:{stack.port}"
            paths = {"envoy alone": ("/direct/mcp", "x", "echo"),
                     "gateway": ("/mcp/demo", "sk-demo-alice", "echo"),
                     "combined": ("/mcp/workspace", "sk-demo-alice", "demo_echo")}
            results: dict[str, list[float]] = {name: [] for name in paths}
            cpu = {name: 0.0 for name in paths}
            helper_cpu = 0.0
            aggregator = aggregator_pids(stack)
            with httpx.Client(timeout=30) as client:
                opened = {name: (f"{base}{path}", session(client, f"{base}{path}", key), tool)
                          for name, (path, key, tool) in paths.items()}
                for url, headers, tool in opened.values():
                    calls(client, url, headers, 20, tool)                     # warm
                for _ in range(args.rounds):
                    for name, (url, headers, tool) in opened.items():
                        before, helper_before = cpu_seconds(stack.worker_pids()), cpu_seconds(aggregator)
                        results[name] += calls(client, url, headers, args.calls, tool)
                        cpu[name] += cpu_seconds(stack.worker_pids()) - before
                        if name == "combined":
                            helper_cpu += cpu_seconds(aggregator) - helper_before
            alone = statistics.median(results["envoy alone"])
            for name, times in results.items():
                line = (f"{name:12} p50 {statistics.median(times) * 1000:6.2f} ms   "
                        f"mean {statistics.fmean(times) * 1000:6.2f} ms   x{statistics.median(times) / alone:4.2f}   "
                        f"worker CPU/call {cpu[name] / len(times) * 1e6:5.0f} µs")
                if name == "combined":
                    line += f"   aggregator CPU/call {helper_cpu / len(times) * 1e6:5.0f} µs"
                print(line + f"   ({len(times)} calls)")
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
