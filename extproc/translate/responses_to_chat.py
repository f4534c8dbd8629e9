"""A Responses-only provider's answer read back as Chat Completions (chat_to_responses.py):
the response object as a chat completion, its stream of Responses events as chat
chunks, its errors (OpenAI's shape on both sides) as they came.

The answer: `message` items' output_text as the content, refusals as the refusal,
`function_call` items as tool calls (call_id as the id), `reasoning` items' summaries as
`reasoning_content` (as OpenAI-compatible reasoning models write it); `status: incomplete`
for max_output_tokens as finish_reason `length`, for content_filter as `content_filter`;
usage with its cached and reasoning tokens.
"""

from __future__ import annotations

import time
from typing import Any

from ..api import provider_json
from ..api.sse import SSEParser
from .base import Notes, StreamTranslation, openai_event
from .chat_to_messages_answer import openai_error_object
from .vocabulary import with_cost

_DONE = b"data: [DONE]\n\n"
_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


def chat_usage(usage: Any) -> dict[str, Any] | None:
    if not isinstance(usage, dict):
        return None
    prompt, completion = _count(usage.get("input_tokens")), _count(usage.get("output_tokens"))
    cached = _count((usage.get("input_tokens_details") or {}).get("cached_tokens"))
    reasoning = _count((usage.get("output_tokens_details") or {}).get("reasoning_tokens"))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning}}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _finish(response: dict, calls: bool) -> str:
    if response.get("status") == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        return _INCOMPLETE.get(reason, "length")
    return "tool_calls" if calls else "stop"


def chat_completion_from(body: dict, request: dict, notes: Notes | None = None) -> dict:
    """A Responses object as the chat completion the chat request asked for."""
    texts: list[str] = []
    refusals: list[str] = []
    reasoning: list[str] = []
    calls: list[dict] = []
    for item in body.get("output") or ():
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or ():
                if isinstance(part, dict) and part.get("type") == "output_text":
                    texts.append(str(part.get("text", "")))
                elif isinstance(part, dict) and part.get("type") == "refusal":
                    refusals.append(str(part.get("refusal", "")))
        elif kind == "function_call":
            calls.append({"id": item.get("call_id"), "type": "function",
                          "function": {"name": item.get("name"), "arguments": item.get("arguments", "")}})
        elif kind == "reasoning":
            reasoning.extend(str(s.get("text", "")) for s in item.get("summary") or () if isinstance(s, dict))
        elif notes is not None:
            notes.dropped.append(f"output[].{kind}")     # a built-in tool's call: nothing chat can hold
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None,
                               "refusal": "".join(refusals) or None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    out = {"id": body.get("id") or "chatcmpl-gateway", "object": "chat.completion",
           "created": body.get("created_at") or int(time.time()), "model": body.get("model") or request.get("model"),
           "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(body, bool(calls))}]}
    usage = chat_usage(body.get("usage"))
    if usage is not None:
        out["usage"] = usage
    return out


def openai_error_passed(status: int, body: Any) -> tuple[int, bytes]:
    """OpenAI's error shape on both sides: an error body passes as it came; anything else
    becomes one."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return status, provider_json.dumps(body)
    kind = "invalid_request_error" if status < 500 else "api_error"
    return status, provider_json.dumps({"error": openai_error_object(kind, f"The provider answered HTTP {status}.")})


class ResponsesStreamAsChat:
    """Responses events as chat chunks, one event at a time."""

    def __init__(self, request: dict, notes: Notes | None = None) -> None:
        options = request.get("stream_options")
        self._include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        self._model = request.get("model")
        self._notes = notes
        self._id = "chatcmpl-gateway"
        self._created = int(time.time())
        self._started = False
        self._done = False
        self._calls: dict[Any, int] = {}       # output_index of a function_call item -> its tool call index
        self.cost_usd: float | None = None     # set by the reader as the usage comes (StreamTranslation)

    def event(self, data: dict | None, name: bytes, raw: bytes) -> bytes:
        if self._done or data is None:
            return b""
        kind = data.get("type")
        if kind == "response.created":
            response = data.get("response") if isinstance(data.get("response"), dict) else {}
            self._id = response.get("id") or self._id
            self._model = response.get("model") or self._model
            return self._start()
        out = b"" if self._started else self._start()
        if kind == "response.output_text.delta":
            return out + self._chunk({"content": data.get("delta", "")})
        if kind == "response.refusal.delta":
            return out + self._chunk({"refusal": data.get("delta", "")})
        if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            return out + self._chunk({"reasoning_content": data.get("delta", "")})
        if kind == "response.output_item.added":
            item = data.get("item") if isinstance(data.get("item"), dict) else {}
            if item.get("type") != "function_call":
                return out
            index = self._calls[data.get("output_index")] = len(self._calls)
            return out + self._chunk({"tool_calls": [{"index": index, "id": item.get("call_id"), "type": "function",
                                                      "function": {"name": item.get("name"), "arguments": ""}}]})
        if kind == "response.function_call_arguments.delta":
            index = self._calls.get(data.get("output_index"))
            if index is None:
                return out
            return out + self._chunk({"tool_calls": [{"index": index, "function": {"arguments": data.get("delta", "")}}]})
        if kind in ("response.completed", "response.incomplete"):
            response = data.get("response") if isinstance(data.get("response"), dict) else {}
            return out + self._finish(_finish(response, bool(self._calls)), chat_usage(response.get("usage")))
        if kind in ("response.failed", "error"):
            error = (data.get("response") or {}).get("error") if kind == "response.failed" else data.get("error", data)
            message = error.get("message") if isinstance(error, dict) else None
            return out + self._error(str(message or "The provider's answer failed."))
        return out

    def end(self) -> bytes:
        if self._done:
            return b""
        return self._error("The provider's stream ended before the answer was complete.")

    def _start(self) -> bytes:
        self._started = True
        return self._chunk({"role": "assistant", "content": ""})

    def _chunk(self, delta: dict, finish: str | None = None) -> bytes:
        chunk: dict[str, Any] = {"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                                 "model": self._model, "choices": [{"index": 0, "delta": delta,
                                                                    "finish_reason": finish}]}
        if self._include_usage:
            chunk["usage"] = None
        return openai_event(chunk)

    def _finish(self, finish: str, usage: dict | None) -> bytes:
        self._done = True
        out = self._chunk({}, finish)
        if self._include_usage:
            out += openai_event({"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                                 "model": self._model, "choices": [],
                                 "usage": with_cost(usage or chat_usage({}), self.cost_usd)})
        return out + _DONE

    def _error(self, message: str) -> bytes:
        self._done = True
        return openai_event({"error": openai_error_object("api_error", message)})


class Chained:
    """Two stream translations one after the other: what `first` writes, `second` reads."""

    def __init__(self, first: StreamTranslation, second: StreamTranslation) -> None:
        self._first = first
        self._second = second
        self._parser = SSEParser()

    @property
    def cost_usd(self) -> float | None:
        return self._second.cost_usd

    @cost_usd.setter
    def cost_usd(self, value: float | None) -> None:
        self._first.cost_usd = value
        self._second.cost_usd = value

    def event(self, data: dict | None, name: bytes, raw: bytes) -> bytes:
        return self._through(self._first.event(data, name, raw))

    def end(self) -> bytes:
        return self._through(self._first.end(), final=True) + self._second.end()

    def _through(self, written: bytes, final: bool = False) -> bytes:
        out = []
        for event in self._parser.feed(written, final=final):
            parsed = provider_json.loads(event.data) if event.data and not event.is_done else None
            out.append(self._second.event(parsed if isinstance(parsed, dict) else None, event.name, event.raw))
        return b"".join(out)
