"""Unicode disguises taken off before the text detectors look (PII, injection, banned).

A model reads `ｉｇｎｏｒｅ all previous instructions` (fullwidth letters),
`Ig<soft hyphen>nore …`, `bob<zero-width space>@example.com` or a card number
written with no-break spaces (as French text writes them) as the plain text, but
regexes do not. So the detectors see the text folded:
- fullwidth ASCII forms (U+FF01-FF5E) become their ASCII letters, digits and signs;
- Unicode spaces (no-break, en/em, ideographic, ...) become ' ';
- invisible format characters (soft hyphen, zero-width space/joiners, direction
  marks and overrides, word joiner, BOM) are taken out.
A finding in the folded text is mapped back onto the original characters, so a
redaction also covers the invisible ones inside it. ASCII text is never changed:
it costs one `isascii()`. Look-alike letters of other scripts (a Cyrillic 'о' in
"ignоre") are not folded: telling them from real Cyrillic text needs Unicode's
confusables data, not a table here.

Streams: what a chunk holds back for a match still to come (`hold_from`) is judged on
the original text, so a disguised address split across two chunks can leave before
its end arrives.
"""

from __future__ import annotations

import bisect
import re

from . import Finding

_SPACES = "\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000"
_INVISIBLE_CHARS = "\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff"
_INVISIBLE = re.compile(f"[{_INVISIBLE_CHARS}]")
# Most non-ASCII text (accents, other scripts) has none of these: one search says so.
_FOLDABLE = re.compile(f"[\uff01-\uff5e{_SPACES}{_INVISIBLE_CHARS}]")
# One character for one (positions stay where they were), each found by a regex
# rather than `str.translate`, which costs ~50 ns for every character of the text.
_ONE_FOR_ONE = re.compile(f"[\uff01-\uff5e{_SPACES}]")


def _ascii_for(match: re.Match) -> str:
    code = ord(match.group())
    return chr(code - 0xFEE0) if code >= 0xFF01 else " "


class Folded:
    """A text with its disguises off, and the way back to the original's positions."""

    __slots__ = ("text", "_removed_at")

    def __init__(self, text: str, removed_at: list[int]) -> None:
        self.text = text
        # Where, in the folded text, each removed character was (one entry per removal).
        self._removed_at = removed_at

    def original(self, finding: Finding) -> Finding:
        """The finding's span in the original text (invisible characters inside it included)."""
        start = finding.start + bisect.bisect_right(self._removed_at, finding.start)
        last = finding.end - 1
        end = last + bisect.bisect_right(self._removed_at, last) + 1 if finding.end > finding.start else start
        return Finding(start, end, finding.label)


def fold(text: str) -> Folded | None:
    """The text folded, or None when folding changes nothing (always so for ASCII)."""
    if text.isascii() or _FOLDABLE.search(text) is None:
        return None
    one_for_one = _ONE_FOR_ONE.sub(_ascii_for, text)
    removed = [match.start() for match in _INVISIBLE.finditer(one_for_one)]
    if not removed:
        return Folded(one_for_one, []) if one_for_one != text else None
    # A removal at original position p lands at p - (removals before it) in the folded text.
    return Folded(_INVISIBLE.sub("", one_for_one), [p - k for k, p in enumerate(removed)])


class FoldingDetector:
    """A text detector that looks at the folded text and reports original positions."""

    def __init__(self, detector) -> None:
        self.detector = detector

    def find(self, text: str) -> list[Finding]:
        folded = fold(text)
        if folded is None:
            return self.detector.find(text)
        return [folded.original(finding) for finding in self.detector.find(folded.text)]

    def hold_from(self, text: str, start: int = 0) -> int | None:
        return self.detector.hold_from(text, start)
