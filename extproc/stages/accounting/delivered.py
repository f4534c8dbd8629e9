"""A call is charged for what reached its caller.

Envoy may end a call's stream while it waits for a reply of the service's: its message
timeout ran out (a worker hung or too slow: the caller got Envoy's 504, or a stream cut
where it stood), or the caller left. The worker marks such a call with what Envoy took
of its replies (pipeline/outcomes.py `Undelivered`, set by runtime/processor.py); this
stage, once the usage is final, charges the call that and no more:

- the request never went on (Envoy did not take the request body's reply): no provider
  was called, nothing is charged and no backend is named;
- a stream read chunk by chunk: the prompt and the output of the chunks whose replies
  Envoy took (counted offline: `usage_estimated`);
- a stream passed through: its bytes went by unseen, all of them, so its usage stands;
- any other answer (JSON, or a stream whose headers never went): the caller got none of
  it, nothing is charged.

What the provider billed for more than that is the gateway's loss, not the caller's: the
log line keeps it (`provider_usage`) and `gateway_absorbed_tokens_total` counts it
(docs/budgets-and-rate-limits.md#what-a-call-is-charged).
"""

from __future__ import annotations

from ...api.tokens import count_prompt, count_text
from ...api.usage import Usage
from ...observability import metrics
from ...pipeline.call import Call
from ...pipeline.outcomes import CANCELLED, GATEWAY_TIMEOUT, Undelivered
from ...pipeline.stage import Stage

# Replies Envoy takes before the request goes on: request headers, request body.
REQUEST_REPLIES = 2
# Envoy's own answer when its message timeout runs out (envoy/template.yaml local replies).
# (A provider that failed meanwhile: its status, from Envoy's access log, stages/accounting/cut_stream.py.)
TIMEOUT_STATUS, TIMEOUT_CODE = 504, "timeout"


class DeliveredOnly(Stage):
    name = "delivered"
    reads = frozenset({"body", "endpoint", "generated", "model", "outcome", "response_streamed",
                       "stream_passed_through"})
    writes = frozenset({"backend", "error_code", "log_fields", "status", "usage"})

    def done(self, call: Call) -> None:
        lost = call.owned(Undelivered)
        if lost is None or lost.refuted:
            return
        if call.stream_passed_through and lost.replies >= REQUEST_REPLIES:
            return                              # Envoy sent the caller every byte, unseen
        billed = call.usage
        headers_went = call.response_streamed and lost.replies > REQUEST_REPLIES
        if lost.replies < REQUEST_REPLIES:
            call.backend = None                 # the request never left: no provider called
            call.usage = None
        elif headers_went:
            call.usage = _as_far_as_taken(call, lost, billed)
        else:
            call.usage = None                   # the caller got none of the answer
        if not headers_went and call.outcome == GATEWAY_TIMEOUT:
            call.status, call.error_code = TIMEOUT_STATUS, TIMEOUT_CODE     # what Envoy answered
        elif not headers_went and call.outcome == CANCELLED:
            call.status, call.error_code = 0, None                          # the caller had left
        if billed is not None and call.backend is not None:
            _absorbed(call, billed)


def _as_far_as_taken(call: Call, lost: Undelivered, billed: Usage | None) -> Usage:
    """The prompt, as the provider counted it when it said, and the output of the chunks
    Envoy took, counted offline (never more than the provider's count)."""
    encoding = call.model.encoding if call.model else "o200k_base"
    if billed is not None and not billed.estimated:
        prompt, cached = billed.input_tokens, billed.cached_tokens
    else:
        texts, messages = call.codec.prompt_texts(call.body)
        prompt, cached = count_prompt(texts, messages, encoding), 0
    output = count_text("".join(call.generated[:lost.generated]), encoding)
    if billed is not None and not billed.estimated:
        output = min(output, billed.output_tokens)
    return Usage(input_tokens=prompt, output_tokens=output, cached_tokens=cached, estimated=True)


def _absorbed(call: Call, billed: Usage) -> None:
    """What the provider billed beyond the caller's charge: on the log line and counted."""
    charged = call.usage
    extra_in = billed.input_tokens - (charged.input_tokens if charged else 0)
    extra_out = billed.output_tokens - (charged.output_tokens if charged else 0)
    if extra_in <= 0 and extra_out <= 0:
        return
    call.log_fields["provider_usage"] = {"input_tokens": billed.input_tokens, "output_tokens": billed.output_tokens,
                                         "estimated": billed.estimated}
    model = call.model.name if call.model else ""
    if extra_in > 0:
        metrics.child(metrics.absorbed_tokens, "input", model).inc(extra_in)
    if extra_out > 0:
        metrics.child(metrics.absorbed_tokens, "output", model).inc(extra_out)
