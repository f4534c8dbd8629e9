"""Building ext_proc replies. Everything that touches the Envoy wire types lives here.

Notes from measuring Envoy 1.40 (docs/architecture.md): an empty reply must still set
its oneof; route-cache clearing only happens with a header mutation present; a
mode override must restate every body mode.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from google.protobuf import struct_pb2

from ..config.envoy_contract import METADATA_NAMESPACE
from .errors import GatewayError

ProcessingRequest = ep.ProcessingRequest
ProcessingResponse = ep.ProcessingResponse

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_Mode = processing_mode_pb2.ProcessingMode


def _response_mode(headers: int, body: int, trailers: int = _Mode.SKIP, request_body: int = _Mode.BUFFERED) -> _Mode:
    """A mode override: the request side must be restated in every one, exactly as
    configured in Envoy (an unset body mode becomes NONE)."""
    return _Mode(request_header_mode=_Mode.SEND, request_body_mode=request_body,
                 request_trailer_mode=_Mode.SKIP, response_header_mode=headers,
                 response_body_mode=body, response_trailer_mode=trailers)


RESPONSE_STREAMED = _response_mode(_Mode.SEND, _Mode.STREAMED)
RESPONSE_BUFFERED = _response_mode(_Mode.SEND, _Mode.BUFFERED)
# A non-streamed JSON answer: no response headers message, the body alone (stages/one_message.py).
RESPONSE_IN_BODY = _response_mode(_Mode.SKIP, _Mode.BUFFERED)
# A stream Envoy passes straight to the client: no response headers or body messages; a
# trailers message at its end brings its status and the usage Envoy's sse_to_metadata
# read (stages/pass_through.py).
STREAM_PASSED_THROUGH = _response_mode(_Mode.SKIP, _Mode.NONE, _Mode.SEND)
# A call whose policy reads nothing of its body: routed at its request headers, its body
# never sent (Envoy's router has it); the answer goes by as for a stream passed through,
# its usage read by Envoy's json_to_metadata (stages/body_unread.py).
BODY_UNREAD = _response_mode(_Mode.SKIP, _Mode.NONE, _Mode.SEND, request_body=_Mode.NONE)

_EXT_PROC_ATTRIBUTES = "envoy.filters.http.ext_proc"
# The response attribute that counts Envoy's attempts (envoy/template.yaml response_attributes).
ATTEMPT_COUNT_ATTRIBUTE = "upstream.request_attempt_count"
# How the attempt count reaches response hooks that see no headers: a stream passed through's
# trailers message brings it among the numbers Envoy forwarded.
ATTEMPT_COUNT_KEY = "attempt_count"
# Envoy's internal details of the response (`via_upstream` for a provider's answer), a
# response attribute the response-headers hooks see under a pseudo-header of their own.
CODE_DETAILS_ATTRIBUTE = "response.code_details"
CODE_DETAILS_HEADER = ":envoy-code-details"
# Envoy's own reply because its ext_proc service failed (a worker unreachable or gone):
# the gateway's failure, whatever cluster the route named.
_GATEWAY_FAILED_DETAILS = "ext_proc"


def code_details(request: ep.ProcessingRequest) -> str:
    """The `response.code_details` attribute ("" when Envoy sent none)."""
    attributes = request.attributes.get(_EXT_PROC_ATTRIBUTES)
    value = attributes.fields.get(CODE_DETAILS_ATTRIBUTE) if attributes is not None else None
    return value.string_value if value is not None else ""


def gateway_failed(details: str) -> bool:
    """Whether Envoy answered itself because the gateway's ext_proc service failed."""
    return details.startswith(_GATEWAY_FAILED_DETAILS)


# Envoy's own reply because the provider sent nothing in time: the route's or the
# connection manager's idle timeout (a provider that stalled), an attempt's.
_PROVIDER_TIMED_OUT_DETAILS = frozenset({"stream_idle_timeout", "upstream_per_try_idle_timeout",
                                         "upstream_per_try_timeout", "upstream_response_timeout"})


def provider_timed_out(details: str) -> bool:
    """Whether Envoy answered itself (504) because the provider sent nothing in time."""
    return details in _PROVIDER_TIMED_OUT_DETAILS

# Replies that change nothing are the common case; build them once.
_EMPTY = {
    "request_headers": ProcessingResponse(request_headers=ep.HeadersResponse()),
    "request_body": ProcessingResponse(request_body=ep.BodyResponse()),
    "response_headers": ProcessingResponse(response_headers=ep.HeadersResponse()),
    "response_body": ProcessingResponse(response_body=ep.BodyResponse()),
    "response_trailers": ProcessingResponse(response_trailers=ep.TrailersResponse()),
}


def header_map(headers: ep.HttpHeaders) -> dict[str, str]:
    """Envoy's header list as a dict of lower-case names (repeated names joined with ',')."""
    listed = headers.headers.headers
    # Envoy sends every value as raw_value; a name is rarely repeated (then joined below).
    result = {header.key: header.raw_value.decode("utf-8", "replace") for header in listed}
    if len(result) == len(listed) and all(result.values()) or not listed:
        return result
    result = {}
    for header in listed:
        value = header.raw_value.decode("utf-8", "replace") if header.raw_value else header.value
        key = header.key
        result[key] = f"{result[key]},{value}" if key in result else value
    return result


def response_code(request: ep.ProcessingRequest) -> int:
    """The status Envoy sends as the `response.code` attribute (0 when it sent none)."""
    return _number_attribute(request, "response.code")


def response_size(request: ep.ProcessingRequest) -> int:
    """The body bytes Envoy has sent the client, the `response.size` attribute (0: none)."""
    return _number_attribute(request, "response.size")


def attempt_count(request: ep.ProcessingRequest) -> int:
    """Envoy's attempts at the upstream request so far, the `upstream.request_attempt_count`
    attribute (0: none sent): a retry after a reset counts, as a failover does."""
    return _number_attribute(request, ATTEMPT_COUNT_ATTRIBUTE)


def _number_attribute(request: ep.ProcessingRequest, name: str) -> int:
    attributes = request.attributes.get(_EXT_PROC_ATTRIBUTES)
    value = attributes.fields.get(name) if attributes is not None else None
    if value is None:
        return 0
    return int(value.number_value or value.string_value or 0)


class Reply:
    """What one phase wants changed; turned into one ProcessingResponse."""

    __slots__ = ("set_headers", "remove_headers", "body", "clear_route_cache",
                 "mode_override", "metadata")

    def __init__(self) -> None:
        self.set_headers: dict[str, str] = {}
        self.remove_headers: list[str] = []
        self.body: bytes | None = None
        self.clear_route_cache = False
        self.mode_override: _Mode | None = None
        self.metadata: dict | None = None

    def add_metadata(self, fields: dict, namespace: str = METADATA_NAMESPACE) -> None:
        """Adds fields to a dynamic-metadata namespace of this reply; Envoy merges a
        namespace's fields into what earlier replies set."""
        if self.metadata is None:
            self.metadata = {}
        held = self.metadata.setdefault(namespace, {})
        for name, value in fields.items():
            # Stages add to the same struct (the response headers Envoy adds): merged, not replaced.
            if isinstance(value, dict) and isinstance(held.get(name), dict):
                held[name] = {**held[name], **value}
            else:
                held[name] = value

    def build(self, phase: str) -> ProcessingResponse:
        if not (self.set_headers or self.remove_headers or self.body is not None
                or self.mode_override or self.metadata):
            return _EMPTY[phase]
        if phase == "response_trailers":
            # The stream's data has passed: trailers to drop and metadata are what is left.
            response = ProcessingResponse(response_trailers=ep.TrailersResponse())
            response.response_trailers.header_mutation.remove_headers.extend(self.remove_headers)
            if self.metadata:
                _fill(response.dynamic_metadata, self.metadata)
            return response
        # Filled in place: building sub-messages and copying them in costs twice as much.
        response = ProcessingResponse()
        common = getattr(response, phase).response
        if self.set_headers or self.remove_headers:
            mutation = common.header_mutation
            for key, value in self.set_headers.items():
                option = mutation.set_headers.add()
                option.header.key = key
                option.header.raw_value = value.encode()
                option.append_action = _OVERWRITE
            mutation.remove_headers.extend(self.remove_headers)
        else:
            getattr(response, phase).SetInParent()      # an empty reply still names its phase
        if self.body is not None:
            common.body_mutation.body = self.body
        if self.clear_route_cache:
            common.clear_route_cache = True
        if self.mode_override is not None:
            response.mode_override.CopyFrom(self.mode_override)
        if self.metadata:
            _fill(response.dynamic_metadata, self.metadata)
        return response


def trailer_names(trailers: ep.HttpTrailers, prefix: str) -> list[str]:
    return [header.key for header in trailers.trailers.headers if header.key.startswith(prefix)]


def forwarded_values(request: ep.ProcessingRequest, namespace: str) -> dict[str, float | str]:
    """The numbers and strings of a metadata namespace Envoy forwarded with this message."""
    if not request.HasField("metadata_context"):
        return {}
    struct = request.metadata_context.filter_metadata.get(namespace)
    if struct is None:
        return {}
    values: dict[str, float | str] = {}
    for key, value in struct.fields.items():
        kind = value.WhichOneof("kind")
        if kind == "number_value":
            values[key] = value.number_value
        elif kind == "string_value":
            values[key] = value.string_value
    return values


def _fill(struct: struct_pb2.Struct, data: dict) -> None:
    """`Struct.update` for the values replies carry, without its check of each value
    against `numbers.Number` (an abstract class, slow to test): a reply's metadata in
    3.7 µs instead of 6.1."""
    fields = struct.fields
    for key, value in data.items():
        kind = type(value)
        if kind is str:
            fields[key].string_value = value
        elif kind is bool:
            fields[key].bool_value = value
        elif kind is int or kind is float:
            fields[key].number_value = value
        elif kind is dict and value:
            _fill(fields[key].struct_value, value)
        else:                               # lists, None, {}: the library's way
            struct.update({key: value})


# Marks the service's own answers, so Envoy's local-reply mappers (which turn
# Envoy's own 5xx into OpenAI-style errors) leave their bodies alone.
_ANSWERED = struct_pb2.Struct()
_ANSWERED.update({METADATA_NAMESPACE: {"answered": True}})


def immediate(status: int, body: bytes, headers: dict[str, str] | None = None,
              details: str = "llm_gateway") -> ProcessingResponse:
    """End the request here: Envoy answers the client without calling a provider."""
    response = ProcessingResponse()
    response.dynamic_metadata.CopyFrom(_ANSWERED)
    answer = response.immediate_response
    answer.status.code = status  # type: ignore[assignment]
    answer.body = body
    answer.details = details
    all_headers = {"content-type": "application/json"}
    if headers:
        all_headers.update(headers)
    for key, value in all_headers.items():
        answer.headers.set_headers.append(base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=key, raw_value=value.encode()),
            append_action=_OVERWRITE))
    return response


def error_reply(error: GatewayError, extra_headers: dict[str, str] | None = None, dialect: str = "openai",
                request_id: str | None = None) -> ProcessingResponse:
    headers = dict(error.headers)
    if extra_headers:
        headers.update(extra_headers)
    return immediate(error.status, error.body(dialect, request_id), headers, details=f"llm_gateway_{error.code}")


__all__ = ["Reply", "immediate", "error_reply", "header_map", "ProcessingRequest",
           "ProcessingResponse", "RESPONSE_STREAMED", "RESPONSE_BUFFERED", "RESPONSE_IN_BODY",
           "STREAM_PASSED_THROUGH", "BODY_UNREAD", "forwarded_values", "response_code", "trailer_names"]
