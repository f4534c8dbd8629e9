"""Responses streams: a Responses-only provider's events read as the model's Events
(`Decoder`), and Events written as the events a Responses caller reads, as OpenAI writes
them (`Encoder`).

Read from a provider (Decoder), event by event (C carried, H dropped and named in Notes.dropped):
  response.created                    C  start (the response's id and model)
  output_item.added: function_call    C  a tool_use block (call_id as its id, a missing one made up,
                                         a shortened name restored)
  output_text.delta                   C  text deltas, a text block per message item
  refusal.delta                       C  text deltas of a refusal block ({"refusal": true}); the answer
                                         stops as REFUSAL
  reasoning_summary_text.delta, reasoning_text.delta   C  thinking deltas, a thinking block per
                                         reasoning item (signature "", origin "openai-responses")
  function_call_arguments.delta       C  json deltas (the item's whole arguments at output_item.done
                                         when none streamed)
  output_item.done                    C  block_stop of the item's blocks
  response.completed, .incomplete     C  usage (responses_answer.usage_from), stop (incomplete:
                                         responses_answer.INCOMPLETE_STOPS; else REFUSAL when refused,
                                         TOOL_USE when a tool was called, END), end
  response.failed, error              C  error, and nothing after it
  items of OpenAI's own tools (web_search_call, ...)   H  output[].<type>
  the stream's close (end())          an error unless the response completed

Written for a caller (Encoder): response.created and response.in_progress first; for each
output item its `output_item.added`, then
  thinking deltas -> reasoning_summary_part.added, reasoning_summary_text.delta ...
  text deltas     -> content_part.added, output_text.delta ...
  tool_use blocks -> function_call_arguments.delta ... (one item per call)
each item closed with its whole text (`….done`, `output_item.done`) when the next begins or the
answer stops (consecutive blocks of one kind are one item, as a chat stream's deltas are);
then response.completed (response.incomplete when cut at max_output_tokens or by a filter)
with the whole response and its usage, the call's cost kept. An error becomes an `error`
event and response.failed. Every event carries its sequence_number; the response's
settings are echoed from the request (responses_answer.envelope).
"""

from __future__ import annotations

from typing import Any

from ...api import provider_json
from ...api.usage import Usage
from ..base import StreamDecoder, StreamEncoder
from .chat_answer import KINDS, error_object, new_tool_id
from ..conversation import END, LENGTH, REFUSAL, TOOL_USE, Conversation, Event, Notes, Problem, note
from .responses_answer import INCOMPLETE_STOPS, envelope, item_id, response_id, status_of, usage_from, usage_of
from .responses_stream_items import ID_PREFIXES, ITEM_KINDS, OutputItem
from ..vocabulary import restored_names, with_cost

CUT = "The provider's stream ended before the answer was complete."
FAILED = "The provider's answer failed."

# A failed response's `error.code` is one of the Responses API's own (OpenAI's SDK types
# it as an enum); the `error` event before it carries the finer code.
_FAILED_CODES = {"rate_limit_error": "rate_limit_exceeded", "invalid_request_error": "invalid_prompt",
                 "request_too_large": "invalid_prompt"}
_THINKING_DELTAS = frozenset({"response.reasoning_summary_text.delta", "response.reasoning_text.delta"})


# --- a provider's stream -------------------------------------------------------------

class Decoder(StreamDecoder):
    """One provider's Responses stream read as Events (see the module's table)."""
    __slots__ = ("_argued", "_calls", "_done", "_names", "_next", "_notes", "_of_item", "_refusals", "_refused",
                 "_started", "_stopped", "_texts", "_thoughts")

    def __init__(self, conversation: Conversation, notes: Notes | None) -> None:
        self._notes = notes
        self._names = restored_names(conversation)
        self._started = False
        self._done = False
        self._next = 0                           # the next block's index
        # An item's output_index -> its block of each kind.
        self._texts: dict[Any, int] = {}
        self._refusals: dict[Any, int] = {}
        self._thoughts: dict[Any, int] = {}
        self._calls: dict[Any, int] = {}
        self._argued: set[int] = set()           # tool blocks whose arguments streamed
        self._of_item: dict[Any, list[int]] = {}  # an output_index -> its blocks, to stop them
        self._stopped: set[int] = set()
        self._refused = False

    def read(self, data: dict | None, name: bytes, raw: bytes) -> list[Event]:
        if self._done or data is None:
            return []
        kind = data.get("type")
        if kind == "response.created" and not self._started:
            self._started = True
            response = data.get("response") if isinstance(data.get("response"), dict) else {}
            answer_id, model = response.get("id"), response.get("model")
            return [Event("start", id=answer_id if isinstance(answer_id, str) else None,
                          model=model if isinstance(model, str) else None)]
        events: list[Event] = []
        if not self._started:
            self._started = True
            events.append(Event("start"))
        if kind == "response.output_text.delta":
            self._piece(self._texts, data, "text", events)
        elif kind == "response.function_call_arguments.delta":
            index = self._calls.get(data.get("output_index"))
            text = data.get("delta")
            if index is not None and text and isinstance(text, str):
                self._argued.add(index)
                events.append(Event("delta", index, delta="json", text=text))
        elif kind in _THINKING_DELTAS:
            self._piece(self._thoughts, data, "thinking", events)
        elif kind == "response.refusal.delta":
            self._refused = True
            self._piece(self._refusals, data, "refusal", events)
        elif kind == "response.output_item.added":
            self._item_added(data, events)
        elif kind == "response.output_item.done":
            self._item_done(data, events)
        elif kind in ("response.completed", "response.incomplete"):
            self._completed(data, events)
        elif kind in ("response.failed", "error"):
            self._done = True
            events.append(Event("error", problem=self._problem(data, kind)))
        return events                            # in_progress, content_part.added, ….done: nothing new

    def end(self) -> list[Event]:
        if self._done:
            return []
        self._done = True
        return [Event("error", problem=Problem("api_error", CUT))]

    def _piece(self, blocks: dict, data: dict, kind: str, events: list[Event]) -> None:
        text = data.get("delta")
        if not text or not isinstance(text, str):
            return
        item = data.get("output_index")
        index = blocks.get(item)
        if index is None:
            index = blocks[item] = self._new_block(item)
            block = {"type": "thinking", "signature": "", "origin": "openai-responses"} if kind == "thinking" \
                else {"type": "text", "refusal": True} if kind == "refusal" else {"type": "text"}
            events.append(Event("block", index, block=block))
        events.append(Event("delta", index, delta="text" if kind == "refusal" else kind, text=text))

    def _new_block(self, item: Any) -> int:
        index = self._next
        self._next += 1
        self._of_item.setdefault(item, []).append(index)
        return index

    def _item_added(self, data: dict, events: list[Event]) -> None:
        item = data.get("item")
        kind = item.get("type") if isinstance(item, dict) else None
        if kind in ("message", "reasoning"):
            return                               # its blocks begin with their first text
        if kind != "function_call":
            if self._notes is not None and isinstance(kind, str):
                note(self._notes.dropped, f"output[].{kind[:40]}")   # a built-in tool's call
            return
        output_index = data.get("output_index")
        index = self._calls[output_index] = self._new_block(output_index)
        name, call_id = item.get("name"), item.get("call_id")
        events.append(Event("block", index, block={
            "type": "tool_use", "id": call_id if isinstance(call_id, str) and call_id else new_tool_id(),
            "name": self._names.get(name, name) if self._names else name}))
        arguments = item.get("arguments")
        if arguments and isinstance(arguments, str):
            self._argued.add(index)
            events.append(Event("delta", index, delta="json", text=arguments))

    def _item_done(self, data: dict, events: list[Event]) -> None:
        output_index = data.get("output_index")
        index = self._calls.get(output_index)
        item = data.get("item")
        if index is not None and index not in self._argued and isinstance(item, dict):
            arguments = item.get("arguments")       # a server that streamed none of them
            if arguments and isinstance(arguments, str):
                self._argued.add(index)
                events.append(Event("delta", index, delta="json", text=arguments))
        for index in self._of_item.get(output_index, ()):
            if index not in self._stopped:
                self._stopped.add(index)
                events.append(Event("block_stop", index))

    def _completed(self, data: dict, events: list[Event]) -> None:
        self._done = True
        for index in range(self._next):
            if index not in self._stopped:
                events.append(Event("block_stop", index))
        response = data.get("response") if isinstance(data.get("response"), dict) else {}
        if response.get("status") == "incomplete" or data.get("type") == "response.incomplete":
            details = response.get("incomplete_details")
            reason = details.get("reason") if isinstance(details, dict) else None
            stop = INCOMPLETE_STOPS.get(reason, LENGTH) if isinstance(reason, str) else LENGTH
        elif self._refused:
            stop = REFUSAL
        else:
            stop = TOOL_USE if self._calls else END
        events.append(Event("stop", stop=stop))
        usage = usage_from(response.get("usage"))
        if usage is not None:
            events.append(Event("usage", usage=usage))
        events.append(Event("end"))

    @staticmethod
    def _problem(data: dict, kind: str) -> Problem:
        if kind == "response.failed":
            response = data.get("response")
            error = response.get("error") if isinstance(response, dict) else None
        else:
            error = data.get("error", data)
        if not isinstance(error, dict):
            return Problem("api_error", FAILED)
        message, code = error.get("message"), error.get("code") or error.get("type")
        return Problem(KINDS.get(code, "api_error") if isinstance(code, str) else "api_error",
                       message if isinstance(message, str) and message else FAILED)


# --- the caller's stream -------------------------------------------------------------


class Encoder(StreamEncoder):
    """Events written as a Responses caller's events (see the module's table)."""
    __slots__ = ("_calls", "_conversation", "_done", "_id", "_items", "_kinds", "_model", "_number", "_open",
                 "_started", "_stop", "_usage", "cost_usd")

    def __init__(self, conversation: Conversation, notes: Notes | None) -> None:
        self._conversation = conversation
        self._id = response_id()
        self._number = 0                         # the next event's sequence_number
        self._started = False
        self._done = False
        self._items: list[OutputItem] = []
        self._open: OutputItem | None = None
        self._kinds: dict[int, str] = {}          # a block -> the kind of item its text goes in
        self._calls: dict[int, OutputItem] = {}        # a tool_use block -> its item
        self._stop: str | None = None
        self._usage: Usage | None = None
        self._model: Any = None
        self.cost_usd: float | None = None

    def write(self, event: Event) -> bytes:
        if self._done:
            return b""
        kind = event.kind
        if kind == "delta":
            text = event.text
            if not text or event.delta == "signature":
                return b""
            item = self._calls.get(event.index)
            if item is None:
                item_kind = self._kinds.get(event.index)
                if item_kind is None:
                    return b""
                return self._text(item_kind, text)
            item.parts.append(text)
            return self._delta(item, text)
        if kind == "block":
            return self._block(event.index, event.block or {})
        if kind == "usage":
            self._usage = event.usage
            return b""
        if kind == "stop":
            self._stop = event.stop
            return self._close()                  # the answer's last item is whole
        if kind == "start":
            return self._start(event.model, event.usage)
        if kind == "end":
            return self._completed()
        if kind == "error":
            return self._failed(event.problem or Problem("api_error", FAILED))
        return b""                                # block_stop: an item closes when the next begins

    # --- items -----------------------------------------------------------------------------

    def _block(self, index: int, block: dict) -> bytes:
        item_kind = ITEM_KINDS.get(block.get("type"))
        if item_kind is None:
            return b""                            # redacted thinking: nothing a Responses caller reads
        if item_kind != "function_call":
            self._kinds[index] = item_kind        # its item begins with its first text
            return b""
        out = self._close()
        item, added = self._add("function_call", block.get("id"), block.get("name"))
        self._calls[index] = item
        return out + added

    def _text(self, kind: str, text: str) -> bytes:
        out = b""
        item = self._open
        if item is None or item.kind != kind:
            out = self._close()
            item, added = self._add(kind)
            out += added
            if kind == "reasoning":
                out += self._emit("response.reasoning_summary_part.added", item_id=item.ident,
                                  output_index=item.index, summary_index=0, part={"type": "summary_text", "text": ""})
            else:
                out += self._emit("response.content_part.added", item_id=item.ident, output_index=item.index,
                                  content_index=0, part={"type": "output_text", "annotations": [], "logprobs": [],
                                                         "text": ""})
        item.parts.append(text)
        return out + self._delta(item, text)

    def _delta(self, item: OutputItem, text: str) -> bytes:
        number = self._number
        self._number += 1
        return item.prefix + b"%d" % number + item.head + provider_json.dumps(text) + item.tail

    def _add(self, kind: str, call_id: Any = None, name: Any = None) -> tuple[OutputItem, bytes]:
        """A new output item, open, and its `output_item.added` event."""
        index = len(self._items)
        item = OutputItem(kind, index, item_id(ID_PREFIXES[kind], self._id, index), call_id, name)
        self._items.append(item)
        self._open = item
        added = item.whole("in_progress")
        if kind == "message":
            added["content"] = []
        elif kind == "reasoning":
            added["summary"] = []
        return item, self._emit("response.output_item.added", output_index=index, item=added)

    def _close(self) -> bytes:
        """Closes the open item with its whole text."""
        item, self._open = self._open, None
        if item is None:
            return b""
        text = item.text
        if item.kind == "reasoning":
            out = self._emit("response.reasoning_summary_text.done", item_id=item.ident, output_index=item.index,
                             summary_index=0, text=text)
            out += self._emit("response.reasoning_summary_part.done", item_id=item.ident, output_index=item.index,
                              summary_index=0, part={"type": "summary_text", "text": text})
        elif item.kind == "message":
            out = self._emit("response.output_text.done", item_id=item.ident, output_index=item.index,
                             content_index=0, text=text, logprobs=[])
            out += self._emit("response.content_part.done", item_id=item.ident, output_index=item.index,
                              content_index=0, part={"type": "output_text", "annotations": [], "logprobs": [],
                                                     "text": text})
        else:
            out = self._emit("response.function_call_arguments.done", item_id=item.ident, output_index=item.index,
                             arguments=text)
        return out + self._emit("response.output_item.done", output_index=item.index, item=item.whole())

    # --- the response ------------------------------------------------------------------------

    def _start(self, model: Any, usage: Usage | None) -> bytes:
        self._started, self._model = True, model
        self._usage = usage
        started = envelope(self._id, self._conversation, model, "in_progress", [], None)
        return self._emit("response.created", response=started) + \
            self._emit("response.in_progress", response=started)

    def _completed(self) -> bytes:
        out = b"" if self._started else self._start(None, None)
        out += self._close()
        self._done = True
        status = status_of(self._stop)
        usage = with_cost(usage_of(self._usage or Usage()) or {}, self.cost_usd)
        whole = envelope(self._id, self._conversation, self._model, status, [item.whole() for item in self._items],
                         usage, self._stop)
        return out + self._emit(f"response.{status}", response=whole)

    def _failed(self, problem: Problem) -> bytes:
        out = b"" if self._started else self._start(None, None)
        self._done = True
        error = error_object(problem)
        code = error.get("code") or error.get("type")
        out += self._emit("error", code=code, message=error.get("message"), param=None)
        failed = envelope(self._id, self._conversation, self._model, "failed",
                          [item.whole() for item in self._items], None)
        failed["error"] = {"code": _FAILED_CODES.get(problem.kind, "server_error"), "message": error.get("message")}
        return out + self._emit("response.failed", response=failed)

    def _emit(self, kind: str, **fields: Any) -> bytes:
        event = {"type": kind, "sequence_number": self._number, **fields}
        self._number += 1
        return b"event: " + kind.encode() + b"\ndata: " + provider_json.dumps(event) + b"\n\n"
