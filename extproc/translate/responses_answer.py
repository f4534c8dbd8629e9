"""A Chat Completions answer (translated from the provider's) as a Responses object:
  message.reasoning_content   -> a `reasoning` item, its text as a summary
  message.content             -> a `message` item with one `output_text` part
  message.tool_calls          -> `function_call` items (call_id: the call's id)
  finish_reason length        -> status incomplete, incomplete_details.reason max_output_tokens
  usage                       -> input/output tokens, cached and reasoning details (cost_usd kept)
The request's own settings are echoed as OpenAI echoes them.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

_ECHOED = ("instructions", "max_output_tokens", "parallel_tool_calls", "temperature", "tool_choice", "tools",
           "top_p", "text", "reasoning", "metadata", "user")


def response_id() -> str:
    return f"resp_{uuid.uuid4().hex}"


def item_id(prefix: str, response: str, index: int) -> str:
    return f"{prefix}_{response[5:]}{index:02d}"


def usage(chat_usage: Any) -> dict | None:
    if not isinstance(chat_usage, dict):
        return None
    prompt = chat_usage.get("prompt_tokens") or 0
    completion = chat_usage.get("completion_tokens") or 0
    prompt_details = chat_usage.get("prompt_tokens_details") or {}
    completion_details = chat_usage.get("completion_tokens_details") or {}
    out = {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": prompt_details.get("cached_tokens", 0)},
           "output_tokens": completion,
           "output_tokens_details": {"reasoning_tokens": completion_details.get("reasoning_tokens", 0)},
           "total_tokens": chat_usage.get("total_tokens", prompt + completion)}
    if "cost_usd" in chat_usage:
        out["cost_usd"] = chat_usage["cost_usd"]
    return out


def reasoning_item(ident: str, text: str) -> dict:
    return {"type": "reasoning", "id": ident, "summary": [{"type": "summary_text", "text": text}]}


def message_item(ident: str, text: str, status: str = "completed") -> dict:
    return {"type": "message", "id": ident, "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def call_item(ident: str, call_id: Any, name: Any, arguments: Any, status: str = "completed") -> dict:
    return {"type": "function_call", "id": ident, "call_id": call_id, "name": name,
            "arguments": arguments if isinstance(arguments, str) else "", "status": status}


def envelope(ident: str, request: dict, model: Any, status: str, output: list, usage_: dict | None,
             finish: str | None = None) -> dict:
    """The Responses object around `output`, its settings echoed from the caller's request."""
    out = {"id": ident, "object": "response", "created_at": int(time.time()), "status": status,
           "error": None, "incomplete_details": {"reason": "max_output_tokens"} if finish == "length" else None,
           "model": model or request.get("model"), "output": output, "usage": usage_, "store": False}
    for name in _ECHOED:
        if name in request:
            out[name] = request[name]
    return out


def responses_object(chat: dict, request: dict) -> dict:
    """The caller's Responses answer for a Chat Completions answer to its request."""
    ident = response_id()
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    output: list[dict] = []
    if isinstance(message.get("reasoning_content"), str) and message["reasoning_content"]:
        output.append(reasoning_item(item_id("rs", ident, len(output)), message["reasoning_content"]))
    if isinstance(message.get("content"), str) and message["content"]:
        output.append(message_item(item_id("msg", ident, len(output)), message["content"]))
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        output.append(call_item(item_id("fc", ident, len(output)), call.get("id"), function.get("name"),
                                function.get("arguments")))
    finish = choice.get("finish_reason")
    return envelope(ident, request, chat.get("model"), "incomplete" if finish == "length" else "completed",
                    output, usage(chat.get("usage")), finish)
