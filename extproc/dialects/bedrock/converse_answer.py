"""Bedrock Converse answers and errors: a provider's ConverseResponse read into the model's
Answer, an Answer written as the ConverseResponse a Bedrock caller reads, and Bedrock's
errors both ways.

Read from a provider (decode), field by field (C carried, H dropped and named in Notes.dropped):
  output.message.content       C  text blocks; toolUse as tool_use (toolUseId, the caller's name
                                  back when it was shortened for Bedrock, input); reasoningContent:
                                  reasoningText as thinking (signed: Claude's, whose signatures
                                  Anthropic's platforms share, origin "anthropic"; unsigned: origin
                                  "bedrock"), redactedContent as redacted thinking (origin "anthropic");
                                  citationsContent as the text it cites from (its citations H);
                                  other blocks H  content[].<name>
  stopReason                   C  stop (STOPS); malformed_model_output and malformed_tool_use read as
                                  END and are noted; an unknown reason is END
  additionalModelResponseFields.stop_sequence  C  stop_sequence (Claude's)
  usage                        C  usage_from: inputTokens leaves out cache reads and writes (as
                                  Anthropic's input_tokens does), so input is inputTokens +
                                  cacheReadInputTokens + cacheWriteInputTokens; reads are cached, writes
                                  cache writes; Converse reports no reasoning tokens
  serviceTier.type             C  service_tier (default, priority, flex)
  metrics, trace, performanceConfig  -  not read
An answer names neither its id nor its model: the caller's encoder makes an id and names
the request's model.

Written for a Bedrock caller (encode): the blocks as content (thinking as reasoningText with
its signature, redacted thinking as redactedContent), stopReason (STOP_REASONS), usage in
Converse's words, metrics.latencyMs 0 (the gateway does not time the model).

Errors: Bedrock's body is {"message": ...} (AWS's front door writes {"Message": ...}); the
exception's name travels in the x-amzn-ErrorType header, which decode_error is not given,
so the kind comes from the status (an Anthropic- or OpenAI-shaped body's own type wins).
Written for a Bedrock caller as {"message": ...}, the status kept (Anthropic's 529 as 503).
"""

from __future__ import annotations

from typing import Any

from ...api import provider_json
from ...api.usage import Usage
from ..conversation import (
    CONTENT_FILTER,
    END,
    LENGTH,
    PAUSE,
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
from ..vocabulary import ANTHROPIC, restored_names

BEDROCK = "bedrock"
STOPS = {"end_turn": END, "tool_use": TOOL_USE, "max_tokens": LENGTH, "stop_sequence": STOP_SEQUENCE,
         "guardrail_intervened": CONTENT_FILTER, "content_filtered": CONTENT_FILTER,
         "model_context_window_exceeded": LENGTH}
_MALFORMED = frozenset({"malformed_model_output", "malformed_tool_use"})
STOP_REASONS = {END: "end_turn", LENGTH: "max_tokens", TOOL_USE: "tool_use", STOP_SEQUENCE: "stop_sequence",
                REFUSAL: "content_filtered", CONTENT_FILTER: "content_filtered", PAUSE: "end_turn"}
SERVICE_TIERS = frozenset({"default", "priority", "flex"})
# HTTP status -> the model's error kind. 424 is Bedrock's ModelErrorException: the model failed.
STATUS_KINDS = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 408: "timeout_error", 413: "request_too_large", 424: "api_error",
                429: "rate_limit_error", 500: "api_error", 503: "overloaded_error", 504: "timeout_error"}
# An exception's name (in a stream's :exception-type, lower camel case) -> the model's error kind.
EXCEPTION_KINDS = {"throttlingexception": "rate_limit_error", "validationexception": "invalid_request_error",
                   "accessdeniedexception": "permission_error", "resourcenotfoundexception": "not_found_error",
                   "modeltimeoutexception": "timeout_error", "serviceunavailableexception": "overloaded_error",
                   "servicequotaexceededexception": "rate_limit_error", "modelnotreadyexception": "overloaded_error",
                   "internalserverexception": "api_error", "modelstreamerrorexception": "api_error",
                   "modelerrorexception": "api_error"}
_KIND_STATUS = {"invalid_request_error": 400, "authentication_error": 403, "permission_error": 403,
                "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429, "billing_error": 429,
                "api_error": 500, "overloaded_error": 503, "timeout_error": 408}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from(usage: Any) -> Usage | None:
    """Converse's `usage` as the model's Usage (None when there is none)."""
    if not isinstance(usage, dict):
        return None
    read, written = _count(usage.get("cacheReadInputTokens")), _count(usage.get("cacheWriteInputTokens"))
    return Usage(input_tokens=_count(usage.get("inputTokens")) + read + written,
                 output_tokens=_count(usage.get("outputTokens")), cached_tokens=read, cache_write_tokens=written)


def converse_usage(usage: Usage | None) -> dict[str, int]:
    """Usage in Converse's words: inputTokens leaves out cache reads and writes; the total has them."""
    usage = usage or Usage()
    fresh = max(0, usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens)
    written = {"inputTokens": fresh, "outputTokens": usage.output_tokens,
               "totalTokens": usage.input_tokens + usage.output_tokens}
    if usage.cached_tokens or usage.cache_write_tokens:
        written.update(cacheReadInputTokens=usage.cached_tokens, cacheWriteInputTokens=usage.cache_write_tokens)
    return written


def stop_of(reason: Any, notes: Notes | None) -> str:
    if reason in _MALFORMED and notes is not None:
        note(notes.dropped, f"stopReason={reason}")        # what the model botched
    return STOPS.get(reason, END) if isinstance(reason, str) else END


def stop_sequence_of(fields: Any) -> str | None:
    """The stop sequence Claude names in additionalModelResponseFields."""
    sequence = fields.get("stop_sequence") if isinstance(fields, dict) else None
    return sequence if isinstance(sequence, str) else None


def reasoning_block(text: str, signature: str) -> Block:
    """Reasoning text as a thinking block: signed, Claude's (see the module's table)."""
    return {"type": "thinking", "thinking": text, "signature": signature,
            "origin": ANTHROPIC if signature else BEDROCK}


def decode_block(block: Any, names: dict[str, str], notes: Notes | None) -> Block | None:
    """One content block of an answer as the model's (None: not carried, noted)."""
    if not isinstance(block, dict):
        return None
    if isinstance(block.get("text"), str):
        return {"type": "text", "text": block["text"]}
    call = block.get("toolUse")
    if isinstance(call, dict):
        name = str(call.get("name", ""))
        return {"type": "tool_use", "id": str(call.get("toolUseId", "")), "name": names.get(name, name),
                "input": call.get("input") if isinstance(call.get("input"), dict) else {}}
    reasoning = block.get("reasoningContent")
    if isinstance(reasoning, dict):
        text = reasoning.get("reasoningText")
        if isinstance(text, dict):
            signature = text.get("signature")
            return reasoning_block(str(text.get("text", "")), signature if isinstance(signature, str) else "")
        if isinstance(reasoning.get("redactedContent"), str):
            return {"type": "redacted_thinking", "data": reasoning["redactedContent"], "origin": ANTHROPIC}
    cited = block.get("citationsContent")
    if isinstance(cited, dict):
        if notes is not None and cited.get("citations"):
            note(notes.dropped, "content[].citationsContent.citations")
        return {"type": "text", "text": "".join(str(part.get("text", "")) for part in cited.get("content") or ()
                                                if isinstance(part, dict))}
    if notes is not None:
        for name in block:
            note(notes.dropped, f"content[].{str(name)[:40]}")
    return None


def decode(body: dict, conversation: Conversation, notes: Notes | None) -> Answer:
    output = body.get("output")
    output = output if isinstance(output, dict) else {}
    message = output.get("message")
    message = message if isinstance(message, dict) else {}
    names = restored_names(conversation)
    content = [block for block in (decode_block(item, names, notes) for item in message.get("content") or ())
               if block is not None]
    tier = body.get("serviceTier")
    tier = tier.get("type") if isinstance(tier, dict) else None
    return Answer(content=content, stop=stop_of(body.get("stopReason"), notes),
                  stop_sequence=stop_sequence_of(body.get("additionalModelResponseFields")),
                  usage=usage_from(body.get("usage")), service_tier=tier if tier in SERVICE_TIERS else None)


def encode_block(block: Block) -> dict | None:
    """One of the model's blocks as a Converse content block (None: nothing a Bedrock caller reads)."""
    kind = block.get("type")
    if kind == "text":
        return {"text": block.get("text") or ""}
    if kind == "tool_use":
        return {"toolUse": {"toolUseId": block.get("id") or "", "name": block.get("name") or "",
                            "input": block.get("input") or {}}}
    if kind == "thinking":
        text: dict[str, Any] = {"text": block.get("thinking") or ""}
        if block.get("signature") and block.get("origin") in (ANTHROPIC, BEDROCK):
            text["signature"] = block["signature"]
        return {"reasoningContent": {"reasoningText": text}}
    if kind == "redacted_thinking" and block.get("origin") in (ANTHROPIC, BEDROCK):
        return {"reasoningContent": {"redactedContent": block.get("data") or ""}}
    return None


def encode(answer: Answer, conversation: Conversation) -> dict:
    content = [written for written in (encode_block(block) for block in answer.content) if written is not None]
    out: dict[str, Any] = {"output": {"message": {"role": "assistant", "content": content}},
                           "stopReason": STOP_REASONS.get(answer.stop, "end_turn"),
                           "usage": converse_usage(answer.usage), "metrics": {"latencyMs": 0}}
    if answer.stop_sequence:
        out["additionalModelResponseFields"] = {"stop_sequence": answer.stop_sequence}
    if answer.service_tier in SERVICE_TIERS:
        out["serviceTier"] = {"type": answer.service_tier}
    return out


# --- errors --------------------------------------------------------------------------

def message_of(body: Any) -> str | None:
    """The message of Bedrock's error body ({"message"}, or the front door's {"Message"})."""
    if not isinstance(body, dict):
        return None
    for key in ("message", "Message"):
        if isinstance(body.get(key), str) and body[key]:
            return body[key]
    return None


def decode_error(status: int, body: Any) -> Problem:
    if isinstance(body, list) and body:
        body = body[0]
    message, kind = message_of(body), None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):                         # an Anthropic- or OpenAI-shaped body
        kind = error.get("type") if isinstance(error.get("type"), str) else None
        message = message or (error["message"] if isinstance(error.get("message"), str) else None)
    kind = kind or STATUS_KINDS.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    return Problem(kind, message or f"The provider answered {status}.")


def exception_problem(name: bytes, data: dict | None) -> Problem:
    """An exception a stream ends with (its :exception-type and payload) as a Problem."""
    exception = name.decode("utf-8", "replace")
    kind = EXCEPTION_KINDS.get(exception.lower(), "api_error")
    return Problem(kind, message_of(data) or f"The provider's stream failed ({exception or 'an exception'}).")


def error_body(message: str) -> bytes:
    return provider_json.dumps({"message": message})


def encode_error(status: int, problem: Problem) -> tuple[int, bytes]:
    if status == 529:
        status = 503                                  # Anthropic's overloaded: AWS's clients know 503
    elif not status:
        status = _KIND_STATUS.get(problem.kind, 500)
    return status, error_body(problem.message)
