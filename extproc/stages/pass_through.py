"""Streams Envoy passes straight to the client: no ext_proc message per chunk.

In STREAMED mode every chunk Envoy reads from the provider is a message to the service
and back (~0.2-0.3 ms of the shared core, and a hop on the client's path), and real
providers send a chunk per token. A stream the service has nothing to change in is
passed through instead: the client asked for its usage (so no usage chunk has to come
out; the Responses API always sends it) and no guardrail reads this caller's responses.
Envoy's sse_to_metadata filter reads the usage from the passing stream, and the empty
trailers Envoy adds at its end bring that usage to the service in one message
(stages/usage.py settles from it).

The choice is made at request headers, from what Envoy's json_to_metadata read from the
body (`stream`, `stream_options.include_usage`): Envoy decides whether to add trailers
when the response's last byte arrives, which can be before the service has answered
its headers. The request body must then say the same (a body repeating these keys with
other values is refused), and a response that is not a stream (an error in JSON) is
read as any other.
"""

from __future__ import annotations

from ..call import Call
from ..errors import invalid_request
from ..protocol import METADATA_NAMESPACE, STREAM_PASSED_THROUGH
from . import Stage
from .guard_response import stream_policy
from .one_message import announced, announced_true
from .route import USAGE_OPTION_KINDS

_STREAM_KINDS = (*USAGE_OPTION_KINDS, "responses")


class PassThroughStream(Stage):
    name = "pass_through"

    def request_headers(self, call: Call, end_of_stream: bool) -> None:
        fields = announced(call)
        if fields is None or not announced_true(fields, "stream") or call.endpoint.kind not in _STREAM_KINDS:
            return
        if call.endpoint.kind in USAGE_OPTION_KINDS and not announced_true(fields, "include_usage"):
            return
        if stream_policy(call):
            return
        call.stream_passed_through = True
        call.reply.mode_override = STREAM_PASSED_THROUGH
        # Has Envoy add (empty) trailers at the stream's end: ext_proc sends them, with the usage.
        call.reply.metadata = {METADATA_NAMESPACE: {"stream_end": "trailers"}}

    def request_body(self, call: Call) -> None:
        if not call.stream_passed_through:
            return
        if not call.stream or (call.endpoint.kind in USAGE_OPTION_KINDS and not call.client_wants_usage):
            raise invalid_request("The request body repeats 'stream' or 'stream_options' with different values.")
