"""Response side: who answered, the body mode, and the usage, read from every shape.

The usage is read in the provider's dialect (a translated call's provider answers in its
own, its codec in dialects/); TranslateAnswer (translate_answer.py) then writes the answer
in the caller's. JSON answers are buffered (one message). SSE goes chunk by chunk
(response_stream.py: each event parsed once for its usage and its translation; the
response guardrails read what the caller gets). An embeddings answer, which a 2,048-input batch makes 40 MB, goes
chunk by chunk too, unchanged: only its tail, where the usage is, is read.

A stream passed through (chosen at request headers, see pass_through.py) reaches the
client unseen; Envoy's sse_to_metadata filter reads its usage, and the trailers message
at its end brings that here, with the time its first event passed (Envoy's Lua filter
stamps it). A usage the provider left out is estimated from the bytes Envoy sent
(stages/accounting/cut_stream.py), else at the output cap the reservation used (the service never saw the text).
"""

from __future__ import annotations

import re
from dataclasses import replace
from time import perf_counter, time

from ...api.openai import usage_from
from ...api.provider_json import loads
from ...api.eventstream import EVENT_STREAM, EventStreamFraming
from ...api.sse import SSEParser
from ...api.tokens import count_prompt, count_text
from ...api.usage import Usage
from ...config.envoy_contract import UPSTREAM_CLUSTER_HEADER
from ...dialects import codec_of
from ...pipeline.call import Call
from ...pipeline.outcomes import CANCELLED, ERROR, PROVIDER_CUT
from ...pipeline.protocol import (ATTEMPT_COUNT_KEY, CODE_DETAILS_HEADER, RESPONSE_BUFFERED, RESPONSE_STREAMED,
                                 gateway_failed, provider_timed_out)
from ...pipeline.stage import Stage
from ..attempt import backend_for
from ..response_stream import stream_chunk

# An embeddings answer's usage is its last key: the tail kept while the rest passes by.
_TAIL_BYTES = 65_536
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*(\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\})')


def first_event_perf_counter(first_event_at_us: float) -> float:
    """The time Envoy's Lua filter stamped (wall clock, Envoy's, same host) on this
    process's perf_counter."""
    return perf_counter() - (time() - first_event_at_us / 1e6)


class JsonTail:
    """The last bytes of a JSON answer that goes by unbuffered: where its usage is."""
    __slots__ = ("tail",)

    def __init__(self) -> None:
        self.tail = b""


# The error code of the gateway's own failures (contract: 5xx `gateway_error`).
GATEWAY_ERROR_CODE = "gateway_error"
# Outcomes of a call that ended before its answer did (the client left, the provider cut it).
ENDED_EARLY = frozenset({CANCELLED, PROVIDER_CUT})


def _at_least_what_was_read(call: Call) -> None:
    """A stream read chunk by chunk and cut: the usage it carried so far may be a running
    count (Anthropic's message_start says 1 output token); its output is at least the
    text read (and sent on), counted offline."""
    encoding = call.model.encoding if call.model else "o200k_base"
    output = count_text("".join(call.generated), encoding)
    if output > call.usage.output_tokens:
        call.usage = replace(call.usage, output_tokens=output, estimated=True)


class ResponseUsage(Stage):
    name = "usage"
    reads = frozenset({"backend_order", "body", "body_unread", "client_wants_usage", "endpoint", "event_filters",
                       "model", "output_reserved", "provider_kind", "sent_output_tokens", "stream_passed_through",
                       "stream_translation"})
    writes = frozenset({"attempts", "backend", "error_code", "first_byte_at", "generated", "json_passing_by",
                        "outcome", "provider_answer", "response_id", "response_streamed", "sse", "status", "usage"})

    def response_headers(self, call: Call, headers: dict[str, str], end_of_stream: bool) -> None:
        call.status = int(headers.get(":status", "0") or 0)
        # Every attempt Envoy made, a retry after a provider's reset too (the route's
        # include_attempt_count_in_response, or the attribute when headers are skipped).
        attempt = int(headers.get("x-envoy-attempt-count", "1") or 1)
        call.attempts = attempt
        if call.backend_order:
            # Envoy names the cluster that answered; the plan names the backend.
            cluster = headers.get(UPSTREAM_CLUSTER_HEADER, "")
            call.reply.remove_headers.append(UPSTREAM_CLUSTER_HEADER)
            try:
                call.backend = backend_for(call.model, call.backend_order, cluster, attempt)
            except KeyError:
                pass              # Envoy answered itself (no cluster): keep the first choice
        if gateway_failed(headers.get(CODE_DETAILS_HEADER, "")):
            # Envoy's own 500: the gateway's ext_proc service failed (an attempt's worker
            # unreachable or gone), no provider answered: the gateway's failure, no backend.
            call.backend, call.outcome, call.error_code = None, ERROR, GATEWAY_ERROR_CODE
        elif provider_timed_out(headers.get(CODE_DETAILS_HEADER, "")):
            call.outcome = PROVIDER_CUT         # Envoy's 504: the provider stalled, answered nothing
        if call.backend is not None:
            call.reply.set_headers["x-gateway-backend"] = call.backend.name
        if end_of_stream:
            self._response_complete(call)
            return
        content_type = headers.get("content-type", "")
        if content_type.startswith("text/event-stream") and call.status >= 400:
            # A provider's error said to be a stream (Google's are): its body is the error,
            # read whole and answered as JSON, in the caller's dialect when translated.
            call.reply.set_headers["content-type"] = "application/json"
            call.reply.mode_override = RESPONSE_BUFFERED
        elif content_type.startswith("text/event-stream"):
            call.response_streamed = True
            call.sse = SSEParser()
            call.reply.mode_override = RESPONSE_STREAMED
        elif content_type.startswith(EVENT_STREAM) and call.status < 400:
            call.response_streamed = True           # AWS's binary framing (Bedrock), read as events
            call.sse = EventStreamFraming()         # and written as SSE, translated or not
            call.reply.set_headers["content-type"] = "text/event-stream"
            call.reply.mode_override = RESPONSE_STREAMED
        elif call.endpoint is not None and call.codec.answers_in_chunks and call.status < 400:
            call.json_passing_by = True
            call.reply.mode_override = RESPONSE_STREAMED
        else:
            call.reply.mode_override = RESPONSE_BUFFERED

    def response_body(self, call: Call, chunk: bytes, end_of_stream: bool) -> bytes | None:
        if call.response_streamed:
            out = stream_chunk(call, chunk, end_of_stream)
        elif call.json_passing_by:
            out = self._json_passing_by(call, chunk, end_of_stream)
        else:
            out = self._json_body(call, chunk)
        if end_of_stream:
            self._response_complete(call)
        return out

    # --- buffered JSON ------------------------------------------------------------

    @staticmethod
    def _json_body(call: Call, body: bytes) -> None:
        """The usage of a JSON answer, in the provider's dialect (TranslateAnswer then
        writes it in the caller's)."""
        parsed = loads(body) if body else None
        call.provider_answer = parsed
        if call.status >= 400 or not isinstance(parsed, dict) or not call.endpoint.generates:
            return None
        codec = codec_of(call.provider_kind)
        call.usage = codec.usage_from_response(parsed)
        if call.usage is None:
            call.generated.extend(codec.generated_texts(parsed))
        return None

    # --- a JSON answer too large to buffer --------------------------------------------

    @staticmethod
    def _json_passing_by(call: Call, chunk: bytes, end_of_stream: bool) -> None:
        """An embeddings answer goes by unchanged; its tail is kept for the usage at its end."""
        held = call.own(JsonTail)
        tail = held.tail = (held.tail + chunk)[-_TAIL_BYTES:]
        if end_of_stream:
            found = _USAGE_OBJECT.findall(tail)
            call.usage = usage_from(loads(found[-1])) if found else None
        return None

    # --- a stream passed through ----------------------------------------------------

    def response_trailers(self, call: Call, numbers: dict) -> None:
        """Its end (its status set from Envoy's attribute): the usage Envoy read from it
        (its keys per dialect, envoy/quickstart.yaml, read by the caller's codec), and a
        Responses stream's id."""
        if isinstance(numbers.get("response_id"), str):
            call.response_id = numbers["response_id"]
        call.attempts = int(numbers.get(ATTEMPT_COUNT_KEY, 1) or 1)
        if call.status < 400:
            call.usage = call.codec.usage_from_stream_metadata(numbers)
        first_event = numbers.get("first_event_at_us")     # stamped by Envoy's Lua filter
        if first_event:
            call.first_byte_at = first_event_perf_counter(first_event)
        self._response_complete(call)

    # --- end ----------------------------------------------------------------------

    def _response_complete(self, call: Call) -> None:
        """The usage is final; the last reply carries it to Envoy's access log
        (%DYNAMIC_METADATA(llm_gateway:...)%)."""
        self._estimate_if_missing(call)
        if call.usage is not None:
            call.reply.add_metadata({
                "input_tokens": call.usage.input_tokens,
                "output_tokens": call.usage.output_tokens,
                "cached_tokens": call.usage.cached_tokens,
                "usage_estimated": call.usage.estimated,
                "backend": call.backend.name if call.backend else "",
            })

    def done(self, call: Call) -> None:
        if call.response_streamed and call.usage is not None and call.outcome in ENDED_EARLY:
            _at_least_what_was_read(call)  # a stream that ended before its end did
        self._estimate_if_missing(call)    # a call that ended before its response did

    @staticmethod
    def _estimate_if_missing(call: Call) -> None:
        if call.usage is not None or call.body is None or call.outcome == "refused" \
                or not call.endpoint.generates or call.backend is None:
            return                     # (no backend: never sent; a response cache hit, say)
        if call.status >= 400 and not call.generated:
            return                     # the provider refused: nothing was generated or billed
        if call.body_unread:
            # The service saw neither the prompt nor the text: what Envoy sent of a stream
            # cut short, if that is known; the prompt is not (stages/body_unread.py).
            if call.sent_output_tokens is not None:
                call.usage = Usage(input_tokens=0, output_tokens=call.sent_output_tokens, estimated=True)
            return
        # No usage from the provider: count what we know, and say it is an estimate.
        encoding = call.model.encoding if call.model else "o200k_base"
        texts, messages = call.codec.prompt_texts(call.body)     # the caller's body
        if call.stream_passed_through:
            # Envoy saw the text, the service did not: what Envoy sent of a stream cut
            # short (stages/accounting/cut_stream.py), else the output cap, as reserved.
            output = call.sent_output_tokens if call.sent_output_tokens is not None else call.output_cap()
        else:
            output = count_text("".join(call.generated), encoding)
        call.usage = Usage(input_tokens=count_prompt(texts, messages, encoding),
                           output_tokens=output, estimated=True)
