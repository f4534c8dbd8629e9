"""Runs the stages over one call, one ext_proc message at a time."""

from __future__ import annotations

import inspect
import logging
import time

from ..config.envoy_contract import STREAM_USAGE_NAMESPACE
from ..observability import metrics
from .stage import HOOKS as _PHASES, ImmediateAnswer, Stage
from .call import Call
from .errors import GatewayError, gateway_error
from .protocol import (
    ATTEMPT_COUNT_KEY,
    CODE_DETAILS_HEADER,
    EMPTY_REPLIES,
    Reply,
    Request,
    attempt_count,
    code_details,
    error_reply,
    forwarded_values,
    immediate,
    response_code,
    response_size,
    trailer_names,
)

log = logging.getLogger("extproc.pipeline")



class Pipeline:
    """The stages of one kind of call, in order. Each message runs its phase's hooks in
    that order (`table()` lists them, with the fields each stage reads and writes)."""

    def __init__(self, stages: list[Stage], request_only: bool = False) -> None:
        self.stages = stages
        # The upstream filter is configured to send the request phases only.
        self.request_only = request_only
        # (hook, is_async) pairs: most hooks are plain functions, and awaiting only the
        # coroutine ones saves a coroutine per hook. Outside the body phases (whose hooks
        # return a chunk) a plain hook may also return an awaitable when, for this call,
        # it must wait (a store read): None otherwise, and nothing is awaited.
        self._hooks = {phase: [(hook, inspect.iscoroutinefunction(hook)) for hook in
                               (getattr(stage, phase) for stage in stages if hasattr(stage, phase))]
                       for phase in _PHASES}
        self._timers = {phase: metrics.child(metrics.extproc_processing, phase) for phase in _PHASES[:5]}
        self._fallback_timer = self._timers["request_body"]     # any other message (request trailers: off)

    def table(self) -> list[tuple[str, tuple[str, ...], frozenset[str], frozenset[str]]]:
        """(stage, its hooks, the Call fields it reads, those it writes), in order."""
        return [(stage.name, stage.hooks(), stage.reads, stage.writes) for stage in self.stages]

    async def handle(self, call: Call, request: Request) -> bytes:
        """The reply to one of Envoy's messages (protocol.read_message's), as bytes."""
        phase = request.phase
        started = call.message_started = time.perf_counter()
        reply = call.new_reply()
        try:
            if phase == "request_headers":
                call.headers = request.headers
                if request.metadata is not None:
                    call.request_metadata = request.metadata
                if request.attributes:
                    call.envoy_attributes.update(_attributes(request))
                for hook, _ in self._hooks[phase]:
                    pending = hook(call, request.end_of_stream)
                    if pending is not None:
                        await pending
                call.stream_over = self.request_only and request.end_of_stream
            elif phase == "request_body":
                call.raw_body = request.body
                for hook, _ in self._hooks[phase]:
                    pending = hook(call)
                    if pending is not None:
                        await pending
                # The body as sent is the request body's hooks' alone (`body` holds what
                # the rest read): let it go before the provider's answer. Held through each
                # call's upstream time, 32 calls' 400 KB histories stayed in memory apart;
                # let go, the next call's body is joined into memory still warm (bench/ab.py,
                # the 400 KB history resent: +4.5, +3.2 and -0.6% in three runs).
                call.raw_body = b""
                call.stream_over = self.request_only
            elif phase == "response_headers":
                # Envoy's config did not allow skipping them (one_message.py, pass_through.py).
                call.response_in_body = call.stream_passed_through = False
                headers = request.headers
                details = code_details(request)
                if details:
                    headers[CODE_DETAILS_HEADER] = details
                for hook, _ in self._hooks[phase]:
                    pending = hook(call, headers, request.end_of_stream)
                    if pending is not None:
                        await pending
                if request.end_of_stream:
                    self.end(call)
            elif phase == "response_body":
                if call.response_in_body and not call.status:
                    reply = self._headers_skipped(call, request)
                    if type(reply) is not Reply:        # a hook waits (none of the quickstart's)
                        reply = await reply
                chunk = out = request.body
                end_of_stream = request.end_of_stream
                for hook, is_async in self._hooks[phase]:
                    result = hook(call, out, end_of_stream)
                    if is_async:
                        result = await result
                    if result is not None:
                        out = result
                if out is not chunk:
                    reply.body = out
                    if not (call.response_streamed or call.response_in_body):  # headers still held
                        reply.set_headers["content-length"] = str(len(out))
                if call.response_in_body:
                    # Envoy passed the headers on: it would drop a header mutation unseen
                    # (what they need, it adds from the metadata set with the request body).
                    reply.set_headers.clear()
                    reply.remove_headers.clear()
                if end_of_stream:
                    self.end(call)
            elif phase == "response_trailers":
                # A stream Envoy passed through (stages/pass_through.py) has ended; Envoy sends
                # its status and what its sse_to_metadata filter read from it along.
                numbers = forwarded_values(request, STREAM_USAGE_NAMESPACE)
                attempts = attempt_count(request)
                if attempts:
                    numbers[ATTEMPT_COUNT_KEY] = attempts
                if not call.status:              # its headers went by unseen
                    call.status = response_code(request)
                call.sent_bytes = response_size(request)
                for hook, is_async in self._hooks[phase]:
                    pending = hook(call, numbers)
                    if is_async:
                        await pending
                # The trailers are Envoy's marker for the stream's end, not the provider's.
                reply.remove_headers.extend(trailer_names(request, "x-gateway-"))
                self.end(call)
            else:
                # Request trailers are configured off; answer anything else with its empty reply.
                return EMPTY_REPLIES[phase]
            return reply.build(phase)
        except GatewayError as error:
            call.status, call.error_code, call.outcome = error.status, error.code, "refused"
            self.end(call)
            return error_reply(error, {"x-request-id": call.request_id} if call.request_id else None,
                               call.dialect, call.request_id)
        except ImmediateAnswer as answer:
            call.status, call.outcome = answer.status, "ok"
            self.end(call)
            return immediate(answer.status, answer.body, answer.headers)
        except Exception:
            log.exception("stage failed in %s (request %s)", phase, call.request_id)
            error = gateway_error()
            call.status, call.error_code, call.outcome = error.status, error.code, "error"
            self.end(call)
            return error_reply(error, None, call.dialect, call.request_id)
        finally:
            elapsed = time.perf_counter() - started
            call.service_seconds += elapsed
            call.message_started = None
            self._timers.get(phase, self._fallback_timer).observe(elapsed)

    def _headers_skipped(self, call: Call, request: Request):
        """A one-message response: the response-headers hooks run on what Envoy told with
        the body (status; JSON, as announced). What they would change in the headers,
        Envoy adds from metadata; the body's reply starts afresh. The reply, or an
        awaitable of it when a hook waits."""
        headers = {":status": str(response_code(request) or 200), "content-type": "application/json"}
        attempts = attempt_count(request)
        if attempts:
            headers["x-envoy-attempt-count"] = str(attempts)
        details = code_details(request)
        if details:
            headers[CODE_DETAILS_HEADER] = details
        hooks = self._hooks["response_headers"]
        for index, (hook, _) in enumerate(hooks):
            pending = hook(call, headers, False)
            if pending is not None:
                return self._headers_skipped_rest(call, headers, pending, hooks[index + 1:])
        return call.new_reply()

    @staticmethod
    async def _headers_skipped_rest(call: Call, headers: dict[str, str], pending, hooks: list) -> Reply:
        await pending
        for hook, _ in hooks:
            pending = hook(call, headers, False)
            if pending is not None:
                await pending
        return call.new_reply()

    def end(self, call: Call, outcome: str | None = None) -> None:
        """Ends a call exactly once: its outcome and end time are then final and its done
        hooks (settle, record) are due. The worker runs them once the last reply is out,
        so the client does not wait for the bookkeeping."""
        if call.finished:
            return
        # Every path here answers Envoy's last message (an error or immediate reply, or
        # the end of the response), or Envoy ended the stream first.
        call.finished = call.stream_over = True
        call.done_due = bool(self._hooks["done"])
        call.ended_at = time.perf_counter()
        if outcome:
            call.outcome = outcome
        elif call.outcome == "pending":
            call.outcome = "ok" if call.status < 400 else "upstream_error"

    async def run_done(self, call: Call) -> None:
        """Runs an ended call's done hooks; the caller runs them once (`done_due`)."""
        for hook, _ in self._hooks["done"]:
            try:
                pending = hook(call)
                if pending is not None:
                    await pending
            except Exception:   # one failing stage must not cost the others their record
                log.exception("done hook %r failed (request %s)", hook, call.request_id)


def _attributes(request: Request) -> dict[str, str]:
    """Envoy attributes the filter asked for (e.g. xds.cluster_name → "cluster"); a value
    that is not a string reads as ""."""
    found = {}
    for struct in request.attributes.values():
        for key, value in struct.items():
            found[key.rsplit(".", 1)[-1].replace("cluster_name", "cluster")] = value if type(value) is str else ""
    return found
