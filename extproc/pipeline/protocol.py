"""Envoy's ext_proc messages, read and answered. Everything that touches the Envoy wire
types lives here: a request is read into a `Request` (wire/reading.py, protobuf for what
that reader leaves), and a reply is written as bytes (wire/writing.py).

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
from ..wire.reading import PHASES, Request, read_request
from ..wire.writing import phase_reply, trailers_reply
from .errors import GatewayError

ProcessingRequest = ep.ProcessingRequest
ProcessingResponse = ep.ProcessingResponse

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_Mode = processing_mode_pb2.ProcessingMode


def _response_mode(headers: int, body: int, trailers: int = _Mode.SKIP, request_body: int = _Mode.BUFFERED) -> bytes:
    """A mode override, as the bytes of its message: the request side must be restated in
    every one, exactly as configured in Envoy (an unset body mode becomes NONE)."""
    return _Mode(request_header_mode=_Mode.SEND, request_body_mode=request_body,
                 request_trailer_mode=_Mode.SKIP, response_header_mode=headers,
                 response_body_mode=body, response_trailer_mode=trailers).SerializeToString()


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


def read_message(data: bytes) -> Request:
    """One of Envoy's messages from its bytes; raises DecodeError, as protobuf does, on
    bytes protobuf cannot read."""
    request = read_request(data)
    return request if request is not None else request_of(ProcessingRequest.FromString(data))


def request_of(message: ep.ProcessingRequest) -> Request:
    """A message protobuf parsed, read as wire/reading.py reads its bytes."""
    request = Request()
    phase = message.WhichOneof("request")
    if phase is not None:
        request.phase = phase
        part = getattr(message, phase)
        if phase.endswith("_body"):
            request.body, request.end_of_stream = part.body, part.end_of_stream
        elif phase.endswith("_headers"):
            request.headers, request.end_of_stream = header_map(part.headers), part.end_of_stream
        else:
            request.headers = header_map(part.trailers)
    if message.HasField("metadata_context"):
        request.metadata = {namespace: _plain_struct(struct)
                            for namespace, struct in message.metadata_context.filter_metadata.items()}
    request.attributes = {name: _plain_struct(struct) for name, struct in message.attributes.items()}
    return request


def _plain_struct(struct: struct_pb2.Struct) -> dict:
    return {key: _plain(value) for key, value in struct.fields.items()}


def _plain(value: struct_pb2.Value):
    """A Value as wire/reading.py reads it: None (null, or no kind), a float, a str, a
    bool, a dict or a list."""
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return _plain_struct(value.struct_value)
    if kind == "list_value":
        return [_plain(item) for item in value.list_value.values]
    return None if kind is None or kind == "null_value" else getattr(value, kind)


def header_map(headers: base_pb2.HeaderMap) -> dict[str, str]:
    """Envoy's header list as a dict of lower-case names (repeated names joined with ',')."""
    result: dict[str, str] = {}
    for header in headers.headers:
        value = header.raw_value.decode("utf-8", "replace") if header.raw_value else header.value
        key = header.key
        result[key] = f"{result[key]},{value}" if key in result else value
    return result


def code_details(request: Request) -> str:
    """The `response.code_details` attribute ("" when Envoy sent none)."""
    attributes = request.attributes.get(_EXT_PROC_ATTRIBUTES)
    value = attributes.get(CODE_DETAILS_ATTRIBUTE) if attributes is not None else None
    return value if type(value) is str else ""


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

# The oneof's field number of each phase's reply.
_REPLY_FIELDS = {"request_headers": 1, "response_headers": 2, "request_body": 3, "response_body": 4,
                 "request_trailers": 5, "response_trailers": 6}
# Replies that change nothing are the common case; written once.
EMPTY_REPLIES = {phase: phase_reply(field, {}, [], None, False, b"", None) for phase, field in _REPLY_FIELDS.items()}


def response_code(request: Request) -> int:
    """The status Envoy sends as the `response.code` attribute (0 when it sent none)."""
    return _number_attribute(request, "response.code")


def response_size(request: Request) -> int:
    """The body bytes Envoy has sent the client, the `response.size` attribute (0: none)."""
    return _number_attribute(request, "response.size")


def attempt_count(request: Request) -> int:
    """Envoy's attempts at the upstream request so far, the `upstream.request_attempt_count`
    attribute (0: none sent): a retry after a reset counts, as a failover does."""
    return _number_attribute(request, ATTEMPT_COUNT_ATTRIBUTE)


def _number_attribute(request: Request, name: str) -> int:
    attributes = request.attributes.get(_EXT_PROC_ATTRIBUTES)
    value = attributes.get(name) if attributes is not None else None
    if type(value) is float:
        return int(value)
    return int(value) if type(value) is str and value else 0


class Reply:
    """What one phase wants changed; written as one ProcessingResponse's bytes."""

    __slots__ = ("set_headers", "remove_headers", "body", "clear_route_cache",
                 "mode_override", "metadata")

    def __init__(self) -> None:
        self.set_headers: dict[str, str] = {}
        self.remove_headers: list[str] = []
        self.body: bytes | None = None
        self.clear_route_cache = False
        self.mode_override: bytes | None = None     # a ProcessingMode's bytes (RESPONSE_IN_BODY, ...)
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

    def build(self, phase: str) -> bytes:
        """The reply's bytes."""
        if not (self.set_headers or self.remove_headers or self.body is not None
                or self.mode_override or self.metadata):
            return EMPTY_REPLIES[phase]
        if phase == "response_trailers":
            # The stream's data has passed: trailers to drop and metadata are what is left.
            return trailers_reply(_REPLY_FIELDS[phase], self.remove_headers, self.metadata)
        return phase_reply(_REPLY_FIELDS[phase], self.set_headers, self.remove_headers, self.body,
                           self.clear_route_cache, self.mode_override or b"", self.metadata)


def trailer_names(request: Request, prefix: str) -> list[str]:
    return [name for name in request.headers if name.startswith(prefix)]


def forwarded_values(request: Request, namespace: str) -> dict[str, float | str]:
    """The numbers and strings of a metadata namespace Envoy forwarded with this message."""
    struct = request.metadata.get(namespace) if request.metadata is not None else None
    if not struct:
        return {}
    return {key: value for key, value in struct.items() if type(value) is float or type(value) is str}


# Marks the service's own answers, so Envoy's local-reply mappers (which turn
# Envoy's own 5xx into OpenAI-style errors) leave their bodies alone.
_ANSWERED = struct_pb2.Struct()
_ANSWERED.update({METADATA_NAMESPACE: {"answered": True}})


def immediate(status: int, body: bytes, headers: dict[str, str] | None = None,
              details: str = "llm_gateway") -> bytes:
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
    return response.SerializeToString()


def error_reply(error: GatewayError, extra_headers: dict[str, str] | None = None, dialect: str = "openai",
                request_id: str | None = None) -> bytes:
    headers = dict(error.headers)
    if extra_headers:
        headers.update(extra_headers)
    return immediate(error.status, error.body(dialect, request_id), headers, details=f"llm_gateway_{error.code}")


__all__ = ["Reply", "Request", "immediate", "error_reply", "header_map", "read_message", "request_of",
           "ProcessingRequest", "ProcessingResponse", "RESPONSE_STREAMED", "RESPONSE_BUFFERED",
           "RESPONSE_IN_BODY", "STREAM_PASSED_THROUGH", "BODY_UNREAD", "EMPTY_REPLIES", "PHASES",
           "forwarded_values", "response_code", "trailer_names"]
