"""Streams Envoy passes straight to the client: no ext_proc message per chunk.

In STREAMED mode every chunk Envoy reads from the provider is a message to the service
and back (~0.2-0.3 ms of the shared core, and a hop on the client's path), and real
providers send a chunk per token. A stream the service has nothing to change in is
passed through instead: no guardrail reads this caller's responses, and the model is
concrete (a virtual model's response headers name the backend that served after a
failover). Its response headers and body go by without a message: Envoy adds the
gateway's headers from metadata set with the request body, its sse_to_metadata filter
reads the usage from the passing stream, and the empty trailers that its bandwidth_limit
filter adds at the end (to streams marked here, envoy/quickstart.yaml) make ext_proc send
one message, with the status (the response.code attribute) and that usage
(stages/accounting/usage.py reads it, the budget settles from it). An error answered in JSON gets
the trailers too: its status is read, its body passes as the provider sent it.

The usage chunk: the Responses API always sends its usage; chat and completions send it
when `stream_options.include_usage` asks, and the service asks for it whatever the
client did (route.py). When the client did not ask, Envoy's Lua filter takes the usage
chunk and the `"usage":null` of the other chunks out, as stages/accounting/usage.py does on the
chunk-by-chunk path, and reads the usage itself into the keys sse_to_metadata fills for
other streams (sse_to_metadata skips these: the Lua filter has each chunk in hand). The
same filter stamps the time the first event passes, which comes with the usage (the
record's time to first token).

A stream that ends without its trailers (the client left, the provider dropped) is
charged what Envoy sent it, from Envoy's gRPC access log (stages/accounting/cut_stream.py).

Only what the Envoy in front announces it does (protocol.py: ENVOY_FEATURES_METADATA)
is relied on: this, and that Envoy adds the gateway's response headers from metadata
(HEADERS_FROM_METADATA). An Envoy config without those filters keeps its streams chunk
by chunk.

The choice is made at request headers, from what Envoy's request reader read from the
body (`stream`, `stream_options.include_usage`, `model`), or, for Google's Gemini API,
from the path (`/v1beta/models/{model}:streamGenerateContent`): the response modes cannot be
changed later, and the response headers are never seen: a stream whose headers the
service held while its last byte arrived could lose its body between the paused ext_proc
and the trailer-adding filter (Envoy 1.40, ~2% of fast streams; bench/README.md, "Tried,
measured, and not kept"). The request body must say what Envoy read (a body repeating
these keys with other values is refused).
"""

from __future__ import annotations

from ..config.envoy_contract import HEADERS_FROM_METADATA, STREAMS_PASSED_THROUGH, USAGE_CHUNK_STRIPPED
from ..pipeline.call import Call
from ..pipeline.errors import invalid_request
from ..pipeline.protocol import STREAM_PASSED_THROUGH
from ..pipeline.stage import Stage
from .announced import announced, announced_bool, announced_string
from .guard.response import stream_policy
from .one_message import headers_from_envoy


class PassThroughStream(Stage):
    name = "pass_through"
    reads = frozenset({"backend", "body", "body_unread", "client_wants_usage", "endpoint", "envoy_features", "key",
                       "model", "model_name", "output_reserved", "path", "ratelimit_headers", "request_metadata",
                       "resource_id", "stream"})
    writes = frozenset({"stream_passed_through"})

    def request_headers(self, call: Call, end_of_stream: bool) -> None:
        features = call.envoy_features
        if STREAMS_PASSED_THROUGH not in features or HEADERS_FROM_METADATA not in features or call.body_unread:
            return
        if call.endpoint.streams_by_path:
            # Google's form: the path names the model and says the answer streams.
            strip, model_name = False, call.resource_id
        else:
            fields = announced(call)
            if fields is None or not announced_bool(fields, "stream") or not call.codec.streams:
                return
            strip = call.codec.takes_usage_option and not announced_bool(fields, "include_usage")
            if strip and USAGE_CHUNK_STRIPPED not in features:
                return
            model_name = announced_string(fields, "model")
        model = call.config.model(model_name)
        if model is None or model.is_virtual or stream_policy(call) \
                or call.config.mcp.taint.model_tools \
                or model.primary.dialect != call.dialect \
                or not model.primary.provider.streams_in_sse \
                or call.config.cache.keeps_streams(model.name, call.team):   # read: re-framed, or kept (stages/cache/store.py)
            return          # (model tool labels: a tainted run's stream may have to be cut, stages/runs/tool_stream.py)
        call.stream_passed_through = True
        call.reply.mode_override = STREAM_PASSED_THROUGH
        # Has Envoy add (empty) trailers at the response's end: ext_proc sends them.
        marks = {"stream_end": "trailers"}
        if strip:
            marks["usage_chunk"] = "strip"          # Envoy's Lua filter takes it out
        call.reply.add_metadata(marks)

    def request_body(self, call: Call) -> None:
        if not call.stream_passed_through:
            return
        if call.endpoint.streams_by_path:
            headers_from_envoy(call)        # nothing in the body can say otherwise
            return
        fields = announced(call)
        if (not call.stream or call.model_name != announced_string(fields, "model")
                or (call.codec.takes_usage_option
                    and call.client_wants_usage != bool(announced_bool(fields, "include_usage")))):
            raise invalid_request("The request body repeats 'stream', 'stream_options' or 'model' "
                                  "with different values.")
        headers_from_envoy(call)
