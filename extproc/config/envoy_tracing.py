"""Envoy's OpenTelemetry tracer, made from `observability.tracing` (envoy_gen.py adds it).

One SERVER span per call, exported over OTLP/gRPC to the collector through the
`otel_collector` cluster. Head sampling is the HCM's `random_sampling`: it applies to
every call, a caller's sampled `traceparent` included (its trace is continued when kept);
an unsampled parent (`-00`) is never exported. (The tracer's own `parent_based` around
`trace_id_ratio_based` sampler exported nothing, not even at 100%, on Envoy 1.40.) The span's name and attributes come from the dynamic metadata the
service sets (stages/trace.py), read when the span ends.
"""

from __future__ import annotations

from ..observability.tracing import TRACE_NAMESPACE, TracingSettings

COLLECTOR_CLUSTER = "otel_collector"
# Every attribute the service may set (stages/trace.py); one absent adds no tag.
ATTRIBUTES = (
    "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.model",
    "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.response.finish_reasons", "error.type",
    "gateway.api", "gateway.key_id", "gateway.user", "gateway.team", "gateway.backend", "gateway.attempts",
    "gateway.cost_usd", "gateway.usage_estimated", "gateway.guardrails", "gateway.tags",
    "gateway.ttft_ms", "gateway.service_ms",
)


def tracing_block(settings: TracingSettings) -> dict:
    """The HCM's `tracing`."""
    return {
        "random_sampling": {"value": settings.sampling_percent},
        "operation": f"%DYNAMIC_METADATA({TRACE_NAMESPACE}:span_name)%",
        "max_path_tag_length": 256,
        "custom_tags": [{"tag": name, "metadata": {"kind": {"request": {}}, "metadata_key": {
            "key": TRACE_NAMESPACE, "path": [{"key": name}]}}} for name in ATTRIBUTES],
        "provider": {"name": "envoy.tracers.opentelemetry", "typed_config": {
            "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
            "service_name": settings.service_name,
            "grpc_service": {"envoy_grpc": {"cluster_name": COLLECTOR_CLUSTER}, "timeout": "2s"}}},
    }


def collector_cluster(settings: TracingSettings) -> dict:
    return {
        "name": COLLECTOR_CLUSTER, "connect_timeout": "2s",
        "type": "STRICT_DNS", "dns_lookup_family": "V4_PREFERRED",
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}},
        "load_assignment": {"cluster_name": COLLECTOR_CLUSTER, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": settings.host, "port_value": settings.port}}}}]}]},
    }


def add_tracing(envoy: dict, settings: TracingSettings | None) -> None:
    if settings is None:
        return
    listener = envoy["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["tracing"] = tracing_block(settings)
    # Envoy decides whether to trace a call at its request headers and keeps the decision
    # in the x-request-id it makes: without one (the service sets each request's id, after
    # that decision) a call answered before routing, a refusal, is "not traceable".
    hcm["generate_request_id"] = True
    envoy["static_resources"]["clusters"].append(collector_cluster(settings))
