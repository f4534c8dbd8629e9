"""A detector over a conversation's texts as one text, findings handed back to each piece.

A model reads a conversation as one text: an e-mail address, a card number or a key
split across two messages, two content parts or two tool arguments reaches it whole.
So a detector looks at the texts twice, in their order:
- joined by a newline: what lies within one text, or runs across a line break (an
  instruction whose second half is the next message), is found in one pass over the
  whole conversation (one pass also costs less than a pass per text);
- glued with nothing between them, only around each seam (`SEAM` characters on either
  side): a value cut in two ("sk-proj-AbC" | "dEf...") is found there, and kept when it
  crosses the seam (what does not was found by the first pass).
A finding is handed to every piece it covers, clipped to it, so a redaction rewrites
each piece where it lies.
"""

from __future__ import annotations

import bisect
import operator
from itertools import accumulate

from . import Finding

# How far around a seam a split value is looked for: longer than the longest value the
# detectors find whole that is worth cutting (an OpenAI project key: ~170 characters).
SEAM = 200


def _spread(start: int, end: int, label: str, starts: list[int], ends: list[int],
            out: list[list[Finding]]) -> None:
    """The finding [start, end) of the joined text, clipped to each piece it covers."""
    i = max(0, bisect.bisect_right(starts, start) - 1)
    while i < len(starts) and starts[i] < end:
        low, high = max(start, starts[i]), min(end, ends[i])
        if low < high:
            out[i].append(Finding(low - starts[i], high - starts[i], label))
        i += 1


class Conversation:
    """Texts laid out as one conversation, built once per request and read by every
    guardrail: the newline-joined text and where each text starts in it, and (when a
    detector first asks) the glued view around the seams."""

    __slots__ = ("texts", "joined", "starts", "ends", "_seams")

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.joined = "\n".join(texts)
        self.starts, self.ends = _layout(texts, 1)
        self._seams: _SeamView | None = None

    def same_texts(self, texts: list[str]) -> bool:
        """Whether `texts` are this conversation's texts, the very same strings (a
        redaction writes new ones)."""
        return len(texts) == len(self.texts) and all(map(operator.is_, texts, self.texts))

    def seams(self) -> _SeamView:
        if self._seams is None:
            self._seams = _SeamView(self.texts)
        return self._seams


def _layout(texts: list[str], gap: int) -> tuple[list[int], list[int]]:
    """Where each text starts and ends when they are written `gap` characters apart."""
    lengths = [len(text) + gap for text in texts]
    starts = [0, *accumulate(lengths)]
    starts.pop()
    ends = [start + length - gap for start, length in zip(starts, lengths)]
    return starts, ends


class _SeamView:
    """The texts glued with nothing between them, as windows of SEAM characters around
    each seam (joined by newlines into one view), and the way back to glued positions."""

    __slots__ = ("starts", "ends", "seams", "windows", "view", "view_starts", "joined_starts")

    def __init__(self, texts: list[str]) -> None:
        self.starts, self.ends = _layout(texts, 0)
        total = self.ends[-1] if self.ends else 0
        self.seams = sorted(set(s for s in self.starts[1:] if 0 < s < total))
        self.joined_starts = [start + i for i, start in enumerate(self.starts)]
        windows: list[list[int]] = []         # [from, to) of the glued text, merged
        if len(self.seams) and total <= 2 * SEAM * len(self.seams):
            windows.append([0, total])          # short texts: the windows would cover it all
        else:
            for seam in self.seams:
                low, high = max(0, seam - SEAM), min(total, seam + SEAM)
                if windows and low <= windows[-1][1]:
                    windows[-1][1] = high
                else:
                    windows.append([low, high])
        self.windows = windows
        glued = "".join(texts) if windows else ""
        if len(windows) == 1 and windows[0] == [0, total]:
            self.view = glued
        else:
            self.view = "\n".join(glued[low:high] for low, high in windows)
        self.view_starts, position = [], 0
        for low, high in windows:
            self.view_starts.append(position)
            position += high - low + 1


def find_in_texts(detector, texts: list[str] | Conversation) -> list[list[Finding]]:
    """Each text's findings, the texts read as one conversation."""
    conversation = texts if isinstance(texts, Conversation) else None
    texts = conversation.texts if conversation is not None else texts
    out: list[list[Finding]] = [[] for _ in texts]
    if len(texts) == 1:
        out[0] = detector.find(texts[0])
        return out
    if not texts:
        return out
    if conversation is None:
        conversation = Conversation(texts)
    starts, ends = conversation.starts, conversation.ends
    whole: list[tuple[int, int]] = []
    for finding in find_chunked(detector, conversation.joined):
        whole.append((finding.start, finding.end))
        _spread(finding.start, finding.end, finding.label, starts, ends, out)
    _seams(detector, conversation.seams(), out, whole)
    return out


# A long conversation is read in chunks of this many characters, overlapping by SEAM:
# the detectors' screens say which chunks may hold a finding, and only those are read
# (one value planted in a 101-message conversation costs a read of one chunk, not of all).
CHUNK = 2048

# A long text may first be asked whole: a bet that no screen of the detector matches in
# it, which then spares asking it chunk by chunk (~8 µs a chunk, and their overlap: clean
# prose is read ~1.5x faster so). Lost, the whole read was for nothing: source code (what
# an agent's tool results hold) matches some screen in every text of 20 KB and in ~60% of
# its chunks, and prose with a "2nd" in it matches the injection rules' leetspeak signs.
# So each detector keeps the odds from its last long texts, a count of the clean ones
# less the others between 0 and _CLEAN_MAX (a saturating counter, as a branch predictor
# keeps), and asks a text whole while it is at least _ASK_WHOLE. A text read chunk by
# chunk counts as clean when none of its chunks may hold a finding. What is found is the
# same either way; only the cost differs.
_ASK_WHOLE = 2
_CLEAN_MAX = 3
_clean_counts: dict[int, int] = {}      # id(detector) -> its count (races cost, never findings)


def find_chunked(detector, text: str) -> list[Finding]:
    """The detector's findings in `text`, read chunk by chunk where the text is long."""
    if len(text) <= CHUNK + SEAM:
        return detector.find(text) if detector.might_find(text) else []
    key = id(detector)
    count = _clean_counts.get(key, _CLEAN_MAX)
    if count >= _ASK_WHOLE:
        clean = not detector.might_find(text)
        _learned(key, count, clean)
        if clean:
            return []
    found: dict[tuple[int, int], Finding] = {}
    some_chunk = False
    for low in range(0, len(text), CHUNK):
        start, end = max(0, low - SEAM), min(len(text), low + CHUNK + SEAM)
        chunk = text[start:end]
        if not detector.might_find(chunk):
            continue
        some_chunk = True
        for finding in detector.find(chunk):
            span = (finding.start + start, finding.end + start)
            # A finding cut by the chunk's edge is found whole in the chunk before or after.
            if (finding.start == 0 and start > 0) or (finding.end == len(chunk) and end < len(text)):
                continue
            found.setdefault(span, Finding(span[0], span[1], finding.label))
    if count < _ASK_WHOLE:
        _learned(key, count, not some_chunk)
    return sorted(found.values(), key=lambda f: (f.start, f.end))


def _learned(key: int, count: int, clean: bool) -> None:
    if len(_clean_counts) > 4096:         # (detectors are a config's: bounded, reloads aside)
        _clean_counts.clear()
    _clean_counts[key] = min(count + 1, _CLEAN_MAX) if clean else max(count - 1, 0)


def _seams(detector, seam_view: _SeamView, out: list[list[Finding]], whole: list[tuple[int, int]]) -> None:
    """Findings that cross a seam of the texts glued together, unless a finding of the
    first pass overlaps them (then the value lies whole in one text: "owner" glued to
    "jane@example.com" is not a longer address). `whole` holds the first pass's spans
    in the newline-joined text, whose position p is p - (text index) glued."""
    seams, windows, view_starts = seam_view.seams, seam_view.windows, seam_view.view_starts
    if not seams:
        return
    found = find_chunked(detector, seam_view.view)
    if not found:
        return
    overlaps = []                       # the first pass's spans, in glued positions
    joined_starts = seam_view.joined_starts
    for low, high in whole:
        first = max(0, bisect.bisect_right(joined_starts, low) - 1)
        last = max(0, bisect.bisect_right(joined_starts, max(low, high - 1)) - 1)
        overlaps.append((low - first, high - last))
    for finding in found:
        k = bisect.bisect_right(view_starts, finding.start) - 1
        offset = windows[k][0] - view_starts[k]
        start, end = finding.start + offset, finding.end + offset
        crossing = bisect.bisect_right(seams, start) < len(seams) and seams[bisect.bisect_right(seams, start)] < end
        if crossing and not any(low < end and start < high for low, high in overlaps):
            _spread(start, end, finding.label, seam_view.starts, seam_view.ends, out)
