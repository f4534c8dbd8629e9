"""The Envoy side of pool providers (config/pools.py): a cluster per pool whose load
balancer sends each call to the replica the service picked, and a route for pool calls
whose retries go to the picked replica's fallbacks.

The cluster's load-balancing policy is Envoy's `override_host`: it reads the hosts the
service named in DESTINATION_HEADER ("ip:port,ip:port,..."), the first for the first
attempt and the next one on each retry; a call naming none (or only hosts the cluster does
not have) is balanced by least-request. The hosts must be the cluster's own: STATIC
endpoints from the config, or, over a Kubernetes Service, a STRICT_DNS cluster on the
Service's headless name (every ready pod's address). See
docs/decisions/pool-endpoint-picking.md.
"""

from __future__ import annotations

import copy

from .envoy_contract import DESTINATION_HEADER, POOL_ROUTE, ROUTE_HEADER, ROUTING_HEADER
from .providers import Provider

_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_OVERRIDE_HOST = "type.googleapis.com/envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost"
_LEAST_REQUEST = "type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest"


def pool_cluster(provider: Provider) -> dict:
    pool = provider.pool
    assert pool is not None
    if pool.service is None:
        endpoints = []
        for address in pool.endpoints:
            host, _, port = address.rpartition(":")
            endpoints.append({"endpoint": {"address": {"socket_address": {"address": host, "port_value": int(port)}}}})
        kind: dict = {"type": "STATIC"}
    else:
        endpoints = [{"endpoint": {"address": {"socket_address": {
            "address": pool.service.dns_name, "port_value": pool.service.port}}}}]
        kind = {"type": "STRICT_DNS", "dns_lookup_family": "V4_PREFERRED", "dns_refresh_rate": "5s",
                "respect_dns_ttl": False}
    return {
        "name": provider.cluster, **kind, "connect_timeout": "1s",
        "per_connection_buffer_limit_bytes": max(16 << 20, provider.max_request_bytes + (4 << 20)),
        "typed_extension_protocol_options": {_HTTP_OPTIONS: {
            "@type": f"type.googleapis.com/{_HTTP_OPTIONS}", "explicit_http_config": {"http_protocol_options": {}}}},
        "circuit_breakers": {"thresholds": [{"priority": "DEFAULT", "max_connections": 10000,
                                             "max_pending_requests": 10000, "max_requests": 10000,
                                             "max_retries": 10000}]},
        "load_balancing_policy": {"policies": [{"typed_extension_config": {
            "name": "envoy.load_balancing_policies.override_host",
            "typed_config": {"@type": _OVERRIDE_HOST,
                             "override_host_sources": [{"header": DESTINATION_HEADER}],
                             "fallback_policy": {"policies": [{"typed_extension_config": {
                                 "name": "envoy.load_balancing_policies.least_request",
                                 "typed_config": {"@type": _LEAST_REQUEST}}}]}}}}]},
        "load_assignment": {"cluster_name": provider.cluster, "endpoints": [{"lb_endpoints": endpoints}]},
    }


def add_pool_route(routes: list[dict], fallbacks: int) -> None:
    """Pool calls' route, before the concrete models' (whose copy it is): retries on a
    refused or reset connection or a 503 go to the next replica the service named."""
    [concrete] = [r for r in routes if (r.get("route") or {}).get("cluster_header") == ROUTING_HEADER
                  and not (r.get("match") or {}).get("headers")]
    route = copy.deepcopy(concrete)
    route["match"] = {"prefix": "/", "headers": [{"name": ROUTE_HEADER, "string_match": {"exact": POOL_ROUTE}}]}
    policy = route["route"]["retry_policy"]
    policy["retry_on"] = "reset,connect-failure,refused-stream,retriable-status-codes"
    policy["retriable_status_codes"] = [503]
    policy["num_retries"] = max(1, fallbacks)
    policy.pop("retry_host_predicate", None)        # override_host walks the service's list itself
    routes.insert(routes.index(concrete), route)
