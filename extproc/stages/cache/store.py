"""The response cache, storing side (stages/cache/lookup.py reads): after the call, a complete
answer the cache may keep is kept, the metrics count what the cache did, and the calls
waiting for this one (a stampede's followers) get its answer.

An answer is kept when the call qualified and was not a hit, bypass included: status 200,
a JSON answer as the caller got it (after the response guardrails, translated to the
caller's dialect) no larger than the rule's `max_entry_bytes`; with the rule's `streams:
true`, a stream read whole, kept as the JSON answer it told (stages/cache/stream.py). A stored
answer serves JSON and stream requests alike. The write happens with the answer's last
message, before Envoy is told to release it: the caller's very next identical call finds
the entry on any worker of any replica (a SQLite store's pending entries are written at
once then, one transaction, instead of behind). What cannot be kept then (an answer whose
usage the done hook completes) is kept in the done hook, once the caller has it."""

from __future__ import annotations

import time

from ...api.provider_json import dumps
from ...observability import metrics
from ...pipeline.call import Call
from ...pipeline.stage import Stage
from ...store import StoreUnavailable, maybe_await
from .lookup import HIT, CacheStoreHandle, entry_value
from .stream import captured_answer, capture_stream
from ..accounting.cost import charged_cost


class CacheStore(Stage):
    name = "cache_store"
    reads = frozenset({"backend", "body", "cache", "endpoint", "json_passing_by", "key", "model", "outcome",
                       "response_json", "response_streamed", "status", "stream_translation", "usage"})
    writes = frozenset({"event_filters", "log_fields"})

    def __init__(self, handle: CacheStoreHandle) -> None:
        self.handle = handle

    @staticmethod
    def response_headers(call: Call, headers: dict[str, str], end_of_stream: bool) -> None:
        """A stream a rule keeps (`streams: true`) is read as it leaves (stages/cache/stream.py)."""
        outcome = call.cache
        if outcome is not None and outcome.store_it and outcome.rule.streams and call.response_streamed \
                and call.status == 200:
            capture_stream(call)

    async def response_body(self, call: Call, chunk: bytes, end_of_stream: bool) -> None:
        """The answer kept in the store before its last message leaves: the next identical
        call is a hit wherever it lands."""
        outcome = call.cache
        if not end_of_stream or outcome is None or outcome.result == HIT or call.usage is None:
            return None
        value = self._entry(call, outcome)
        if value is not None and await self._put(call, outcome, value, now=True):
            outcome.entry = value
        return None

    async def done(self, call: Call) -> None:
        outcome = call.cache
        if outcome is None:
            return
        metrics.child(metrics.cache_requests, outcome.result).inc()
        if outcome.result == HIT:
            if outcome.saved_usd:
                metrics.child(metrics.cache_saved_usd, call.model.name if call.model.name in call.config.models
                              else "other", call.team).inc(outcome.saved_usd)
            return
        value = outcome.entry
        try:
            if value is None:               # not kept before it left (its usage completed since)
                value = self._entry(call, outcome)
                if value is not None:
                    await self._put(call, outcome, value, now=False)
        finally:
            if outcome.leader:
                waiting = self.handle.in_flight.pop(outcome.digest, None)
                if waiting is not None and waiting[0] is not None and not waiting[0].done():
                    waiting[0].set_result(value)

    async def _put(self, call: Call, outcome, value: bytes, *, now: bool) -> bool:
        """Keeps the entry (`now`: written before returning, where the store writes behind)."""
        if not self.handle.usable():
            return False
        store = self.handle.store
        try:
            call.log_fields["cache_stored"] = stored = bool(await maybe_await(store.put(
                outcome.digest, outcome.scope, call.model.name, value, outcome.rule.ttl_s)))
            if stored and now and hasattr(store, "flush"):
                store.flush()
            if stored and outcome.vector is not None:
                await self._keep_vector(call, outcome)
            return stored
        except StoreUnavailable as error:
            self.handle.failed("put", error)
            return False

    async def _keep_vector(self, call: Call, outcome) -> None:
        """The question's embedding, for the semantic half: found by this worker at once,
        by the others once the store has it."""
        ttl = outcome.rule.ttl_s
        await maybe_await(self.handle.vectors.add(outcome.partition, outcome.digest, outcome.scope, call.model.name,
                                                  outcome.vector.astype("<f4").tobytes(), ttl))
        self.handle.index.add(outcome.partition, outcome.digest, outcome.vector, time.time() + ttl)

    @staticmethod
    def _entry(call: Call, outcome) -> bytes | None:
        """The entry to keep, or None: not every answer may be."""
        # (Before the answer leaves, the call is still "pending"; after, "ok" unless the
        # caller left or the answer failed.)
        if not outcome.store_it or call.status != 200 or call.outcome not in ("ok", "pending") \
                or call.json_passing_by:
            return None
        answer = captured_answer(call) if call.response_streamed else call.response_json
        if not isinstance(answer, dict):
            return None
        body = dumps(answer)
        if len(body) > outcome.rule.max_entry_bytes:
            call.log_fields["cache_stored"] = False
            return None
        usage = call.usage
        meta = {"created": time.time(), "cost_usd": charged_cost(call), "kind": call.codec.kind,
                "backend": call.backend.name if call.backend else "",
                "input_tokens": usage.input_tokens if usage else 0,
                "output_tokens": usage.output_tokens if usage else 0}
        return entry_value(meta, body)
