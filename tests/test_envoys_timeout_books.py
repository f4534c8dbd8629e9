"""Envoy's access log settles what a worker out of a hang cannot tell: a call Envoy
answered its own 504 (its message timeout ran out while a reply of the service's was due)
is the gateway's timeout and charges the caller nothing, even when the worker believed
Envoy had taken its response headers; a whole answer the worker doubted Envoy took, with
no 504 logged, reached the caller and is charged as it ended."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import orjson

from bare_call import bare_call
from extproc.api.usage import Usage
from extproc.config.envoy_contract import CUT_STREAMS_LOGGED
from extproc.pipeline.outcomes import CANCELLED, GATEWAY_TIMEOUT, PROVIDER_CUT, UPSTREAM_FAILED, Undelivered, \
    ended_early_id
from extproc.stages.accounting.cut_stream import CutStream
from extproc.stages.accounting.delivered import DeliveredOnly
from extproc.store.base import CutEntry
from extproc.store.cut_streams import BytesPerToken, SentBytes


def _ended(entry: CutEntry | None, *, outcome: str = CANCELLED, streamed: bool = True,
           answered: str = "") -> object:
    """A call ended with its response headers' reply thought taken (three replies) and the
    provider's usage read (by default a translated stream's, cancelled), through CutStream's
    and DeliveredOnly's done hooks with `entry` as Envoy's ended-early log line."""
    sent = SentBytes(wait_seconds=0.05)
    call = bare_call("chat", request_id="r-1", outcome=outcome, status=200, response_streamed=streamed,
                     backend=SimpleNamespace(name="openai"), body={"messages": []},
                     envoy_features=frozenset({CUT_STREAMS_LOGGED}),
                     usage=Usage(input_tokens=86, output_tokens=3))
    lost = call.own(Undelivered)
    lost.replies, lost.generated, lost.worker_hung, lost.answered = 3, 0, outcome == GATEWAY_TIMEOUT, answered

    async def run() -> None:
        if entry is not None:
            await sent.arrived(ended_early_id("r-1"), entry, None)
        if (pending := CutStream(sent, BytesPerToken()).done(call)) is not None:     # (None: nothing to wait for)
            await pending
        DeliveredOnly().done(call)

    asyncio.run(run())
    return call


def test_envoys_own_504_is_the_gateways_timeout_and_charges_nothing():
    call = _ended(CutEntry(504, 24, 0, ""))
    assert (call.outcome, call.status, call.error_code, call.usage) == (GATEWAY_TIMEOUT, 504, "timeout", None)
    assert call.log_fields["provider_usage"]["input_tokens"] == 86     # what the provider billed: absorbed


def test_a_provider_that_failed_the_call_is_its_cut():
    call = _ended(CutEntry(502, 0, 0, orjson.dumps({UPSTREAM_FAILED: 1}).decode()))
    assert (call.outcome, call.status) == (PROVIDER_CUT, 502)


def test_a_client_that_left_after_the_headers_is_charged_what_reached_it():
    call = _ended(None)
    assert call.outcome == CANCELLED
    assert call.usage is not None and call.usage.input_tokens == 86 and call.usage.output_tokens == 0


def test_a_whole_answer_doubted_out_of_a_hang_with_no_504_logged_is_charged_as_it_ended():
    call = _ended(None, outcome=GATEWAY_TIMEOUT, streamed=False, answered="ok")
    assert (call.outcome, call.status) == ("ok", 200)
    assert (call.usage.input_tokens, call.usage.output_tokens) == (86, 3)


def test_a_whole_answer_envoy_timed_out_stays_the_gateways_timeout():
    call = _ended(CutEntry(504, 24, 0, ""), outcome=GATEWAY_TIMEOUT, streamed=False, answered="ok")
    assert (call.outcome, call.status, call.usage) == (GATEWAY_TIMEOUT, 504, None)
