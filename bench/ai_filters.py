"""Envoy's own AI filters (alpha in 1.40) against what the gateway's Envoy config does
today, Envoy's CPU per request only: each side is one Envoy (one thread, core 0) in
front of the same mock (core 1, with wrk), with the router and the one filter measured.

    .venv/bin/python bench/ai_filters.py [--seconds 5] [--rounds 3]

Request side (what reads `model` and `stream` from the body before ext_proc sees the
headers):
- `lua reader`: the quickstart's Lua filter (envoy/quickstart.yaml), into untyped metadata;
- `ai request_info`: `envoy.filters.http.ai_protocol_manager` with the `request_info` AI
  filter (the route declared OpenAI Chat Completions), into typed metadata
  `envoy.ai.request_info` (model, stream, max output tokens, message and tool counts).
Response side (the usage in the provider's JSON answer):
- `json_to_metadata`: the quickstart's response rule (usage.total_tokens);
- `ai token usage`: the same filter in the cluster's upstream filters, extracting the
  usage into typed metadata `envoy.ai.token_usage`.
Against `router only`, in interleaved rounds, for a short chat call and an agent's 400 KB
history (bench/run.py's bodies).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml
from run import PROMPT, ensure_wrk, history_body, wrk
from sides import ROOT, cpu_seconds, pin

from gateway_stack import free_port, wait_for_port

AI = "type.googleapis.com/envoy.extensions.filters.http.ai_protocol_manager.v3."
ROUTER = {"name": "envoy.filters.http.router",
          "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}


def quickstart_filter(name: str) -> dict:
    """The quickstart's first HTTP filter of that name, as shipped."""
    envoy = yaml.safe_load((ROOT / "envoy" / "quickstart.yaml").read_text())
    hcm = envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return copy.deepcopy(next(f for f in hcm["http_filters"] if f["name"] == name))


def config(side: str, port: int, mock_port: int) -> dict:
    filters, per_route, upstream = [], {}, None
    chat = {"llm_protocol": "OPENAI_CHAT_COMPLETIONS"}
    if side == "lua reader":
        filters.append(quickstart_filter("envoy.filters.http.lua"))
    elif side == "ai request_info":
        filters.append({"name": "ai_request", "typed_config": {
            "@type": AI + "AiProtocolManager", "request_handling": {},
            "filters": [{"name": "envoy.http.ai_filters.request_info", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.http.ai_filters.request_info.v3.RequestInfo"}}]}})
        per_route["ai_request"] = {"@type": AI + "AiProtocolManagerPerRoute", "request": chat}
    elif side == "json_to_metadata":
        filters.append(quickstart_filter("envoy.filters.http.json_to_metadata"))
    elif side == "ai token usage":
        per_route["ai_response"] = {"@type": AI + "AiProtocolManagerPerRoute", "request": chat, "response": chat}
        upstream = [{"name": "ai_response", "typed_config": {"@type": AI + "AiProtocolManager", "response_handling": {
                        "token_usage": {}}}},
                    {"name": "envoy.filters.http.upstream_codec", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"}}]
    route = {"match": {"prefix": "/"}, "route": {"cluster": "mock", "timeout": "0s"}}
    if per_route:
        route["typed_per_filter_config"] = per_route
    cluster = {"name": "mock", "type": "STATIC", "connect_timeout": "2s",
               "load_assignment": {"cluster_name": "mock", "endpoints": [{"lb_endpoints": [{"endpoint": {
                   "address": {"socket_address": {"address": "127.0.0.1", "port_value": mock_port}}}}]}]}}
    if upstream:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http_protocol_options": {}}, "http_filters": upstream}}
    return {"static_resources": {
        "listeners": [{"name": "api", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                       "filter_chains": [{"filters": [{
                           "name": "envoy.filters.network.http_connection_manager", "typed_config": {
                               "@type": "type.googleapis.com/envoy.extensions.filters.network."
                                        "http_connection_manager.v3.HttpConnectionManager",
                               "stat_prefix": "api",
                               "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
                                                                   "routes": [route]}]},
                               "http_filters": [*filters, ROUTER]}}]}]}],
        "clusters": [cluster]}}


def start_envoy(side: str, workdir: Path, mock_port: int, cleanup: contextlib.ExitStack) -> tuple[int, str]:
    from extproc.config.envoy_config import envoy_binary
    port = free_port()
    path = workdir / f"{side.replace(' ', '-')}.yaml"
    path.write_text(yaml.safe_dump(config(side, port, mock_port)))
    process = subprocess.Popen([envoy_binary(), "-c", str(path), "--concurrency", "1", "--disable-hot-restart",
                                "--log-level", "error"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cleanup.callback(process.send_signal, signal.SIGTERM)
    wait_for_port(port, process=process)
    pin(process.pid, 0)
    return process.pid, f"http://127.0.0.1:{port}/v1/chat/completions"


SIDES = ("router only", "lua reader", "ai request_info", "json_to_metadata", "ai token usage")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    binary = ensure_wrk()
    bodies = {"json": '{"model":"gpt-4o-mini","stream":false,"messages":[{"role":"user","content":"%s"}]}' % PROMPT,
              "json 400KB resent": history_body(400, False)}
    rows: dict[tuple[str, str], list[dict]] = {}
    with contextlib.ExitStack() as cleanup:
        workdir = Path(tempfile.mkdtemp(prefix="llmgw-ai-filters-"))
        mock_port = free_port()
        mock = subprocess.Popen([sys.executable, "-m", "extproc", "mock-provider", "--port", str(mock_port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cleanup.callback(mock.terminate)
        wait_for_port(mock_port, process=mock)
        pin(mock.pid, 1)
        envoys = {side: start_envoy(side, workdir, mock_port, cleanup) for side in SIDES}
        for side, (_, url) in envoys.items():               # each answers, and warms up
            answer = httpx.post(url, content=bodies["json"], headers={"content-type": "application/json"}, timeout=10)
            assert answer.status_code == 200, (side, answer.status_code, answer.text[:300])
            wrk(binary, url, "k", bodies["json"], 1, 16)
        for _ in range(args.rounds):
            for body_name, body in bodies.items():
                for side, (pid, url) in envoys.items():
                    before = cpu_seconds(pid)
                    result = wrk(binary, url, "k", body, args.seconds, 32)
                    result["envoy"] = (cpu_seconds(pid) - before) / max(1, result["requests"]) * 1e6
                    rows.setdefault((body_name, side), []).append(result)
                    time.sleep(0.2)
    print(f"\nEnvoy alone with one filter (1 thread, core 0; mock + wrk on core 1), {args.rounds} interleaved "
          f"rounds x {args.seconds} s, 32 connections, medians\n")
    print("| body | Envoy with | req/s | Envoy CPU/req | over the router alone | non-2xx |")
    print("|---|---|---|---|---|---|")
    for body_name in bodies:
        base = statistics.median(r["envoy"] for r in rows[(body_name, "router only")])
        for side in SIDES:
            cpu = statistics.median(r["envoy"] for r in rows[(body_name, side)])
            rps = statistics.median(r["rps"] for r in rows[(body_name, side)])
            errors = sum(r["errors"] for r in rows[(body_name, side)])
            print(f"| {body_name} | {side} | {rps:,.0f} | {cpu:,.0f} µs | {cpu - base:+,.0f} µs | {errors} |")


if __name__ == "__main__":
    main()
