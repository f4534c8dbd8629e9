"""The Envoy side of MCP profiles: a route per profile (`/mcp/<profile>`, made from the
template's `mcp-profile` route) to a cluster per MCP server url."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from urllib.parse import urlparse
from typing import Callable

from .filter_config import GatewayConfig

TEMPLATE_ROUTE = "mcp-profile"


def mcp_routes(routes: list[dict], config: GatewayConfig, make_cluster: Callable) -> list[dict]:
    """Replaces the template route with one route per profile; returns the servers' clusters."""
    [template] = [r for r in routes if r.get("name") == TEMPLATE_ROUTE]
    at = routes.index(template)
    made = []
    for profile in config.mcp.profiles.values():
        server = profile.server
        route = copy.deepcopy(template)
        route["name"] = f"mcp-{profile.name}"
        route["match"] = {"path_separated_prefix": f"/mcp/{profile.name}"}
        route["route"]["cluster"] = server.cluster
        route["route"]["prefix_rewrite"] = server.path
        # The server sees its own authority (SDK servers refuse other Host headers).
        route["route"]["host_rewrite_literal"] = server.authority
        made.append(route)
    routes[at:at + 1] = made
    clusters = {}
    for server in config.mcp.servers.values():
        cluster = make_cluster(SimpleNamespace(url=server.url, cluster=server.cluster), False)
        if server.failover_urls:
            _failover(cluster, server)
        clusters[server.cluster] = cluster
    return list(clusters.values())


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
