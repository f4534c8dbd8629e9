"""Gemini streams (`:streamGenerateContent?alt=sse`): a provider's chunks read as Events,
and Events written as the chunks a Gemini caller reads.

Each chunk is a whole answer object holding only the new parts: text pieces, thought
pieces, whole function calls; `usageMetadata` so far on every chunk, `finishReason` on the
last. There is no terminal event: the chunk with finishReason ends the answer.

Read from a provider (Decoder):
  the first chunk          -> start (responseId, modelVersion)
  text parts               -> a text block (one, kept open while text follows), text deltas
  thought parts            -> a thinking block, thinking deltas (thoughtSignature: a signature delta)
  functionCall parts       -> a tool_use block each (a made-up id; thoughtSignature in its header),
                              its args as one json delta, block_stop
  usageMetadata            -> usage
  finishReason             -> block_stop of the open block, stop, end (STOP with calls: TOOL_USE;
                              MALFORMED_FUNCTION_CALL noted, as in an answer)
  {"error": ...}           -> error
  end() with no finishReason -> error (a cut stream)

Written for a caller (Encoder), each chunk `data: <json>\\r\\n\\r\\n` as Google writes them:
  text, thinking deltas    -> a chunk with that part (thoughts only when the caller asked to see them)
  a tool_use block         -> one chunk with its functionCall, when the block stops (args whole)
  end                      -> the last chunk: finishReason and usageMetadata (cost_usd kept)
  error                    -> `data: {"error": {code, message, status}}`, and nothing after
"""

from __future__ import annotations

from typing import Any

import orjson

from ...api import provider_json
from ...api.usage import Usage
from ..base import StreamDecoder, StreamEncoder
from ..conversation import END, TOOL_USE, Conversation, Event, Notes, Problem, note
from .gemini_answer import (
    FINISH_REASONS,
    STOPS,
    decode_error,
    encode_error,
    new_call_id,
    shows_thoughts,
    usage_from,
    usage_metadata,
)

GEMINI = "gemini"
CUT = "The provider's stream ended before the answer was complete."
_END = b"\r\n\r\n"


class Decoder(StreamDecoder):
    """One provider's Gemini stream read as Events (see the module's table)."""
    __slots__ = ("_calls", "_done", "_next", "_notes", "_open", "_open_kind", "_started", "_stop")

    def __init__(self, conversation: Conversation, notes: Notes | None) -> None:
        self._notes = notes
        self._started = False
        self._done = False
        self._open: int | None = None           # the open text or thinking block's index
        self._open_kind = ""
        self._next = 0
        self._calls = 0
        self._stop: str | None = None

    def read(self, data: dict | None, name: bytes, raw: bytes) -> list[Event]:
        if self._done or data is None:
            return []
        if "error" in data:
            self._done = True
            return [Event("error", problem=decode_error(0, data))]
        events: list[Event] = []
        if not self._started:
            self._started = True
            ident, model = data.get("responseId"), data.get("modelVersion")
            events.append(Event("start", id=ident if isinstance(ident, str) else None,
                                model=model if isinstance(model, str) else None))
        candidates = data.get("candidates")
        candidate = candidates[0] if isinstance(candidates, list) and candidates and \
            isinstance(candidates[0], dict) else {}
        content = candidate.get("content")
        for part in (content.get("parts") or ()) if isinstance(content, dict) else ():
            if isinstance(part, dict):
                self._part(part, events)
        usage = usage_from(data.get("usageMetadata"))
        if usage is not None:
            events.append(Event("usage", usage=usage))
        reason = candidate.get("finishReason")
        if isinstance(reason, str) and reason:
            self._close(events)
            stop = STOPS.get(reason, END)
            if reason == "MALFORMED_FUNCTION_CALL" and self._notes is not None:
                note(self._notes.dropped, "finishReason=MALFORMED_FUNCTION_CALL")      # the call the model botched
            self._stop = TOOL_USE if stop == END and self._calls else stop
            self._done = True
            events.append(Event("stop", stop=self._stop))
            events.append(Event("end"))
        return events

    def end(self) -> list[Event]:
        if self._done:
            return []
        self._done = True
        return [Event("error", problem=Problem("api_error", CUT))]

    def _part(self, part: dict, events: list[Event]) -> None:
        signature = part.get("thoughtSignature")
        call = part.get("functionCall")
        if isinstance(call, dict):
            self._close(events)
            index = self._new_block()
            header: dict[str, Any] = {"type": "tool_use", "id": call.get("id") or new_call_id(),
                                      "name": str(call.get("name", ""))}
            if isinstance(signature, str) and signature:
                header["signature"], header["origin"] = signature, GEMINI
            self._calls += 1
            events.append(Event("block", index, block=header))
            events.append(Event("delta", index, delta="json", text=provider_json.dumps(call.get("args") or {}).decode()))
            events.append(Event("block_stop", index))
            return
        text = part.get("text")
        if not isinstance(text, str):
            return
        kind = "thinking" if part.get("thought") else "text"
        if self._open is None or self._open_kind != kind:
            self._close(events)
            self._open, self._open_kind = self._new_block(), kind
            header = {"type": "thinking", "thinking": "", "signature": "", "origin": GEMINI} if kind == "thinking" \
                else {"type": "text"}
            events.append(Event("block", self._open, block=header))
        if text:
            events.append(Event("delta", self._open, delta=kind, text=text))
        if isinstance(signature, str) and signature and kind == "thinking":
            events.append(Event("delta", self._open, delta="signature", text=signature))

    def _new_block(self) -> int:
        index = self._next
        self._next += 1
        return index

    def _close(self, events: list[Event]) -> None:
        if self._open is not None:
            events.append(Event("block_stop", self._open))
            self._open = None


class Encoder(StreamEncoder):
    """Events written as a Gemini caller's stream (see the module's table)."""
    __slots__ = ("_calls", "_closed", "_show_thoughts", "_stop", "_tail", "_usage", "cost_usd", "_id", "_model")

    def __init__(self, conversation: Conversation, notes: Notes | None) -> None:
        self._show_thoughts = shows_thoughts(conversation)
        self._model = conversation.model or ""
        self._id = ""
        self._tail = b""                          # what closes every chunk: its model and id
        self._calls: dict[int, list] = {}         # a tool_use block's index -> [header, json pieces]
        self._usage: Usage | None = None
        self._stop: str | None = None
        self._closed = False
        self.cost_usd: float | None = None

    def write(self, event: Event) -> bytes:
        if self._closed:
            return b""
        kind = event.kind
        if kind == "delta":
            if event.delta == "text":
                return self._chunk(b'{"text":' + provider_json.dumps(event.text) + b"}")
            if event.delta == "json" and event.index in self._calls:
                self._calls[event.index][1].append(event.text)
            elif event.delta == "thinking" and self._show_thoughts:
                return self._chunk(b'{"text":' + provider_json.dumps(event.text) + b',"thought":true}')
            return b""
        if kind == "block":
            if event.block is not None and event.block.get("type") == "tool_use":
                self._calls[event.index] = [event.block, []]
            return b""
        if kind == "block_stop":
            return self._function_call(self._calls.pop(event.index, None))
        if kind == "usage":
            self._usage = event.usage
        elif kind == "stop":
            self._stop = event.stop
        elif kind == "start":
            self._start(event)
        elif kind == "end":
            return self._finish()
        elif kind == "error":
            self._closed = True
            _, body = encode_error(0, event.problem or Problem("api_error", CUT))    # the status of its kind
            return b"data: " + body + _END
        return b""

    def _start(self, event: Event) -> None:
        self._id = event.id or self._id
        self._model = event.model or self._model
        self._tail = b'"modelVersion":' + provider_json.dumps(self._model) + b',"responseId":' + \
            provider_json.dumps(self._id or "gateway") + b"}"

    def _chunk(self, part: bytes, finish: bytes = b"") -> bytes:
        if not self._tail:
            self._start(Event("start"))
        return b'data: {"candidates":[{"content":{"role":"model","parts":[' + part + b"]}" + finish + \
            b',"index":0}],' + self._tail + _END

    def _function_call(self, call: list | None) -> bytes:
        if call is None:
            return b""
        header, pieces = call
        try:
            args = orjson.loads("".join(pieces) or "{}")
        except orjson.JSONDecodeError:
            args = {}
        part: dict[str, Any] = {"functionCall": {"name": header.get("name", ""),
                                                 "args": args if isinstance(args, dict) else {}}}
        if header.get("origin") == GEMINI and header.get("signature"):
            part["thoughtSignature"] = header["signature"]
        return self._chunk(provider_json.dumps(part))

    def _finish(self) -> bytes:
        self._closed = True
        usage = usage_metadata(self._usage)
        if self.cost_usd is not None:
            usage["cost_usd"] = self.cost_usd       # the call's cost, as the gateway adds it everywhere
        finish = b',"finishReason":"' + FINISH_REASONS.get(self._stop or END, "STOP").encode() + b'"'
        if not self._tail:
            self._start(Event("start"))
        return b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":""}]}' + finish + \
            b',"index":0}],"usageMetadata":' + provider_json.dumps(usage) + b"," + self._tail + _END
