"""A JSON answer in one ext_proc message instead of two.

Envoy's request reader (a Lua filter ahead of ext_proc) reads "stream" and "model" from a
JSON request body before the service sees the request headers (metadata namespace
`llm_gateway.request`). When the answer will be JSON from one concrete backend and no
response guardrail reads it, the request-headers reply skips the response headers:
Envoy then sends the response body alone (buffered, its status as an attribute), and
adds the gateway's response headers itself from the dynamic metadata this stage sets in
the request-body reply (envoy/quickstart.yaml: the virtual host's response_headers_to_add).
A message costs grpc-python and Envoy ~0.2-0.3 ms of the shared core and a round
trip on the client's path (docs/decisions/one-message-json.md: ~0.6-0.9 ms less at half load).

Streams (their mode is chosen on the response headers), virtual models (the response
headers name the backend that served) and responses a guardrail reads keep the
two-message response side. An Envoy config without the filter sends no such metadata:
every call then does.
"""

from __future__ import annotations

from ..config.envoy_contract import HEADERS_FROM_METADATA
from ..pipeline.call import Call
from ..pipeline.errors import invalid_request
from ..pipeline.protocol import RESPONSE_IN_BODY
from ..pipeline.stage import Stage
from .accounting.cost import envoy_added_cost
from .announced import announced, announced_bool, announced_string
from .guard.response import response_policy



class AnnouncedModel:
    """The model Envoy read from the body, to be checked against the parsed one."""
    __slots__ = ("name",)

    def __init__(self) -> None:
        self.name = ""


class OneMessageResponse(Stage):
    name = "one_message"
    reads = frozenset({"backend", "body", "body_unread", "endpoint", "envoy_features", "key", "model", "model_name",
                       "output_reserved", "path", "ratelimit_headers", "request_metadata", "stream"})
    writes = frozenset({"response_in_body"})

    def request_headers(self, call: Call, end_of_stream: bool) -> None:
        if HEADERS_FROM_METADATA not in call.envoy_features or call.body_unread:
            return
        model_name = _announced_model(call)
        if model_name is None or not call.codec.answers_in_json:
            return
        model = call.config.model(model_name)
        if model is None or model.is_virtual or response_policy(call) \
                or model.primary.dialect != call.dialect:     # a translation may change the status
            return
        call.response_in_body = True
        call.reply.mode_override = RESPONSE_IN_BODY
        call.own(AnnouncedModel).name = model_name

    def request_body(self, call: Call) -> None:
        if not call.response_in_body:
            return
        # What Envoy read must be what the service parsed (a repeated key never gets here:
        # ParseRequest refuses it); should an Envoy config read otherwise, the call must not
        # stream past a one-message response.
        if call.stream or call.model_name != call.own(AnnouncedModel).name:
            raise invalid_request("The request body's 'stream' or 'model' is not what the gateway read from it.")
        headers_from_envoy(call, {"content-type": "application/json"})


def headers_from_envoy(call: Call, extra: dict[str, str] | None = None) -> None:
    """The response headers the gateway adds, for Envoy to add from dynamic metadata
    (envoy/quickstart.yaml: the virtual host's response_headers_to_add): a call whose
    response headers the service does not see. Set with the request-body reply."""
    headers = {"x-gateway-backend": call.backend.name, **(extra or {}),
               **call.ratelimit_headers, **envoy_added_cost(call)}
    call.reply.add_metadata({"headers": headers})


def _announced_model(call: Call) -> str | None:
    """The model of a call Envoy saw announced as not streamed, else None."""
    fields = announced(call)
    if fields is None or announced_bool(fields, "stream") is not False:
        return None
    return announced_string(fields, "model") or None
