"""The Envoy side of MCP profiles: a route per profile (`/mcp/<profile>`, made from the
template's `mcp-profile` route) to a cluster per MCP server url."""

from __future__ import annotations

import copy
from types import SimpleNamespace
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
        clusters[server.cluster] = make_cluster(SimpleNamespace(url=server.url, cluster=server.cluster), False)
    return list(clusters.values())
