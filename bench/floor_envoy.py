"""The Envoy config of bench/floor.py's rows: the quickstart's, its ext_proc filter in each
message pattern's fixed modes, its clusters pointed at the do-nothing servicer and the
mock, and what reads the request body before ext_proc (`--request-reader`)."""

from __future__ import annotations

from pathlib import Path

import yaml
from gateway_stack import free_port  # (tests/: bench/floor.py puts it on the path)

ROOT = Path(__file__).resolve().parent.parent


# What reads `stream`, `model` and `stream_options.include_usage` from the body before
# ext_proc: the gateway's Lua reader (envoy/template.yaml), json_to_metadata's request
# rules as the alternative it replaced, or nothing (Envoy's cost of the rest alone).
JSON_TO_METADATA_RULES = {"rules": [
    {"selectors": [{"key": "stream"}], "on_present": {"metadata_namespace": "llm_gateway.request", "key": "stream"},
     "on_missing": {"metadata_namespace": "llm_gateway.request", "key": "stream", "value": False}},
    {"selectors": [{"key": "model"}], "on_present": {"metadata_namespace": "llm_gateway.request", "key": "model"}},
    {"selectors": [{"key": "stream_options"}, {"key": "include_usage"}],
     "on_present": {"metadata_namespace": "llm_gateway.request", "key": "include_usage"}}]}


def with_reader(filters: list, reader: str) -> None:
    """The quickstart's filters with this request reader before ext_proc."""
    at = next(i for i, f in enumerate(filters) if f["name"] == "envoy.filters.http.ext_proc")
    [lua] = [i for i, f in enumerate(filters[:at]) if f["name"] == "envoy.filters.http.lua"]
    if reader != "lua":
        del filters[lua]
    if reader == "json_to_metadata":
        [rules] = [f["typed_config"] for f in filters if f["name"] == "envoy.filters.http.json_to_metadata"]
        rules["request_rules"] = JSON_TO_METADATA_RULES


# Each pattern: the ext_proc modes Envoy runs with, and where the servicer routes.
PATTERNS = {
    "3": {"request_body_mode": "BUFFERED", "response_body_mode": "BUFFERED", "route_at": "request_body"},
    "2": {"request_body_mode": "BUFFERED", "response_body_mode": "NONE", "route_at": "request_body"},
    "2 unread": {"request_body_mode": "NONE", "response_body_mode": "NONE", "response_trailer_mode": "SEND",
                 "route_at": "request_headers"},
    "1": {"request_body_mode": "NONE", "response_body_mode": "NONE", "route_at": "request_headers"},
    # The request headers alone, the usage read as for "2 unread" but brought by Envoy's gRPC
    # access log, in batches (an entry per call), instead of a trailers message.
    "1 logged": {"request_body_mode": "NONE", "response_body_mode": "NONE", "route_at": "request_headers",
                 "logged": True},
}


def envoy_config(workdir: Path, socket: str, mock_port: int, messages: str,
                 reader: str = "lua", access_log: bool = False) -> tuple[Path, int]:
    config = yaml.safe_load((ROOT / "envoy" / "quickstart.yaml").read_text())
    port = free_port()
    config["admin"]["address"]["pipe"]["path"] = str(workdir / "envoy-admin.sock")
    listener = config["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["port_value"] = port
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    if not access_log:
        hcm.pop("access_log", None)
    if PATTERNS[messages].get("logged"):
        # Every call's entry to the servicer, with its metadata; no trailers added.
        hcm["access_log"] = [{"name": "envoy.access_loggers.http_grpc", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig",
            "common_config": {"log_name": "calls", "transport_api_version": "V3",
                              "grpc_service": {"envoy_grpc": {"cluster_name": "extproc"}},
                              "buffer_flush_interval": "0.2s"}}}]
        hcm["http_filters"] = [f for f in hcm["http_filters"]
                               if f["typed_config"].get("extension_config", {}).get("name")
                               != "envoy.filters.http.bandwidth_limit"]
    with_reader(hcm["http_filters"], reader)
    ext_proc = next(f["typed_config"] for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.ext_proc")
    # Fixed modes rather than the gateway's per-request override: the same messages.
    ext_proc["processing_mode"]["response_header_mode"] = "SKIP"
    ext_proc["processing_mode"].update({mode: value for mode, value in PATTERNS[messages].items()
                                        if mode.endswith("_mode")})
    for cluster in config["static_resources"]["clusters"]:
        for group in cluster.get("load_assignment", {}).get("endpoints", []):
            for endpoint in group["lb_endpoints"]:
                address = endpoint["endpoint"]["address"]
                if "pipe" in address:
                    address["pipe"]["path"] = socket
                elif "socket_address" in address:
                    address["socket_address"]["port_value"] = mock_port
    path = workdir / f"envoy-{messages.replace(' ', '-')}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, port
