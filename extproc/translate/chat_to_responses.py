"""An OpenAI Chat Completions (or Anthropic Messages) caller, a provider that speaks only
OpenAI's Responses API (`type: openai-responses`): the chat request written as the
Responses request it stands for; the answer and its stream read back as chat
(responses_to_chat.py). A Messages caller is first read as chat (messages_to_chat.py),
then carried the same way: each dialect is read and written once, through chat.

The request, field by field (C carried, H dropped and named in Notes.dropped, R refused):
  messages                      C  input items: system and developer messages as such;
                                   user text, images by URL and files (data or id) as
                                   input_text / input_image / input_file; the assistant's
                                   text as output_text, its tool calls as function_call
                                   items; tool results as function_call_output; audio parts,
                                   the deprecated function_call and function roles R
  tools (function)              C  name, description, parameters, strict; other tool types R
  tool_choice                   C  auto / none / required, or one function by name;
                                   allowed_tools R
  parallel_tool_calls, temperature, top_p, user, safety_identifier, metadata,
  prompt_cache_key, service_tier   C
  max_completion_tokens, max_tokens  C  max_output_tokens
  response_format               C  text.format (json_schema, json_object); verbosity C text.verbosity
  reasoning_effort              C  reasoning.effort
  stream                        C  the provider's Responses events read back as chat chunks
                                   (usage at the end when stream_options asks, as chat does)
  n > 1, stop, logprobs, top_logprobs, logit_bias, frequency_penalty, presence_penalty,
  functions, audio output, web_search_options   R  (the Responses API has none of them)
  store                         H  the provider is asked to keep nothing (store: false)
  seed, prediction, stream_options, unknown fields   H
"""

from __future__ import annotations

from typing import Any

from .base import ANTHROPIC, OPENAI, OPENAI_RESPONSES, Notes, Refused, StreamTranslation, Target
from .messages_to_chat import chat_request as chat_from_messages
from .messages_to_chat_answer import anthropic_error, message_from
from .messages_to_chat_stream import ChatStreamAsMessages
from .responses_to_chat import ResponsesStreamAsChat, Chained, chat_completion_from, openai_error_passed
from .vocabulary import note

_CARRIED = ("temperature", "top_p", "user", "safety_identifier", "parallel_tool_calls", "metadata",
            "prompt_cache_key", "service_tier")
_REFUSED = ("stop", "logit_bias", "functions", "function_call", "web_search_options")
_HINTS = ("seed", "prediction", "store")
_HANDLED = frozenset({"model", "messages", "tools", "tool_choice", "max_completion_tokens", "max_tokens",
                      "response_format", "verbosity", "reasoning_effort", "stream", "stream_options", "n",
                      "logprobs", "top_logprobs", "frequency_penalty", "presence_penalty", "modalities", "audio",
                      *_CARRIED, *_REFUSED, *_HINTS})


class ChatToResponses:
    """Chat Completions callers, Responses-only providers (the module's table)."""
    caller = OPENAI
    provider = OPENAI_RESPONSES
    provider_kind = "responses"

    def request(self, body: dict, target: Target, notes: Notes) -> dict:
        return responses_request(body, target, notes)

    def response(self, body: dict, request: dict, notes: Notes | None = None) -> dict:
        return chat_completion_from(body, request, notes)

    def stream(self, request: dict, notes: Notes | None = None) -> StreamTranslation:
        return ResponsesStreamAsChat(request, notes)

    def error(self, status: int, body: Any) -> tuple[int, bytes]:
        return openai_error_passed(status, body)


class MessagesToResponses:
    """Anthropic Messages callers, Responses-only providers: read as chat, then as above."""
    caller = ANTHROPIC
    provider = OPENAI_RESPONSES
    provider_kind = "responses"

    def request(self, body: dict, target: Target, notes: Notes) -> dict:
        return responses_request(chat_from_messages(body, target, notes), target, notes)

    def response(self, body: dict, request: dict, notes: Notes | None = None) -> dict:
        chat = chat_from_messages(request, Target(str(request.get("model", ""))), Notes())
        return message_from(chat_completion_from(body, chat, notes), request, notes)

    def stream(self, request: dict, notes: Notes | None = None) -> StreamTranslation:
        chat = chat_from_messages(request, Target(str(request.get("model", ""))), Notes())
        return Chained(ResponsesStreamAsChat(chat, notes), ChatStreamAsMessages(request, notes))

    def error(self, status: int, body: Any) -> tuple[int, bytes]:
        return anthropic_error(status, body)


def responses_request(body: dict, target: Target, notes: Notes) -> dict:
    """A Chat Completions body as a Responses body for `target.model`; raises Refused."""
    for name in _REFUSED:
        if body.get(name) is not None:
            raise Refused(name, f"'{name}' cannot be carried to this provider (it speaks the Responses API only).")
    _refuse_sampling(body)
    out: dict[str, Any] = {"model": target.model, "input": _input(body.get("messages")), "store": False}
    cap = body.get("max_completion_tokens", body.get("max_tokens"))
    if isinstance(cap, int) and not isinstance(cap, bool):
        out["max_output_tokens"] = cap
    for name in _CARRIED:
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("tools"):
        out["tools"] = [_tool(tool, i) for i, tool in enumerate(body["tools"])]
    if body.get("tool_choice") is not None:
        out["tool_choice"] = _tool_choice(body["tool_choice"])
    _text(body, out)
    if isinstance(body.get("reasoning_effort"), str):
        out["reasoning"] = {"effort": body["reasoning_effort"]}
    if body.get("stream"):
        out["stream"] = True
    for name in _HINTS:
        if body.get(name) is not None:
            note(notes.dropped, name)
    notes.dropped.extend(name for name in body if name not in _HANDLED)
    return out


def _refuse_sampling(body: dict) -> None:
    if isinstance(body.get("n"), int) and body["n"] > 1:
        raise Refused("n", "This provider answers once per request ('n' above 1 cannot be carried).")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise Refused("logprobs", "'logprobs' cannot be carried to this provider (it speaks the Responses API only).")
    for name in ("frequency_penalty", "presence_penalty"):
        if body.get(name):
            raise Refused(name, f"'{name}' cannot be carried to this provider (it speaks the Responses API only).")
    modalities = body.get("modalities")
    if body.get("audio") is not None or (isinstance(modalities, list) and "audio" in modalities):
        raise Refused("modalities", "Audio answers cannot be carried to this provider.")


def _input(messages: Any) -> list[dict]:
    items: list[dict] = []
    for i, message in enumerate(messages if isinstance(messages, list) else ()):
        if not isinstance(message, dict):
            raise Refused(f"messages[{i}]", f"messages[{i}] is not a message object.")
        role = message.get("role")
        where = f"messages[{i}]"
        if role in ("system", "developer", "user"):
            items.append({"type": "message", "role": role, "content": _user_content(message.get("content"), where)})
        elif role == "assistant":
            items.extend(_assistant(message, where))
        elif role == "tool":
            items.append({"type": "function_call_output", "call_id": str(message.get("tool_call_id", "")),
                          "output": _text_of(message.get("content"), where)})
        else:
            raise Refused(f"{where}.role", f"The role '{str(role)[:40]}' cannot be carried to this provider.")
    return items


def _user_content(content: Any, where: str) -> Any:
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for j, part in enumerate(content if isinstance(content, list) else ()):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append({"type": "input_text", "text": part.get("text", "")})
        elif kind == "image_url":
            image = part.get("image_url") if isinstance(part.get("image_url"), dict) else {}
            parts.append({"type": "input_image", "image_url": image.get("url"), "detail": image.get("detail", "auto")})
        elif kind == "file":
            file = part.get("file") if isinstance(part.get("file"), dict) else {}
            parts.append({"type": "input_file", **{k: file[k] for k in ("file_data", "file_id", "filename") if k in file}})
        else:
            raise Refused(f"{where}.content[{j}]", f"A '{str(kind)[:40]}' part cannot be carried to this provider.")
    return parts


def _text_of(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for j, part in enumerate(content if isinstance(content, list) else ()):
        if isinstance(part, dict) and part.get("type") in ("text", "refusal"):
            texts.append(str(part.get("text", part.get("refusal", ""))))
        else:
            raise Refused(f"{where}.content[{j}]", "Only text parts can be carried in this message.")
    return "".join(texts)


def _assistant(message: dict, where: str) -> list[dict]:
    items = []
    text = _text_of(message.get("content"), where)
    if text:
        items.append({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]})
    if message.get("refusal"):
        items.append({"type": "message", "role": "assistant",
                      "content": [{"type": "refusal", "refusal": str(message["refusal"])}]})
    if message.get("function_call") is not None:
        raise Refused(f"{where}.function_call", "The deprecated function_call cannot be carried; use tool_calls.")
    for k, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise Refused(f"{where}.tool_calls[{k}]", "A tool call without its function cannot be carried.")
        items.append({"type": "function_call", "call_id": str(call.get("id", "")),
                      "name": str(function.get("name", "")), "arguments": str(function.get("arguments", ""))})
    return items


def _tool(tool: Any, i: int) -> dict:
    function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
    if not isinstance(function, dict):
        raise Refused(f"tools[{i}]", "Only function tools can be carried to this provider.")
    out = {"type": "function", "name": function.get("name")}
    for name in ("description", "parameters", "strict"):
        if function.get(name) is not None:
            out[name] = function[name]
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return choice
    function = choice.get("function") if isinstance(choice, dict) and choice.get("type") == "function" else None
    if isinstance(function, dict):
        return {"type": "function", "name": function.get("name")}
    raise Refused("tool_choice", "This tool_choice cannot be carried to this provider.")


def _text(body: dict, out: dict) -> None:
    text: dict[str, Any] = {}
    response_format = body.get("response_format")
    if isinstance(response_format, dict):
        kind = response_format.get("type")
        if kind == "json_schema" and isinstance(response_format.get("json_schema"), dict):
            schema = response_format["json_schema"]
            text["format"] = {"type": "json_schema", **{k: schema[k] for k in ("name", "schema", "strict", "description")
                                                         if k in schema}}
        elif kind == "json_object":
            text["format"] = {"type": "json_object"}
    if isinstance(body.get("verbosity"), str):
        text["verbosity"] = body["verbosity"]
    if text:
        out["text"] = text
