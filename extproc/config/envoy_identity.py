"""Envoy's part of identity: the jwt_authn filter made from `identity.jwt`.

Envoy verifies the token (signature against the provider's JWKS, fetched through a
cluster of its own and cached, or read from a local file; issuer, audience, expiry,
not-before) and hands the verified payload to the service as dynamic metadata
(namespace envoy.filters.http.jwt_authn, key jwt_payload), which the ext_proc filter
forwards. A bearer value shaped like a key (the configured prefix, `sk-`) matches the
first rule, which requires nothing: it is never parsed as a token. Any other request
passes with `allow_missing_or_failed`, a failed token leaving only its failure
(jwt_failure) behind: the service refuses it with a 401 in the caller's dialect
(stages/token_identity.py), as it refuses an unknown key. So Envoy does all the
verification and the caller always gets its own API's error shape.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlparse

from .identity import JWT_FAILURE_KEY, JWT_NAMESPACE, JWT_PAYLOAD_KEY, IdentitySettings, JwtProvider

JWT_FILTER = "envoy.filters.http.jwt_authn"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def jwks_cluster_name(provider: JwtProvider) -> str:
    return f"jwks-{provider.name}"


def add_identity(envoy: dict, identity: IdentitySettings) -> None:
    """Adds the jwt_authn filter (before ext_proc), its forwarding, and the JWKS clusters."""
    if identity.jwt is None:
        return
    jwt = identity.jwt
    listener = envoy["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    filters = hcm["http_filters"]
    ext_proc = next(f for f in filters if f["name"] == "envoy.filters.http.ext_proc")
    providers = {}
    for provider in jwt.providers:
        entry: dict = {
            "issuer": provider.issuer,
            "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
            "forward": False,                       # the token stops here; the claims go on as metadata
            "payload_in_metadata": JWT_PAYLOAD_KEY,
            "failed_status_in_metadata": JWT_FAILURE_KEY,
            "clock_skew_seconds": provider.clock_skew_seconds,
            # A token that never expires is a credential that cannot be taken back.
            "require_expiration": provider.require_expiration,
            # A token seen again is not verified again (per worker thread): its signature
            # check is most of jwt_authn's CPU.
            "jwt_cache_config": {"jwt_cache_size": 1000},
        }
        if provider.audiences:
            entry["audiences"] = list(provider.audiences)
        if provider.jwks_file is not None:
            # Inline: Envoy reads a local JWKS once anyway, and the config stays the same
            # wherever it is generated (the file's path would not).
            with open(provider.jwks_file, encoding="utf-8") as handle:
                entry["local_jwks"] = {"inline_string": json.dumps(json.load(handle), separators=(",", ":"))}
        else:
            entry["remote_jwks"] = {
                "http_uri": {"uri": provider.jwks_url, "cluster": jwks_cluster_name(provider), "timeout": "2s"},
                "cache_duration": f"{provider.cache_seconds}s",
                # Fetched before the listener opens, and again every cache_duration: a key the
                # provider publishes is known before tokens signed with it arrive.
                "async_fetch": {"fast_listener": False, "failed_refetch_duration": "5s"},
                "retry_policy": {"num_retries": 3,
                                 "retry_back_off": {"base_interval": "0.2s", "max_interval": "2s"}},
            }
            envoy["static_resources"]["clusters"].append(_jwks_cluster(provider))
        providers[provider.name] = entry
    key_shaped = "^Bearer " + re.escape(jwt.key_prefix) + ".*"
    jwt_filter = {"name": JWT_FILTER, "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": providers,
        "rules": [
            # A key is never a token: no requirement, so jwt_authn does not read it.
            {"match": {"prefix": "/", "headers": [{"name": "authorization",
                                                    "string_match": {"safe_regex": {"regex": key_shaped}}}]}},
            # Anything else: verified when it is a token of a known issuer; a failure
            # (or no token) passes as metadata, and the service refuses in the caller's dialect.
            {"match": {"prefix": "/"}, "requires": {"allow_missing_or_failed": {}}},
        ]}}
    filters.insert(filters.index(ext_proc), jwt_filter)
    options = ext_proc["typed_config"].setdefault("metadata_options", {})
    forwarding = options.setdefault("forwarding_namespaces", {}).setdefault("untyped", [])
    if JWT_NAMESPACE not in forwarding:
        forwarding.append(JWT_NAMESPACE)


def _jwks_cluster(provider: JwtProvider) -> dict:
    url = urlparse(provider.jwks_url)
    tls = url.scheme == "https"
    port = url.port or (443 if tls else 80)
    host = url.hostname or ""
    is_ip = re.fullmatch(r"[\d.]+|[0-9a-fA-F:]+", host) is not None
    cluster: dict = {
        "name": jwks_cluster_name(provider),
        "type": "STATIC" if is_ip else "LOGICAL_DNS",
        "connect_timeout": "2s",
        "dns_lookup_family": "V4_PREFERRED",
        "load_assignment": {"cluster_name": jwks_cluster_name(provider), "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}]},
    }
    if is_ip:
        del cluster["dns_lookup_family"]
    if tls:
        cluster["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": host,
            "common_tls_context": {"validation_context": {
                "trusted_ca": {"filename": CA_BUNDLE},
                "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": host}}]}}}}
    return cluster
