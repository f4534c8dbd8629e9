"""Guardrails on streamed responses: an SSE event filter with an exact hold-back.

Each text guardrail scans the held text each time it grows, and only a tail that
could still become a finding is held back (guardrails/hold.py: the word that may be
an e-mail's local part, digits that may become a card, "ignore all prev…"); the rest
leaves at once. A secret split across chunks is thus redacted before any of it
leaves, and the first token waits for at most the next chunk, not for a fixed window
of text. Blocking a stream ends it with a well-formed SSE error event. The generated
text is an answer's content (its refusal, its reasoning) and the arguments of each
tool call it streams: each is held as a text of its own (a lane).
"""

from __future__ import annotations

from typing import NamedTuple

from ..api.provider_json import dumps
from ..api.repeated_keys import repeated_key
from ..api.sse import Event
from ..guardrails import Finding, redact
from ..guardrails.config import Guardrail
from ..guardrails.scan import called_tools, content_walk
from ..pipeline.call import Call
from ..pipeline.errors import error_body
from .guard import record_verdict
from .stream_events import (TEXT_FIELDS, anthropic_event, arguments, only_part, whole_text_fields,
                            without_generated, written)

# Text held longer than this (a private key whose END line never comes) is released
# after a final scan: each chunk rescans the held text, so the hold bounds that work.
MAX_HOLD_CHARS = 8192
# Released text the scan still sees, so lookbehinds and \b at the start of the held
# text read what came before it, as they would in the whole text.
CONTEXT_CHARS = 16
# ... extended back to a whitespace (at most this much further): cut inside a word, the
# context would let a match start where the whole text has none ("...Ijsk-proj-..."
# would become a key at the cut), and that match could hide a real finding it overlaps.
# Nor inside a run of digit groups ("555 2671555 2671 4111 555 2671"): where the run
# starts decides which of its groups the card finder tries together, so a cut inside
# it could miss a card the whole text has.
CONTEXT_LOOKBACK = 240


def released_context(released: str) -> str:
    """The end of the released text later scans see before the held text."""
    start = len(released) - CONTEXT_CHARS
    if start <= 0:
        return released
    floor = max(0, start - CONTEXT_LOOKBACK)
    while start > floor and not (released[start - 1].isspace() and not _between_digits(released, start - 1)):
        start -= 1
    return released[start:]


def _between_digits(text: str, at: int) -> bool:
    """Whether `at` lies in a gap between two digit groups that the card finder reads
    across (guardrails/pii.py `_GAP`: up to four spaces or punctuation, not a newline)."""
    start = end = at
    while start > 0 and _gap_char(text[start - 1]):
        start -= 1
    while end < len(text) - 1 and _gap_char(text[end + 1]):
        end += 1
    return end - start < 4 and start > 0 and end < len(text) - 1 \
        and text[start - 1].isdigit() and text[end + 1].isdigit()


def _gap_char(char: str) -> bool:
    return char == "_" or not (char.isalnum() or char == "\n")


class _Lane:
    """The held text of one answer's content, or of one of its tool calls' arguments: a
    stream that asked for `n` answers interleaves their chunks, and an answer may stream
    several tool calls, so each text is held and scanned on its own."""

    __slots__ = ("slot", "pending", "context", "template", "choice", "hold_from", "tail_starts")

    def __init__(self, guards: int, slot) -> None:
        self.slot = slot                        # where its text goes in an event (see _event)
        self.pending = ""
        self.context = ""                       # the end of the released text
        self.template: dict | None = None       # the text's last event, to carry held text
        self.choice: dict | None = None         # ... and its choice in that event (chat, completions)
        self.hold_from = 0                      # held text from here on may become a finding
        # Per text guardrail, where in the held text a finding may still start: no match
        # can start before it, whatever text comes next, so later scans start there.
        self.tail_starts = [0] * guards


class _Piece(NamedTuple):
    """New generated text in an event: whose it is (the lane's key), the choice that
    carries it, where it goes, and what of the event must leave at once (a tool call's
    id and name, with empty arguments: later events carry arguments only)."""
    key: tuple
    choice: dict | None
    text: str
    slot: object
    header: bytes = b""


class StreamGuard:
    """An SSE event filter (see ResponseUsage): hold back, scan, redact or block."""

    def __init__(self, call: Call, policy: list[Guardrail], window: int) -> None:
        self.call = call
        self.kind = call.endpoint.kind
        self.text_guards = [g for g in policy if g.detector is not None and g.type != "tools"]
        self.tool_guards = [g for g in policy if g.type == "tools"]
        self.window = window
        # Per text: (answer, field or ("tool", index)); Responses: (output, event type, part).
        self.lanes: dict = {}
        self.blocked: Guardrail | None = None
        self.verdicts: dict[str, str] = {}

    def __call__(self, event: Event, data: dict | None, raw: bytes) -> bytes:
        if self.blocked is not None:
            return b""
        if not isinstance(data, dict):
            return self._flush(list(self.lanes.values())) + raw
        for guardrail in self.tool_guards:
            if any(n not in guardrail.allow for n in called_tools(self.kind, data)):
                self.verdicts[guardrail.name] = "flagged" if guardrail.action == "log" else "blocked"
                if guardrail.action != "log":
                    return self._block(guardrail)
        pieces = self._pieces(data)
        if pieces:
            out = b""
            for piece in pieces:
                lane = self.lanes.get(piece.key) or \
                    self.lanes.setdefault(piece.key, _Lane(len(self.text_guards), piece.slot))
                lane.template, lane.choice = data, piece.choice
                out += piece.header + self._hold(lane, piece.text)
                if self.blocked is not None:
                    return out
            # Other answers' choices in the same event without text (one ending, say) go on.
            rest = [c for c in data.get("choices") or () if isinstance(c, dict)
                    and not any(c is piece.choice for piece in pieces)]
            if rest:
                out += self._flush(self._lanes_of(rest)) + b"data: " + dumps({**data, "choices": rest}) + b"\n\n"
            return out
        if self.kind == "messages":
            changed, ended = False, self._ended_blocks(data)
        elif self.kind == "responses":
            # Events that repeat the whole text (…done, response.completed).
            changed, blocking = self._check_whole(list(whole_text_fields(data)))
            if blocking is not None:
                return self._block(blocking)
            ended = list(self.lanes.values())  # its parts come one after the other
        else:                                   # an answer's last chunk; none named: all
            changed = False
            choices = [c for c in data.get("choices") or () if isinstance(c, dict)]
            ended = self._lanes_of(choices) if choices else list(self.lanes.values())
        if changed or repeated_key(event.data, data) is not None:
            raw = written(event, data)
        return self._flush(ended) + raw

    def _ended_blocks(self, data: dict) -> list[_Lane]:
        """Anthropic's Messages: a block's text is complete at its content_block_stop, every
        block's at the message's end (message_delta, message_stop, an error)."""
        kind = data.get("type")
        if kind == "content_block_stop":
            return [lane for key, lane in self.lanes.items() if key[0] == data.get("index")]
        if kind in ("message_delta", "message_stop", "error"):
            return list(self.lanes.values())
        return []

    def _lanes_of(self, choices: list[dict]) -> list[_Lane]:
        """The held texts of the answers these choices belong to."""
        answers = {c.get("index", 0) for c in choices}
        return [lane for key, lane in self.lanes.items() if key[0] in answers]

    def _hold(self, lane: _Lane, piece: str) -> bytes:
        """Adds an answer's new text; what can no longer become a finding leaves."""
        lane.pending += piece
        blocked = self._scan(lane)
        if blocked is not None:
            return self._block(blocked)
        if len(lane.pending) > MAX_HOLD_CHARS:
            return self._flush([lane])          # bounded work per chunk; complete findings are redacted
        cut = lane.hold_from
        if cut <= 0:
            return b""                          # hold: a secret may be arriving
        release, lane.pending = lane.pending[:cut], lane.pending[cut:]
        lane.context = released_context(lane.context + release)
        lane.tail_starts = [start - cut for start in lane.tail_starts]
        return self._event(lane, release)

    # --- text of one event ----------------------------------------------------------

    def _pieces(self, data: dict) -> list[_Piece]:
        """The generated text an event carries."""
        if self.kind == "messages":
            # A block's text or tool input. (Thinking is signed by the provider: a change
            # would make it refuse the block when the caller sends it back.)
            delta = data.get("delta") if data.get("type") == "content_block_delta" else None
            if isinstance(delta, dict):
                for field in ("text", "partial_json"):
                    if isinstance(delta.get(field), str) and delta[field]:
                        return [_Piece((data.get("index"), field), None, delta[field], field)]
            return []
        if self.kind == "responses":
            # Every `….delta` carries generated text (output text, refusal, function call
            # arguments, reasoning summary, audio transcript, ...), but audio's base64.
            delta, kind = data.get("delta"), data.get("type")
            if not isinstance(delta, str) or not delta or not isinstance(kind, str) \
                    or not kind.endswith(".delta") or kind == "response.audio.delta":
                return []
            part = data.get("content_index", data.get("summary_index"))
            return [_Piece((data.get("output_index"), kind, part), None, delta, "delta")]
        pieces = []
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            answer = choice.get("index", 0)
            if self.kind == "completions":
                text = choice.get("text")
                if isinstance(text, str) and text:
                    pieces.append(_Piece((answer, "text"), choice, text, "text"))
                continue
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            for field in TEXT_FIELDS:
                value = delta.get(field)
                if isinstance(value, str):
                    if value:
                        pieces.append(_Piece((answer, field), choice, value, field))
                elif isinstance(value, list):   # a list of parts (Mistral): each part's text held
                    for container, key, path in content_walk(delta, field):
                        if container[key]:
                            pieces.append(_Piece((answer, field, path), choice, container[key], (field, path)))
            for call in delta.get("tool_calls") or ():
                new_arguments = arguments(call)
                if new_arguments:
                    slot = ("tool", call.get("index", 0))
                    pieces.append(_Piece((answer, slot), choice, new_arguments, slot,
                                         self._header(data, choice, "tool_calls", call)))
            if arguments(delta.get("function_call")):      # the deprecated `functions` API
                call = delta["function_call"]
                pieces.append(_Piece((answer, "function_call"), choice, call["arguments"], "function_call",
                                     self._header(data, choice, "function_call", call)))
        return pieces

    @staticmethod
    def _header(data: dict, choice: dict, field: str, call: dict) -> bytes:
        """The event with this call alone and its arguments empty, when it carries more
        than arguments (its first: id, type, name); b"" otherwise."""
        function = call.get("function") if field == "tool_calls" else call
        if set(call) <= {"index", "function", "arguments"} and set(function) <= {"arguments"}:
            return b""
        emptied = {**function, "arguments": ""}
        if field == "tool_calls":
            emptied = [{**call, "function": emptied}]
        delta = without_generated(choice["delta"])
        return b"data: " + dumps({**data, "choices": [{**choice, "delta": {**delta, field: emptied}}]}) \
            + b"\n\n"

    def _event(self, lane: _Lane, text: str) -> bytes:
        """An event carrying released text of a lane, shaped as its last event."""
        if self.kind == "messages":
            return anthropic_event({**lane.template, "delta": {**lane.template["delta"], lane.slot: text}})
        if self.kind == "responses":
            return b"data: " + dumps({**lane.template, "delta": text}) + b"\n\n"
        choice, slot = dict(lane.choice), lane.slot
        if slot == "text":
            choice["text"] = text
        elif slot in TEXT_FIELDS:              # (the event's other texts are lanes of their own)
            choice["delta"] = {**without_generated(choice["delta"]), slot: text}
        elif slot == "function_call":
            choice["delta"] = {"function_call": {"arguments": text}}
        elif slot[0] == "tool":
            choice["delta"] = {"tool_calls": [{"index": slot[1], "function": {"arguments": text}}]}
        else:                                   # a part of a list of parts: (field, path)
            field, path = slot
            parts = only_part(choice["delta"][field], path, text)
            choice["delta"] = {**without_generated(choice["delta"]), field: parts}
        return b"data: " + dumps({**lane.template, "choices": [choice]}) + b"\n\n"

    def _flush(self, lanes: list[_Lane]) -> bytes:
        """Releases what the given answers hold: their text is complete."""
        out = b""
        for lane in lanes:
            if not lane.pending or lane.template is None:
                continue
            blocked = self._scan(lane, final=True)
            if blocked is not None:
                return out + self._block(blocked)
            text, lane.pending = lane.pending, ""
            out += self._event(lane, text)
        return out

    # --- guardrails -----------------------------------------------------------------

    def _scan(self, lane: _Lane, final: bool = False) -> Guardrail | None:
        """Scan the held text, set `hold_from` and redact the findings before it.

        Held from `hold_from` on: any tail where a finding could still start or grow
        (a key arriving piece by piece, a private key's header before its END line),
        and any finding that reaches into that tail, so no part of it leaves before
        it is decided. At the end of the stream (`final`) everything is decided."""
        offset = len(lane.context)
        text = lane.context + lane.pending
        starts = [len(text) if final else self._hold_from(g, text, offset + start)
                  for g, start in zip(self.text_guards, lane.tail_starts)]
        hold = min(starts, default=len(text))
        to_redact = []
        for guardrail in self.text_guards:
            # What lies in the context has left already: only the held part can change.
            findings = [f if f.start >= offset else Finding(offset, f.end, f.label)
                        for f in guardrail.detector.find(text) if f.end > offset]
            if not findings:
                continue
            if guardrail.action == "block":
                self.verdicts[guardrail.name] = "blocked"
                return guardrail
            if guardrail.action == "log":
                self.verdicts.setdefault(guardrail.name, "flagged")
            else:
                to_redact.extend((guardrail, finding) for finding in findings)
        while undecided := [f for _, f in to_redact if f.end > hold and f.start < hold]:
            hold = min(f.start for f in undecided)
        done = [(g, f) for g, f in to_redact if f.end <= hold]
        if done:
            redacted = redact(text, [f for _, f in done])
            hold += len(redacted) - len(text)           # every change lies before the hold
            text = redacted
            for guardrail, _ in done:
                self.verdicts[guardrail.name] = "redacted"
            starts = [hold] * len(starts)   # what precedes them changed: look again from the hold
        lane.pending = text[offset:]
        lane.tail_starts = [0 if final else start - offset for start in starts]
        lane.hold_from = hold - offset
        return None

    def _hold_from(self, guardrail: Guardrail, text: str, start: int) -> int:
        hold = guardrail.detector.hold_from(text, start)
        # A pattern `regex` could not analyse: hold the configured window instead.
        return max(start, len(text) - self.window) if hold is None else hold

    def _check_whole(self, slots: list) -> tuple[bool, Guardrail | None]:
        """Texts an event carries whole, redacted in place: whether any was, and the
        guardrail that blocks them, if one does."""
        changed = False
        for container, key in slots:
            for guardrail in self.text_guards:
                findings = guardrail.detector.find(container[key])
                if not findings:
                    continue
                if guardrail.action == "block":
                    self.verdicts[guardrail.name] = "blocked"
                    return changed, guardrail
                if guardrail.action == "log":
                    self.verdicts.setdefault(guardrail.name, "flagged")
                else:
                    container[key] = redact(container[key], findings)
                    self.verdicts[guardrail.name] = "redacted"
                    changed = True
        return changed, None

    def _block(self, guardrail: Guardrail) -> bytes:
        self.blocked = guardrail
        self.lanes.clear()
        self.call.error_code = "content_blocked"
        message = f"The response was blocked by the guardrail '{guardrail.name}'."
        if self.kind == "messages":
            return anthropic_event({"type": "error", "error": {"type": "invalid_request_error", "message": message}})
        body = error_body(message, "invalid_request_error", "content_blocked")
        return b"data: " + body + b"\n\n"

    def record(self) -> None:
        for guardrail in self.text_guards + self.tool_guards:
            record_verdict(self.call, guardrail, "response", self.verdicts.get(guardrail.name, "passed"))
