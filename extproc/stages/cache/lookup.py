"""The response cache, request side: a call the cache takes is answered from it when an
identical one (same scope, model and request, in any dialect) was answered before.

Runs after the key checks, the allowlists, the request guardrails and the budgets and
rate limits (a hit is a request they count, with no provider tokens), before Route: a
hit is answered by the worker at the request body (`ImmediateAnswer`), in the caller's
dialect (told again from the dialect it was kept in, dialects/replay.py), JSON or, for a
stream request, replayed as the dialect's events.

The key (stages/cache/key.py) is a digest of the scope's value (team:T, key:K, user:U, global),
the model asked for, its backends and the request as the conversation model reads it
(after redactions and caps), and what reaches the provider beside it (headers, query, a
same-dialect body's dropped fields): what the provider would be asked, whichever dialect
asked.

On an exact miss, a rule with `semantic` looks for the same question asked another way
(stages/cache/semantic.py): a hit then says how near it was (`x-gateway-cache-similarity`).

Identical calls in flight in one worker are made once: the first (the leader) goes to
the provider; the others wait for its answer (cache.stampede_wait_s at most), then are
hits, or go on as misses when it brought none. Across workers and replicas, each may
make one: at most that many provider calls per stampede.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson

from ...dialects.replay import answer_for, replayed_stream
from ...observability import metrics
from ...pipeline.call import Call
from ...pipeline.stage import ImmediateAnswer, Stage
from ...store import StoreUnavailable, maybe_await
from ...store.cache_settings import CacheRule
from ...store.semantic_index import SemanticIndex
from ...transport.eager import task_needed
from .key import conversation_of, key_digest, provider_extras
from .semantic import Embedder, EmbeddingFailed, embedding_headers, question_and_partition
from ..accounting.cost import COST_HEADER, usd

log = logging.getLogger("extproc.cache")

CACHE_HEADER = "x-gateway-cache"
SIMILARITY_HEADER = "x-gateway-cache-similarity"
HIT, MISS, BYPASS, REFRESH = "hit", "miss", "bypass", "refresh"
STORE_DOWN_PAUSE_S = 5.0          # after a store failure, the cache is a miss this long without trying


class CacheOutcome:
    """What the cache did for a call (the Call's `cache`): its result, and what the
    storing half needs (the digest, the scope, whether this call leads a stampede)."""
    __slots__ = ("result", "rule", "digest", "scope", "store_it", "leader", "saved_usd", "age_s", "reason",
                 "partition", "vector", "similarity", "entry")

    def __init__(self, rule: CacheRule) -> None:
        self.rule = rule
        self.result = BYPASS
        self.digest = ""
        self.scope = ""
        self.store_it = False
        self.leader = False
        self.saved_usd = 0.0
        self.age_s = 0
        self.reason = ""
        self.partition = ""                 # semantic rules: the question's partition and embedding,
        self.vector = None                  # kept with the answer on a miss
        self.similarity: float | None = None   # a semantic hit's
        self.entry: bytes | None = None     # the answer kept, once in the store (before it left)


class CacheStoreHandle:
    """The cache's store, shared by both stages, with its pause after a failure."""

    def __init__(self, store, vectors=None) -> None:
        self.store = store
        self.vectors = vectors              # the semantic rules' (cache_vectors.py), else None
        self.index = SemanticIndex()
        self.embedder = Embedder()
        if vectors is not None:
            self.embedder.prepare()
        self.down_until = 0.0
        # digest -> [the leader's entry to come (a future, made by the first follower), when it began]
        self.in_flight: dict[str, list] = {}

    def usable(self) -> bool:
        return self.store is not None and time.monotonic() >= self.down_until

    def failed(self, operation: str, error: Exception) -> None:
        self.down_until = time.monotonic() + STORE_DOWN_PAUSE_S
        metrics.child(metrics.store_errors, f"cache_{operation}").inc()
        log.error("response cache store unavailable on %s (a miss for %ss): %s", operation,
                  STORE_DOWN_PAUSE_S, error)


def entry_value(meta: dict, body: bytes) -> bytes:
    """An entry as stored: a line of JSON about it, then the caller's answer."""
    return orjson.dumps(meta) + b"\n" + body


def read_entry(value: bytes) -> tuple[dict, bytes]:
    meta, _, body = value.partition(b"\n")
    return orjson.loads(meta), body


def _caller_says(headers: dict[str, str]) -> str | None:
    """BYPASS (neither read nor kept), REFRESH (not read, the fresh answer kept) or None."""
    control = headers.get("cache-control", "").lower()
    asked = headers.get(CACHE_HEADER, "").strip().lower()
    if "no-store" in control or asked == BYPASS:
        return BYPASS
    if "no-cache" in control or asked == REFRESH:
        return REFRESH
    return None


def _unqualified(call: Call, rule: CacheRule) -> str:
    """Why the request cannot be answered from the cache ("" when it can)."""
    codec, body = call.codec, call.body
    temperature = codec.temperature(body)
    if temperature is not None and temperature > rule.max_temperature:
        return "temperature"
    if codec.answers_per_request(body) != 1:
        return "answers"
    if not rule.tools and codec.tool_names(body):
        return "tools"
    if call.stream and not codec.translates:
        return "stream"
    return ""


class CacheLookup(Stage):
    name = "cache_lookup"
    reads = frozenset({"body", "endpoint", "headers", "key", "model", "path", "query", "ratelimit_headers",
                       "request_id", "run", "stream", "tags"})
    writes = frozenset({"cache", "log_fields"})

    def __init__(self, handle: CacheStoreHandle) -> None:
        self.handle = handle

    async def request_body(self, call: Call) -> None:
        settings = call.config.cache
        body, key, model = call.body, call.key, call.model
        if body is None or key is None or model is None:
            return
        codec = call.codec
        if not codec.generates or not codec.answers_in_json or codec.stores_responses or codec.counts_tokens:
            return
        rule = settings.rule_for(model.name, key.team)
        if rule is None:
            return
        outcome = call.cache = CacheOutcome(rule)
        try:
            await self._lookup(call, outcome)
        finally:
            if outcome.result != HIT:
                call.log_fields["cache"] = outcome.result
                if outcome.reason:
                    call.log_fields["cache_bypass_reason"] = outcome.reason
                # Every answer but a hit (which carries its own) gets the header from Envoy,
                # whichever way its response goes (one_message.py, pass_through.py).
                call.reply.add_metadata({"headers": {CACHE_HEADER: outcome.result}})

    async def _lookup(self, call: Call, outcome: CacheOutcome) -> None:
        rule = outcome.rule
        asked = _caller_says(call.headers)
        if asked == BYPASS:
            outcome.reason = "caller"
            return
        outcome.reason = _unqualified(call, rule)
        if outcome.reason:
            return
        conversation, dropped = conversation_of(call)
        try:
            outcome.scope = rule.scope_value(call.key)
            extras = provider_extras(call, dropped)
            outcome.digest = key_digest(call, outcome.scope, conversation, extras)
        except (TypeError, ValueError):       # a body orjson cannot write again (a huge integer)
            outcome.reason = "body"
            return
        outcome.store_it = True
        if asked == REFRESH:
            outcome.result = REFRESH
            return
        outcome.result = MISS
        handle = self.handle
        if not handle.usable():
            outcome.store_it = handle.store is not None
            return
        try:
            found = await maybe_await(handle.store.get(outcome.digest))
        except StoreUnavailable as error:
            handle.failed("get", error)
            return
        if found is None and rule.semantic is not None:
            found = await self._semantic(call, outcome, conversation, extras)
        if found is None:
            found = await self._follow_or_lead(call, outcome)
        if found is not None:
            self._serve(call, outcome, found)

    async def _semantic(self, call: Call, outcome: CacheOutcome, conversation, extras: bytes) -> bytes | None:
        """The answer to the nearest question of the partition, when near enough; else
        None, with the question's partition and embedding kept for the answer to come."""
        handle, rule = self.handle, outcome.rule.semantic
        asked = question_and_partition(call, outcome.scope, f"{rule.embedding_model}/{rule.dimensions}",
                                       conversation, extras)
        if asked is None or handle.vectors is None:
            call.log_fields["cache_semantic"] = "no question"
            return None
        question, outcome.partition = asked
        headers = embedding_headers(call)
        if headers is None:
            call.log_fields["cache_semantic"] = "no embedding: credential"
            return None
        await task_needed()                # a bound needs a task (transport/eager.py)
        try:
            # One bound for the embedding and the search: both run within this ext_proc
            # message's deadline (MAX_SEMANTIC_TIMEOUT_S). The vector, once come, is kept.
            async with asyncio.timeout(rule.timeout_s):
                outcome.vector, call.log_fields["cache_embedding_request"] = await handle.embedder.embed(
                    call.config.cache.gateway_url, headers, rule, question)
                nearest = await handle.index.nearest(handle.vectors, outcome.partition, outcome.vector)
        except TimeoutError:
            call.log_fields["cache_semantic"] = "timeout" if outcome.vector is not None else "no embedding: timeout"
            return None
        except EmbeddingFailed as error:
            call.log_fields["cache_semantic"] = f"no embedding: {error}"
            if error.request_id:
                call.log_fields["cache_embedding_request"] = error.request_id
            return None
        except StoreUnavailable as error:
            handle.failed("vectors", error)
            return None
        except Exception:                   # noqa: BLE001 - the semantic half fails as a miss, logged
            log.exception("semantic cache lookup failed (request %s)", call.request_id)
            call.log_fields["cache_semantic"] = "failed"
            return None
        if nearest is None:
            return None
        digest, similarity = nearest
        call.log_fields["cache_similarity"] = round(similarity, 4)
        if similarity < rule.min_similarity:
            return None
        try:
            found = await maybe_await(handle.store.get(digest))
        except StoreUnavailable as error:
            handle.failed("get", error)
            return None
        if found is not None:
            outcome.similarity = similarity
        return found

    async def _follow_or_lead(self, call: Call, outcome: CacheOutcome) -> bytes | None:
        """The same call already in flight here: its answer once it has one (None when it
        brought none in time); else this call leads: the others will wait for it."""
        in_flight = self.handle.in_flight
        wait = call.config.cache.stampede_wait_s
        now = time.monotonic()
        leader = in_flight.get(outcome.digest)
        if leader is None or leader[1] < now - wait or wait <= 0:     # none, or one long gone
            if wait > 0:
                in_flight[outcome.digest] = [None, now]
                outcome.leader = True
            return None
        if leader[0] is None:
            leader[0] = asyncio.get_running_loop().create_future()
        try:
            return await asyncio.wait_for(asyncio.shield(leader[0]), wait - (now - leader[1]))
        except asyncio.TimeoutError:
            return None

    def _serve(self, call: Call, outcome: CacheOutcome, value: bytes) -> None:
        try:
            meta, body = read_entry(value)
            age = max(0, int(time.time() - meta.get("created", time.time())))
            headers = {CACHE_HEADER: HIT, "age": str(age), COST_HEADER: usd(0.0), **call.ratelimit_headers}
            if call.request_id:
                headers["x-request-id"] = call.request_id
            if outcome.similarity is not None:
                headers[SIMILARITY_HEADER] = f"{outcome.similarity:.4f}"
            body = answer_for(call.codec, call.body, meta.get("kind", ""), body)     # kept for another dialect
            if call.stream:
                body = replayed_stream(call.codec, call.body, orjson.loads(body))
                headers["content-type"] = "text/event-stream"
                headers["cache-control"] = "no-cache"
        except Exception:                   # noqa: BLE001 - an entry it cannot tell again: a miss
            log.exception("a cached answer could not be served (request %s)", call.request_id)
            return
        outcome.result, outcome.store_it, outcome.age_s = HIT, False, age
        outcome.saved_usd = float(meta.get("cost_usd") or 0.0)
        call.log_fields.update(cache=HIT, cache_age_s=age, cache_saved_usd=round(outcome.saved_usd, 8),
                               cache_match="exact" if outcome.similarity is None else "semantic")
        raise ImmediateAnswer(200, body, headers)
