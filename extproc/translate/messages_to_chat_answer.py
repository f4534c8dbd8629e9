"""An OpenAI Chat Completions answer, or error, as an Anthropic Messages caller reads it.

  message.reasoning_content (or `reasoning`, compatible servers)  -> a thinking block first, signature ""
                                          (none when the caller asked thinking.display "omitted")
  message.content                      -> a text block (none when empty)
  message.refusal                      -> a text block, stop_reason refusal
  message.tool_calls                   -> tool_use blocks: arguments parsed ({} when not a JSON object:
                                          noted), a shortened name restored, a missing id made up
  finish_reason                        -> stop_reason (vocabulary.STOP_REASONS); stop_sequence null
  usage                                -> input_tokens = prompt - cache reads - cache writes,
                                          cache_read_input_tokens = cached_tokens, output_tokens = completion
  errors                               -> {"type": "error", "error": {type, message}}, status kept
"""

from __future__ import annotations

import secrets
from typing import Any

from ..api import anthropic as anthropic_api
from ..api import provider_json
from ..api.usage import Usage
from .base import Notes
from .vocabulary import (
    anthropic_usage,
    note,
    restored_tool_names,
    stop_reason,
    usage_from_openai,
)


def hides_thinking(request: dict) -> bool:
    """Whether the caller asked for thinking without its text (thinking.display "omitted")."""
    thinking = request.get("thinking")
    return isinstance(thinking, dict) and thinking.get("display") == "omitted"


def new_tool_id() -> str:
    return "toolu_" + secrets.token_hex(12)


def tool_input(arguments: Any, notes: Notes | None) -> dict[str, Any]:
    """A tool call's arguments as Anthropic's input object; {} (noted) when they are not one."""
    if arguments in (None, ""):
        return {}
    parsed = provider_json.loads(arguments.encode("utf-8", "surrogatepass")) if isinstance(arguments, str) else None
    if isinstance(parsed, dict):
        return parsed
    if notes is not None:
        note(notes.dropped, "tool_calls[].function.arguments:malformed")
    return {}


def text_of(content: Any) -> str:
    """A message's content as one text (a string, or the texts of a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part["text"] for part in content
                       if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def message_from(body: dict, request: dict, notes: Notes | None = None) -> dict:
    """A chat.completion as a Messages `message`."""
    choices = body.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning and not hides_thinking(request):
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = text_of(message.get("content"))
    if text:
        content.append({"type": "text", "text": text})
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        content.append({"type": "text", "text": refusal})
    names = restored_tool_names(request)
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        name = function.get("name")
        content.append({"type": "tool_use", "id": call.get("id") or new_tool_id(), "name": names.get(name, name),
                        "input": tool_input(function.get("arguments"), notes)})
    usage = usage_from_openai(body.get("usage")) or Usage()
    return {"id": body.get("id") or "msg_" + secrets.token_hex(12), "type": "message", "role": "assistant",
            "model": body.get("model") or request.get("model"), "content": content,
            "stop_reason": "refusal" if refusal else stop_reason(choice.get("finish_reason")),
            "stop_sequence": None, "usage": anthropic_usage(usage)}


# OpenAI's error type (in a stream, where no status says it) -> Anthropic's.
_ANTHROPIC_TYPES = {"invalid_request_error": "invalid_request_error", "server_error": "api_error",
                    "rate_limit_exceeded": "rate_limit_error", "requests": "rate_limit_error",
                    "tokens": "rate_limit_error", "insufficient_quota": "billing_error"}


def openai_error_message(status: int, body: Any) -> str:
    """The message of an OpenAI error body (`{"error": {...}}`, or the error object itself)."""
    error = body.get("error", body) if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"]:
        return error["message"]
    if isinstance(error, str) and error:
        return error
    return f"The provider answered {status}." if status else "The provider's stream failed."


def stream_error_type(error: Any) -> str:
    kind = error.get("type") if isinstance(error, dict) else None
    return _ANTHROPIC_TYPES.get(kind, "api_error") if isinstance(kind, str) else "api_error"


def anthropic_error(status: int, body: Any) -> tuple[int, bytes]:
    """An OpenAI error as Anthropic writes one: the type from the status, which is kept."""
    return status, anthropic_api.error_body(status, openai_error_message(status, body))
