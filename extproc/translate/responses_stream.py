"""A streamed answer, translated to Chat Completions chunks, written as the Responses
events OpenAI sends: response.created and response.in_progress first; for each output item
its `output_item.added`, then
  reasoning_content deltas -> reasoning_summary_part.added, reasoning_summary_text.delta ...
  content deltas           -> content_part.added, output_text.delta ...
  tool call deltas         -> function_call_arguments.delta ... (one item per call)
each item closed with its whole text (`….done`, `output_item.done`) when the next begins or the
answer ends; then response.completed (response.incomplete when cut at max_output_tokens) with
the whole response and its usage. An error becomes an `error` event and response.failed.
Every event carries its sequence_number.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..api import provider_json
from .base import StreamTranslation
from .responses_answer import call_item, envelope, item_id, message_item, reasoning_item, response_id, usage


class _Item:
    __slots__ = ("kind", "index", "ident", "parts", "call_id", "name")

    def __init__(self, kind: str, index: int, ident: str, call_id: Any = None, name: Any = None) -> None:
        self.kind, self.index, self.ident = kind, index, ident
        self.parts: list[str] = []
        self.call_id, self.name = call_id, name

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def whole(self, status: str = "completed") -> dict:
        if self.kind == "reasoning":
            return reasoning_item(self.ident, self.text)
        if self.kind == "message":
            return message_item(self.ident, self.text, status)
        return call_item(self.ident, self.call_id, self.name, self.text, status)


class ChatStreamAsResponses:
    """Chat Completions chunks (from `inner`, one provider event at a time) as Responses events."""

    def __init__(self, inner: StreamTranslation, request: dict) -> None:
        self._inner = inner
        self._request = request
        self._id = response_id()
        self._number = 0
        self._started = False
        self._ended = False
        self._items: list[_Item] = []
        self._open: _Item | None = None
        self._calls: dict[Any, _Item] = {}      # the chat tool call's index -> its item
        self._finish: str | None = None
        self._usage: dict | None = None
        self._model: Any = None

    # The call's cost, set by the reader (StreamTranslation): the inner translation puts it
    # in the usage it ends with, which the completed response carries.
    @property
    def cost_usd(self) -> float | None:
        return self._inner.cost_usd

    @cost_usd.setter
    def cost_usd(self, value: float | None) -> None:
        self._inner.cost_usd = value

    def event(self, data: dict | None, name: bytes, raw: bytes) -> bytes:
        return self._read(self._inner.event(data, name, raw))

    def end(self) -> bytes:
        out = self._read(self._inner.end())
        return out + (b"" if self._ended else self._completed())

    # --- reading the chat chunks ---------------------------------------------------------

    def _read(self, chunks: bytes) -> bytes:
        out = []
        for line in chunks.split(b"\n\n"):
            if not line.startswith(b"data: "):
                continue
            payload = line[6:]
            if payload == b"[DONE]":
                if not self._ended:
                    out.append(self._completed())
                continue
            chunk = orjson.loads(payload)
            if not self._started:
                out.append(self._start(chunk.get("model")))
            if isinstance(chunk.get("error"), dict):
                out.append(self._failed(chunk["error"]))
                continue
            if isinstance(chunk.get("usage"), dict):
                self._usage = usage(chunk["usage"])
            for choice in chunk.get("choices") or ():
                out.append(self._choice(choice))
        return b"".join(out)

    def _choice(self, choice: dict) -> bytes:
        delta = choice.get("delta") or {}
        out = []
        if isinstance(delta.get("reasoning_content"), str) and delta["reasoning_content"]:
            out.append(self._text("reasoning", delta["reasoning_content"]))
        if isinstance(delta.get("content"), str) and delta["content"]:
            out.append(self._text("message", delta["content"]))
        for call in delta.get("tool_calls") or ():
            out.append(self._call(call))
        if choice.get("finish_reason"):
            self._finish = choice["finish_reason"]
            out.append(self._close())
        return b"".join(out)

    # --- items -----------------------------------------------------------------------------

    def _text(self, kind: str, text: str) -> bytes:
        out = b""
        item = self._open
        if item is None or item.kind != kind:
            out += self._close()
            item, added = self._add(kind)
            out += added
            where = self._where(item)
            if kind == "reasoning":
                out += self._emit("response.reasoning_summary_part.added", **where, summary_index=0,
                                  part={"type": "summary_text", "text": ""})
            else:
                out += self._emit("response.content_part.added", **where, content_index=0,
                                  part={"type": "output_text", "annotations": [], "logprobs": [], "text": ""})
        item.parts.append(text)
        if kind == "reasoning":
            return out + self._emit("response.reasoning_summary_text.delta", **self._where(item), summary_index=0,
                                    delta=text)
        return out + self._emit("response.output_text.delta", **self._where(item), content_index=0, delta=text,
                                logprobs=[])

    def _call(self, call: dict) -> bytes:
        out = b""
        function = call.get("function") or {}
        item = self._calls.get(call.get("index"))
        if item is None:
            out += self._close()
            item, added = self._add("function_call", call.get("id"), function.get("name"))
            out += added
            self._calls[call.get("index")] = item
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            item.parts.append(arguments)
            out += self._emit("response.function_call_arguments.delta", **self._where(item), delta=arguments)
        return out

    def _add(self, kind: str, call_id: Any = None, name: Any = None) -> tuple[_Item, bytes]:
        """A new output item, open, and its `output_item.added` event."""
        prefix = {"reasoning": "rs", "message": "msg", "function_call": "fc"}[kind]
        item = _Item(kind, len(self._items), item_id(prefix, self._id, len(self._items)), call_id, name)
        self._items.append(item)
        self._open = item
        added = item.whole("in_progress")
        if kind == "message":
            added["content"] = []
        elif kind == "reasoning":
            added["summary"] = []
        return item, self._emit("response.output_item.added", output_index=item.index, item=added)

    def _close(self) -> bytes:
        """Closes the open item with its whole text."""
        item, self._open = self._open, None
        if item is None:
            return b""
        where, text = self._where(item), item.text
        if item.kind == "reasoning":
            out = self._emit("response.reasoning_summary_text.done", **where, summary_index=0, text=text)
            out += self._emit("response.reasoning_summary_part.done", **where, summary_index=0,
                              part={"type": "summary_text", "text": text})
        elif item.kind == "message":
            out = self._emit("response.output_text.done", **where, content_index=0, text=text, logprobs=[])
            out += self._emit("response.content_part.done", **where, content_index=0,
                              part={"type": "output_text", "annotations": [], "logprobs": [], "text": text})
        else:
            out = self._emit("response.function_call_arguments.done", **where, arguments=text)
        return out + self._emit("response.output_item.done", output_index=item.index, item=item.whole())

    # --- the response ------------------------------------------------------------------------

    def _start(self, model: Any) -> bytes:
        self._started, self._model = True, model
        started = envelope(self._id, self._request, model, "in_progress", [], None)
        return self._emit("response.created", response=started) + \
            self._emit("response.in_progress", response=started)

    def _completed(self) -> bytes:
        out = b"" if self._started else self._start(None)
        out += self._close()
        self._ended = True
        status = "incomplete" if self._finish == "length" else "completed"
        whole = envelope(self._id, self._request, self._model, status, [item.whole() for item in self._items],
                         self._usage, self._finish)
        return out + self._emit(f"response.{status}", response=whole)

    def _failed(self, error: dict) -> bytes:
        self._ended = True
        out = self._emit("error", code=error.get("code") or error.get("type"), message=error.get("message"),
                         param=None)
        failed = envelope(self._id, self._request, self._model, "failed", [item.whole() for item in self._items],
                          self._usage)
        failed["error"] = {"code": error.get("code") or error.get("type") or "server_error",
                           "message": error.get("message")}
        return out + self._emit("response.failed", response=failed)

    def _where(self, item: _Item) -> dict:
        return {"item_id": item.ident, "output_index": item.index}

    def _emit(self, kind: str, **fields: Any) -> bytes:
        event = {"type": kind, "sequence_number": self._number, **fields}
        self._number += 1
        return b"event: " + kind.encode() + b"\ndata: " + provider_json.dumps(event) + b"\n\n"
