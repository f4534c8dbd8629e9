"""Chat Completions streams: a provider's chunks read as the model's Events (`Decoder`),
and Events written as the chunks a Chat Completions caller reads, as OpenAI writes them
(`Encoder`).

Read from a provider (Decoder), field by field (C carried, H dropped and named in Notes.dropped):
  the first chunk                  C  start (its id and model)
  delta.reasoning_content (or `reasoning`, compatible servers)  C  a thinking block (signature "",
                                      origin "openai")
  delta.content, delta.refusal     C  a text block (a refusal stops as REFUSAL)
  delta.tool_calls[i]              C  a tool_use block per call index (a shortened name restored, a
                                      missing id made up), its arguments as json deltas; servers that
                                      interleave parallel calls' fragments keep each in its own block
  finish_reason                    C  the open blocks stop, then stop (chat_answer.STOPS)
  the usage chunk                  C  usage (vocabulary.usage_from_openai), then end once the stop came
  [DONE]                           C  end; without a usage chunk H, named `usage:missing`
  {"error": ...}                   C  error (chat_answer.decode_error), and nothing after it
  choices after the first, logprobs   H  (a translated request asks for one answer)
  the stream's close (end())       end when only the usage chunk is missing, else an error

Written for a caller (Encoder):
  start            -> the first chunk: delta {role: assistant, content: "", refusal: null}
  a tool_use block -> a tool_calls delta (index counts the caller's calls; id, type, name, arguments "")
  text, thinking   -> delta.content, delta.reasoning_content; a refusal block's text: delta.refusal
  json             -> delta.tool_calls[{index, function.arguments}]
  signature deltas, block stops, redacted thinking  -> nothing (Chat Completions has no form for them)
  end              -> a chunk with delta {} and finish_reason (chat_answer.finish_reason; a refusal
                      written as delta.refusal ends as `stop`, as OpenAI's do); the usage chunk
                      (choices [], vocabulary.openai_usage with the call's cost) when the caller asked
                      stream_options.include_usage; `data: [DONE]`
  error            -> `data: {"error": {...}}`, and the stream ends (no [DONE]: clients raise)
With include_usage every chunk carries "usage": null, as OpenAI's do.

Each chunk is written from bytes fixed once per stream (its id, model and created time)
around the one JSON value the event adds: the per-event path walks no dict but the
event's own fields.
"""

from __future__ import annotations

import time
from typing import Any

from ...api import provider_json
from ...api.usage import Usage
from ..base import StreamDecoder, StreamEncoder
from .chat_answer import STOPS, decode_error, error_object, finish_reason, new_tool_id
from ..conversation import END, REFUSAL, Conversation, Event, Notes, Problem, note
from ..vocabulary import openai_usage, restored_names, usage_from_openai, with_cost

CUT = "The provider's stream ended before the answer was complete."
EMPTY = "The provider's stream was empty."

_DONE = b"data: [DONE]\n\n"
_FIRST_DELTA = b'{"role":"assistant","content":"","refusal":null}'
# What a delta of each block is written in: the bytes before its JSON string and after it.
_TEXT = (b'{"content":', b"}")
_REFUSAL = (b'{"refusal":', b"}")
_THINKING = (b'{"reasoning_content":', b"}")
_ARGUMENTS = b'{"tool_calls":[{"index":%d,"function":{"arguments":'
_ARGUMENTS_END = b"}}]}"
_UNKNOWN = Problem("api_error", "The provider's stream failed.")


# --- a provider's stream -------------------------------------------------------------

class Decoder(StreamDecoder):
    """One provider's Chat Completions stream read as Events (see the module's table)."""
    __slots__ = ("_calls", "_done", "_names", "_next", "_notes", "_open", "_open_kind", "_refused", "_started",
                 "_stop", "_stopped_blocks", "_usage")

    def __init__(self, conversation: Conversation, notes: Notes | None) -> None:
        self._notes = notes
        self._names = restored_names(conversation)
        self._started = False
        self._done = False
        self._next = 0                          # the next block's index
        self._open = -1                         # the open text or thinking block
        self._open_kind: str | None = None      # its kind: "text", "thinking", or None
        self._calls: dict[Any, int] = {}        # a tool call's OpenAI index -> its block
        self._stopped_blocks = False
        self._refused = False
        self._stop: str | None = None
        self._usage: Usage | None = None

    def read(self, data: dict | None, name: bytes, raw: bytes) -> list[Event]:
        if self._done:
            return []
        if data is None:
            if b"[DONE]" not in raw:
                return []
            if not self._started:
                return self._fail(EMPTY)
            return self._end([])
        if "error" in data:
            self._done = True
            return [Event("error", problem=decode_error(0, data))]
        events: list[Event] = []
        if not self._started:
            self._started = True
            chunk_id, model = data.get("id"), data.get("model")
            events.append(Event("start", id=chunk_id if isinstance(chunk_id, str) else None,
                                model=model if isinstance(model, str) else None))
        choices = data.get("choices")
        if choices and isinstance(choices, list) and isinstance(choices[0], dict):
            choice = choices[0]                 # one answer: a translated request asks for no more
            delta = choice.get("delta")
            if delta and isinstance(delta, dict):
                self._read(delta, events)
            finish = choice.get("finish_reason")
            if finish:
                stop = STOPS.get(finish, END) if isinstance(finish, str) else END
                self._stop = REFUSAL if self._refused else stop
                self._stop_blocks(events)
                events.append(Event("stop", stop=self._stop))
        usage = data.get("usage")
        if usage:
            self._usage = usage_from_openai(usage)
            if self._usage is not None:
                events.append(Event("usage", usage=self._usage))
            if self._stop is not None:
                self._end(events)
        return events

    def end(self) -> list[Event]:
        if self._done:
            return []
        if self._started and self._stop is not None:       # only the usage chunk is missing
            return self._end([])
        return self._fail(CUT)

    def _read(self, delta: dict, events: list[Event]) -> None:
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and isinstance(reasoning, str):
            self._piece("thinking", reasoning, events)
        content = delta.get("content")
        if content and isinstance(content, str):
            self._piece("text", content, events)
        refusal = delta.get("refusal")
        if refusal and isinstance(refusal, str):
            self._refused = True
            self._piece("text", refusal, events)
        calls = delta.get("tool_calls")
        if calls and isinstance(calls, list):
            for call in calls:
                if isinstance(call, dict):
                    self._call(call, events)

    def _piece(self, kind: str, text: str, events: list[Event]) -> None:
        """Text or thinking: more of the open block of its kind, else a new block."""
        if self._open_kind == kind:
            events.append(Event("delta", self._open, delta=kind, text=text))
            return
        if self._open_kind is not None:
            events.append(Event("block_stop", self._open))
        index = self._open = self._next
        self._next += 1
        self._open_kind = kind
        block = {"type": "thinking", "signature": "", "origin": "openai"} if kind == "thinking" else {"type": "text"}
        events.append(Event("block", index, block=block))
        events.append(Event("delta", index, delta=kind, text=text))

    def _call(self, fragment: dict, events: list[Event]) -> None:
        function = fragment.get("function")
        function = function if isinstance(function, dict) else {}
        index = self._calls.get(fragment.get("index", 0))
        if index is None:
            if self._open_kind is not None:     # text after this call is a new block
                events.append(Event("block_stop", self._open))
                self._open_kind = None
            index = self._calls[fragment.get("index", 0)] = self._next
            self._next += 1
            name = function.get("name")
            call_id = fragment.get("id")
            events.append(Event("block", index, block={
                "type": "tool_use", "id": call_id if isinstance(call_id, str) and call_id else new_tool_id(),
                "name": self._names.get(name, name) if self._names else name}))
        arguments = function.get("arguments")
        if arguments and isinstance(arguments, str):
            events.append(Event("delta", index, delta="json", text=arguments))

    def _stop_blocks(self, events: list[Event]) -> None:
        """Every block is complete: the answer stopped (or ended)."""
        if self._stopped_blocks:
            return
        self._stopped_blocks = True
        open_blocks = sorted([*self._calls.values(), *((self._open,) if self._open_kind is not None else ())])
        events.extend(Event("block_stop", index) for index in open_blocks)
        self._open_kind = None

    def _end(self, events: list[Event]) -> list[Event]:
        self._done = True
        self._stop_blocks(events)
        if self._usage is None and self._notes is not None:
            note(self._notes.dropped, "usage:missing")
        events.append(Event("end"))
        return events

    def _fail(self, message: str) -> list[Event]:
        self._done = True
        return [Event("error", problem=Problem("api_error", message))]


# --- the caller's stream -------------------------------------------------------------

class Encoder(StreamEncoder):
    """Events written as a Chat Completions caller's chunks (see the module's table)."""
    __slots__ = ("_calls", "_done", "_envelope", "_head", "_include_usage", "_model", "_pieces", "_refusals",
                 "_stop", "_tail", "_usage", "cost_usd")

    def __init__(self, conversation: Conversation, notes: Notes | None) -> None:
        self._include_usage = conversation.include_usage
        self._model = conversation.model
        self._envelope = b""      # {"id":…,"object":…,"created":…,"model":…,"system_fingerprint":null,
        self._head = b""          # data: <envelope>"choices":[{"index":0,"delta":
        self._tail = b',"finish_reason":null}]' + (b',"usage":null}\n\n' if self._include_usage else b"}\n\n")
        self._pieces: dict[int, tuple[bytes, bytes]] = {}   # a block -> what its deltas are written in
        self._calls = 0           # tool calls given to the caller
        self._refusals = False    # a refusal was written as delta.refusal
        self._stop: str | None = None
        self._usage: Usage | None = None
        self._done = False
        self.cost_usd: float | None = None

    def write(self, event: Event) -> bytes:
        if self._done:
            return b""
        kind = event.kind
        if kind == "delta":
            piece = self._pieces.get(event.index)
            if piece is None or not event.text or event.delta == "signature":
                return b""
            return self._chunk(piece[0] + provider_json.dumps(event.text) + piece[1])
        if kind == "block":
            return self._block(event.index, event.block or {})
        if kind == "usage":
            self._usage = event.usage
            return b""
        if kind == "stop":
            self._stop = event.stop
            return b""
        if kind == "start":
            self._usage = event.usage
            self._fix_envelope(event.id, event.model)
            return self._head + _FIRST_DELTA + self._tail
        if kind == "end":
            return self._finish()
        if kind == "error":
            self._done = True
            return b"data: " + provider_json.dumps({"error": error_object(event.problem or _UNKNOWN)}) + b"\n\n"
        return b""                                # block_stop

    def _block(self, index: int, block: dict) -> bytes:
        kind = block.get("type")
        if kind == "text":
            refusal = bool(block.get("refusal"))
            self._refusals = self._refusals or refusal
            self._pieces[index] = _REFUSAL if refusal else _TEXT
        elif kind == "thinking":
            self._pieces[index] = _THINKING
        elif kind == "tool_use":
            call = self._calls
            self._calls += 1
            self._pieces[index] = (_ARGUMENTS % call, _ARGUMENTS_END)
            header = {"index": call, "id": block.get("id"), "type": "function",
                      "function": {"name": block.get("name"), "arguments": ""}}
            return self._chunk(b'{"tool_calls":[' + provider_json.dumps(header) + b"]}")
        return b""                                # redacted thinking: nothing the caller can read

    def _finish(self) -> bytes:
        self._done = True
        if not self._head:
            self._fix_envelope(None, None)
        stop = self._stop or END
        finish = "stop" if stop == REFUSAL and self._refusals else finish_reason(stop, self._calls > 0)
        out = self._head + b'{},"finish_reason":"' + finish.encode() + b'"}]' + \
            (b',"usage":null}\n\n' if self._include_usage else b"}\n\n")
        if self._include_usage:
            usage = provider_json.dumps(with_cost(openai_usage(self._usage or Usage()), self.cost_usd))
            out += b"data: " + self._envelope + b'"choices":[],"usage":' + usage + b"}\n\n"
        return out + _DONE

    def _fix_envelope(self, answer_id: str | None, model: str | None) -> None:
        self._envelope = b'{"id":' + provider_json.dumps(answer_id or "chatcmpl-gateway") + \
            b',"object":"chat.completion.chunk","created":' + str(int(time.time())).encode() + \
            b',"model":' + provider_json.dumps(model or self._model) + b',"system_fingerprint":null,'
        self._head = b"data: " + self._envelope + b'"choices":[{"index":0,"delta":'

    def _chunk(self, delta: bytes) -> bytes:
        if not self._head:                        # content before the start: still a chunk
            self._fix_envelope(None, None)
        return self._head + delta + self._tail
