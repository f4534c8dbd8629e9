"""Response bodies of the mock's Gemini answers, shaped like Google's (see the gemini-* and
vertex-gemini-* recordings in mock/recordings/provider-recordings): one candidate holding
a "model" content's parts, then usageMetadata, modelVersion and responseId.

A JSON answer is pretty-printed with two spaces, as Google writes it; a stream's chunks
go one per `data: ...\\r\\n\\r\\n` event in Google's spacing (": " after each key, a bare ","
between items), or, without alt=sse, as one JSON array written chunk by chunk. Strings
keep non-ASCII characters as they are but write `<`, `>` and `&` as \\u escapes, as
Google's recorded streams do. A count that is zero is left out (proto3's JSON), except
where the recordings show otherwise (the Gemini API's candidate `index`). Vertex AI's
answers add createTime, trafficType, the output's per-modality counts and avgLogprobs,
and leave out the candidate's index. Errors are google.rpc.Status bodies.
"""

from __future__ import annotations

import datetime
import json
import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass

from ..api.tokens import count_text
from .anthropic_shapes import signature_for

ENCODING = "o200k_base"
_ID_ALPHABET = string.ascii_letters + string.digits + "-_"
FUNCTION_CALL_MESSAGE = "Model generated function call(s)."
_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_ESCAPED = re.compile("[<>&\u2028\u2029]")


def _write(value: object, indent: int | None) -> bytes:
    # These characters only ever stand inside JSON strings, where their escapes mean the same.
    text = json.dumps(value, ensure_ascii=False, indent=indent, separators=(",", ": "))
    try:
        return _ESCAPED.sub(lambda m: _ESCAPES[m.group()], text).encode()
    except UnicodeEncodeError:      # a lone surrogate from the request: kept as its escape
        text = json.dumps(value, indent=indent, separators=(",", ": "))
        return _ESCAPED.sub(lambda m: _ESCAPES[m.group()], text).encode()


def pretty(value: object) -> bytes:
    """JSON as Google's non-streaming answers and errors come: two-space indents, a newline
    at the end."""
    return _write(value, 2) + b"\n"


def compact(value: object) -> bytes:
    """JSON as Google's SSE chunks come: `{"a": 1,"b": [2,3]}`."""
    return _write(value, None)


def response_id() -> str:
    """An id in Google's form: 23 characters of URL-safe base64 ("SJfyaMbrNJKlqtsPvNOW8Ao")."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(23))


def create_time() -> str:
    """Vertex's createTime: RFC 3339 in UTC with microseconds."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class GeminiAnswer:
    """What one answer holds: an optional thought (shown as a part or only counted), then
    the text, or a call of `tool` whose args are {"text": text}."""
    model: str
    text: str
    finish_reason: str              # STOP or MAX_TOKENS
    prompt_tokens: int
    output_tokens: int              # the candidate's tokens, thoughts apart
    thought: str | None = None      # None: the model did not think
    thought_shown: bool = False
    thought_tokens: int = 0
    cached_tokens: int = 0
    tool: str | None = None
    signed: bool = False            # the first part after the thought carries its signature
    vertex: bool = False


def usage_metadata(answer: GeminiAnswer, output: int | None = None) -> dict:
    """usageMetadata with `output` candidate tokens (all of them by default). The prompt's
    count includes the tokens read from the cache, as Google counts them."""
    output = answer.output_tokens if output is None else output
    text = [{"modality": "TEXT", "tokenCount": answer.prompt_tokens}]
    usage: dict = {"promptTokenCount": answer.prompt_tokens}
    if output:
        usage["candidatesTokenCount"] = output
    usage["totalTokenCount"] = answer.prompt_tokens + output + answer.thought_tokens
    if answer.cached_tokens:
        usage["cachedContentTokenCount"] = answer.cached_tokens
    if answer.vertex:
        usage["trafficType"] = "ON_DEMAND"
    usage["promptTokensDetails"] = text
    if answer.cached_tokens:
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": answer.cached_tokens}]
    if answer.vertex and output:
        usage["candidatesTokensDetails"] = [{"modality": "TEXT", "tokenCount": output}]
    if answer.thought_tokens:
        usage["thoughtsTokenCount"] = answer.thought_tokens
    return usage


def _main_part(answer: GeminiAnswer, text: str, first: bool) -> dict:
    """The answer's text part, or its function call (with no `id`: the Gemini API sends
    none), carrying the thought's signature when it is the first part after a signed thought."""
    part: dict = {"functionCall": {"name": answer.tool, "args": {"text": text}}} if answer.tool else {"text": text}
    if first and answer.signed and answer.thought is not None:
        part["thoughtSignature"] = signature_for(answer.thought)
    return part


def _candidate(answer: GeminiAnswer, parts: list[dict], finished: bool) -> dict:
    candidate: dict = {"content": {"parts": parts, "role": "model"}}
    if finished:
        candidate["finishReason"] = answer.finish_reason
        if answer.vertex:
            # A stand-in (the mock has no probabilities): small and negative, as Vertex's are.
            candidate["avgLogprobs"] = -1 / (10 + answer.output_tokens)
    if not answer.vertex:
        candidate["index"] = 0
    if finished and answer.tool:
        candidate["finishMessage"] = FUNCTION_CALL_MESSAGE
    return candidate


def _response(answer: GeminiAnswer, candidate: dict, usage: dict, rid: str, created: str) -> dict:
    body = {"candidates": [candidate], "usageMetadata": usage, "modelVersion": answer.model}
    if answer.vertex:
        body["createTime"] = created
    body["responseId"] = rid
    return body


def response_json(answer: GeminiAnswer) -> bytes:
    """The non-streaming answer."""
    parts = [{"text": answer.thought, "thought": True}] if answer.thought_shown else []
    parts.append(_main_part(answer, answer.text, first=True))
    return pretty(_response(answer, _candidate(answer, parts, finished=True), usage_metadata(answer),
                            response_id(), create_time()))


def stream_chunks(answer: GeminiAnswer, pieces: Callable[[str], list[str]]) -> list[dict]:
    """The chunks of a streamed answer, as recorded: each a whole response with one part,
    the shown thought's pieces first, then the text's (a function call comes whole, in one
    chunk); every chunk carries usageMetadata with the candidate tokens so far, the
    same responseId and modelVersion; the last carries the finishReason."""
    rid, created = response_id(), create_time()
    parts = [{"text": p, "thought": True} for p in pieces(answer.thought)] if answer.thought_shown else []
    main = [answer.text] if answer.tool else pieces(answer.text)
    so_far = ""
    outputs = [0] * len(parts)
    for index, piece in enumerate(main):
        parts.append(_main_part(answer, piece, first=index == 0))
        so_far += piece
        outputs.append(count_text(so_far, ENCODING))
    outputs[-1] = answer.output_tokens      # the last chunk reports the whole count
    return [_response(answer, _candidate(answer, [part], finished=number == len(parts) - 1),
                      usage_metadata(answer, output), rid, created)
            for number, (part, output) in enumerate(zip(parts, outputs, strict=True))]


def sse_frames(chunks: list[dict]) -> list[bytes]:
    """`data: <chunk>\\r\\n\\r\\n` each: no event names, no [DONE]."""
    return [b"data: " + compact(chunk) + b"\r\n\r\n" for chunk in chunks]


def json_array_pieces(chunks: list[dict]) -> list[bytes]:
    """The chunks as the one JSON array Google streams without alt=sse, each piece written
    as its chunk is ready: `[{...}`, then `\\n,\\r\\n{...}` for each further one, `\\n]` last."""
    pieces = [(b"[" if number == 0 else b"\n,\r\n") + _write(chunk, 2) for number, chunk in enumerate(chunks)]
    pieces[-1] += b"\n]"
    return pieces


def count_tokens_json(tokens: int, billable_characters: int | None = None) -> bytes:
    """countTokens' answer; Vertex adds the billable characters."""
    body: dict = {"totalTokens": tokens}
    if billable_characters is not None:
        body["totalBillableCharacters"] = billable_characters
    body["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": tokens}]
    return pretty(body)


_GENERATES = ("generateContent", "countTokens", "createCachedContent", "batchGenerateContent")
_EMBEDS = ("embedContent", "countTextTokens", "countTokens", "asyncBatchEmbedContent")
# (id, display name, description, input limit, output limit, methods, thinks), as Google lists them.
MODELS = (
    ("gemini-2.5-flash", "Gemini 2.5 Flash", "Stable version of Gemini 2.5 Flash, our mid-size multimodal model "
     "that supports up to 1 million tokens, released in June of 2025.", 1_048_576, 65_536, _GENERATES, True),
    ("gemini-2.5-pro", "Gemini 2.5 Pro", "Stable release (June 17th, 2025) of Gemini 2.5 Pro",
     1_048_576, 65_536, _GENERATES, True),
    ("gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", "Stable version of Gemini 2.5 Flash-Lite, released in "
     "July of 2025", 1_048_576, 65_536, _GENERATES, True),
    ("gemini-2.0-flash", "Gemini 2.0 Flash", "Gemini 2.0 Flash", 1_048_576, 8_192, _GENERATES, False),
    ("gemini-embedding-001", "Gemini Embedding 001", "Obtain a distributed representation of a text.",
     2_048, 1, _EMBEDS, False),
)
DEFAULT_PAGE_SIZE = 50          # and at most 1000, as Google pages its list


def model_info(model_id: str) -> dict | None:
    """A model as `models.get` describes it; None for one the mock does not list."""
    for id_, name, description, inputs, outputs, methods, thinks in MODELS:
        if id_ == model_id:
            model = {"name": f"models/{id_}", "version": "001", "displayName": name, "description": description,
                     "inputTokenLimit": inputs, "outputTokenLimit": outputs,
                     "supportedGenerationMethods": list(methods)}
            if methods is _GENERATES:
                model.update({"temperature": 1, "topP": 0.95, "topK": 64, "maxTemperature": 2})
            if thinks:
                model["thinking"] = True
            return model
    return None


def models_json(page_size: int, offset: int) -> bytes:
    """A page of `models.list`: `page_size` models from `offset`, and the token of the next
    page when there is one (the offset, as the mock's opaque token)."""
    listed = [model_info(id_) for id_, *_ in MODELS[offset:offset + page_size]]
    body: dict = {"models": listed}
    if offset + page_size < len(MODELS):
        body["nextPageToken"] = str(offset + page_size)
    return pretty(body)
