"""An OpenAI Chat Completions stream as Anthropic Messages events.

  first chunk              -> message_start (content [], usage 0: the prompt's count comes last)
  delta.reasoning_content  -> a thinking block (signature ""), thinking_delta; none with display "omitted"
  delta.content, .refusal  -> a text block, text_delta (a refusal ends as stop_reason refusal)
  delta.tool_calls[i]      -> a tool_use block per call (input {}), input_json_delta per fragment
  finish_reason            -> kept, mapped by vocabulary.STOP_REASONS
  the usage chunk          -> content_block_stop of the open block, message_delta (stop_reason, usage as
                              Anthropic counts it), message_stop
  [DONE] with no usage     -> the same, usage 0 (noted)
  {"error": ...}           -> `event: error`, and the stream ends
  end() on a cut stream    -> message_delta/message_stop when the finish_reason came, else `event: error`

Anthropic's blocks are contiguous: once a block stops it takes no more deltas. So a
block stays open until something else arrives; a tool call stays open until its
arguments are a whole JSON object. What arrives while one is still incomplete (a server
that interleaves parallel calls' fragments) waits, in order, and is written as whole
blocks at the end. Servers that stream calls one after another never wait.
"""

from __future__ import annotations

from typing import Any

from ..api import provider_json
from ..api.usage import Usage
from .base import Notes
from .messages_to_chat_answer import (
    hides_thinking,
    new_tool_id,
    openai_error_message,
    stream_error_type,
)
from .vocabulary import (
    anthropic_usage,
    note,
    restored_tool_names,
    stop_reason,
    usage_from_openai,
    with_cost,
)

Key = str | int                  # "text", "thinking", or a tool call's OpenAI index

_DELTA = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,"delta":{"type":'
_DELTA_TYPES = {"text": b'"text_delta","text":', "thinking": b'"thinking_delta","thinking":'}
_TOOL_DELTA = b'"input_json_delta","partial_json":'
_DELTA_END = b"}}\n\n"
_BLOCKS = {"text": b'{"type":"text","text":""}', "thinking": b'{"type":"thinking","thinking":"","signature":""}'}
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


class _Call:
    """A tool call being read: its fragments are kept until its block is written whole
    or its arguments are known complete."""
    __slots__ = ("fragments", "id", "name", "state")

    def __init__(self, call_id: str, name: Any) -> None:
        self.id = call_id
        self.name = name
        self.fragments: list[str] = []
        self.state = "new"                # new | open | waiting | closed


class ChatStreamAsMessages:
    """One Chat Completions stream read as Messages events (see the module's table)."""
    __slots__ = (
        "_calls",
        "cost_usd",
        "_closed",
        "_hide_thinking",
        "_model",
        "_names",
        "_next_block",
        "_notes",
        "_open",
        "_open_head",
        "_refused",
        "_started",
        "_stop_reason",
        "_usage",
        "_waiting",
    )

    def __init__(self, request: dict, notes: Notes | None = None) -> None:
        self._notes = notes
        self._names = restored_tool_names(request)
        self._hide_thinking = hides_thinking(request)
        self._model = request.get("model")
        self._started = False
        self._closed = False
        self._open: Key | None = None
        self._open_head = b""                 # the open block's delta event, up to its value
        self._next_block = 0
        self._calls: dict[int, _Call] = {}
        self._waiting: list[tuple[Key, list[str]]] = []     # what waits for the open call to complete
        self._stop_reason: str | None = None
        self._usage: Usage | None = None
        self._refused = False
        self.cost_usd: float | None = None    # set by the reader as the usage comes (StreamTranslation)

    def event(self, data: dict | None, name: bytes, raw: bytes) -> bytes:
        if self._closed:
            return b""
        if data is None:
            if b"[DONE]" not in raw:
                return b""
            return self._close() if self._started else self._error("api_error", "The provider's stream was empty.")
        if "error" in data:
            return self._error(stream_error_type(data["error"]), openai_error_message(0, data["error"]))
        out = b"" if self._started else self._start(data)
        choices = data.get("choices")
        if choices and isinstance(choices, list) and isinstance(choices[0], dict):
            choice = choices[0]                # one answer: Messages callers cannot ask for more
            delta = choice.get("delta")
            if delta and isinstance(delta, dict):
                out += self._read(delta)
            finish = choice.get("finish_reason")
            if finish:
                self._stop_reason = "refusal" if self._refused else stop_reason(finish)
        usage = data.get("usage")
        if usage:
            self._usage = usage_from_openai(usage)
            if self._stop_reason is not None:
                out += self._close()
        return out

    def end(self) -> bytes:
        if self._closed:
            return b""
        if self._started and self._stop_reason is not None:     # only the usage chunk is missing
            return self._close()
        return self._error("api_error", "The provider's stream ended before the answer was complete.")

    # --- reading a delta ---------------------------------------------------------------

    def _read(self, delta: dict) -> bytes:
        out = b""
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and isinstance(reasoning, str) and not self._hide_thinking:
            out += self._text("thinking", reasoning)
        content = delta.get("content")
        if content and isinstance(content, str):
            out += self._text("text", content)
        refusal = delta.get("refusal")
        if refusal and isinstance(refusal, str):
            self._refused = True
            out += self._text("text", refusal)
        calls = delta.get("tool_calls")
        if calls:
            for call in calls:
                if isinstance(call, dict):
                    out += self._tool_fragment(call)
        return out

    def _text(self, kind: str, text: str) -> bytes:
        if self._open == kind:
            return self._open_head + provider_json.dumps(text) + _DELTA_END
        if self._must_wait():
            self._wait(kind, text)
            return b""
        return self._switch(kind) + self._open_head + provider_json.dumps(text) + _DELTA_END

    def _tool_fragment(self, fragment: dict) -> bytes:
        index = fragment.get("index", 0)
        function = fragment.get("function") if isinstance(fragment.get("function"), dict) else {}
        arguments = function.get("arguments")
        arguments = arguments if isinstance(arguments, str) else ""
        call = self._calls.get(index)
        if call is None:
            name = function.get("name")
            call = self._calls[index] = _Call(fragment.get("id") or new_tool_id(), self._names.get(name, name))
        if call.state == "open":
            if not arguments:
                return b""
            call.fragments.append(arguments)
            return self._open_head + provider_json.dumps(arguments) + _DELTA_END
        if arguments:
            call.fragments.append(arguments)
        if call.state == "new":
            if self._must_wait():
                call.state = "waiting"
                self._waiting.append((index, call.fragments))
                return b""
            out = self._switch(index)
            return out + self._open_head + provider_json.dumps("".join(call.fragments)) + _DELTA_END \
                if call.fragments else out
        if call.state == "closed" and arguments and self._notes is not None:
            note(self._notes.dropped, "tool_calls[].function.arguments:after_its_block")
        return b""                             # waiting: kept in call.fragments

    def _must_wait(self) -> bool:
        """Whether a new block must wait: others already wait, or the open tool call's
        arguments are not yet a whole JSON object (more of them may still come)."""
        if self._waiting:
            return True
        if self._open is None or isinstance(self._open, str):
            return False
        fragments = self._calls[self._open].fragments
        return not fragments or not isinstance(provider_json.loads("".join(fragments).encode("utf-8", "surrogatepass")),
                                               dict)

    def _wait(self, kind: str, text: str) -> None:
        if self._waiting and self._waiting[-1][0] == kind:
            self._waiting[-1][1].append(text)
        else:
            self._waiting.append((kind, [text]))

    # --- writing blocks ----------------------------------------------------------------

    def _switch(self, key: Key) -> bytes:
        """Events that stop the open block and start `key`'s."""
        out = self._stop_open()
        index = self._next_block
        self._next_block += 1
        if isinstance(key, str):
            block = _BLOCKS[key]
            self._open_head = _DELTA % index + _DELTA_TYPES[key]
        else:
            call = self._calls[key]
            call.state = "open"
            block = provider_json.dumps({"type": "tool_use", "id": call.id, "name": call.name, "input": {}})
            self._open_head = _DELTA % index + _TOOL_DELTA
        self._open = key
        return out + b'event: content_block_start\ndata: {"type":"content_block_start","index":%d,' \
                     b'"content_block":' % index + block + b"}\n\n"

    def _stop_open(self) -> bytes:
        if self._open is None:
            return b""
        if not isinstance(self._open, str):
            self._calls[self._open].state = "closed"
        self._open = None
        return b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n' % \
            (self._next_block - 1)

    def _whole_block(self, key: Key, text: str) -> bytes:
        out = self._switch(key)
        if text:
            out += self._open_head + provider_json.dumps(text) + _DELTA_END
        return out

    # --- the message -------------------------------------------------------------------

    def _start(self, chunk: dict) -> bytes:
        self._started = True
        message = {"id": chunk.get("id") or "msg_" + new_tool_id()[6:], "type": "message", "role": "assistant",
                   "model": chunk.get("model") or self._model, "content": [], "stop_reason": None,
                   "stop_sequence": None, "usage": {"input_tokens": 0, "cache_creation_input_tokens": 0,
                                                    "cache_read_input_tokens": 0, "output_tokens": 0}}
        return b"event: message_start\ndata: " + \
            provider_json.dumps({"type": "message_start", "message": message}) + b"\n\n"

    def _close(self) -> bytes:
        """The open block's stop, the blocks that waited, message_delta and message_stop."""
        self._closed = True
        out = b""
        for key, fragments in self._waiting:
            out += self._whole_block(key, "".join(fragments))
        self._waiting = []
        out += self._stop_open()
        if self._usage is None and self._notes is not None:
            note(self._notes.dropped, "usage:missing")
        delta = {"type": "message_delta", "delta": {"stop_reason": self._stop_reason or "end_turn",
                                                    "stop_sequence": None},
                 "usage": with_cost(anthropic_usage(self._usage or Usage()), self.cost_usd)}
        return out + b"event: message_delta\ndata: " + provider_json.dumps(delta) + b"\n\n" + _MESSAGE_STOP

    def _error(self, kind: str, message: str) -> bytes:
        self._closed = True
        error = {"type": "error", "error": {"type": kind, "message": message}}
        return b"event: error\ndata: " + provider_json.dumps(error) + b"\n\n"
