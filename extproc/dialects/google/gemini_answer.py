"""Gemini answers and errors: a provider's GenerateContentResponse read into the model's
Answer, an Answer written as the one a Gemini caller reads, and Google's error shape both
ways.

Read from a provider (decode), field by field (C carried, H dropped and named in Notes.dropped):
  candidates[0].content.parts  C  text parts as text blocks; thought parts as thinking blocks
                                  (their thoughtSignature kept, origin "gemini"); functionCall
                                  parts as tool_use blocks (the part's id, or one made up; args as
                                  input; a thoughtSignature kept on the block); other parts
                                  (executableCode, ...) H  parts[].<name>
  further candidates           H  candidates[1:] (one answer is read)
  finishReason                 C  stop (STOPS): STOP with function calls is TOOL_USE; the
                                  safety reasons are CONTENT_FILTER; unknown reasons END
  promptFeedback.blockReason   C  CONTENT_FILTER, no content
  usageMetadata                C  usage_from: promptTokenCount (cached content included) as
                                  input, candidates and thoughts as output, thoughts as reasoning
  responseId, modelVersion     C  id, model

Written for a caller (encode): one candidate of the answer's blocks as parts (thinking
as thought parts, shown only when the caller asked to see thoughts; a signature only when
Gemini made it), its finishReason, usageMetadata (thoughtsTokenCount and
cachedContentTokenCount when there are any), modelVersion and responseId.

Errors: Google's {"error": {code, message, status}} (an OpenAI- or Anthropic-shaped body
read as well) as a Problem of its status; written in Google's shape, the status kept
(Anthropic's 529 as 503 UNAVAILABLE, which Google's clients know).
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson

from ...api.usage import Usage
from ..conversation import (
    CONTENT_FILTER,
    END,
    LENGTH,
    REFUSAL,
    STOP_SEQUENCE,
    TOOL_USE,
    Answer,
    Block,
    Conversation,
    Notes,
    Problem,
    note,
)

GEMINI = "gemini"
STOPS = {"STOP": END, "MAX_TOKENS": LENGTH, "SAFETY": CONTENT_FILTER, "RECITATION": CONTENT_FILTER,
         "BLOCKLIST": CONTENT_FILTER, "PROHIBITED_CONTENT": CONTENT_FILTER, "SPII": CONTENT_FILTER,
         "IMAGE_SAFETY": CONTENT_FILTER, "LANGUAGE": CONTENT_FILTER, "MALFORMED_FUNCTION_CALL": END}
FINISH_REASONS = {END: "STOP", LENGTH: "MAX_TOKENS", TOOL_USE: "STOP", STOP_SEQUENCE: "STOP",
                  REFUSAL: "SAFETY", CONTENT_FILTER: "SAFETY"}
# HTTP status -> Google's status name, and Google's name -> the model's error kind.
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                409: "ABORTED", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
                500: "INTERNAL", 501: "NOT_IMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
KINDS = {"INVALID_ARGUMENT": "invalid_request_error", "FAILED_PRECONDITION": "invalid_request_error",
         "OUT_OF_RANGE": "invalid_request_error", "UNAUTHENTICATED": "authentication_error",
         "PERMISSION_DENIED": "permission_error", "NOT_FOUND": "not_found_error",
         "RESOURCE_EXHAUSTED": "rate_limit_error", "UNAVAILABLE": "overloaded_error",
         "DEADLINE_EXCEEDED": "timeout_error"}
_KIND_STATUS = {"invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
                "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429,
                "billing_error": 429, "overloaded_error": 503, "timeout_error": 504}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from(metadata: Any) -> Usage | None:
    """A `usageMetadata` as the model's Usage (None when there is none)."""
    if not isinstance(metadata, dict):
        return None
    thoughts = _count(metadata.get("thoughtsTokenCount"))
    return Usage(input_tokens=_count(metadata.get("promptTokenCount")) + _count(metadata.get("toolUsePromptTokenCount")),
                 output_tokens=_count(metadata.get("candidatesTokenCount")) + thoughts,
                 cached_tokens=_count(metadata.get("cachedContentTokenCount")), reasoning_tokens=thoughts)


def usage_metadata(usage: Usage | None) -> dict[str, int]:
    """Usage as Gemini writes it: candidates leave out thoughts."""
    usage = usage or Usage()
    written = {"promptTokenCount": usage.input_tokens,
               "candidatesTokenCount": max(0, usage.output_tokens - usage.reasoning_tokens),
               "totalTokenCount": usage.input_tokens + usage.output_tokens}
    if usage.reasoning_tokens:
        written["thoughtsTokenCount"] = usage.reasoning_tokens
    if usage.cached_tokens:
        written["cachedContentTokenCount"] = usage.cached_tokens
    return written


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def decode_part(part: dict, notes: Notes | None) -> Block | None:
    """One part of an answer as a block (None: a part the model does not hold, noted)."""
    signature = part.get("thoughtSignature")
    if isinstance(part.get("functionCall"), dict):
        call = part["functionCall"]
        args = call.get("args")
        block: Block = {"type": "tool_use", "id": call.get("id") or new_call_id(), "name": str(call.get("name", "")),
                        "input": args if isinstance(args, dict) else {}}
    elif isinstance(part.get("text"), str):
        if part.get("thought"):
            block = {"type": "thinking", "thinking": part["text"], "signature": "", "origin": GEMINI}
        else:
            block = {"type": "text", "text": part["text"]}
    else:
        if notes is not None:
            for name in part:
                if name != "thoughtSignature":
                    note(notes.dropped, f"parts[].{name}")
        return None
    if isinstance(signature, str) and signature:
        block["signature"] = signature
        block["origin"] = GEMINI
    return block


def decode(body: dict, conversation: Conversation, notes: Notes | None) -> Answer:
    candidates = body.get("candidates") if isinstance(body.get("candidates"), list) else []
    candidate = candidates[0] if candidates and isinstance(candidates[0], dict) else {}
    if len(candidates) > 1 and notes is not None:
        note(notes.dropped, "candidates[1:]")
    content = candidate.get("content") if isinstance(candidate.get("content"), dict) else {}
    blocks = [block for part in content.get("parts") or () if isinstance(part, dict)
              for block in [decode_part(part, notes)] if block is not None]
    reason = candidate.get("finishReason")
    stop = STOPS.get(reason, END) if isinstance(reason, str) else END
    if reason == "MALFORMED_FUNCTION_CALL" and notes is not None:
        note(notes.dropped, "finishReason=MALFORMED_FUNCTION_CALL")      # the call the model botched
    if stop == END and any(block["type"] == "tool_use" for block in blocks):
        stop = TOOL_USE
    feedback = body.get("promptFeedback")
    if not candidates and isinstance(feedback, dict) and feedback.get("blockReason"):
        stop = CONTENT_FILTER
    return Answer(id=body.get("responseId") if isinstance(body.get("responseId"), str) else None,
                  model=body.get("modelVersion") if isinstance(body.get("modelVersion"), str) else None,
                  content=blocks, stop=stop, usage=usage_from(body.get("usageMetadata")))


def shows_thoughts(conversation: Conversation) -> bool:
    """Whether a Gemini caller asked to see the model's thoughts (includeThoughts)."""
    reasoning = conversation.reasoning
    return reasoning is not None and reasoning.enabled and not reasoning.hidden


def encode_part(block: Block, show_thoughts: bool) -> dict | None:
    """A block as a part of a Gemini answer (None: nothing a Gemini caller reads)."""
    kind = block.get("type")
    if kind == "text":
        part: dict = {"text": block.get("text", "")}
    elif kind == "tool_use":
        part = {"functionCall": {"name": block.get("name", ""), "args": block.get("input") or {}}}
    elif kind == "thinking" and show_thoughts:
        part = {"text": block.get("thinking", ""), "thought": True}
    else:
        return None
    if block.get("origin") == GEMINI and block.get("signature"):
        part["thoughtSignature"] = block["signature"]
    return part


def encode(answer: Answer, conversation: Conversation) -> dict:
    show = shows_thoughts(conversation)
    parts = [part for block in answer.content for part in [encode_part(block, show)] if part is not None]
    return {"candidates": [{"content": {"role": "model", "parts": parts},
                            "finishReason": FINISH_REASONS.get(answer.stop, "STOP"), "index": 0}],
            "usageMetadata": usage_metadata(answer.usage),
            "modelVersion": answer.model or conversation.model or "",
            "responseId": answer.id or secrets.token_urlsafe(16)}


def decode_error(status: int, body: Any) -> Problem:
    if isinstance(body, list) and body:
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else error if isinstance(error, str) else None
    name = error.get("status") if isinstance(error, dict) else None
    kind = KINDS.get(name) if isinstance(name, str) else None
    if kind is None and isinstance(error, dict) and isinstance(error.get("type"), str):
        kind = error["type"]                          # an Anthropic- or OpenAI-shaped body
    if kind is None:
        kind = KINDS.get(STATUS_NAMES.get(status, ""), "api_error")
    if not isinstance(message, str) or not message:
        message = f"The provider answered {status}." if status else "The provider's stream failed."
    return Problem(kind, message)


def error_body(status: int, message: str) -> bytes:
    """Google's error shape for an HTTP status."""
    return orjson.dumps({"error": {"code": status, "message": message,
                                   "status": STATUS_NAMES.get(status, "INTERNAL" if status >= 500 else "UNKNOWN")}})


def encode_error(status: int, problem: Problem) -> tuple[int, bytes]:
    if status == 529:
        status = 503                                  # Anthropic's overloaded: Google's clients know 503
    elif not status:
        status = _KIND_STATUS.get(problem.kind, 500)
    return status, error_body(status, problem.message)
