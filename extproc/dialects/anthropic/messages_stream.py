"""Anthropic Messages streams: a provider's events read as the model's Events (`Decoder`),
and Events written as the events a Messages caller reads, as Anthropic writes them
(`Encoder`).

Read from a provider (Decoder), event by event (C carried, H dropped and named in Notes.dropped):
  message_start                C  start (id, model, the prompt's usage)
  content_block_start          C  a block at the event's index: text, thinking (origin "anthropic"),
                                  redacted_thinking, tool_use; what a block starts with, as its first
                                  delta; the JSON_TOOL call (messages_request.py: how an answer format
                                  is carried) is a text block whose deltas are its partial_json
  blocks of server tools       H  content[].<type> (never asked for by a translated request)
  text_delta, input_json_delta, thinking_delta, signature_delta   C  text, json, thinking, signature deltas
  citations_delta              H  (no other dialect has them)
  content_block_stop           C  block_stop
  message_delta                C  stop (messages_answer.STOPS; tool_use with no call but the JSON_TOOL's
                                  is END, stop_sequence kept), usage (cumulative, api.anthropic)
  message_stop                 C  end
  error                        C  error (messages_answer.decode_error), and nothing after it
  ping                         -  nothing
  the stream's close (end())   end when only message_stop is missing, else an error

Written for a caller (Encoder):
  start        -> message_start (content [], the prompt's usage when known, else 0: it comes last)
  blocks       -> content_block_start, its deltas, content_block_stop; thinking with signature "" (a
                  signature only when Anthropic made it), none when the caller asked thinking.display
                  "omitted"; redacted thinking only when Anthropic made it; a tool call's input {}
  end          -> content_block_stop of the open block, message_delta (stop_reason, stop_sequence, usage
                  as Anthropic counts it, with the call's cost), message_stop
  error        -> `event: error`, and the stream ends

Anthropic's blocks are contiguous: once a block stops it takes no more deltas. A block
stays open until it stops or another begins; a tool call stays open until its arguments
are a whole JSON object (or its block stops). What begins while one is still incomplete
(a server that interleaves parallel calls' fragments) waits, in order, and is written as
whole blocks once the open one stops or the answer ends. Servers that stream calls one
after another never wait.
"""

from __future__ import annotations

import secrets
from typing import Any

from ...api import anthropic as anthropic_api
from ...api import provider_json
from ...api.usage import Usage
from ..base import StreamDecoder, StreamEncoder
from ..openai.chat_answer import new_tool_id
from ..conversation import END, TOOL_USE, Conversation, Event, Notes, Problem, note
from .messages_answer import STOP_REASONS, decode_error, stop_of
from .messages_request import JSON_TOOL, json_tool_in_use
from .messages_stream_blocks import (
    Block,
    CLOSED,
    DELTA,
    DELTA_END,
    DELTA_TYPES,
    MESSAGE_STOP,
    NO_USAGE,
    OPEN,
    SIGNATURE,
    START,
    STOP,
    TEXT_BLOCK,
    THINKING_BLOCK,
    WAITING,
)
from ..vocabulary import anthropic_usage, with_cost

CUT = "The provider's stream ended before the answer was complete."

# --- a provider's stream -------------------------------------------------------------

_AS_TEXT = "json_answer"        # the JSON_TOOL call's block: its input is the answer's text
_DELTAS = {"text_delta": ("text", "text"), "thinking_delta": ("thinking", "thinking"),
           "signature_delta": ("signature", "signature")}


class Decoder(StreamDecoder):
    """One provider's Messages stream read as Events (see the module's table)."""
    __slots__ = ("_calls", "_done", "_json_tool", "_kinds", "_notes", "_stop", "_usage")

    def __init__(self, conversation: Conversation, notes: Notes | None) -> None:
        self._notes = notes
        self._json_tool = JSON_TOOL if json_tool_in_use(conversation) else None
        self._kinds: dict[Any, str] = {}        # a block's index -> its type (or _AS_TEXT)
        self._calls = 0                         # tool calls but the JSON_TOOL's
        self._usage: Usage | None = None
        self._stop: str | None = None
        self._done = False

    def read(self, data: dict | None, name: bytes, raw: bytes) -> list[Event]:
        if self._done or data is None:
            return []
        kind = data.get("type")
        if kind == "content_block_delta":
            return self._delta(data)
        if kind == "content_block_start":
            return self._block(data)
        if kind == "content_block_stop":
            index = data.get("index")
            return [Event("block_stop", index)] if index in self._kinds else []
        if kind == "message_start":
            message = data.get("message") if isinstance(data.get("message"), dict) else {}
            self._usage = anthropic_api.usage_from(message.get("usage"))
            message_id, model = message.get("id"), message.get("model")
            return [Event("start", id=message_id if isinstance(message_id, str) else None,
                          model=model if isinstance(model, str) else None, usage=self._usage)]
        if kind == "message_delta":
            return self._message_delta(data)
        if kind == "message_stop":
            self._done = True
            return [Event("end")]
        if kind == "error":
            self._done = True
            return [Event("error", problem=decode_error(500, data))]
        return []                                # ping, events yet unknown

    def end(self) -> list[Event]:
        if self._done:
            return []
        self._done = True
        if self._stop is not None:               # only message_stop is missing: the answer is whole
            return [Event("end")]
        return [Event("error", problem=Problem("api_error", CUT))]

    def _delta(self, data: dict) -> list[Event]:
        delta = data.get("delta")
        index = data.get("index")
        block = self._kinds.get(index)
        if block is None or not isinstance(delta, dict):
            return []
        kind = delta.get("type")
        if kind == "input_json_delta":
            text = delta.get("partial_json")
            what = "text" if block is _AS_TEXT else "json"
        else:
            found = _DELTAS.get(kind)
            if found is None:
                return []                        # citations_delta, deltas yet unknown
            what, field = found
            text = delta.get(field)
        if not text or not isinstance(text, str):
            return []
        return [Event("delta", index, delta=what, text=text)]

    def _block(self, data: dict) -> list[Event]:
        block = data.get("content_block")
        index = data.get("index")
        kind = block.get("type") if isinstance(block, dict) else None
        first: tuple[str, Any] | None = None     # what the block starts with
        if kind == "text":
            header: dict = {"type": "text"}
            first = ("text", block.get("text"))
        elif kind == "thinking":
            signature = block.get("signature")
            header = {"type": "thinking", "signature": signature if isinstance(signature, str) else "",
                      "origin": "anthropic"}
            first = ("thinking", block.get("thinking"))
        elif kind == "redacted_thinking":
            header = {"type": "redacted_thinking", "data": block.get("data"), "origin": "anthropic"}
        elif kind == "tool_use":
            tool_input = block.get("input")
            arguments = provider_json.dumps(tool_input).decode() if tool_input else ""
            if self._json_tool is not None and block.get("name") == self._json_tool:
                self._kinds[index] = _AS_TEXT
                events = [Event("block", index, block={"type": "text"})]
                return events + [Event("delta", index, delta="text", text=arguments)] if arguments else events
            self._calls += 1
            header = {"type": "tool_use", "id": block.get("id"), "name": block.get("name")}
            first = ("json", arguments)
        else:
            if self._notes is not None and isinstance(kind, str):
                note(self._notes.dropped, f"content[].{kind[:40]}")
            return []                            # a server tool's block: never asked for
        self._kinds[index] = kind
        events = [Event("block", index, block=header)]
        if first is not None and first[1] and isinstance(first[1], str):
            events.append(Event("delta", index, delta=first[0], text=first[1]))
        return events

    def _message_delta(self, data: dict) -> list[Event]:
        events: list[Event] = []
        delta = data.get("delta")
        if isinstance(delta, dict) and delta.get("stop_reason"):
            self._stop = stop_of(delta["stop_reason"])
            if self._stop == TOOL_USE and not self._calls:
                self._stop = END                 # the only call was the JSON answer
            sequence = delta.get("stop_sequence")
            events.append(Event("stop", stop=self._stop, stop_sequence=sequence if isinstance(sequence, str) else None))
        usage = anthropic_api.usage_from_event(data, self._usage)
        if usage is not None and usage is not self._usage:
            self._usage = usage
            events.append(Event("usage", usage=usage))
        return events


# --- the caller's stream -------------------------------------------------------------


class Encoder(StreamEncoder):
    """Events written as a Messages caller's events (see the module's table)."""
    __slots__ = ("_blocks", "_done", "_hide_thinking", "_model", "_next", "_notes", "_open", "_started",
                 "_stop", "_stop_sequence", "_usage", "_waiting", "cost_usd")

    def __init__(self, conversation: Conversation, notes: Notes | None) -> None:
        self._notes = notes
        self._model = conversation.model
        self._hide_thinking = conversation.reasoning is not None and conversation.reasoning.hidden
        self._blocks: dict[int, Block] = {}     # an Event's block index -> the block
        self._open: Block | None = None
        self._waiting: list[Block] = []
        self._next = 0                           # the next block's index as the caller reads it
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
        if kind == "delta":
            block = self._blocks.get(event.index)
            if block is None or not event.text:
                return b""
            if block.state == OPEN and event.delta != "signature":
                if block.kind == "tool_use":
                    block.pieces.append(event.text)
                return block.head + provider_json.dumps(event.text) + DELTA_END
            return self._other_delta(event, block)
        if kind == "block":
            return self._begin(event.index, event.block or {})
        if kind == "block_stop":
            return self._block_stop(event.index)
        if kind == "usage":
            self._usage = event.usage
            return b""
        if kind == "stop":
            self._stop, self._stop_sequence = event.stop, event.stop_sequence
            return b""
        if kind == "start":
            return self._start(event)
        if kind == "end":
            return self._end()
        if kind == "error":
            self._done = True
            problem = event.problem or Problem("api_error", "The provider's stream failed.")
            return b"event: error\ndata: " + provider_json.dumps(
                {"type": "error", "error": {"type": problem.kind, "message": problem.message}}) + b"\n\n"
        return b""

    # --- blocks --------------------------------------------------------------------------

    def _begin(self, index: int, header: dict) -> bytes:
        kind = header.get("type")
        ours = header.get("origin") == "anthropic"
        if kind == "text":
            written = TEXT_BLOCK
        elif kind == "thinking":
            if self._hide_thinking:
                return b""
            signature = header.get("signature") if ours else None
            written = provider_json.dumps({"type": "thinking", "thinking": "", "signature": signature}) \
                if signature else THINKING_BLOCK
        elif kind == "tool_use":
            written = provider_json.dumps({"type": "tool_use", "id": header.get("id") or new_tool_id(),
                                           "name": header.get("name"), "input": {}})
        elif kind == "redacted_thinking" and ours and not self._hide_thinking:
            written = provider_json.dumps({"type": "redacted_thinking", "data": header.get("data") or ""})
        else:
            return b""                           # nothing a Messages caller reads
        block = self._blocks[index] = Block(kind, written, ours)
        if self._must_wait():
            self._waiting.append(block)
            return b""
        return self._switch(block)

    def _other_delta(self, event: Event, block: Block) -> bytes:
        """A signature, or a delta of a block not open: kept while it waits, else written as
        a block of its own (text) or dropped (a tool call's arguments after its block)."""
        if event.delta == "signature":
            if block.kind != "thinking" or not block.ours:
                return b""                       # only Anthropic reads its signatures
            if block.state == OPEN:
                return DELTA % block.index + SIGNATURE + provider_json.dumps(event.text) + DELTA_END
            block.signature += event.text        # written with the block
            return b""
        if block.state == WAITING:
            block.pieces.append(event.text)
            return b""
        if block.kind == "tool_use":
            if self._notes is not None:
                note(self._notes.dropped, "tool_calls[].function.arguments:after_its_block")
            return b""
        again = Block(block.kind, block.header, block.ours)   # more text once its block closed: a new block
        again.pieces.append(event.text)
        self._blocks[event.index] = again
        if self._must_wait():
            self._waiting.append(again)
            return b""
        return self._write_whole(again)

    def _block_stop(self, index: int) -> bytes:
        block = self._blocks.get(index)
        if block is None:
            return b""
        block.stopped = True
        if block is not self._open:
            return b""                           # closed already, or waiting: it stops when written
        return self._stop_open() + self._flush(whole=False)

    def _must_wait(self) -> bool:
        """Whether a new block must wait: others already wait, or the open tool call's
        arguments are not yet a whole JSON object (more of them may still come)."""
        return bool(self._waiting) or self._open_incomplete()

    def _open_incomplete(self) -> bool:
        block = self._open
        if block is None or block.kind != "tool_use":
            return False
        return not block.pieces or not isinstance(
            provider_json.loads("".join(block.pieces).encode("utf-8", "surrogatepass")), dict)

    def _flush(self, whole: bool) -> bytes:
        """The blocks that waited, in order: all of them when the answer ends (`whole`),
        else as long as the open one is complete."""
        out = b""
        while self._waiting and (whole or not self._open_incomplete()):
            out += self._write_whole(self._waiting.pop(0))
        return out

    def _write_whole(self, block: Block) -> bytes:
        """A block that waited: its start, what it kept, its stop once the provider's came."""
        out = self._switch(block)
        if block.pieces:
            out += block.head + provider_json.dumps("".join(block.pieces)) + DELTA_END
            if block.kind != "tool_use":
                block.pieces = []
        if block.signature:
            out += DELTA % block.index + SIGNATURE + provider_json.dumps(block.signature) + DELTA_END
        if block.stopped:
            out += self._stop_open()
        return out

    def _switch(self, block: Block) -> bytes:
        """Events that stop the open block and start `block`."""
        out = self._stop_open()
        block.index = self._next
        self._next += 1
        block.state = OPEN
        block.head = DELTA % block.index + DELTA_TYPES.get(block.kind, b"")
        self._open = block
        return out + START % block.index + block.header + b"}\n\n"

    def _stop_open(self) -> bytes:
        block = self._open
        if block is None:
            return b""
        block.state = CLOSED
        self._open = None
        return STOP % block.index

    # --- the message -------------------------------------------------------------------

    def _start(self, event: Event) -> bytes:
        self._started = True
        self._usage = event.usage
        message = {"id": event.id or "msg_" + secrets.token_hex(12), "type": "message", "role": "assistant",
                   "model": event.model or self._model, "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": anthropic_usage(event.usage) if event.usage is not None else NO_USAGE}
        return b"event: message_start\ndata: " + \
            provider_json.dumps({"type": "message_start", "message": message}) + b"\n\n"

    def _end(self) -> bytes:
        """The blocks that waited, the open block's stop, message_delta and message_stop."""
        self._done = True
        out = b"" if self._started else self._start(Event("start"))
        out += self._flush(whole=True) + self._stop_open()
        delta = {"type": "message_delta", "delta": {"stop_reason": STOP_REASONS.get(self._stop or END, "end_turn"),
                                                    "stop_sequence": self._stop_sequence},
                 "usage": with_cost(anthropic_usage(self._usage or Usage()), self.cost_usd)}
        return out + b"event: message_delta\ndata: " + provider_json.dumps(delta) + b"\n\n" + MESSAGE_STOP
