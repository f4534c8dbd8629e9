"""A stream passed through that ends without its trailers, or without the provider's
usage, is charged what Envoy sent.

Marks each stream passed through with a `cut_id` (dynamic metadata, with the request
body's reply) when the Envoy in front logs cut ones to the service
(config/envoy_contract.py: CUT_STREAMS_LOGGED); the trailers message
of a stream that completes clears it, so Envoy's access log filter keeps only the
streams that were cut. Such a call's done hook waits for its entry (store/cut_streams.py): when the provider's
answer came whole (the client left after its last event), the usage Envoy read from it is
charged. Otherwise the output is estimated from the bytes sent: with the provider's
running count where its events carry one (its input and cache counts, and at least the
output it counted), else for stages/accounting/usage.py's estimate. With no entry in time (a worker down,
an Envoy without the log) the estimate stays the output cap.
"""

from __future__ import annotations

import orjson

from ...api.usage import Usage
from ...config.envoy_contract import CUT_STREAMS_LOGGED
from ...dialects import Codec
from ...observability import metrics
from ...pipeline.call import Call
from ...pipeline.outcomes import (CANCELLED, GATEWAY_TIMEOUT, PROVIDER_CUT, UPSTREAM_FAILED, Undelivered,
                                  ended_early_id)
from ...store.base import UPSTREAM_COMPLETE
from ...store.cut_streams import BytesPerToken, SentBytes, new_cut_id
from ...pipeline.stage import Stage
from .delivered import REQUEST_REPLIES, TIMEOUT_STATUS
from .usage import first_event_perf_counter


class CutMark:
    """The id Envoy logs a passed-through stream's bytes under, while it may be cut."""
    __slots__ = ("cut_id",)

    def __init__(self) -> None:
        self.cut_id = ""


def _take_mark(call: Call) -> bool:
    """Whether the call was marked; unmarks it."""
    mark = call.owned(CutMark)
    if mark is None or not mark.cut_id:
        return False
    mark.cut_id = ""
    return True


def _shape(call: Call) -> tuple:
    backend = call.backend.name if call.backend else ""
    return call.model.name if call.model else "", backend, call.endpoint.kind, call.client_wants_usage


class CutStream(Stage):
    name = "cut_stream"
    reads = frozenset({"backend", "body", "body_unread", "client_wants_usage", "endpoint", "envoy_features",
                       "model", "output_reserved", "request_id", "response_streamed", "stream_passed_through"})
    writes = frozenset({"first_byte_at", "outcome", "sent_bytes", "sent_output_tokens", "status", "usage"})

    def __init__(self, sent: SentBytes, ratios: BytesPerToken, store=None) -> None:
        self.sent = sent
        self.ratios = ratios
        self.store = store

    def request_headers(self, call: Call, end_of_stream: bool) -> None:
        if call.body_unread:              # its body never comes (stages/body_unread.py)
            self.request_body(call)

    def request_body(self, call: Call) -> None:
        # With the body, once every stage before has let the call go to the provider: a
        # call refused here is not logged (nor stored for nobody to take).
        if not call.stream_passed_through or CUT_STREAMS_LOGGED not in call.envoy_features:
            return
        cut_id = call.own(CutMark).cut_id = new_cut_id()
        call.reply.add_metadata({"cut_id": cut_id})

    def response_headers(self, call: Call, headers: dict[str, str], end_of_stream: bool) -> None:
        # Envoy sent the headers after all (its config did not allow skipping them): the
        # stream goes chunk by chunk and its usage is read there.
        if _take_mark(call):
            self._unmark(call)

    def response_trailers(self, call: Call, numbers: dict[str, float]) -> None:
        if _take_mark(call):
            self._unmark(call)
        if call.status >= 400:
            return
        output = int(numbers.get("output_tokens", 0))
        if output:
            self.ratios.learn(_shape(call), call.sent_bytes, output, int(numbers.get("reasoning_tokens", 0)))
        elif "output_tokens" not in numbers and call.sent_bytes:
            # The provider sent no usage (some OpenAI-compatible servers ignore
            # include_usage): what Envoy sent is charged, as for a stream cut short.
            call.sent_output_tokens = min(self.ratios.tokens(_shape(call), call.sent_bytes), call.output_cap())

    @staticmethod
    def _unmark(call: Call) -> None:
        call.reply.add_metadata({"cut_id": ""})    # not cut: not logged

    def done(self, call: Call):
        mark = call.owned(CutMark)
        cut_id = mark.cut_id if mark is not None else ""
        if not cut_id:
            if call.backend is None or call.body is None or CUT_STREAMS_LOGGED not in call.envoy_features:
                return None
            if call.outcome == CANCELLED:
                return self._ended_early(call)
            if call.outcome == GATEWAY_TIMEOUT and not call.response_streamed:
                return self._timed_out(call)
            return None
        if call.usage is not None or call.outcome == "refused":
            return None
        return self._charged_as_sent(call, cut_id)

    async def _charged_as_sent(self, call: Call, cut_id: str) -> None:
        entry = await self.sent.wait(cut_id, self.store)
        if entry is None:
            metrics.child(metrics.cut_streams, "output_cap").inc()
            return
        call.status = call.status or entry.status
        call.sent_bytes = entry.size
        if entry.first_event_at_us:
            call.first_byte_at = first_event_perf_counter(entry.first_event_at_us)
        numbers = orjson.loads(entry.usage) if entry.usage else {}
        if numbers.pop(UPSTREAM_FAILED, 0):
            call.outcome = PROVIDER_CUT
        if numbers.pop(UPSTREAM_COMPLETE, 0) or call.codec.stream_usage_is_final(numbers):
            # The provider's answer came whole, or the usage read is its last (OpenAI's
            # usage chunk, Anthropic's message_delta): the client left once that usage had
            # passed Envoy. It is charged, exact (a usage read mid-stream may be a running
            # count: Anthropic's message_start, Gemini's every chunk).
            call.usage = call.codec.usage_from_stream_metadata(numbers) if call.status < 400 else None
            if call.usage is not None:
                metrics.child(metrics.cut_streams, "usage").inc()
                return
        estimate = min(self.ratios.tokens(_shape(call), entry.size), call.output_cap())
        call.usage = running_usage(call.codec, numbers, estimate) if call.status < 400 else None
        if call.usage is None:
            call.sent_output_tokens = estimate
        metrics.child(metrics.cut_streams, "bytes_sent").inc()


    async def _ended_early(self, call: Call) -> None:
        """A call that went to the provider and ended before its answer did: Envoy's
        access log says whether the provider failed it (then it is the provider's cut,
        and its status is what the caller got: Envoy's 502, or the 200 of a cut stream),
        whether Envoy answered the caller its own 504 (its message timeout ran out while
        a reply of the service's was due: the gateway's timeout, whatever the worker
        believed Envoy took of its replies), or the client left."""
        entry = await self.sent.wait(ended_early_id(call.request_id), self.store)
        if entry is None:
            return
        if entry.usage and orjson.loads(entry.usage).get(UPSTREAM_FAILED):
            call.outcome = PROVIDER_CUT
            call.status = entry.status or call.status
        elif entry.status == TIMEOUT_STATUS:      # Envoy's own answer
            # The caller got Envoy's 504 and none of the answer: the delivered stage
            # charges nothing to it (what the provider billed is absorbed, and logged).
            lost = call.own(Undelivered)
            lost.replies, lost.generated, lost.worker_hung = REQUEST_REPLIES, 0, True
            call.outcome = GATEWAY_TIMEOUT

    async def _timed_out(self, call: Call) -> None:
        """A whole answer (not streamed) the worker made, then doubted Envoy took: out of a
        hang it cannot tell Envoy's timeout from Envoy's end of a stream it had answered.
        Envoy logs its own 504s (the ended-early log): none for this call, and the caller
        got the answer, as it ended."""
        lost = call.owned(Undelivered)
        if lost is None or not lost.answered or lost.replies < REQUEST_REPLIES:
            return
        if await self.sent.wait(ended_early_id(call.request_id), self.store) is None:
            lost.refuted = True
            call.outcome = lost.answered


def running_usage(codec: Codec, numbers: dict, estimate: int) -> Usage | None:
    """What a stream cut before its final usage is charged when its passing events carried
    a running count (Anthropic's message_start, Gemini's every chunk): the input and cache
    counts as the provider gave them (the cut does not change them), and as output the
    larger of its count so far and `estimate` (the bytes sent, in tokens). None without one."""
    so_far = codec.usage_from_stream_metadata(numbers) if numbers else None
    if so_far is not None:
        so_far.output_tokens, so_far.estimated = max(so_far.output_tokens, estimate), True
    return so_far
