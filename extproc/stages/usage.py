"""Response side: pick the body mode, read usage from every shape, keep streams flowing.

JSON responses are buffered (one message); SSE is streamed chunk by chunk and
passed on as it arrives. When the gateway asked the provider for usage the
client did not ask for, that usage chunk (and the `"usage":null` it makes the
provider add to every chunk) is removed, so the client sees what it asked for.

A stream passed through (chosen at request headers, see pass_through.py) reaches the
client unseen; Envoy's sse_to_metadata filter reads its usage, and the trailers message
at its end brings that here, with the time its first event passed (Envoy's Lua filter
stamps it). A usage the provider left out is estimated at the output cap the
reservation used (the service never saw the text); one cut short, from the bytes
Envoy sent (cut_stream.py).
"""

from __future__ import annotations

from time import perf_counter, time

from ..api.openai import generated_texts, prompt_texts, usage_from_event, usage_from_response
from ..api.provider_json import loads
from ..api.sse import SSEParser
from ..api.tokens import count_prompt, count_text
from ..api.usage import Usage
from ..config.envoy_contract import UPSTREAM_CLUSTER_HEADER
from ..pipeline.call import Call
from ..pipeline.errors import error_body
from ..pipeline.protocol import RESPONSE_BUFFERED, RESPONSE_STREAMED
from . import Stage
from .attempt import backend_for

_USAGE_NULL = b',"usage":null'
SENT_OUTPUT_TOKENS = "sent_output_tokens"      # stage_state: what a cut stream was sent (cut_stream.py)


def first_event_perf_counter(first_event_at_us: float) -> float:
    """The time Envoy's Lua filter stamped (wall clock, Envoy's, same host) on this
    process's perf_counter."""
    return perf_counter() - (time() - first_event_at_us / 1e6)


class ResponseUsage(Stage):
    name = "usage"

    def response_headers(self, call: Call, headers: dict[str, str], end_of_stream: bool) -> None:
        call.status = int(headers.get(":status", "0") or 0)
        if call.backend_order:
            # Envoy names the cluster and attempt that answered; the plan names the backend.
            attempt = int(headers.get("x-envoy-attempt-count", "1") or 1)
            cluster = headers.get(UPSTREAM_CLUSTER_HEADER, "")
            call.reply.remove_headers.append(UPSTREAM_CLUSTER_HEADER)
            try:
                call.backend = backend_for(call.model, call.backend_order, cluster, attempt)
            except KeyError:
                pass              # Envoy answered itself (no cluster): keep the first choice
            call.attempts = attempt
        if call.backend is not None:
            call.reply.set_headers["x-gateway-backend"] = call.backend.name
        if end_of_stream:
            self._response_complete(call)
            return
        if headers.get("content-type", "").startswith("text/event-stream"):
            call.response_streamed = True
            call.sse = SSEParser()
            call.reply.mode_override = RESPONSE_STREAMED
        else:
            call.reply.mode_override = RESPONSE_BUFFERED

    def response_body(self, call: Call, chunk: bytes, end_of_stream: bool) -> bytes | None:
        if call.response_streamed:
            out = self._stream_chunk(call, chunk, end_of_stream)
        else:
            out = self._json_body(call, chunk)
        if end_of_stream:
            self._response_complete(call)
        return out

    # --- buffered JSON ------------------------------------------------------------

    def _json_body(self, call: Call, body: bytes) -> bytes | None:
        parsed = loads(body) if body else None
        if call.status >= 400:
            if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
                return None                    # already an OpenAI-style error: pass it on
            call.error_code = "upstream_error"
            call.reply.set_headers["content-type"] = "application/json"
            return error_body(f"The provider answered HTTP {call.status} without an "
                              "OpenAI-style error body.", "api_error", "upstream_error")
        if isinstance(parsed, dict) and call.endpoint.generates:
            call.stage_state["response_json"] = parsed     # guardrails read it, no second parse
            if call.endpoint.kind == "responses":
                call.stage_state["response_id"] = parsed.get("id")
            call.usage = usage_from_response(parsed)
            if call.usage is None:
                call.generated.extend(generated_texts(call.endpoint.kind, parsed))
        return None

    # --- SSE ----------------------------------------------------------------------

    def _stream_chunk(self, call: Call, chunk: bytes, end_of_stream: bool) -> bytes | None:
        kind = call.endpoint.kind
        strip = not call.client_wants_usage
        out: list[bytes] = []
        # Bytes held back from earlier chunks (an incomplete event) come out with this one.
        changed = bool(call.sse.pending)
        for event in call.sse.feed(chunk, final=end_of_stream):
            raw = event.raw
            data = None
            if event.data and not event.is_done:
                data = loads(event.data)
                if isinstance(data, dict):
                    if call.first_byte_at is None:
                        call.first_byte_at = perf_counter()
                    call.generated.extend(generated_texts(kind, data))
                    if kind == "responses" and data.get("type") == "response.created":
                        call.stage_state["response_id"] = (data.get("response") or {}).get("id")
                    usage = usage_from_event(kind, data)
                    if usage is not None:
                        call.usage = usage
                        if strip and data.get("choices") == []:
                            changed = True
                            continue   # the usage chunk the client did not ask for
                    if strip and _USAGE_NULL in raw:
                        raw = raw.replace(_USAGE_NULL, b"")
                        changed = True
            for event_filter in call.event_filters:
                filtered = event_filter(event, data, raw)
                if filtered is not raw:
                    raw, changed = filtered, True
            out.append(raw)
        if not end_of_stream and call.sse.pending:
            changed = True             # hold an incomplete event back until it completes
        if not changed:
            return None
        return b"".join(out)

    # --- a stream passed through ----------------------------------------------------

    def response_trailers(self, call: Call, numbers: dict) -> None:
        """Its end (its status set from Envoy's attribute): the usage Envoy read from it
        (chat's and the Responses API's names mapped to one set in envoy/quickstart.yaml),
        and a Responses stream's id."""
        if isinstance(numbers.get("response_id"), str):
            call.stage_state["response_id"] = numbers["response_id"]
        if call.status < 400 and ("input_tokens" in numbers or "output_tokens" in numbers):
            call.usage = Usage(int(numbers.get("input_tokens", 0)), int(numbers.get("output_tokens", 0)),
                               int(numbers.get("cached_tokens", 0)), int(numbers.get("reasoning_tokens", 0)))
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
        self._estimate_if_missing(call)    # a call that ended before its response did

    @staticmethod
    def _estimate_if_missing(call: Call) -> None:
        if call.usage is not None or call.body is None or call.outcome == "refused":
            return
        if call.status >= 400 and not call.generated:
            return                     # the provider refused: nothing was generated or billed
        # No usage from the provider: count what we know, and say it is an estimate.
        encoding = call.model.encoding if call.model else "o200k_base"
        texts, messages = prompt_texts(call.endpoint.kind, call.body)
        if call.stream_passed_through:
            # Envoy saw the text, the service did not: what Envoy sent of a stream cut
            # short (cut_stream.py), else the output cap, as reserved.
            output = call.stage_state.get(SENT_OUTPUT_TOKENS, call.output_cap())
        else:
            output = count_text("".join(call.generated), encoding)
        call.usage = Usage(input_tokens=count_prompt(texts, messages, encoding),
                           output_tokens=output, estimated=True)
