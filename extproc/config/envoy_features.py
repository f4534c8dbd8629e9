"""What the Envoy in front announces it does for the service, and whether it does.

The ext_proc filter announces features in its gRPC metadata (envoy_contract.py:
ENVOY_FEATURES_METADATA); the service takes the faster path each one allows and relies
on it. An Envoy config that announces a feature without the filters behind it would
make the service wrong, not slow, so `extproc check --envoy` checks each announced
feature here. A config that announces nothing is valid: every call takes the path that
needs nothing of Envoy.
"""

from __future__ import annotations

from .envoy_config import EXTPROC_CLUSTER
from .envoy_contract import (
    BODIES_UNREAD,
    CUT_STREAMS_LOGGED,
    NUMBERS_UNREAD,
    OUTPUT_CAPS_READ,
    OUTPUT_FIELDS_READ,
    ENVOY_FEATURES_METADATA,
    HEADERS_ADDED_FROM_METADATA,
    HEADERS_FROM_METADATA,
    METADATA_NAMESPACE,
    REQUEST_METADATA_NAMESPACE,
    STREAMS_PASSED_THROUGH,
    USAGE_CHUNK_STRIPPED,
    envoy_features,
)

EXT_PROC = "envoy.filters.http.ext_proc"
JSON_TO_METADATA = "envoy.filters.http.json_to_metadata"
SSE_TO_METADATA = "envoy.filters.http.sse_to_metadata"
LUA = "envoy.filters.http.lua"
_WHERE = f"http_filters: {EXT_PROC}"
_ONE_MESSAGE_MODE = {"response_header_mode": "SKIP", "response_body_mode": "BUFFERED"}
_TRAILER_MODE = {"response_body_mode": "NONE", "response_trailer_mode": "SEND"}
_BODY_UNREAD_MODE = {"request_body_mode": "NONE", "response_header_mode": "SKIP", **_TRAILER_MODE}


def announced_features(ext_proc: dict) -> frozenset[str]:
    """What an ext_proc filter's config tells the service the Envoy around it does."""
    for entry in (ext_proc.get("grpc_service") or {}).get("initial_metadata") or []:
        if entry.get("key") == ENVOY_FEATURES_METADATA:
            return envoy_features(str(entry.get("value", "")))
    return frozenset()


def feature_problems(envoy: dict) -> list[str]:
    """Each feature an ext_proc filter announces must have its filters."""
    problems = []
    for manager in _connection_managers(envoy):
        filters = manager.get("http_filters") or []
        names = [_filter_name(entry) for entry in filters]
        if EXT_PROC not in names:
            continue
        at = names.index(EXT_PROC)
        ext_proc = filters[at].get("typed_config") or {}
        features = announced_features(ext_proc)
        if HEADERS_FROM_METADATA in features:
            problems += _headers_from_metadata_problems(manager, filters, names, at)
        if STREAMS_PASSED_THROUGH in features:
            problems += _streams_passed_through_problems(filters, names, at)
        if USAGE_CHUNK_STRIPPED in features:
            problems += _usage_chunk_problems(names, at)
        if CUT_STREAMS_LOGGED in features:
            problems += _cut_streams_problems(manager, ext_proc, features)
        if BODIES_UNREAD in features:
            problems += _bodies_unread_problems(filters, names, at, ext_proc, features)
        if OUTPUT_CAPS_READ in features:
            problems += _output_caps_problems(filters, names, at, features)
    return problems


def _headers_from_metadata_problems(manager: dict, filters: list, names: list[str], at: int) -> list[str]:
    """A JSON answer in one message (stages/one_message.py): a reader before ext_proc read
    `stream` and `model`, ext_proc allows the mode without response headers and
    sends the status as an attribute, and every virtual host adds the gateway's headers
    from `llm_gateway.headers` (else a one-message answer, and every stream passed
    through, would lose x-gateway-backend and x-ratelimit-*). Only an inline
    route_config can be checked; one from RDS is the operator's to keep in step."""
    problems = _unread_keys(filters, names, at, HEADERS_FROM_METADATA, ("stream",), ("model",))
    ext_proc = filters[at].get("typed_config") or {}
    if not _allows(ext_proc, _ONE_MESSAGE_MODE):
        problems.append(f"{_WHERE}: allowed_override_modes has no mode with response_header_mode SKIP "
                        "and response_body_mode BUFFERED (JSON answers in one message)")
    if "response.code" not in (ext_proc.get("response_attributes") or []):
        problems.append(f"{_WHERE}: response_attributes does not send response.code "
                        f"(ext_proc announces {HEADERS_FROM_METADATA})")
    for host in (manager.get("route_config") or {}).get("virtual_hosts") or []:
        added = {(entry.get("header") or {}).get("key", "").lower(): (entry.get("header") or {}).get("value")
                 for entry in host.get("response_headers_to_add") or []}
        missing = [name for name in HEADERS_ADDED_FROM_METADATA
                   if added.get(name) != f"%DYNAMIC_METADATA({METADATA_NAMESPACE}:headers:{name})%"]
        if missing:
            problems.append(f"route_config.virtual_hosts.{host.get('name', '?')}.response_headers_to_add: "
                            f"no {', '.join(missing)} from %DYNAMIC_METADATA({METADATA_NAMESPACE}:headers:...)% "
                            f"(ext_proc announces {HEADERS_FROM_METADATA})")
    return problems


def _streams_passed_through_problems(filters: list, names: list[str], at: int) -> list[str]:
    """A stream passes through when a reader before ext_proc read `stream`, `model` and
    `include_usage`; its usage reaches the service only if ext_proc allows
    that mode and forwards llm_gateway.stream, and two filters after ext_proc add the
    trailers whose message brings it (bandwidth_limit) and read it (sse_to_metadata)."""
    problems = _unread_keys(filters, names, at, STREAMS_PASSED_THROUGH,
                            ("stream",), ("model",), ("stream_options", "include_usage"))
    ext_proc = filters[at].get("typed_config") or {}
    if not _allows(ext_proc, _TRAILER_MODE):
        problems.append(f"{_WHERE}: allowed_override_modes has no mode with response_body_mode NONE "
                        "and response_trailer_mode SEND (streams passed through)")
    forwarded = ((ext_proc.get("metadata_options") or {}).get("forwarding_namespaces") or {}).get("untyped") or []
    if "llm_gateway.stream" not in forwarded:
        problems.append(f"{_WHERE}: metadata_options.forwarding_namespaces does not forward llm_gateway.stream")
    for needed in ("envoy.filters.http.bandwidth_limit", SSE_TO_METADATA):
        if needed not in names[at + 1:]:
            problems.append(f"http_filters: no {needed} after {EXT_PROC} "
                            f"(ext_proc announces {STREAMS_PASSED_THROUGH})")
    return problems


def _usage_chunk_problems(names: list[str], at: int) -> list[str]:
    """The usage chunk a client did not ask for is taken out by a Lua filter between
    ext_proc and sse_to_metadata: after the usage is read, on the response path."""
    reader = names.index(SSE_TO_METADATA) if SSE_TO_METADATA in names else len(names)
    if LUA in names[at + 1:reader]:
        return []
    return [(f"http_filters: no {LUA} between {EXT_PROC} and "
             f"{SSE_TO_METADATA} (ext_proc announces {USAGE_CHUNK_STRIPPED})")]


def _cut_streams_problems(manager: dict, ext_proc: dict, features: frozenset[str]) -> list[str]:
    """A stream passed through and cut short is charged the bytes Envoy sent it
    (store/cut_streams.py): a gRPC access log sends the service the streams marked with a
    `cut_id`, and completed streams bring `response.size` (the bytes-per-token ratio)."""
    problems = []
    if STREAMS_PASSED_THROUGH not in features:
        problems.append(f"{_WHERE}: announces {CUT_STREAMS_LOGGED} without {STREAMS_PASSED_THROUGH}")
    if "response.size" not in (ext_proc.get("response_attributes") or []):
        problems.append(f"{_WHERE}: response_attributes does not send response.size "
                        f"(ext_proc announces {CUT_STREAMS_LOGGED})")
    if not any(_logs_cut_streams(log) for log in manager.get("access_log") or []):
        problems.append(f"access_log: no envoy.access_loggers.http_grpc to the {EXTPROC_CLUSTER} cluster "
                        f"whose filter keeps the streams with a {METADATA_NAMESPACE}.cut_id "
                        f"(ext_proc announces {CUT_STREAMS_LOGGED})")
    return problems


def _bodies_unread_problems(filters: list, names: list[str], at: int, ext_proc: dict,
                            features: frozenset[str]) -> list[str]:
    """A call whose body the service never reads (stages/body_unread.py) is routed at its
    request headers: ext_proc allows the mode without the request body, the answer's
    headers come from metadata and its end brings trailers (the features it rests on),
    and a json_to_metadata after ext_proc reads a JSON answer's usage into
    llm_gateway.stream for that trailers message."""
    problems = [f"{_WHERE}: announces {BODIES_UNREAD} without {needed}"
                for needed in (HEADERS_FROM_METADATA, STREAMS_PASSED_THROUGH) if needed not in features]
    if not _allows(ext_proc, _BODY_UNREAD_MODE):
        problems.append(f"{_WHERE}: allowed_override_modes has no mode with request_body_mode NONE, "
                        "response_header_mode SKIP, response_body_mode NONE and response_trailer_mode SEND "
                        f"(ext_proc announces {BODIES_UNREAD})")
    read = set()
    for entry in filters[at + 1:]:
        if _filter_name(entry) == JSON_TO_METADATA:
            config = (entry.get("typed_config") or {}).get("extension_config", entry).get("typed_config") or {}
            read |= {(rule.get("on_present") or {}).get("metadata_namespace")
                     for rule in (config.get("response_rules") or {}).get("rules") or []}
    if "llm_gateway.stream" not in read:
        problems.append(f"http_filters: no {JSON_TO_METADATA} after {EXT_PROC} whose response rules read a "
                        f"JSON answer's usage into llm_gateway.stream (ext_proc announces {BODIES_UNREAD})")
    return problems


def _output_caps_problems(filters: list, names: list[str], at: int, features: frozenset[str]) -> list[str]:
    """Budgets on calls whose body is unread (stages/budget/unread.py): the reader before
    ext_proc reads every field that bounds a call's output, and says when one is not a
    plain integer."""
    problems = [f"{_WHERE}: announces {OUTPUT_CAPS_READ} without {BODIES_UNREAD}"] \
        if BODIES_UNREAD not in features else []
    return problems + _unread_keys(filters, names, at, OUTPUT_CAPS_READ,
                                   *(tuple(name.split(".")) for name in sorted(OUTPUT_FIELDS_READ)),
                                   (NUMBERS_UNREAD,))


def _logs_cut_streams(log: dict) -> bool:
    common = (log.get("typed_config") or {}).get("common_config") or {}
    cluster = ((common.get("grpc_service") or {}).get("envoy_grpc") or {}).get("cluster_name")
    matcher = ((log.get("filter") or {}).get("metadata_filter") or {}).get("matcher") or {}
    return (log.get("name") == "envoy.access_loggers.http_grpc" and cluster == EXTPROC_CLUSTER
            and matcher.get("filter") == METADATA_NAMESPACE and matcher.get("path") == [{"key": "cut_id"}])


def _unread_keys(filters: list, names: list[str], at: int, feature: str, *keys: tuple[str, ...]) -> list[str]:
    """The body keys nothing before ext_proc reads into llm_gateway.request: neither a
    json_to_metadata request rule nor the gateway's Lua reader (envoy/template.yaml),
    whose source sets each key it reads under its dotted name."""
    read = set()
    for entry in filters[:at]:
        config = entry.get("typed_config") or {}
        if _filter_name(entry) == JSON_TO_METADATA:
            read |= {".".join(selector.get("key", "") for selector in rule.get("selectors") or [])
                     for rule in (config.get("request_rules") or {}).get("rules") or []}
        elif _filter_name(entry) == LUA:
            source = str((config.get("default_source_code") or {}).get("inline_string", ""))
            if f'"{REQUEST_METADATA_NAMESPACE}"' in source:
                read |= {".".join(path) for path in keys if f'"{".".join(path)}"' in source}
    return [f"http_filters: nothing before {EXT_PROC} reads {'.'.join(path)} into "
            f"{REQUEST_METADATA_NAMESPACE} (ext_proc announces {feature})"
            for path in keys if ".".join(path) not in read]


def _allows(ext_proc: dict, mode: dict) -> bool:
    return any(mode.items() <= allowed.items() for allowed in ext_proc.get("allowed_override_modes") or [])


def _connection_managers(envoy: dict):
    for listener in envoy.get("static_resources", {}).get("listeners", []):
        for chain in listener.get("filter_chains", []):
            for network_filter in chain.get("filters", []):
                manager = network_filter.get("typed_config") or {}
                if manager.get("http_filters"):
                    yield manager


def _filter_name(entry: dict) -> str:
    """A filter's name; for a match_delegate, the name of the filter it wraps."""
    inner = (entry.get("typed_config") or {}).get("extension_config")
    return inner.get("name", "") if isinstance(inner, dict) else entry.get("name", "")
