"""An OpenAI Responses caller, an Anthropic Messages provider: the Responses request read as
the Chat Completions request it stands for, then carried by chat_to_messages; the answer
and its stream read back the same way (responses_answer.py, responses_stream.py).

The request, field by field (C carried, H dropped and named in Notes.dropped, R refused):
  input (a string, or items)     C  messages: `message` items (input_text, output_text, refusal,
                                    input_image by URL, input_file by data) with their role;
                                    `function_call` items as the assistant's tool calls,
                                    `function_call_output` items as tool results; `reasoning`
                                    items H (Anthropic takes back only its own signed thinking);
                                    other item types, files and images by id R
  instructions                   C  the first system message
  tools (function)               C  name, description, parameters, strict; tools only OpenAI runs
                                    (web_search, file_search, code_interpreter, ...) and tool
                                    namespaces H, named: the model answers without them
  tool_choice, parallel_tool_calls  C  as Chat Completions' (then chat_to_messages' table)
  max_output_tokens              C  max_completion_tokens
  temperature, top_p, user, safety_identifier  C
  reasoning.effort               C  reasoning_effort (a thinking budget); reasoning.summary H
  text.format (json_schema, json_object)  C  response_format; text.verbosity H
  stream                         C  the answer streamed as Responses events
  previous_response_id, conversation, background, prompt  R  (nothing stored at this provider)
  store, include, metadata, prompt_cache_key, truncation, service_tier, max_tool_calls,
  stream_options, top_logprobs, client_metadata, unknown fields  H
Content is never dropped silently: what is not carried is named on the log line or refused.
"""

from __future__ import annotations

from typing import Any

from .base import ANTHROPIC, OPENAI, Notes, Refused, StreamTranslation, Target
from .chat_to_messages import messages_request
from .chat_to_messages_answer import chat_completion, openai_error
from .chat_to_messages_stream import AnthropicStreamAsChat
from .responses_answer import responses_object
from .responses_stream import ChatStreamAsResponses
from .vocabulary import note

_REFUSED = ("previous_response_id", "conversation", "background", "prompt")
_CARRIED = ("temperature", "top_p", "user", "safety_identifier", "parallel_tool_calls", "stream")
_HANDLED = frozenset({"model", "input", "instructions", "tools", "tool_choice", "max_output_tokens", "reasoning",
                      "text", *_REFUSED, *_CARRIED})
# Content parts: the Responses type -> the Chat Completions part it becomes.
_TEXT_PARTS = ("input_text", "output_text", "refusal", "text")


class ResponsesToMessages:
    """OpenAI Responses callers, Anthropic Messages providers (the module's table)."""
    caller = OPENAI
    provider = ANTHROPIC
    provider_kind = "messages"

    def request(self, body: dict, target: Target, notes: Notes) -> dict:
        return messages_request(chat_request(body, notes), target, notes)

    def response(self, body: dict, request: dict, notes: Notes | None = None) -> dict:
        chat = chat_request(request, Notes())
        return responses_object(chat_completion(body, chat), request)

    def stream(self, request: dict, notes: Notes | None = None) -> StreamTranslation:
        chat = chat_request(request, Notes())
        return ChatStreamAsResponses(AnthropicStreamAsChat(chat), request)

    def error(self, status: int, body: Any) -> tuple[int, bytes]:
        return openai_error(status, body)


def chat_request(body: dict, notes: Notes) -> dict:
    """The Chat Completions request a Responses request stands for; raises Refused."""
    for name in _REFUSED:
        if body.get(name) not in (None, False):
            raise Refused(name, f"'{name}' needs a provider that keeps responses; this model's provider "
                                "speaks Anthropic's Messages API, which keeps none: send the whole "
                                "conversation in 'input'.")
    out: dict[str, Any] = {"model": body.get("model")}
    messages: list[dict] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    messages.extend(_messages(body.get("input"), notes))
    out["messages"] = messages
    for name in _CARRIED:
        if name in body:
            out[name] = body[name]
    if out.get("stream") is True:
        out["stream_options"] = {"include_usage": True}       # the Responses stream ends with usage
    if "max_output_tokens" in body:
        out["max_completion_tokens"] = body["max_output_tokens"]
    tools = _tools(body.get("tools"), notes)
    if tools:
        out["tools"] = tools
    if "tool_choice" in body:
        out["tool_choice"] = _tool_choice(body["tool_choice"])
    _reasoning(body.get("reasoning"), out, notes)
    _text(body.get("text"), out, notes)
    for name in body:
        if name not in _HANDLED:
            note(notes.dropped, name)
    return out


def _messages(items: Any, notes: Notes) -> list[dict]:
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list):
        raise Refused("input", "'input' must be a string or a list of items.")
    messages: list[dict] = []
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise Refused(where, f"'{where}' must be an object.")
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise Refused(f"{where}.role", f"'{where}.role' must be user, assistant, system or developer.")
            messages.append({"role": role, "content": _content(item.get("content"), where)})
        elif kind == "function_call":
            call = {"id": item.get("call_id"), "type": "function",
                    "function": {"name": item.get("name"), "arguments": item.get("arguments")}}
            if messages and messages[-1]["role"] == "assistant":
                messages[-1].setdefault("tool_calls", []).append(call)   # one turn: its text and its calls
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"),
                             "content": output if isinstance(output, str) else _content(output, where)})
        elif kind == "reasoning":
            note(notes.dropped, "input[].reasoning")
        else:
            raise Refused(f"{where}.type", f"'{where}.type' {str(kind)[:40]!r} cannot be carried to a "
                                           "provider of Anthropic's Messages API.")
    return messages


def _content(content: Any, where: str) -> Any:
    if isinstance(content, str) or content is None:
        return content
    if not isinstance(content, list):
        raise Refused(f"{where}.content", f"'{where}.content' must be a string or a list of parts.")
    parts = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in _TEXT_PARTS:
            parts.append({"type": "text", "text": part.get("text", part.get("refusal"))})
        elif kind == "input_image" and part.get("image_url"):
            image = {"url": part["image_url"]}
            if part.get("detail"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "input_file" and part.get("file_data"):
            parts.append({"type": "file", "file": {k: part[k] for k in ("file_data", "filename") if k in part}})
        else:
            raise Refused(at, f"'{at}' ({str(kind)[:40]!r}, by id or by URL) cannot be carried to a provider "
                              "of Anthropic's Messages API; send its text or its data.")
    return parts


def _tools(tools: Any, notes: Notes) -> list[dict]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise Refused("tools", "'tools' must be a list.")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise Refused(f"tools[{i}]", f"'tools[{i}]' must be an object.")
        if tool.get("type") == "function":
            function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
            out.append({"type": "function", "function": function})
        else:
            note(notes.dropped, f"tools[].{str(tool.get('type'))[:40]}")
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function" and "function" not in choice:
        return {"type": "function", "function": {"name": choice.get("name")}}
    return choice


def _reasoning(reasoning: Any, out: dict, notes: Notes) -> None:
    if not isinstance(reasoning, dict):
        return
    if reasoning.get("effort") is not None:
        out["reasoning_effort"] = reasoning["effort"]
    if reasoning.get("summary") is not None:
        note(notes.dropped, "reasoning.summary")


def _text(text: Any, out: dict, notes: Notes) -> None:
    if not isinstance(text, dict):
        return
    form = text.get("format")
    if isinstance(form, dict) and form.get("type") == "json_schema":
        schema = {k: form[k] for k in ("name", "schema", "strict", "description") if k in form}
        out["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif isinstance(form, dict) and form.get("type") == "json_object":
        out["response_format"] = {"type": "json_object"}
    if text.get("verbosity") is not None:
        note(notes.dropped, "text.verbosity")
