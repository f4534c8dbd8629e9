"""The names the Envoy config and the service share: dynamic metadata namespaces, the
headers the gateway owns, and the features the Envoy in front announces it does for the
service. The shipped Envoy configs (envoy/*.yaml) spell the same strings; `extproc check
--envoy` reads them from here."""

from __future__ import annotations

import functools

# Client headers the gateway owns: stripped from every request so no caller can
# choose a cluster or forge attribution.
ROUTING_HEADER = "x-gateway-cluster"             # a concrete model's cluster (route: cluster_header)
ROUTE_HEADER = "x-gateway-route"                 # failover-<N>: the route of virtual models of N backends
# A streamed call to a virtual model also names its model's first-byte timeout (ms): the
# failover route of that length and timeout has Envoy give up on an attempt whose response
# headers have not come within it, and try the next backend.
FIRST_BYTE_HEADER = "x-gateway-first-byte-ms"
# A pool model's call: the picked replica then its fallbacks ("ip:port,ip:port"), which the
# pool cluster's override_host policy reads, one further on each retry (config/envoy_pool.py),
# on the route of pool calls (x-gateway-route: pool).
DESTINATION_HEADER = "x-gateway-destination-endpoint"
POOL_ROUTE = "pool"
UPSTREAM_CLUSTER_HEADER = "x-gateway-upstream-cluster"   # which cluster answered (failover route)
INTERNAL_HEADER_PREFIX = "x-gateway-"

# gRPC metadata of the ext_proc filter inside provider clusters: one stream per attempt.
ROLE_METADATA = "x-extproc-role"

# Dynamic metadata namespaces (must match envoy/*.yaml metadata_options):
METADATA_NAMESPACE = "llm_gateway"              # usage for the access log; the failover plan
ROUTE_METADATA_NAMESPACE = "llm_gateway.route"  # read by Envoy's priority_group specifier
STREAM_USAGE_NAMESPACE = "llm_gateway.stream"   # usage Envoy's sse_to_metadata read from a stream

# What the Envoy in front does for the service, announced in the ext_proc filter's
# grpc_service.initial_metadata (envoy/quickstart.yaml; `extproc check --envoy` checks
# each announced feature's filters). An Envoy config that does not announce a feature
# keeps the service on the path that does not need it: slower, never wrong.
ENVOY_FEATURES_METADATA = "x-extproc-envoy-features"
# The status comes as an attribute and the gateway's response headers are added from
# metadata: a call whose response headers the service does not see (one_message.py).
HEADERS_FROM_METADATA = "headers-from-metadata"
STREAMS_PASSED_THROUGH = "streams-passed-through"   # usage read, trailers added (pass_through.py)
USAGE_CHUNK_STRIPPED = "usage-chunk-stripped"       # the Lua filter takes out an unasked usage chunk
# A call whose policy reads nothing of its body is routed at its request headers and its
# body is never sent; json_to_metadata reads its JSON answer's usage for the trailers
# message (stages/body_unread.py).
BODIES_UNREAD = "bodies-unread"
# Envoy's request reader also reads what bounds a call's output, each field under its
# dotted name (a plain integer as a number; `numbers_unread` set when one is anything
# else): a budget can then reserve for a call whose body is unread (stages/budget/unread.py).
OUTPUT_CAPS_READ = "output-caps-read"
OUTPUT_FIELDS_READ = frozenset({
    "max_tokens", "max_completion_tokens", "max_output_tokens", "n",
    "generationConfig.maxOutputTokens", "generationConfig.candidateCount",
    "generation_config.max_output_tokens", "generation_config.candidate_count"})
NUMBERS_UNREAD = "numbers_unread"
# A stream passed through that ends without its trailers (the client left, the provider
# dropped) is logged to the service with the bytes it sent (Envoy's gRPC access log), and
# completed ones come with `response.size` (store/cut_streams.py).
CUT_STREAMS_LOGGED = "cut-streams-logged"
# What Envoy adds from `llm_gateway.headers` (HEADERS_FROM_METADATA): every header the
# service would otherwise set on a response (its backend, the content type of an error
# it rewrote, the budget's x-ratelimit-* and x-gateway-output-capped, the response cache's
# x-gateway-cache).
HEADERS_ADDED_FROM_METADATA = (
    "x-gateway-backend", "content-type", "x-gateway-output-capped", "x-gateway-cache",
    *(f"x-ratelimit-{what}-{unit}" for unit in ("requests", "tokens") for what in ("limit", "remaining", "reset")))
# What Envoy's request reader (a Lua filter before ext_proc, envoy/template.yaml) read from
# a JSON request body before the service sees its headers (`stream`, `model`,
# `include_usage`).
REQUEST_METADATA_NAMESPACE = "llm_gateway.request"


@functools.lru_cache(maxsize=8)
def envoy_features(announced: str) -> frozenset[str]:
    """The features in an ext_proc stream's metadata value (the same string every call)."""
    return frozenset(announced.replace(",", " ").split())


def failover_route(backends: int) -> str:
    """The route (ROUTE_HEADER's value) of a chain of this many backends: its retries let
    every one of them be tried once."""
    return f"failover-{backends}"
