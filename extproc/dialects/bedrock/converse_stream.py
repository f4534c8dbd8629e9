"""Bedrock ConverseStream: a provider's events read as Events, and Events written as the
event stream a Bedrock caller reads.

The stream is AWS's binary event stream; the gateway's framing reads each message and hands
`Decoder.read` its payload's JSON (`data`) and its `:event-type` (`name`), or for an exception
message its `:exception-type` and {"message": ...}. Every payload carries a random padding
field `p`, never read.

Read from a provider (Decoder), event by event (C carried, H dropped and named in Notes.dropped):
  messageStart               C  start (Bedrock names no id and no model)
  contentBlockStart          C  start.toolUse: a tool_use block (toolUseId, the caller's name back
                                when it was shortened); other starts H  content[].<name>
  contentBlockDelta          C  delta.text: text deltas (the block opens at its first delta);
                                delta.toolUse.input: json deltas; delta.reasoningContent: text as
                                thinking deltas, signature as a signature delta (a thinking block is
                                taken as Claude's, origin "anthropic": its signature comes at its
                                end and Claude is the model on Bedrock that signs), redactedContent as
                                a redacted thinking block; delta.citation H
  contentBlockStop           C  block_stop
  messageStop                C  block_stop of blocks still open, stop (converse_answer.STOPS; Claude's
                                stop_sequence from additionalModelResponseFields)
  metadata                   C  usage (converse_answer.usage_from), then end
  an exception (throttlingException, validationException, modelStreamErrorException, ...)
                             C  error, its kind from its name (converse_answer.EXCEPTION_KINDS)
  the stream's close (end()) end when only metadata is missing (the answer is whole, its usage
                             unknown), else an error (a cut stream)

Written for a Bedrock caller (Encoder), each Event as event-stream messages as Bedrock writes
them: start -> messageStart; a tool_use block -> contentBlockStart; deltas -> contentBlockDelta
(text, toolUse.input, reasoningContent text, signature or redactedContent); block_stop ->
contentBlockStop; end -> messageStop (stopReason) and metadata (usage with the call's cost,
metrics); error -> an exception message of the kind's exception. Blocks keep the order
they began in, numbered from 0 as Bedrock numbers them.
"""

from __future__ import annotations

from typing import Any

from ...api import provider_json
from ...api.eventstream import encode_message
from ...api.usage import Usage
from ..base import StreamDecoder, StreamEncoder
from ..conversation import END, Conversation, Event, Notes, Problem, note
from .converse_answer import (
    STOP_REASONS,
    converse_usage,
    exception_problem,
    stop_of,
    stop_sequence_of,
    usage_from,
)
from ..vocabulary import ANTHROPIC, restored_names, with_cost

CUT = "The provider's stream ended before the answer was complete."
_THINKING = {"type": "thinking", "thinking": "", "signature": "", "origin": ANTHROPIC}
# The model's error kind -> the exception Bedrock ends a stream with for it.
EXCEPTIONS = {"rate_limit_error": "throttlingException", "invalid_request_error": "validationException",
              "request_too_large": "validationException", "overloaded_error": "serviceUnavailableException",
              "timeout_error": "modelTimeoutException", "api_error": "internalServerException"}


def exception_frame(kind: str, message: str) -> bytes:
    """An exception message (`:message-type: exception`) as Bedrock ends a failing stream."""
    return encode_message({":exception-type": EXCEPTIONS.get(kind, "modelStreamErrorException"),
                           ":content-type": "application/json", ":message-type": "exception"},
                          provider_json.dumps({"message": message}))


def event_frame(event_type: str, payload: dict[str, Any]) -> bytes:
    return encode_message({":event-type": event_type, ":content-type": "application/json",
                           ":message-type": "event"}, provider_json.dumps(payload))


class Decoder(StreamDecoder):
    """One provider's ConverseStream read as Events (see the module's table)."""
    __slots__ = ("_done", "_names", "_notes", "_open", "_started", "_stopped")

    def __init__(self, conversation: Conversation, notes: Notes | None) -> None:
        self._notes = notes
        self._names = restored_names(conversation)
        self._open: dict[int, str] = {}         # an open block's index -> its type
        self._started = False
        self._stopped = False                   # messageStop read: the answer is whole
        self._done = False

    def read(self, data: dict | None, name: bytes, raw: bytes) -> list[Event]:
        if self._done:
            return []
        if name.lower().endswith(b"exception"):
            self._done = True
            return [Event("error", problem=exception_problem(name, data))]
        if data is None:
            return []
        events: list[Event] = []
        if not self._started:
            self._started = True
            events.append(Event("start"))
        if name == b"contentBlockDelta":
            self._delta(data, events)
        elif name == b"contentBlockStart":
            self._block_start(data, events)
        elif name == b"contentBlockStop":
            index = data.get("contentBlockIndex")
            if isinstance(index, int) and self._open.pop(index, None) is not None:
                events.append(Event("block_stop", index))
        elif name == b"messageStop":
            events.extend(Event("block_stop", index) for index in self._open)
            self._open.clear()
            self._stopped = True
            events.append(Event("stop", stop=stop_of(data.get("stopReason"), self._notes),
                                stop_sequence=stop_sequence_of(data.get("additionalModelResponseFields"))))
        elif name == b"metadata":
            usage = usage_from(data.get("usage"))
            if usage is not None:
                events.append(Event("usage", usage=usage))
            self._done = True
            events.append(Event("end"))
        return events

    def end(self) -> list[Event]:
        if self._done:
            return []
        self._done = True
        return [Event("end")] if self._stopped else [Event("error", problem=Problem("api_error", CUT))]

    def _open_block(self, index: int, header: dict, events: list[Event]) -> None:
        if index not in self._open:
            self._open[index] = header["type"]
            events.append(Event("block", index, block=header))

    def _block_start(self, data: dict, events: list[Event]) -> None:
        index, start = data.get("contentBlockIndex"), data.get("start")
        if not isinstance(index, int) or not isinstance(start, dict):
            return
        call = start.get("toolUse")
        if isinstance(call, dict):
            name = str(call.get("name", ""))
            self._open_block(index, {"type": "tool_use", "id": str(call.get("toolUseId", "")),
                                     "name": self._names.get(name, name)}, events)
        elif self._notes is not None:
            for kind in start:
                note(self._notes.dropped, f"content[].{str(kind)[:40]}")

    def _delta(self, data: dict, events: list[Event]) -> None:
        index, delta = data.get("contentBlockIndex"), data.get("delta")
        if not isinstance(index, int) or not isinstance(delta, dict):
            return
        if isinstance(delta.get("text"), str):
            self._open_block(index, {"type": "text"}, events)
            if delta["text"]:
                events.append(Event("delta", index, delta="text", text=delta["text"]))
        elif isinstance(delta.get("toolUse"), dict):
            self._open_block(index, {"type": "tool_use", "id": "", "name": ""}, events)
            piece = delta["toolUse"].get("input")
            if isinstance(piece, str) and piece:
                events.append(Event("delta", index, delta="json", text=piece))
        elif isinstance(delta.get("reasoningContent"), dict):
            reasoning = delta["reasoningContent"]
            if isinstance(reasoning.get("redactedContent"), str):
                self._open_block(index, {"type": "redacted_thinking", "data": reasoning["redactedContent"],
                                         "origin": ANTHROPIC}, events)
                return
            self._open_block(index, dict(_THINKING), events)
            for field, kind in (("text", "thinking"), ("signature", "signature")):
                if isinstance(reasoning.get(field), str) and reasoning[field]:
                    events.append(Event("delta", index, delta=kind, text=reasoning[field]))
        elif self._notes is not None:
            for kind in delta:
                note(self._notes.dropped, f"contentBlockDelta.delta.{str(kind)[:40]}")


class Encoder(StreamEncoder):
    """Events written as a Bedrock caller's event stream (see the module's table)."""
    __slots__ = ("_done", "_indices", "_kinds", "_started", "_stop", "_stop_sequence", "_usage", "cost_usd")

    def __init__(self, conversation: Conversation, notes: Notes | None) -> None:
        self._indices: dict[int, int] = {}        # an Event's block index -> the caller's contentBlockIndex
        self._kinds: dict[int, str] = {}          # the caller's index -> the block's type, while open
        self._started = False
        self._done = False
        self._stop: str | None = None
        self._stop_sequence: str | None = None
        self._usage: Usage | None = None
        self.cost_usd: float | None = None

    def write(self, event: Event) -> bytes:
        if self._done:
            return b""
        kind = event.kind
        out = b"" if self._started or kind in ("error", "usage", "stop") else self._start()
        if kind == "delta":
            return out + self._delta(event)
        if kind == "block":
            return out + self._block(event.index, event.block or {})
        if kind == "block_stop":
            index = self._indices.get(event.index)
            if index is None or self._kinds.pop(index, None) is None:
                return out
            return out + event_frame("contentBlockStop", {"contentBlockIndex": index})
        if kind == "usage":
            self._usage = event.usage
        elif kind == "stop":
            self._stop, self._stop_sequence = event.stop, event.stop_sequence
        elif kind == "end":
            return out + self._end()
        elif kind == "error":
            self._done = True
            problem = event.problem or Problem("api_error", CUT)
            return exception_frame(problem.kind, problem.message)
        return out

    def _start(self) -> bytes:
        self._started = True
        return event_frame("messageStart", {"role": "assistant"})

    def _block(self, index: int, header: dict) -> bytes:
        kind = header.get("type")
        if kind not in ("text", "tool_use", "thinking", "redacted_thinking"):
            return b""
        number = self._indices[index] = len(self._indices)
        self._kinds[number] = kind
        if kind == "tool_use":
            return event_frame("contentBlockStart", {"contentBlockIndex": number, "start": {"toolUse": {
                "toolUseId": header.get("id") or f"tooluse_{number}", "name": header.get("name") or ""}}})
        if kind == "redacted_thinking":
            return self._delta_frame(number, {"reasoningContent": {"redactedContent": header.get("data") or ""}})
        return b""

    def _delta(self, event: Event) -> bytes:
        number = self._indices.get(event.index)
        if number is None or number not in self._kinds or not event.text:
            return b""
        if event.delta == "text":
            delta: dict[str, Any] = {"text": event.text}
        elif event.delta == "json":
            delta = {"toolUse": {"input": event.text}}
        elif event.delta in ("thinking", "signature"):
            delta = {"reasoningContent": {"text" if event.delta == "thinking" else "signature": event.text}}
        else:
            return b""
        return self._delta_frame(number, delta)

    def _delta_frame(self, number: int, delta: dict[str, Any]) -> bytes:
        return event_frame("contentBlockDelta", {"contentBlockIndex": number, "delta": delta})

    def _end(self) -> bytes:
        self._done = True
        out = b"".join(event_frame("contentBlockStop", {"contentBlockIndex": number}) for number in self._kinds)
        self._kinds.clear()
        stop: dict[str, Any] = {"stopReason": STOP_REASONS.get(self._stop or END, "end_turn")}
        if self._stop_sequence:
            stop["additionalModelResponseFields"] = {"stop_sequence": self._stop_sequence}
        usage: dict[str, Any] = with_cost(dict(converse_usage(self._usage)), self.cost_usd)
        return out + event_frame("messageStop", stop) + \
            event_frame("metadata", {"usage": usage, "metrics": {"latencyMs": 0}})
