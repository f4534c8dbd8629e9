"""The mock's Gemini embeddings: POST models/{model}:embedContent (one `content`, answered
`{"embedding": {"values": [...]}}`) and :batchEmbedContents (`requests`, each naming the
path's model as `models/<model>`, answered `{"embeddings": [{"values": [...]}, ...]}`),
as Google documents them (no usage in the answer). The vectors are the mock's embedding
model's (embedding_model.py: paraphrases lie close), one per content, its text parts
joined; `outputDimensionality` gives fewer (or more) dimensions, gemini-embedding-001
gives 3072 otherwise, other models 768."""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from ..api.tokens import count_text
from .gemini_request import ENCODING
from .gemini_shapes import pretty
from .google_errors import JSON, error

EMBED_METHODS = ("embedContent", "batchEmbedContents")
MAX_DIMENSIONS = 3072
_WIDE_MODELS = ("gemini-embedding-001",)
_ENTRY_FIELDS = frozenset({"model", "content", "taskType", "title", "outputDimensionality", "autoTruncate"})


def _problem(entry: object, model: str, batch: bool) -> str | None:
    """What Google says of one request (an embedContent body, or an entry of a batch)."""
    if not isinstance(entry, dict):
        return "Invalid JSON payload received. Expected an object."
    for name in entry:
        if name not in _ENTRY_FIELDS:
            return f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
    content = entry.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list) or not parts:
        return "* EmbedContentRequest.content: contents is not specified\n"
    if batch and entry.get("model") != f"models/{model}":
        return (f"* BatchEmbedContentsRequest.model: unexpected model name format\n"
                if not isinstance(entry.get("model"), str) else
                f"Model {entry['model']!s:.100} does not match the model of the request: models/{model}.")
    dims = entry.get("outputDimensionality")
    if dims is not None and (not isinstance(dims, int) or not 1 <= dims <= MAX_DIMENSIONS):
        return f"* EmbedContentRequest.output_dimensionality: must be between 1 and {MAX_DIMENSIONS}\n"
    return None


def _text(entry: dict) -> str:
    return "".join(part["text"] for part in entry["content"]["parts"]
                   if isinstance(part, dict) and isinstance(part.get("text"), str))


def _vectors(entries: list[dict], model: str) -> list[list[float]]:
    from .embedding_model import embed     # NumPy, imported at the first embeddings call (~0.2 s)
    native = MAX_DIMENSIONS if model in _WIDE_MODELS else 768
    out = []
    for entry in entries:
        dims = entry.get("outputDimensionality") or native
        out.append(embed([_text(entry)], dims)[0].tolist())
    return out


async def embed_answer(raw: bytes, entry_record: dict, model: str, method: str) -> web.Response:
    """The answer to an embedContent or batchEmbedContents request for `model`."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return error(400, "Invalid JSON payload received. Unexpected token.")
    batch = method == "batchEmbedContents"
    if batch:
        entries = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(entries, list) or not entries:
            return error(400, "* BatchEmbedContentsRequest.requests: requests is not specified\n")
    else:
        entries = [body]
    for entry in entries:
        problem = _problem(entry, model, batch)
        if problem is not None:
            return error(400, problem)
    vectors = await asyncio.get_running_loop().run_in_executor(None, _vectors, entries, model)
    entry_record["usage"] = {"prompt_tokens": sum(count_text(_text(e), ENCODING) for e in entries),
                             "completion_tokens": 0, "cached_tokens": 0}
    answer = {"embeddings": [{"values": v} for v in vectors]} if batch else {"embedding": {"values": vectors[0]}}
    return web.Response(body=pretty(answer), headers={"content-type": JSON})
