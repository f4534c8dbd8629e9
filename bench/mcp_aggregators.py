"""Benchmark: the aggregator behind combined MCP profiles, built on the official `mcp` SDK
(extproc/runtime/mcp_aggregator.py), against fastmcp's proxy, in one run.

    flock /tmp/cpu.lock .venv/bin/python bench/mcp_aggregators.py --fastmcp-python /path/to/venv/bin/python

fastmcp 2.x (the last line that runs with the `mcp` 1.x SDK the gateway pins; 3.x and
4.x need `mcp` 2.x) lives in a venv of its own: `python -m venv V && V/bin/pip install
"fastmcp==2.14.7" "mcp==1.30.0"`. The quickstart runs (`extproc up`: Envoy, the demo
servers, the SDK aggregator); fastmcp's proxy (`FastMCP.as_proxy` over both servers,
auto-prefixed `demo_echo`…) starts beside it and reaches the servers the same way, through
Envoy's loopback listener. Each aggregator is called directly (no gateway in front: the
gateway's own cost is bench/mcp.py's): an initialized session, sequential `tools/call
demo_echo`, rounds interleaved; per aggregator the p50 and mean latency and the
process's CPU per call (from /proc), and each process's memory after the run.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from gateway_stack import GatewayStack, free_port, wait_for_port  # noqa: E402

# bench/mcp.py's helpers (loaded by path: its module name is the SDK's).
_spec = importlib.util.spec_from_file_location("bench_mcp", Path(__file__).resolve().parent / "mcp.py")
bench_mcp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_mcp)
aggregator_pids, calls, cpu_seconds, session = (bench_mcp.aggregator_pids, bench_mcp.calls,
                                                bench_mcp.cpu_seconds, bench_mcp.session)

FASTMCP_PROXY = """
import sys
from fastmcp import FastMCP
port, upstream = int(sys.argv[1]), sys.argv[2]
servers = {name: {"url": f"{upstream}/{name}", "transport": "http",
                  "headers": {"authorization": f"Bearer mcp-{name}-token"}} for name in ("demo", "ops")}
FastMCP.as_proxy({"mcpServers": servers}, name="bench").run(
    transport="http", host="127.0.0.1", port=port, path="/mcp", show_banner=False, log_level="WARNING")
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fastmcp-python", required=True, help="python of a venv with fastmcp 2.x")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        stack = GatewayStack(Path(workdir), workers=1).start()
        port = free_port()
        upstream = stack.config["mcp"]["aggregator"]["upstream_address"]
        proxy = subprocess.Popen([args.fastmcp_python, "-c", FASTMCP_PROXY, str(port), f"http://{upstream}"])
        try:
            wait_for_port(port, timeout=60, process=proxy)
            [sdk_pid] = aggregator_pids(stack)
            paths = {"mcp SDK (lowlevel Server + ClientSession)":
                     (f"http://{stack.config['mcp']['aggregator']['address']}/mcp/workspace", sdk_pid),
                     "fastmcp 2.14 as_proxy": (f"http://127.0.0.1:{port}/mcp", proxy.pid)}
            results: dict[str, list[float]] = {name: [] for name in paths}
            cpu = {name: 0.0 for name in paths}
            with httpx.Client(timeout=30) as client:
                opened = {name: (url, session(client, url, "unused"), pid) for name, (url, pid) in paths.items()}
                for url, headers, _ in opened.values():
                    calls(client, url, headers, 20, "demo_echo")          # warm
                for _ in range(args.rounds):
                    for name, (url, headers, pid) in opened.items():
                        before = cpu_seconds([pid])
                        results[name] += calls(client, url, headers, args.calls, "demo_echo")
                        cpu[name] += cpu_seconds([pid]) - before
            for name, times in results.items():
                print(f"{name:42} p50 {statistics.median(times) * 1000:6.2f} ms   "
                      f"mean {statistics.fmean(times) * 1000:6.2f} ms   "
                      f"CPU/call {cpu[name] / len(times) * 1e6:5.0f} µs   RSS {rss_mb(paths[name][1]):5.0f} MB"
                      f"   ({len(times)} calls)")
        finally:
            proxy.terminate()
            proxy.wait()
            stack.stop()


if __name__ == "__main__":
    main()
