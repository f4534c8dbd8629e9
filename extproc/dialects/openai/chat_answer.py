"""Chat Completions answers and errors: a provider's `chat.completion` read into the
model's Answer, an Answer written as the `chat.completion` a caller reads, and OpenAI's
error envelope both ways (the Responses API shares it: responses_answer.py).

Read from a provider (decode), field by field (C carried, H dropped and named in Notes.dropped):
  message.reasoning_content (or `reasoning`, compatible servers)  C  a thinking block first,
                                         signature "", origin "openai"
  message.content (a string or parts)  C  a text block (none when empty)
  message.refusal                      C  a text block, stop REFUSAL
  message.tool_calls                   C  tool_use blocks: arguments parsed ({} when not a JSON
                                          object: H, named `tool_calls[].function.arguments:malformed`),
                                          a shortened name restored, a missing id made up
  finish_reason                        C  stop: stop END, length LENGTH, tool_calls and function_call
                                          TOOL_USE, content_filter CONTENT_FILTER (OpenAI does not say
                                          which stop sequence ended an answer: `stop` reads as END)
  usage                                C  vocabulary.usage_from_openai (cache writes of compatible servers)
  id, model, service_tier              C
  choices after the first, logprobs, annotations, audio   H  (never asked for by a translated request)

Written for a caller (encode):
  text blocks      -> message.content, all of them joined (null when only tool calls)
  tool_use blocks  -> message.tool_calls, in order, arguments as compact JSON
  thinking blocks  -> message.reasoning_content (the extension OpenAI-compatible clients read);
                      signatures and redacted thinking have no Chat Completions form
  stop             -> finish_reason (FINISH_REASONS); TOOL_USE without a call is `stop`
  usage            -> vocabulary.openai_usage
  service_tier     -> service_tier
  model            -> the answer's, else the request's

Errors: a provider's {"error": {message, type, param, code}} keeps its type, code and param
for an OpenAI caller; an error of another dialect is written with OpenAI's type and code for
its kind (OPENAI_ERRORS). Status kept, but 529 (Anthropic's overloaded, unknown to OpenAI's
clients) is 503.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from ...api import anthropic as anthropic_api
from ...api import provider_json
from ...api.usage import Usage
from ..conversation import (
    CONTENT_FILTER,
    END,
    LENGTH,
    REFUSAL,
    TOOL_USE,
    Answer,
    Block,
    Conversation,
    Notes,
    Problem,
    note,
)
from ..vocabulary import openai_usage, restored_names, usage_from_openai

# finish_reason -> the model's stop. `function_call` is the deprecated name of tool_calls.
STOPS = {"stop": END, "length": LENGTH, "tool_calls": TOOL_USE, "function_call": TOOL_USE,
         "content_filter": CONTENT_FILTER}

# The model's stop -> finish_reason. Chat Completions has no word for a stop sequence, a
# pause or a refusal: the first two read as a plain stop, a refusal as content_filter.
FINISH_REASONS = {END: "stop", LENGTH: "length", TOOL_USE: "tool_calls", REFUSAL: "content_filter",
                  CONTENT_FILTER: "content_filter"}

MALFORMED_ARGUMENTS = "tool_calls[].function.arguments:malformed"


def finish_reason(stop: str, calls: bool) -> str:
    """The finish_reason for a stop; a tool-use stop without a call left (the only call was
    how a JSON answer was carried) is a plain stop."""
    if stop == TOOL_USE and not calls:
        return "stop"
    return FINISH_REASONS.get(stop, "stop")


def new_tool_id() -> str:
    """An id for a tool call its provider gave none (every dialect's callers pair results by id)."""
    return "toolu_" + secrets.token_hex(12)


def tool_input(arguments: Any, notes: Notes | None, malformed: str = MALFORMED_ARGUMENTS) -> dict[str, Any]:
    """A tool call's arguments (a JSON text) as the model's input object; {} (noted as
    `malformed`) when they are not one."""
    if arguments in (None, ""):
        return {}
    parsed = provider_json.loads(arguments.encode("utf-8", "surrogatepass")) if isinstance(arguments, str) else None
    if isinstance(parsed, dict):
        return parsed
    if notes is not None:
        note(notes.dropped, malformed)
    return {}


def arguments_of(block: Block) -> str:
    """A tool_use block's input as the compact JSON text OpenAI's arguments are."""
    return provider_json.dumps(block.get("input") or {}).decode()


def text_of(content: Any) -> str:
    """A message's content as one text (a string, or the texts of a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part["text"] for part in content
                       if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


# --- a provider's answer -------------------------------------------------------------

def decode(body: dict, conversation: Conversation, notes: Notes | None) -> Answer:
    """A `chat.completion` as the model's Answer."""
    choices = body.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content: list[Block] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": "", "origin": "openai"})
    text = text_of(message.get("content"))
    if text:
        content.append({"type": "text", "text": text})
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        content.append({"type": "text", "text": refusal})
    names = restored_names(conversation)
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        name = function.get("name")
        content.append({"type": "tool_use", "id": call.get("id") or new_tool_id(), "name": names.get(name, name),
                        "input": tool_input(function.get("arguments"), notes)})
    finish = choice.get("finish_reason")
    stop = STOPS.get(finish, END) if isinstance(finish, str) else END
    if isinstance(refusal, str) and refusal:
        stop = REFUSAL
    tier = body.get("service_tier")
    return Answer(id=body.get("id") if isinstance(body.get("id"), str) else None,
                  model=body.get("model") if isinstance(body.get("model"), str) else None,
                  content=content, stop=stop, usage=usage_from_openai(body.get("usage")),
                  service_tier=tier if isinstance(tier, str) else None)


# --- the caller's answer -------------------------------------------------------------

def tool_call(call_id: Any, name: Any, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def encode(answer: Answer, conversation: Conversation) -> dict:
    """An Answer as the `chat.completion` the caller asked for."""
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in answer.content:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            calls.append(tool_call(block.get("id"), block.get("name"), arguments_of(block)))
        elif kind == "thinking" and block.get("thinking"):
            thinking.append(block["thinking"])
    text = "".join(texts)
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else ""), "refusal": None}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    out: dict[str, Any] = {
        "id": answer.id or "chatcmpl-" + secrets.token_hex(12), "object": "chat.completion",
        "created": int(time.time()), "model": answer.model or conversation.model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": finish_reason(answer.stop, bool(calls))}],
        "usage": openai_usage(answer.usage or Usage()), "system_fingerprint": None}
    if answer.service_tier:
        out["service_tier"] = answer.service_tier
    return out


# --- errors --------------------------------------------------------------------------

# The model's error kind (Anthropic's words) -> OpenAI's error type and code for the same cause.
OPENAI_ERRORS: dict[str, tuple[str, str | None]] = {
    "invalid_request_error": ("invalid_request_error", None),
    "authentication_error": ("invalid_request_error", "invalid_api_key"),
    "permission_error": ("invalid_request_error", None),
    "not_found_error": ("invalid_request_error", "model_not_found"),
    "request_too_large": ("invalid_request_error", None),
    "rate_limit_error": ("requests", "rate_limit_exceeded"),
    "billing_error": ("insufficient_quota", "insufficient_quota"),
    "api_error": ("server_error", None),
    "overloaded_error": ("server_error", None),
    "timeout_error": ("server_error", None),
}

# OpenAI's error type -> the model's kind, where no status says it (an error mid-stream).
KINDS = {"invalid_request_error": "invalid_request_error", "server_error": "api_error",
         "rate_limit_exceeded": "rate_limit_error", "requests": "rate_limit_error",
         "tokens": "rate_limit_error", "insufficient_quota": "billing_error"}


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def decode_error(status: int, body: Any) -> Problem:
    """An OpenAI error body (`{"error": {...}}`, the error object itself, or an
    Anthropic-shaped one) as a Problem: its kind from the status (the type when there is
    none), its own type, code and param kept for an OpenAI caller."""
    if isinstance(body, list) and body:
        body = body[0]                      # some compatible servers wrap their error in a list
    error = body.get("error", body) if isinstance(body, dict) else None
    message = f"The provider answered {status}." if status else "The provider's stream failed."
    if isinstance(error, str) and error:
        message = error
    if not isinstance(error, dict):
        return Problem(anthropic_api.error_type(status) if status else "api_error", message)
    if isinstance(error.get("message"), str) and error["message"]:
        message = error["message"]
    openai_type = _text_or_none(error.get("type"))
    if status >= 400:
        kind = anthropic_api.error_type(status)
    else:
        kind = KINDS.get(openai_type, "api_error") if openai_type else "api_error"
    if isinstance(body, dict) and body.get("type") == "error":
        openai_type = None                  # Anthropic's shape: its type is not OpenAI's word
    if not openai_type:
        return Problem(kind, message)
    code = error.get("code")
    return Problem(kind, message, openai_type=openai_type,
                   code=str(code) if isinstance(code, (str, int)) and not isinstance(code, bool) else None,
                   param=_text_or_none(error.get("param")))


def error_object(problem: Problem) -> dict[str, Any]:
    """OpenAI's error object for a Problem: the provider's own words when it wrote OpenAI's."""
    if problem.openai_type:
        return {"message": problem.message, "type": problem.openai_type, "param": problem.param,
                "code": problem.code}
    error_type, code = OPENAI_ERRORS.get(problem.kind, ("server_error", None))
    return {"message": problem.message, "type": error_type, "param": None, "code": code}


def encode_error(status: int, problem: Problem) -> tuple[int, bytes]:
    """A Problem in OpenAI's envelope; 529 (Anthropic's overloaded) as 503."""
    return (503 if status == 529 else status), provider_json.dumps({"error": error_object(problem)})
