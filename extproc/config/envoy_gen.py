"""The Envoy config a filter config needs: `extproc envoy-config --config F`.

envoy/template.yaml holds what every gateway's Envoy runs (listener, filters, local
replies, access logs, the concrete-model route, the extproc cluster), commented. This
adds what the filter config decides:
  - one cluster per provider `url` (TLS with SNI for https, DNS for names, HTTP/2 when
    the provider offers it), with room for every request in flight to retry;
  - the per-attempt ext_proc filter (stages/attempt.py) on the clusters that serve a
    backend of a virtual model, and only there: a concrete model's call costs no extra
    ext_proc messages;
  - one failover route per chain length of the virtual models, whose retries let every
    backend be tried once (x-gateway-route: failover-<N>);
  - the workers' sockets, and the listener and admin addresses of the target
    (`local`: the quickstart's, on 127.0.0.1; `kubernetes`: 0.0.0.0:8080 in the pod, with
    Envoy's own health route).
A provider without a `url` names the cluster of one that has one, or of a hand-written
Envoy config (`extproc up --envoy F`, kept consistent by `extproc check --envoy F`).
"""

from __future__ import annotations

import copy
import ipaddress
from urllib.parse import urlparse

from . import envoy_config
from .envoy_contract import FIRST_BYTE_HEADER, ROUTE_HEADER, failover_route
from .envoy_identity import add_identity
from .envoy_mcp import aggregator_secrets, mcp_routes, upstream_listener
from .envoy_pool import add_pool_route, pool_cluster
from .filter_config import GatewayConfig
from .providers import AwsSigning, Provider

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"     # Debian's, and the image's (Containerfile)
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
# Envoy's admin is a Unix socket only the gateway's user may open (mode 0600): on TCP any
# local process could raise its log level (then it logs keys), drain or quit it.
# On the local target, what operators and dashboards read of it (stats, readiness, clusters)
# stays at its usual address, 127.0.0.1:9901, as a listener of Envoy's own that passes GETs
# of those paths to the socket and refuses every other path (log levels, drain, quit).
TARGETS = {"local": {"listen": "127.0.0.1:10000", "admin": "/tmp/llm-gateway/envoy-admin.sock",
                     "admin_read": "127.0.0.1:9901", "socket_dir": "/tmp/llm-gateway"},
           "kubernetes": {"listen": "0.0.0.0:8080", "admin": "/var/run/extproc/envoy-admin.sock",
                          "admin_read": None, "socket_dir": "/var/run/extproc"}}
ADMIN_READ_PATHS = ("/ready", "/stats", "/stats/prometheus", "/server_info", "/clusters", "/listeners")
ADMIN_SOCKET_MODE = 0o600

# The ext_proc filter inside a cluster: once per attempt, it makes the attempt for the backend
# it lands on (model name, path, credential; translated for another dialect). Only a
# virtual model's requests carry a plan (llm_gateway.order, stages/route.py): the matcher
# skips the filter for every other request to the cluster, which the router-level filter
# has made final (a concrete model, a stored response, a call whose body is unread), so
# they cost no ext_proc message here.
_PER_ATTEMPT_EXT_PROC = {
    "name": "envoy.filters.http.ext_proc", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
        "grpc_service": {"envoy_grpc": {"cluster_name": "extproc"},
                         "initial_metadata": [{"key": "x-extproc-role", "value": "upstream"}]},
        "request_attributes": ["xds.cluster_name"],          # the cluster this attempt goes to
        "failure_mode_allow": False, "message_timeout": "2s",
        "processing_mode": {"request_header_mode": "SEND", "request_body_mode": "BUFFERED",
                            "response_header_mode": "SKIP", "response_body_mode": "NONE",
                            "request_trailer_mode": "SKIP", "response_trailer_mode": "SKIP"},
        "metadata_options": {"forwarding_namespaces": {"untyped": ["llm_gateway"]}}}}
_WITHOUT_A_PLAN = {"predicate": {"single_predicate": {
    "input": {"name": "plan", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3.DynamicMetadataInput",
        "filter": "llm_gateway", "path": [{"key": "order"}]}},
    "custom_match": {"name": "no-plan", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.matching.input_matchers.metadata.v3.Metadata",
        "value": {"present_match": True}, "invert": True}}}},
    "on_match": {"action": {"name": "skip", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.common.matcher.action.v3.SkipFilter"}}}}
PER_ATTEMPT_FILTERS = [
    {"name": "envoy.filters.http.match_delegate", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher",
        "extension_config": _PER_ATTEMPT_EXT_PROC,
        "xds_matcher": {"matcher_list": {"matchers": [_WITHOUT_A_PLAN]}}}},
    {"name": "envoy.filters.http.upstream_codec", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"}},
]


def aws_signing_filter(aws: AwsSigning) -> dict:
    """Envoy's SigV4 signer for a Bedrock provider's cluster. The body is signed (Bedrock
    takes no unsigned payload); headers Envoy may change between attempts are left out."""
    config: dict = {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.aws_request_signing.v3.AwsRequestSigning",
        "service_name": "bedrock", "region": aws.region, "use_unsigned_payload": False,
        "match_excluded_headers": [{"prefix": "x-envoy"}, {"exact": "x-request-id"}, {"prefix": "x-gateway"}]}
    if aws.credentials_file:
        config["credential_provider"] = {"credentials_file_provider": {
            "credentials_data_source": {"filename": aws.credentials_file}, "profile": aws.profile or "default"},
            "custom_credential_provider_chain": True}
    elif aws.secret_access_key is not None:
        config["credential_provider"] = {"inline_credential": {
            "access_key_id": aws.access_key_id, "secret_access_key": aws.secret_access_key.reveal()}}
    return {"name": "envoy.filters.http.aws_request_signing", "typed_config": config}


class GenerationError(ValueError):
    """The filter config does not say enough to make an Envoy config from it."""


def generate(config: GatewayConfig, target: str = "local", *, listen: str | None = None,
             admin: str | None = None, admin_read: str | None = None, workers: int | None = None) -> dict:
    """The Envoy config (as a dict) that `config` runs with on `target`."""
    defaults = TARGETS[target]
    envoy = envoy_config.load(envoy_config.shipped("envoy/template.yaml"))
    _admin_address(envoy["admin"]["address"], admin or defaults["admin"])
    admin_read = admin_read or defaults["admin_read"]
    if admin_read and "pipe" in envoy["admin"]["address"]:
        _admin_read_listener(envoy, admin_read)
    listener = envoy["static_resources"]["listeners"][0]
    _address(listener["address"], listen or defaults["listen"])
    # Request bodies are buffered whole for the service: the listener takes the largest
    # any provider accepts (the service refuses what a model's providers would not take).
    listener["per_connection_buffer_limit_bytes"] = max(
        [listener["per_connection_buffer_limit_bytes"]] + [p.max_request_bytes for p in config.providers.values()])
    chained = {b.provider.cluster for m in config.models.values() if m.is_virtual for b in m.backends}
    envoy["static_resources"]["clusters"] += provider_clusters(config, chained)
    _failover_routes(envoy, sorted({(len(m.backends), m.first_byte_timeout_ms)
                                    for m in config.models.values() if m.is_virtual}))
    pools = [p.pool for p in config.providers.values() if p.pool is not None]
    if pools:                                       # pool calls: retries to the picked replica's fallbacks
        add_pool_route(_virtual_host(envoy)["routes"], max(pool.fallbacks for pool in pools))
    add_identity(envoy, config.identity)            # jwt_authn, when `identity.jwt` is set
    if (mcp_upstream := upstream_listener(_virtual_host(envoy)["routes"], config)) is not None:
        envoy["static_resources"]["listeners"].append(mcp_upstream)
    envoy["static_resources"]["clusters"] += mcp_routes(_virtual_host(envoy)["routes"], config, _cluster)
    if secrets := aggregator_secrets(config):       # what Envoy's requests to the aggregator carry
        envoy["static_resources"].setdefault("secrets", []).extend(secrets)
    if target == "kubernetes":
        _kubernetes(envoy)
    count = workers or config.server.workers or 2
    sockets = [f"{defaults['socket_dir']}/extproc-{i}.sock" for i in range(count)]
    return envoy_config.with_workers(envoy, sockets, config.server.worker_connection_age_s)


def provider_clusters(config: GatewayConfig, chained: set[str]) -> list[dict]:
    """A cluster per provider url; providers without one must name a cluster made here."""
    clusters: dict[str, dict] = {}
    for provider in config.providers.values():
        if provider.pool is not None and provider.cluster not in clusters:
            clusters[provider.cluster] = pool_cluster(provider)
        elif provider.url and provider.cluster not in clusters:
            clusters[provider.cluster] = _cluster(provider, provider.cluster in chained)
    missing = [p.name for p in config.providers.values() if not p.url and p.pool is None and p.cluster not in clusters]
    if missing:
        raise GenerationError(f"providers without a url and whose cluster no other provider's url makes: "
                              f"{', '.join(missing)} (set `url:`, or run with a hand-written Envoy config)")
    return list(clusters.values())


def _cluster(provider: Provider, per_attempt: bool) -> dict:
    url = urlparse(provider.url)
    tls = url.scheme == "https"
    host, port = url.hostname or "", url.port or (443 if tls else 80)
    options: dict = {"@type": f"type.googleapis.com/{_HTTP_OPTIONS}"}
    if tls:
        options["upstream_http_protocol_options"] = {"auto_sni": True, "auto_san_validation": True}
        options["auto_config"] = {"http2_protocol_options": {}}     # HTTP/2 where the provider offers it
    else:
        options["explicit_http_config"] = {"http_protocol_options": {}}
    if per_attempt:
        options["http_filters"] = copy.deepcopy(PER_ATTEMPT_FILTERS)
    aws = getattr(provider, "aws", None)        # (MCP servers' clusters are made here too)
    if aws is not None:
        # Signed last, after the per-attempt filter made the body final, on every attempt.
        filters = options.setdefault("http_filters", copy.deepcopy(PER_ATTEMPT_FILTERS[-1:]))
        filters.insert(len(filters) - 1, aws_signing_filter(aws))
    endpoint: dict = {"address": {"socket_address": {"address": host, "port_value": port}}}
    cluster: dict = {
        "name": provider.cluster, "connect_timeout": "5s",
        # A translated body (buffered by the per-attempt filters) may be a little larger
        # than the caller's; a body over the limit is also not retried.
        "per_connection_buffer_limit_bytes": max(16 << 20, provider.max_request_bytes + (4 << 20)),
        "typed_extension_protocol_options": {_HTTP_OPTIONS: options},
        # Every request whose backend fails needs a retry (the failover), and a retry holds
        # the cluster's retry breaker through its backoff: Envoy's default (3 at once) would
        # send the failing backend's answer to every caller past the third.
        "circuit_breakers": {"thresholds": [{"priority": "DEFAULT", "max_connections": 10000,
                                             "max_pending_requests": 10000, "max_requests": 10000,
                                             "max_retries": 10000}]},
        "outlier_detection": {"consecutive_5xx": 5, "interval": "10s", "base_ejection_time": "30s"},
        "load_assignment": {"cluster_name": provider.cluster, "endpoints": [{"lb_endpoints": [{"endpoint": endpoint}]}]},
    }
    if _is_ip(host):
        cluster["type"] = "STATIC"
    else:
        cluster.update(type="LOGICAL_DNS", dns_lookup_family="V4_PREFERRED")
        endpoint["hostname"] = host                 # auto_host_rewrite: the provider's Host
    if tls:
        cluster["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": host, "common_tls_context": {
                "alpn_protocols": ["h2", "http/1.1"],
                "validation_context": {"trusted_ca": {"filename": CA_BUNDLE}}}}}
    return cluster


def _failover_routes(envoy: dict, chains: list[tuple[int, int]]) -> None:
    """The template's failover route, once per chain length (none without virtual models),
    each after one per first-byte timeout its models have: a streamed call names its
    model's (FIRST_BYTE_HEADER), and an attempt whose response headers have not come
    within it is given up (`per_try_timeout`, which stops once they came) for the next
    backend. A call without the header (not streamed: its headers come with its whole
    answer) takes the plain route, where only the idle timeout between bytes applies."""
    routes = _virtual_host(envoy)["routes"]
    [template] = [r for r in routes if _failover_length(r) is not None]
    at = routes.index(template)
    made = []
    for backends in sorted({n for n, _ in chains}):
        made += [_with_length(template, backends, ms) for n, ms in chains if n == backends and ms]
        made.append(_with_length(template, backends))
    routes[at:at + 1] = made


def _with_length(template: dict, backends: int, first_byte_ms: int = 0) -> dict:
    route = copy.deepcopy(template)
    route["match"]["headers"] = [{"name": ROUTE_HEADER, "string_match": {"exact": failover_route(backends)}}]
    if first_byte_ms:
        route["match"]["headers"].append({"name": FIRST_BYTE_HEADER, "string_match": {"exact": str(first_byte_ms)}})
        route["route"]["retry_policy"]["per_try_timeout"] = f"{first_byte_ms / 1000:g}s"
    route["request_headers_to_remove"] = [*route.get("request_headers_to_remove", []), FIRST_BYTE_HEADER]
    route["route"]["retry_policy"]["num_retries"] = backends - 1
    return route


def _failover_length(route: dict) -> str | None:
    for header in (route.get("match") or {}).get("headers") or []:
        if header.get("name") == ROUTE_HEADER:
            return header["string_match"]["exact"]
    return None


def _kubernetes(envoy: dict) -> None:
    """Kubelet's readiness probe for Envoy: answered by Envoy itself, ext_proc off for it."""
    _virtual_host(envoy)["routes"].insert(0, {
        "match": {"path": "/healthz/envoy"},
        "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
        "typed_per_filter_config": {"envoy.filters.http.ext_proc": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute",
            "disabled": True}}})


def _virtual_host(envoy: dict) -> dict:
    manager = envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return manager["route_config"]["virtual_hosts"][0]


def _admin_address(address: dict, where: str) -> None:
    """A socket path (owner-only) or, for a hand-picked HOST:PORT, a TCP address."""
    if where.startswith("/"):
        address.clear()
        address["pipe"] = {"path": where, "mode": ADMIN_SOCKET_MODE}
    else:
        _address(address, where)


def _admin_read_listener(envoy: dict, host_port: str) -> None:
    """A listener at `host_port` passing GETs of the read-only admin paths to the admin
    socket (a cluster of its own); any other path or method: 403."""
    socket_path = envoy["admin"]["address"]["pipe"]["path"]
    routes = [{"match": {"path": path, "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
               "route": {"cluster": "envoy_admin", "timeout": "5s"}} for path in ADMIN_READ_PATHS]
    routes.append({"match": {"prefix": "/"}, "direct_response": {"status": 403, "body": {"inline_string":
                   "Read-only: GET " + ", ".join(ADMIN_READ_PATHS) + ". Envoy's admin is its owner-only "
                   "Unix socket.\n"}}})
    listener: dict = {"name": "envoy_admin_read", "address": {}, "filter_chains": [{"filters": [{
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                     "HttpConnectionManager",
            "stat_prefix": "envoy_admin_read",
            "route_config": {"virtual_hosts": [{"name": "read", "domains": ["*"], "routes": routes}]},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}
    _address(listener["address"], host_port)
    envoy["static_resources"]["listeners"].append(listener)
    envoy["static_resources"]["clusters"].append({
        "name": "envoy_admin", "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": "envoy_admin", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"pipe": {"path": socket_path}}}}]}]}})


def _address(address: dict, host_port: str) -> None:
    host, _, port = host_port.rpartition(":")
    address["socket_address"] = {"address": host or "127.0.0.1", "port_value": int(port)}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False
