"""The Envoy side of MCP profiles: a route per profile (`/mcp/<profile>`, made from the
template's `mcp-profile` route) to a cluster per MCP server url. A profile combining
several servers routes to the service's aggregator instead, which reaches each server
through a loopback listener made here (a route per server: the same cluster, rewrites,
retries and timeout as a single-server profile's route, no ext_proc: the call was
governed on its way in)."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from urllib.parse import urlparse
from typing import Callable

from .filter_config import GatewayConfig

TEMPLATE_ROUTE = "mcp-profile"
AGGREGATOR_CLUSTER = "mcp_aggregator"
UPSTREAM_LISTENER = "mcp_upstream"
# The header Envoy adds on its way to the aggregator; the aggregator serves only requests
# carrying the secret (runtime/mcp_aggregator.py). Both processes read the secret from the
# same environment variable: `extproc up` generates it at start; beside `extproc serve`
# (Kubernetes) the operators give both containers the same Secret. Envoy's
# credential_injector on the aggregator's cluster reads it as a static generic secret, so
# the rendered Envoy config (a ConfigMap) names the variable, never the value.
AGGREGATOR_SECRET_HEADER = "x-gateway-aggregator-secret"
AGGREGATOR_SECRET_ENV = "LLMGW_AGGREGATOR_SECRET"
AGGREGATOR_SECRET_NAME = "mcp_aggregator_secret"      # Envoy's static secret holding it
AGGREGATOR_SECRET_MIN_CHARS = 16
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def mcp_routes(routes: list[dict], config: GatewayConfig, make_cluster: Callable) -> list[dict]:
    """Replaces the template route with one route per profile; returns the servers' clusters."""
    [template] = [r for r in routes if r.get("name") == TEMPLATE_ROUTE]
    at = routes.index(template)
    made = []
    aggregator = config.mcp.aggregator
    for profile in config.mcp.profiles.values():
        route = copy.deepcopy(template)
        route["name"] = f"mcp-{profile.name}"
        route["match"] = {"path_separated_prefix": f"/mcp/{profile.name}"}
        if profile.combined:            # the aggregator serves it at the same path
            route["route"]["cluster"] = AGGREGATOR_CLUSTER
            del route["route"]["prefix_rewrite"]
            route["route"]["host_rewrite_literal"] = aggregator.address
        else:
            _to_server(route, profile.server)
        made.append(route)
    routes[at:at + 1] = made
    clusters = {}
    if config.mcp.combined_profiles:
        cluster = make_cluster(SimpleNamespace(url=f"http://{aggregator.address}", cluster=AGGREGATOR_CLUSTER,
                                               max_request_bytes=config.mcp.max_message_bytes), False)
        # Every request to the aggregator, on every attempt, carries the secret (replacing
        # any value a caller sent); without the secret Envoy does not start.
        cluster["typed_extension_protocol_options"][_HTTP_OPTIONS]["http_filters"] = _secret_injector()
        clusters[AGGREGATOR_CLUSTER] = cluster
    for server in config.mcp.servers.values():
        cluster = make_cluster(SimpleNamespace(url=server.url, cluster=server.cluster,
                                               max_request_bytes=config.mcp.max_message_bytes), False)
        if server.failover_urls:
            _failover(cluster, server)
        clusters[server.cluster] = cluster
    return list(clusters.values())


def aggregator_secrets(config: GatewayConfig) -> list[dict]:
    """Envoy's static secret the aggregator's cluster injects (none without a combined
    profile): read from Envoy's environment, so the config never holds its value."""
    if not config.mcp.combined_profiles:
        return []
    return [{"name": AGGREGATOR_SECRET_NAME,
             "generic_secret": {"secret": {"environment_variable": AGGREGATOR_SECRET_ENV}}}]


def _secret_injector() -> list[dict]:
    """The upstream filters of the aggregator's cluster: the secret as a header, then the codec."""
    generic = {"@type": "type.googleapis.com/envoy.extensions.http.injected_credentials.generic.v3.Generic",
               "credential": {"name": AGGREGATOR_SECRET_NAME}, "header": AGGREGATOR_SECRET_HEADER}
    return [
        {"name": "envoy.filters.http.credential_injector", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.credential_injector.v3.CredentialInjector",
            "overwrite": True, "allow_request_without_credential": False,
            "credential": {"name": "envoy.http.injected_credentials.generic", "typed_config": generic}}},
        {"name": "envoy.filters.http.upstream_codec", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"}}]


def aggregator_secret_problem(value: str | None) -> str | None:
    """Why a combined profile cannot be served with this secret (None: it can)."""
    if not value:
        return (f"a combined MCP profile is served by the aggregator, which only Envoy may call: set "
                f"{AGGREGATOR_SECRET_ENV} (at least {AGGREGATOR_SECRET_MIN_CHARS} random characters, e.g. "
                f"`openssl rand -base64 32`) in the environment of both this process and Envoy, from one "
                f"Secret (k8s/examples/mcp-aggregator-secret.yaml)")
    if len(value) < AGGREGATOR_SECRET_MIN_CHARS:
        return f"{AGGREGATOR_SECRET_ENV} must be at least {AGGREGATOR_SECRET_MIN_CHARS} characters"
    return None


def _to_server(route: dict, server) -> None:
    route["route"]["cluster"] = server.cluster
    route["route"]["prefix_rewrite"] = server.path
    # The server sees its own authority (SDK servers refuse other Host headers).
    route["route"]["host_rewrite_literal"] = server.authority


def upstream_listener(routes: list[dict], config: GatewayConfig) -> dict | None:
    """The loopback listener the aggregator reaches each combined server through, at
    `/<server>`: Envoy keeps the connections, retries, failover, TLS and timeouts."""
    combined = config.mcp.combined_profiles
    if not combined:
        return None
    [template] = [r for r in routes if r.get("name") == TEMPLATE_ROUTE]
    servers = {s.name: s for profile in combined for s in profile.servers}
    server_routes = []
    for server in servers.values():
        route = {"name": f"mcp-upstream-{server.name}", "match": {"path_separated_prefix": f"/{server.name}"},
                 "route": copy.deepcopy(template["route"])}
        _to_server(route, server)
        server_routes.append(route)
    # The aggregator passes no server-initiated message (the gateway could not guard it):
    # its sessions' GET streams are answered here instead of held open at each server.
    server_routes.insert(0, {"name": "mcp-upstream-no-get", "match": {
        "prefix": "/", "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
        "direct_response": {"status": 405}})
    host, _, port = config.mcp.aggregator.upstream_address.rpartition(":")
    return {
        "name": UPSTREAM_LISTENER,
        "address": {"socket_address": {"address": host, "port_value": int(port)}},
        "per_connection_buffer_limit_bytes": 8388608,
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": _HCM, "stat_prefix": UPSTREAM_LISTENER, "stream_idle_timeout": "300s",
            "route_config": {"name": UPSTREAM_LISTENER, "virtual_hosts": [
                {"name": "mcp_servers", "domains": ["*"], "routes": server_routes}]},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}}]}}]}]}


def _failover(cluster: dict, server) -> None:
    """The replicas as lower priorities of the cluster: Envoy's retries move down them
    (the route's previous_priorities) and outlier detection keeps a failing one out."""
    groups = cluster["load_assignment"]["endpoints"]
    dns = cluster.get("type") != "STATIC"
    for priority, url in enumerate(server.failover_urls, 1):
        parsed = urlparse(url)
        endpoint: dict = {"address": {"socket_address": {
            "address": parsed.hostname, "port_value": parsed.port or (443 if parsed.scheme == "https" else 80)}}}
        if dns:
            endpoint["hostname"] = parsed.hostname
        groups.append({"priority": priority, "lb_endpoints": [{"endpoint": endpoint}]})
    if dns:
        cluster["type"] = "STRICT_DNS"           # LOGICAL_DNS takes one endpoint only
