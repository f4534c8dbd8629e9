"""Guardrails on streamed responses: an SSE event filter with an exact hold-back (a
translated stream's guard reads the conversation model's events instead: stages/guard/events.py).

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

from ...api.provider_json import dumps
from ...api.repeated_keys import repeated_key
from ...api.sse import Event, written
from ...guardrails import Finding, redact
from ...guardrails.config import Guardrail
from ...pipeline.call import Call
from .request import record_verdict

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


class Lane:
    """The held text of one answer's content, or of one of its tool calls' arguments: a
    stream that asked for `n` answers interleaves their chunks, and an answer may stream
    several tool calls, so each text is held and scanned on its own."""

    __slots__ = ("slot", "pending", "context", "template", "choice", "hold_from", "tail_starts", "decided",
                 "generated", "read_whole")

    def __init__(self, guards: int, slot) -> None:
        self.slot = slot                        # where its text goes in an event (Codec.event_with)
        self.pending = ""
        # The end of the released text as generated, before any redaction: later scans
        # read it as the detectors read the whole text (a `^` after a newline a finding
        # took, a lookbehind on a character a placeholder replaced).
        self.context = ""
        self.decided = ""                       # the held text up to the hold, as generated
        self.template: dict | None = None       # the text's last event, to carry held text
        self.choice: dict | None = None         # ... and the part of it that carried the text
        self.hold_from = 0                      # held text from here on may become a finding
        # Per text guardrail, where in the held text a finding may still start: no match
        # can start before it, whatever text comes next, so later scans start there.
        self.tail_starts = [0] * guards
        # The text released so far, as generated, in pieces: kept for the rules that read
        # each answer whole again at its end (StreamGuard.whole_reads), else left empty.
        self.generated: list[str] = []
        self.read_whole = 0                     # the length of it the last whole read read


class StreamGuard:
    """An SSE event filter (see ResponseUsage): hold back, scan, redact or block."""

    def __init__(self, call: Call, policy: list[Guardrail], window: int) -> None:
        self.call = call
        self.codec = call.codec                 # where the caller's events carry generated text
        self.text_guards = [g for g in policy if g.detector is not None and g.type != "tools"]
        self.tool_guards = [g for g in policy if g.type == "tools"]
        # A rule that blocks or logs reads each answer's whole text again at its end: what
        # a hold does not cover (an injection written backwards, spaced or in leetspeak, an
        # encoded run) may lie across text already released, and the whole read finds it,
        # as a read of the whole answer does. It changes no text, so reading it again is
        # safe; a rule that redacts cannot take back what has left and reads as it streams.
        self.whole_reads = [g for g in self.text_guards if g.action != "redact"]
        self.window = window
        # Per text: (answer, field or ("tool", index)); Responses: (output, event type, part).
        self.lanes: dict = {}
        self.blocked: Guardrail | None = None
        self.verdicts: dict[str, str] = {}

    def __call__(self, event: Event, data: dict | None, raw: bytes) -> bytes:
        if self.blocked is not None:
            return b""
        if not isinstance(data, dict):
            return self._before(self._flush(list(self.lanes.values())), raw)
        for guardrail in self.tool_guards:
            if any(n not in guardrail.allow for n in self.codec.called_tools(data)):
                self.verdicts[guardrail.name] = "flagged" if guardrail.action == "log" else "blocked"
                if guardrail.action != "log":
                    return self._block(guardrail)
        pieces = self.codec.stream_pieces(data)
        if pieces:
            out = b""
            for piece in pieces:
                lane = self.lanes.get(piece.key) or \
                    self.lanes.setdefault(piece.key, Lane(len(self.text_guards), piece.slot))
                lane.template, lane.choice = data, piece.choice
                out += piece.header + self._hold(lane, piece.text)
                if self.blocked is not None:
                    return out
            # The rest of the event (another answer's end, say) goes on.
            rest = self.codec.rest_of_event(data, pieces)
            if rest is not None:
                ended = self._lanes(self.codec.ended(rest, self.lanes))
                out += self._before(self._flush(ended), b"data: " + dumps(rest) + b"\n\n")
            return out
        # Texts the event repeats whole (Responses' …done, response.completed).
        changed, blocking = self._check_whole(self.codec.whole_texts(data))
        if blocking is not None:
            return self._block(blocking)
        if changed or repeated_key(event.data, data) is not None:
            raw = written(event, data)
        return self._before(self._flush(self._lanes(self.codec.ended(data, self.lanes))), raw)

    def _before(self, flushed: bytes, raw: bytes) -> bytes:
        """What the answers released at an event's arrival, then the event; only the
        former when their last read blocked the stream (its error event ends it)."""
        return flushed if self.blocked is not None else flushed + raw

    def end(self) -> bytes:
        """The stream ended (cut before its answers' ends, say): every text still held is
        read as complete and leaves, or the stream is blocked."""
        if self.blocked is not None:
            return b""
        return self._flush(list(self.lanes.values()))

    def _lanes(self, keys: list[tuple]) -> list[Lane]:
        return [self.lanes[key] for key in keys]

    def _hold(self, lane: Lane, piece: str) -> bytes:
        """Adds an answer's new text; what can no longer become a finding leaves."""
        lane.pending += piece
        blocked = self._scan(lane)
        if blocked is not None:
            return self._block(blocked)
        if len(lane.pending) > MAX_HOLD_CHARS:
            return self._flush([lane], ending=False)    # bounded work per chunk; complete findings are redacted
        cut = lane.hold_from
        if cut <= 0:
            return b""                          # hold: a secret may be arriving
        release, lane.pending = lane.pending[:cut], lane.pending[cut:]
        lane.context = released_context(lane.context + lane.decided)
        if self.whole_reads:
            lane.generated.append(lane.decided)
        lane.tail_starts = [start - cut for start in lane.tail_starts]
        return self._emit(lane, release)

    def _flush(self, lanes: list[Lane], ending: bool = True) -> bytes:
        """Releases what the given answers hold: their text is complete (`ending`), or
        their hold outgrew its bound."""
        out = b""
        for lane in lanes:
            whole_unread = ending and len(lane.generated) > lane.read_whole    # (released since the last whole read)
            if lane.template is None or not (lane.pending or whole_unread):
                continue
            blocked = self._scan(lane, final=True) if lane.pending else None
            if blocked is None and self.whole_reads:
                if lane.pending:
                    lane.generated.append(lane.decided)
                if ending:
                    blocked = self._read_whole(lane)
            if blocked is not None:
                return out + self._block(blocked)
            if not lane.pending:
                continue
            text, lane.pending = lane.pending, ""
            # A lane flushed before its end (its hold over the bound) goes on with what it
            # released as the context of its next scan, as a hold's release does.
            lane.context = released_context(lane.context + lane.decided)
            lane.tail_starts = [0] * len(lane.tail_starts)
            lane.hold_from = 0
            out += self._emit(lane, text)
        return out

    def _read_whole(self, lane: Lane) -> Guardrail | None:
        """The answer's whole text, as generated, read by the rules that block or log:
        the rule that blocks it, if one does."""
        lane.read_whole = len(lane.generated)
        whole = "".join(lane.generated)
        for guardrail in self.whole_reads:
            if not guardrail.detector.find(whole):
                continue
            if guardrail.action == "block":
                self.verdicts[guardrail.name] = "blocked"
                return guardrail
            self.verdicts.setdefault(guardrail.name, "flagged")
        return None

    def _emit(self, lane: Lane, text: str) -> bytes:
        """The caller's event carrying `text`, released from `lane`."""
        return self.codec.event_with(lane.template, lane.choice, lane.slot, text)

    # --- guardrails -----------------------------------------------------------------

    def _scan(self, lane: Lane, final: bool = False) -> Guardrail | None:
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
        lane.decided = text[offset:hold]
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
        return self.codec.dialect.error_event(message, "content_blocked")

    def record(self) -> None:
        for guardrail in self.text_guards + self.tool_guards:
            record_verdict(self.call, guardrail, "response", self.verdicts.get(guardrail.name, "passed"))
