"""Guardrails on a translated stream, read in the conversation model's events.

A stream translated for its caller is decoded into the model's `Event`s and encoded again
in the caller's dialect (translate/bridge.py). The guard sits between the two: it reads
each text delta (an answer's text, its thinking, a tool call's arguments) once, as the
model holds it, with the same exact hold-back as the SSE guard (stages/guard/stream.py, whose
scanning it shares), so nothing is written in the caller's dialect and parsed back.
What it releases are delta events of the released text; a block ends (its held text
first), and a stream's stop, end or error flushes every text. Blocking ends the
stream with the caller's own error event.
"""

from __future__ import annotations

from ...dialects.conversation import Event
from .stream import Lane, StreamGuard

# The deltas whose text the model reads back or a caller sees: held and scanned.
_GUARDED_DELTAS = frozenset({"text", "thinking", "json"})
# Events after which no text of the stream is still to come.
_CLOSING = frozenset({"stop", "end", "error"})
# A block's header may carry the start of its text.
_HEADER_TEXTS = (("text", "text"), ("thinking", "thinking"))


class ModelEventGuard(StreamGuard):
    """The guard of a translated stream: Events in, Events (and, for a block, the
    caller's error event as bytes) out."""

    def __init__(self, call, policy, window: int) -> None:
        super().__init__(call, policy, window)
        self._out: list[Event | bytes] = []

    def events(self, events: list[Event], final: bool = False) -> list[Event | bytes]:
        """What of these events leaves now; `final` at the stream's end."""
        out = self._out = []
        for event in events:
            if self.blocked is not None:
                return out
            kind = event.kind
            if kind == "delta" and event.delta in _GUARDED_DELTAS:
                key = (event.index, event.delta)
                lane = self.lanes.get(key) or self.lanes.setdefault(key, Lane(len(self.text_guards), key))
                lane.template = event
                self._hold(lane, event.text)
            elif kind == "block":
                self._block_begins(event)
            elif kind == "block_stop":
                self._flush([lane for key, lane in self.lanes.items() if key[0] == event.index])
                if self.blocked is None:         # (its last read may block: the error ends it)
                    out.append(event)
            else:
                if kind in _CLOSING:
                    self._flush(list(self.lanes.values()))
                if self.blocked is None:
                    out.append(event)
        if final and self.blocked is None:
            self._flush(list(self.lanes.values()))
        return out

    def _block_begins(self, event: Event) -> None:
        block = event.block or {}
        for guardrail in self.tool_guards:
            if block.get("type") == "tool_use" and block.get("name") not in guardrail.allow:
                self.verdicts[guardrail.name] = "flagged" if guardrail.action == "log" else "blocked"
                if guardrail.action != "log":
                    self._block(guardrail)
                    return
        for block_type, field in _HEADER_TEXTS:
            text = block.get(field)
            if block.get("type") == block_type and isinstance(text, str) and text:
                # The header's text joins the block's first delta: held like any of it.
                self._out.append(Event("block", event.index, block={**block, field: ""}))
                key = (event.index, field)
                lane = self.lanes.setdefault(key, Lane(len(self.text_guards), key))
                lane.template = Event("delta", event.index, delta=field)
                self._hold(lane, text)
                return
        self._out.append(event)

    def _emit(self, lane: Lane, text: str) -> bytes:
        template = lane.template
        self._out.append(Event("delta", template.index, delta=template.delta, text=text))
        return b""

    def _block(self, guardrail) -> bytes:
        self._out.append(super()._block(guardrail))
        return b""
