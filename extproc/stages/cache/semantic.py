"""The semantic half of the response cache (stages/cache/lookup.py asks it on an exact miss): an
answer kept for a question asked another way.

A request's question is its last turn when that turn is the user's and holds text only
(decoded into the conversation model, whatever the caller's dialect). Its partition is
everything else that can change the answer: the scope, the model and its backends, the
embedding model, the conversation before the question (system prompt, turns, tools,
settings, as stages/cache/key.py reads them), and the question's anchors: its numbers, negations and
direction words ("not", "before", "increase"...) in order. Two questions are matched
only within one partition, so "convert 10 miles" never finds "convert 20 miles", nor
"is X safe" "is X not safe", however close their embeddings (embedding models place
them close: docs/caching.md has the figures). Within it, the nearest question by cosine
similarity of embeddings is a hit at `min_similarity` or above.

The embedding comes from the gateway itself: a call to its own listener
(`cache.gateway_url`) on the embedding model, with the caller's credential, its tags
and its trace, so it is checked, budgeted, metered and traced as any call of the
caller's. It waits `timeout_s` at most; a failure is a miss, never a failed call.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import TYPE_CHECKING

import orjson

from ...dialects import Embeddings
from ...dialects.conversation import Conversation
from ...observability.settings import TAG_HEADER_PREFIX
from ...pipeline.call import Call
from ...store.semantic_index import numpy
from ...transport.eager import task_needed
from ..admission import presented_key
from .key import conversation_fields
from ..accounting.trace import trace_context

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("extproc.cache")

# English words that flip or aim a question: two questions that differ in one are never matched.
_NEGATIONS = frozenset(
    "not no never none nor neither without cannot can't won't don't doesn't didn't isn't aren't wasn't "
    "weren't shouldn't wouldn't couldn't hasn't haven't hadn't".split())
_DIRECTIONS = frozenset(
    "increase decrease before after most least ascending descending left right public private newest oldest "
    "enable disable compress decompress first last min max minimum maximum more less higher lower above below "
    "add remove upper encode decode encrypt decrypt import export upload download start stop high low "
    "advantages disadvantages pros cons".split())
# A longer last turn is a document, not a question: matched exactly only (and never sent
# to the embedding model again, which reads ~8k tokens at most).
MAX_QUESTION_CHARS = 8192
_WORDS = re.compile(r"[a-z0-9']+(?:[.,:/][a-z0-9]+)*")
_DIGIT = re.compile(r"[0-9]")


def anchors(question: str) -> str:
    """The question's numbers (and words with digits: v1.2, utf8), negations and
    direction words, in order."""
    return " ".join(word for word in _WORDS.findall(question.lower())
                    if _DIGIT.search(word) or word in _NEGATIONS or word in _DIRECTIONS)


def question_and_partition(call: Call, scope: str, embedding: str, conversation: Conversation | None,
                           extras: bytes) -> tuple[str, str] | None:
    """The request's question and its partition's digest; None when its last turn is not
    a question of text (a tool result, an image: exact matches only). `extras`: what
    reaches the provider beside the conversation (cache_key.provider_extras)."""
    if conversation is None or not conversation.turns or conversation.turns[-1]["role"] != "user":
        return None
    blocks = conversation.turns[-1]["content"]
    if not blocks or any(block.get("type") != "text" for block in blocks):
        return None
    question = "\n".join(block.get("text") or "" for block in blocks).strip()
    if not question or len(question) > MAX_QUESTION_CHARS:
        return None
    model = call.model
    backends = ",".join(f"{b.provider.name}/{b.model}" for b in model.backends)
    digest = hashlib.sha256(f"{scope}\0{model.name}\0{backends}\0{embedding}\0{anchors(question)}\0".encode())
    digest.update(extras)
    try:
        digest.update(orjson.dumps(conversation_fields(conversation, conversation.turns[:-1]),
                                   option=orjson.OPT_SORT_KEYS))
    except (TypeError, ValueError):
        return None
    return question, digest.hexdigest()


class EmbeddingFailed(Exception):
    """Why no embedding came (a word for the log line), and the embedding call's
    request id when the gateway answered it."""

    def __init__(self, reason: str, request_id: str = "") -> None:
        super().__init__(reason)
        self.request_id = request_id


def embedding_headers(call: Call) -> dict[str, str] | None:
    """The embedding call's headers: the caller's credential, tags and trace (None
    without a credential in a header: a key in Gemini's query is not sent again)."""
    credential = presented_key(call.headers)
    if not credential:
        return None
    headers = {"authorization": f"Bearer {credential}", "content-type": "application/json",
               "x-gateway-cache": "bypass", **{TAG_HEADER_PREFIX + name: value for name, value in call.tags.items()}}
    if call.config.observability.tracing is not None:
        headers["traceparent"] = trace_context(call).traceparent()
    return headers


class Embedder:
    """A worker's client of its own gateway, for the embeddings of questions."""

    def __init__(self) -> None:
        self._client = None

    @staticmethod
    def prepare() -> None:
        """Imports what the calls need, when the worker starts: a first call's lookup
        has `timeout_s` for the embedding, not for loading libraries."""
        import httpx  # noqa: F401
        numpy()

    async def embed(self, url: str, headers: dict[str, str], rule, question: str) -> tuple[np.ndarray, str]:
        """The question's unit vector, and the embedding call's request id."""
        import httpx                       # only workers with a semantic rule make these calls

        await task_needed()                # httpx needs a current task (transport/eager.py)
        if self._client is None:
            self._client = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=16))
        try:
            answer = await self._client.post(url + Embeddings.path, headers=headers, timeout=rule.timeout_s,
                                             content=Embeddings.request_for(rule.embedding_model, question,
                                                                            rule.dimensions))
        except httpx.TimeoutException:
            raise EmbeddingFailed("timeout") from None
        except httpx.HTTPError as error:
            raise EmbeddingFailed(type(error).__name__) from None
        request_id = answer.headers.get("x-request-id", "")
        if answer.status_code != 200:
            raise EmbeddingFailed(f"status {answer.status_code}", request_id)
        data = Embeddings.vector_in(answer.content)
        np = numpy()
        vector = np.frombuffer(data, "<f4").astype(np.float32) if data and not len(data) % 4 else np.zeros(0)
        norm = float(np.linalg.norm(vector)) if vector.size else 0.0
        if not norm or not np.isfinite(norm):
            raise EmbeddingFailed("answer", request_id)
        return vector / norm, request_id

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
