"""An Anthropic Messages stream as Chat Completions chunks, as OpenAI writes them.

  message_start            -> the first chunk: delta {role: assistant, content: "", refusal: null}
  content_block_start      -> tool_use: a tool_calls delta (index counts tool blocks only; id, type,
                              name, arguments ""); the json_tool_call block: nothing (its input streams as
                              content); text, thinking: nothing unless they start with text
  text_delta               -> delta.content
  input_json_delta         -> delta.tool_calls[{index, function.arguments}] (delta.content for json_tool_call)
  thinking_delta           -> delta.reasoning_content
  signature_delta, citations_delta, content_block_stop, ping  -> nothing
  message_delta            -> nothing yet: its stop_reason and usage are kept
  message_stop             -> a chunk with delta {} and finish_reason; the usage chunk (choices []) when the
                              caller asked stream_options.include_usage; `data: [DONE]`
  error                    -> `data: {"error": {...}}`, and the stream ends (no [DONE]: clients raise)
With include_usage every chunk carries "usage": null, as OpenAI's do.

Each chunk is written from bytes fixed once per stream (its id, model and created
time) around the one JSON value the event adds: the per-event path holds no dict walk
beyond the event's own fields.
"""

from __future__ import annotations

import time
from typing import Any

from ..api import anthropic as anthropic_api
from ..api import provider_json
from ..api.usage import Usage
from .chat_to_messages_answer import (
    JSON_TOOL,
    anthropic_error_parts,
    openai_error_object,
    wants_json,
)
from .vocabulary import finish_reason, openai_usage, with_cost

_DONE = b"data: [DONE]\n\n"
_AS_CONTENT = -1                  # the tool block whose input is the answer's content (response_format)


class AnthropicStreamAsChat:
    """One Messages stream read as Chat Completions chunks (see the module's table)."""
    __slots__ = (
        "_calls",
        "_done",
        "cost_usd",
        "_envelope",
        "_head",
        "_include_usage",
        "_json_tool",
        "_model",
        "_next_tool",
        "_stop_reason",
        "_tail",
        "_tool_heads",
        "_tools",
        "_usage",
    )

    def __init__(self, request: dict) -> None:
        options = request.get("stream_options")
        self._include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        self._json_tool = JSON_TOOL if wants_json(request) else None
        self._model = request.get("model")
        self._envelope = b""      # {"id":…,"object":…,"created":…,"model":…,"system_fingerprint":null,
        self._head = b""          # data: <envelope>"choices":[{"index":0,"delta":
        self._tail = b',"finish_reason":null}]' + (b',"usage":null}\n\n' if self._include_usage else b"}\n\n")
        self._tools: dict[int, int] = {}          # Anthropic block index -> tool call index (or _AS_CONTENT)
        self._tool_heads: dict[int, bytes] = {}   # tool call index -> its arguments delta, up to the value
        self._next_tool = 0
        self._calls = 0                           # tool calls given to the caller (not the JSON answer)
        self._usage: Usage | None = None
        self._stop_reason: str | None = None
        self._done = False
        self.cost_usd: float | None = None        # set by the reader as the usage comes (StreamTranslation)

    def event(self, data: dict | None, name: bytes, raw: bytes) -> bytes:
        if self._done or data is None:
            return b""
        kind = data.get("type")
        if kind == "content_block_delta":
            return self._delta(data)
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "message_start":
            return self._start(data)
        if kind == "message_delta":
            self._usage = anthropic_api.usage_from_event("messages", data, self._usage)
            delta = data.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason"):
                self._stop_reason = delta["stop_reason"]
            return b""
        if kind == "message_stop":
            return self._finish()
        if kind == "error":
            return self._error(*anthropic_error_parts(500, data))
        return b""                                # ping, content_block_stop, events yet unknown

    def end(self) -> bytes:
        if self._done:
            return b""
        if self._stop_reason is not None:         # only message_stop is missing: the answer is whole
            return self._finish()
        return self._error("api_error", "The provider's stream ended before the answer was complete.")

    # --- events ------------------------------------------------------------------------

    def _start(self, data: dict) -> bytes:
        message = data.get("message") if isinstance(data.get("message"), dict) else {}
        self._usage = anthropic_api.usage_from(message.get("usage"))
        self._fix_envelope(message.get("id"), message.get("model"))
        return self._head + b'{"role":"assistant","content":"","refusal":null}' + self._tail

    def _block_start(self, data: dict) -> bytes:
        block = data.get("content_block")
        if not isinstance(block, dict):
            return b""
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            return self._chunk(b'{"content":' + provider_json.dumps(text) + b"}") if text else b""
        if kind == "thinking":
            text = block.get("thinking")
            return self._chunk(b'{"reasoning_content":' + provider_json.dumps(text) + b"}") if text else b""
        if kind != "tool_use":
            return b""                            # redacted_thinking: nothing the caller can read
        tool_input = block.get("input")
        arguments = provider_json.dumps(tool_input).decode() if tool_input else ""
        if block.get("name") == self._json_tool and self._json_tool is not None:
            self._tools[data.get("index", -1)] = _AS_CONTENT
            return self._chunk(b'{"content":' + provider_json.dumps(arguments) + b"}") if arguments else b""
        index = self._next_tool
        self._next_tool += 1
        self._calls += 1
        self._tools[data.get("index", -1)] = index
        self._tool_heads[index] = b'{"tool_calls":[{"index":%d,"function":{"arguments":' % index
        call = {"index": index, "id": block.get("id"), "type": "function",
                "function": {"name": block.get("name"), "arguments": arguments}}
        return self._chunk(b'{"tool_calls":[' + provider_json.dumps(call) + b"]}")

    def _delta(self, data: dict) -> bytes:
        delta = data.get("delta")
        if not isinstance(delta, dict):
            return b""
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            return self._chunk(b'{"content":' + provider_json.dumps(text) + b"}") if text else b""
        if kind == "input_json_delta":
            fragment = delta.get("partial_json")
            if not fragment:
                return b""
            tool = self._tools.get(data.get("index", -1))
            if tool == _AS_CONTENT:
                return self._chunk(b'{"content":' + provider_json.dumps(fragment) + b"}")
            if tool is None:
                return b""                        # a server tool's input: never sent, nothing to show
            return self._chunk(self._tool_heads[tool] + provider_json.dumps(fragment) + b"}}]}")
        if kind == "thinking_delta":
            text = delta.get("thinking")
            return self._chunk(b'{"reasoning_content":' + provider_json.dumps(text) + b"}") if text else b""
        return b""                                # signature_delta, citations_delta

    def _finish(self) -> bytes:
        self._done = True
        if not self._head:
            self._fix_envelope(None, None)
        finish = finish_reason(self._stop_reason)
        if finish == "tool_calls" and not self._calls:
            finish = "stop"                       # the only call was the JSON answer
        out = self._head + b'{},"finish_reason":"' + finish.encode() + b'"}]' + \
            (b',"usage":null}\n\n' if self._include_usage else b"}\n\n")
        if self._include_usage:
            usage = provider_json.dumps(with_cost(openai_usage(self._usage or Usage()), self.cost_usd))
            out += b"data: " + self._envelope + b'"choices":[],"usage":' + usage + b"}\n\n"
        return out + _DONE

    def _error(self, kind: str, message: str) -> bytes:
        self._done = True
        return b"data: " + provider_json.dumps({"error": openai_error_object(kind, message)}) + b"\n\n"

    # --- writing -----------------------------------------------------------------------

    def _fix_envelope(self, message_id: Any, model: Any) -> None:
        self._envelope = b'{"id":' + provider_json.dumps(message_id or "chatcmpl-gateway") + \
            b',"object":"chat.completion.chunk","created":' + str(int(time.time())).encode() + \
            b',"model":' + provider_json.dumps(model or self._model) + b',"system_fingerprint":null,'
        self._head = b"data: " + self._envelope + b'"choices":[{"index":0,"delta":'

    def _chunk(self, delta: bytes) -> bytes:
        if not self._head:                        # content before message_start: still a chunk
            self._fix_envelope(None, None)
        return self._head + delta + self._tail
