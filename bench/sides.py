"""The sides a bench compares, started side by side and pinned: Envoy alone (the router
only) and the gateway (Envoy + one ext_proc worker, the quickstart pipeline), in front of
the same mock provider. Envoy and the worker get core 0; the mock (and the load
generator, bench/run.py's wrk) core 1. Also the /proc readings the benches report."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from gateway_stack import GatewayStack, free_port, quickstart_config, wait_for_port  # noqa: E402

# The gateway's caller key; Envoy alone talks to the mock with the mock's own key.
KEYS = {"gateway": "sk-demo-alice", "envoy alone": "mock-provider-key"}
GUARDED_KEY = "sk-bench-guarded"          # its policy guards responses (streams included) too


def pin(pid: int, core: int) -> None:
    subprocess.run(["taskset", "-a", "-p", "-c", str(core), str(pid)], stdout=subprocess.DEVNULL, check=False)


def children(pid: int) -> list[int]:
    """The processes `pid` started, and theirs (`extproc up` forks its Python children
    from a fork server of its own)."""
    found, parents = [], [pid]
    while parents:
        out = subprocess.run(["pgrep", "-P", ",".join(map(str, parents))], capture_output=True, text=True).stdout
        parents = [int(p) for p in out.split()]
        found += parents
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_redis(workdir: Path) -> tuple[subprocess.Popen, str]:
    """A redis-server (Debian's, installed when missing) on core 1, beside the mock: the
    budget store of replicas is another machine's, so its own CPU is not the gateway's."""
    if shutil.which("redis-server") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = free_port()
    process = subprocess.Popen(["taskset", "-c", "1", "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no", "--dir", str(workdir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, process=process)
    return process, f"redis://127.0.0.1:{port}/0"


def envoy_alone(workdir: Path, mock_port: int, cluster: str = "mock",
                concurrency: int = 1) -> tuple[subprocess.Popen, int]:
    """Envoy as a plain proxy to the mock on `mock_port`, through the quickstart's `cluster`
    (its upstream filters kept: the `bedrock` cluster's signs each request), with
    `concurrency` worker threads."""
    envoy = yaml.safe_load((ROOT / "envoy" / "quickstart.yaml").read_text())
    port, admin = free_port(), str(workdir / "envoy-alone-admin.sock")   # not the gateway Envoy's
    envoy["admin"]["address"]["pipe"]["path"] = admin
    # The API listener alone: the others (the refusing gRPC one, MCP's loopback) name clusters
    # a plain proxy does not have.
    listener = envoy["static_resources"]["listeners"][0]
    envoy["static_resources"]["listeners"] = [listener]
    listener["address"]["socket_address"]["port_value"] = port
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    # A plain proxy: the router alone (the gateway's own filters are part of what it costs).
    hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.router"]
    hcm["route_config"]["virtual_hosts"][0]["routes"] = [
        {"match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "0s"}}]
    clusters = envoy["static_resources"]["clusters"]
    envoy["static_resources"]["clusters"] = [c for c in clusters if c["name"] == cluster]
    envoy["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0][
        "endpoint"]["address"]["socket_address"]["port_value"] = mock_port
    path = workdir / "envoy-alone.yaml"
    path.write_text(yaml.safe_dump(envoy))
    from extproc.config.envoy_config import envoy_binary
    process = subprocess.Popen([envoy_binary(), "-c", str(path), "--concurrency", str(concurrency),
                                "--disable-hot-restart", "--log-level", "error"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.Client(transport=httpx.HTTPTransport(uds=admin)).get("http://envoy/ready", timeout=1).status_code == 200:
                return process, port
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("Envoy alone did not start")


@dataclasses.dataclass
class Sides:
    """Envoy alone and the gateway, started side by side on the same mock and pinned."""
    urls: dict[str, str]          # side -> its chat completions URL
    workers: list[int]            # the gateway's ext_proc worker
    envoys: list[int]             # the gateway's Envoy
    alone: subprocess.Popen       # Envoy alone
    mock_port: int
    mock_ports: dict[str, int]    # every mock listener (mock-anthropic, ...)
    stack: GatewayStack | None = None     # the gateway (its config and state dir)


def start_sides(cleanup: contextlib.ExitStack, store: str = "sqlite", transport: str = "h2",
                edit=None, env: dict[str, str] | None = None) -> Sides:
    """The gateway (one worker, the quickstart pipeline, a token budget for alice's team in
    `store`, and a key whose responses a guardrail reads) and Envoy alone in front of its
    mock: Envoy and the worker on core 0, the mock on core 1. `cleanup` stops them.
    `edit`: called with the gateway's config before it starts (bench/cache.py). `env`: for
    the gateway's processes, besides this one's (bench/ab.py: another version's source)."""
    workdir = Path(tempfile.mkdtemp(prefix="llmgw-bench-"))
    config = quickstart_config()
    config.setdefault("server", {})["transport"] = transport
    config["budgets"].append({"name": "bench-team-tokens", "scope": "team", "match": "research",
                              "unit": "tokens", "limit": 10**12, "window": "month"})
    if store == "redis":
        redis, url = start_redis(workdir)
        cleanup.callback(redis.terminate)
        config["store"] = {"kind": "redis", "url": url}
    # One key here asks for all the worker's time: its guardrail scan allowance
    # (max_scan_ms_per_key_per_minute, 10 s a minute) would refuse its calls 429 after the
    # first seconds of new text (code, fresh histories), and the rows would time refusals.
    config["guardrails"]["max_scan_ms_per_key_per_minute"] = 3_600_000
    rules = config["guardrails"]["rules"]
    rules.append({"name": "pii-response", "type": "pii", "action": "redact", "directions": ["response"]})
    config["guardrails"]["policies"] = {"default": [r["name"] for r in rules[:-1]],
                                        "keys": {"guarded": [r["name"] for r in rules]}}
    config["keys"].append({"id": "guarded", "key": GUARDED_KEY, "team": "research", "models": "*"})
    # A provider of the Responses API only, on the same mock (bench/dialects.py).
    config["providers"]["responses-only"] = {"type": "openai-responses", "url": "http://127.0.0.1:10101",
                                             "api_key": {"value": "mock-provider-key"}}
    config["models"]["responses-mini"] = {"backends": [{"provider": "responses-only", "model": "gpt-4o-mini"}],
                                          "price": {"input": 0.15, "output": 0.60}}
    if edit is not None:
        edit(config)
    stack = GatewayStack(workdir, config, workers=1, env=env)
    cleanup.callback(stack.stop)
    stack.start()
    up_pid = stack.process.pid
    workers = [p for p in children(up_pid) if " worker " in cmdline(p)]
    envoys = [p for p in children(up_pid) if "envoy" in cmdline(p).split(" ")[0]]
    for pid in workers + envoys + [up_pid]:
        pin(pid, 0)
    for pid in children(up_pid):
        if "mock-provider" in cmdline(pid):
            pin(pid, 1)
    alone, alone_port = envoy_alone(workdir, stack.mock_ports["mock"])
    cleanup.callback(alone.send_signal, signal.SIGTERM)
    pin(alone.pid, 0)
    return Sides({"envoy alone": f"http://127.0.0.1:{alone_port}/v1/chat/completions",
                  "gateway": f"{stack.base_url}/chat/completions"},
                 workers, envoys, alone, stack.mock_ports["mock"], dict(stack.mock_ports), stack)
