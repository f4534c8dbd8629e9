"""An Anthropic Messages answer, or error, as a Chat Completions caller reads it.

  content text blocks      -> message.content, all of them joined (null when only tool calls)
  tool_use blocks          -> message.tool_calls, in order, arguments as compact JSON
  the json_tool_call call  -> message.content (its input as JSON): how response_format was carried
  thinking blocks          -> message.reasoning_content (the extension OpenAI-compatible clients read);
                              signatures and redacted_thinking have no Chat Completions form
  stop_reason              -> finish_reason (vocabulary.FINISH_REASONS; tool_use is `stop` when the only
                              call was the json_tool_call)
  usage                    -> usage (api.anthropic.usage_from, then vocabulary.openai_usage)
  usage.service_tier       -> service_tier (standard -> default, priority -> priority)
  errors                   -> {"error": {message, type, param, code}}, status kept but 529 -> 503
"""

from __future__ import annotations

import time
from typing import Any

from ..api import anthropic as anthropic_api
from ..api import provider_json
from ..api.usage import Usage
from .vocabulary import finish_reason, openai_usage

JSON_TOOL = "json_tool_call"
SERVICE_TIERS = {"standard": "default", "priority": "priority"}


def wants_json(request: dict) -> bool:
    """Whether a Chat Completions request asked for a JSON answer (carried as JSON_TOOL)."""
    response_format = request.get("response_format")
    return isinstance(response_format, dict) and response_format.get("type") in ("json_schema", "json_object")


def tool_call(call_id: Any, name: Any, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def chat_completion(body: dict, request: dict) -> dict:
    """A Messages JSON answer as a `chat.completion`."""
    json_tool = JSON_TOOL if wants_json(request) else None
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    json_answer: str | None = None
    for block in body.get("content") or ():
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use":
            arguments = provider_json.dumps(block.get("input") or {}).decode()
            if block.get("name") == json_tool:
                json_answer = arguments
            else:
                calls.append(tool_call(block.get("id"), block.get("name"), arguments))
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            thinking.append(block["thinking"])
    content = json_answer if json_answer is not None else "".join(texts)
    message: dict[str, Any] = {"role": "assistant", "content": content or (None if calls else ""), "refusal": None}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    finish = finish_reason(body.get("stop_reason"))
    if finish == "tool_calls" and not calls:
        finish = "stop"                                   # the only call was the JSON answer
    usage = anthropic_api.usage_from(body.get("usage")) or Usage()
    answer: dict[str, Any] = {
        "id": body.get("id"), "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model") or request.get("model"),
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": openai_usage(usage), "system_fingerprint": None}
    tier = SERVICE_TIERS.get((body.get("usage") or {}).get("service_tier"))
    if tier:
        answer["service_tier"] = tier
    return answer


# Anthropic error type -> OpenAI's error type and code (OpenAI's own for the same cause).
_OPENAI_ERRORS: dict[str, tuple[str, str | None]] = {
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


def anthropic_error_parts(status: int, body: Any) -> tuple[str, str]:
    """The error type and message of an Anthropic error body (also read: an OpenAI-shaped
    body, a list wrapping one); from the status alone when the body says nothing."""
    if isinstance(body, list) and body:
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        kind = error.get("type") if isinstance(error.get("type"), str) else anthropic_api.error_type(status)
        message = error.get("message")
        if isinstance(message, str) and message:
            return kind, message
        return kind, f"The provider answered {status} ({kind})."
    return anthropic_api.error_type(status), f"The provider answered {status}."


def openai_error_object(kind: str, message: str) -> dict[str, Any]:
    error_type, code = _OPENAI_ERRORS.get(kind, ("server_error", None))
    return {"message": message, "type": error_type, "param": None, "code": code}


def openai_error(status: int, body: Any) -> tuple[int, bytes]:
    """An Anthropic error as OpenAI writes one; 529 (Anthropic's overloaded, unknown to
    OpenAI's clients) as 503."""
    kind, message = anthropic_error_parts(status, body)
    return (503 if status == 529 else status), provider_json.dumps({"error": openai_error_object(kind, message)})
