"""Google's embedding endpoints: `models/{model}:embedContent` (one `content`) and
`:batchEmbedContents` (`requests`, each a content with its own `model`, as the google-genai
SDK sends them), answered `{"embedding": {"values": [...]}}` and
`{"embeddings": [{"values": [...]}, ...]}`.

On a Gemini backend a call passes as sent (each batch entry's `model` made the backend's,
as Google requires it to match the path's). On an embeddings model of another dialect
(OpenAI's text-embedding-3-small, say) it is translated (translate/embeddings.py): each
content's text becomes one input, `outputDimensionality` the `dimensions`; `taskType`
and `title` tune Google's models alone and are dropped (named on the log line); a part
that is not text cannot be carried and is refused.
"""

from __future__ import annotations

from typing import Any

from ...api.openai import GEMINI_BATCH_EMBED_KIND, GEMINI_EMBED_KIND
from ...api.request_bounds import MAX_ITEMS, MAX_PARTS, bounded
from ...api.schemas import STRING, schema_checker
from ...api.usage import Usage
from ..base import Codec
from ..conversation import Notes, Refused, note
from ..embedding import EmbeddingAnswer, EmbeddingRequest
from .dialect import GEMINI
from .gemini_answer import usage_from

_PART = {"type": "object", "properties": {"text": STRING}}
_CONTENT = {"type": "object", "properties": {"parts": bounded({"type": "array", "items": _PART}, MAX_PARTS)},
            "required": ["parts"]}
_ONE = {"type": "object", "properties": {"content": _CONTENT, "model": STRING, "taskType": STRING,
                                         "title": STRING},
        "required": ["content"]}
_BATCH = {"type": "object", "properties": {"requests": bounded(
    {"type": "array", "items": _ONE, "minItems": 1}, MAX_ITEMS)}, "required": ["requests"]}
# Fields that tune Google's embedding models alone: another dialect's model has no use for them.
_GOOGLE_HINTS = ("taskType", "title", "autoTruncate")


def _texts(entry: dict) -> list[str]:
    content = entry.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    return [part["text"] for part in parts or () if isinstance(part, dict) and isinstance(part.get("text"), str)]


def _text_of(entry: dict, notes: Notes) -> str:
    """One content's text, for a model of another dialect (its parts joined: Google embeds
    a content as one); a part that is not text refuses the call."""
    parts = entry["content"]["parts"]
    if any(not isinstance(part, dict) or not isinstance(part.get("text"), str) for part in parts):
        raise Refused("content", "Only text parts can be embedded by this model: its provider speaks another API.")
    for hint in _GOOGLE_HINTS:
        if hint in entry:
            note(notes.dropped, hint)
    return "\n".join(part["text"] for part in parts)


def _dimensions(entries: list[dict]) -> int | None:
    asked = {entry.get("outputDimensionality") for entry in entries}
    if len(asked) > 1:
        raise Refused("outputDimensionality", "Every request of the batch must ask for the same "
                                              "outputDimensionality on this model: its provider speaks another API.")
    value = asked.pop()
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise Refused("outputDimensionality", "outputDimensionality must be a positive integer.")
    return value


class EmbedContent(Codec):
    kind = GEMINI_EMBED_KIND
    dialect = GEMINI
    generates = True
    embeds = True
    model_in_body = False
    operation = "embeddings"
    shape_problem = staticmethod(schema_checker(_ONE))

    def entries(self, body: dict) -> list[dict]:
        """The request's contents, each with its settings."""
        return [body]

    def prompt_texts(self, body: dict) -> tuple[list[str], int]:
        return [text for entry in self.entries(body) for text in _texts(entry)], 0

    def usage_from_response(self, body: Any) -> Usage | None:
        return usage_from(body.get("usageMetadata")) if isinstance(body, dict) else None

    # --- translation to an embeddings model of another dialect (translate/embeddings.py) ---

    def decode_embeddings(self, body: dict, notes: Notes) -> EmbeddingRequest:
        entries = self.entries(body)
        return EmbeddingRequest([_text_of(entry, notes) for entry in entries], _dimensions(entries))

    def encode_embedded(self, answer: EmbeddingAnswer, request: dict) -> dict:
        return {"embedding": {"values": answer.vectors[0] if answer.vectors else []}}


class BatchEmbedContents(EmbedContent):
    kind = GEMINI_BATCH_EMBED_KIND
    model_in_entries = True
    shape_problem = staticmethod(schema_checker(_BATCH))

    def entries(self, body: dict) -> list[dict]:
        return [entry for entry in body.get("requests") or () if isinstance(entry, dict)]

    def for_model(self, body: dict, model: str) -> dict:
        """Each request names the model as the path does (`models/<name>`): Google refuses
        a batch whose entries name another."""
        named = f"models/{model}"
        if all(entry.get("model") == named for entry in self.entries(body)):
            return body
        return {**body, "requests": [{**entry, "model": named} if isinstance(entry, dict) else entry
                                     for entry in body.get("requests") or ()]}

    def encode_embedded(self, answer: EmbeddingAnswer, request: dict) -> dict:
        return {"embeddings": [{"values": vector} for vector in answer.vectors]}
