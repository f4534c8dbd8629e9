"""Unicode disguises taken off before the text detectors look (PII, injection, banned).

A model reads `ｉｇｎｏｒｅ all previous instructions` (fullwidth letters), `ignоre`
(a Cyrillic 'о'), `Ig<soft hyphen>nore …`, `bob<zero-width space>@example.com` or a
card number written with no-break spaces (as French text writes them) as the plain
text, but regexes do not. So the detectors see the text folded:
- each look-alike of an ASCII character becomes that character (lookalikes.py:
  Unicode's compatibility forms and confusables: fullwidth, mathematical and circled
  letters, Cyrillic and Greek letters drawn like Latin ones, dashes, quotes);
- Unicode spaces (no-break, en/em, ideographic, ...) become ' ';
- every default-ignorable code point (Unicode's Default_Ignorable_Code_Point: soft
  hyphen, zero-width space/joiners, direction marks and overrides, word joiner, BOM,
  variation selectors such as U+FE0F and U+E0100-E01EF, the combining grapheme joiner
  U+034F, the Arabic letter mark U+061C, Hangul fillers such as U+3164, unassigned
  format characters), the interlinear annotation marks U+FFF9-FFFB and the blank
  braille pattern U+2800 are taken out: a model reads through them;
- combining diacritical marks (U+0300-036F and their supplements: `i̇gnore` with a dot
  above, `ìgnore` spelt with a combining grave) are taken out, so the letter they sit
  on is what the detectors read;
- tag characters (U+E0020-E007E, which render as nothing) become the ASCII character
  they encode: a text written wholly in them is read by a model as that ASCII text.
A finding in the folded text is mapped back onto the original characters, so a
redaction also covers the invisible ones inside it; what a stream holds back for a
match still to come is judged on the folded text too. ASCII text is never changed: it
costs one `isascii()`.

An operator's banned words may be written in a script the fold changes ("секрет"
folds to "cekpeт"): banned rules look at the original text as well (`also_original`).
"""

from __future__ import annotations

import bisect
import re

import re2

from ..api.provider_json import as_utf8
from . import Finding
from .encoded import decoded_runs, might_hold_runs
from .lookalikes import ascii_lookalikes
from .screen_sets import compile_screen, utf8

# Default_Ignorable_Code_Point (Unicode's DerivedCoreProperties.txt), the interlinear
# annotation marks, the blank braille pattern, and combining diacritical marks.
_INVISIBLE_CHARS = ("\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
                    "\u202a-\u202e\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb"
                    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e001f\U000e007f-\U000e0fff"
                    "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f")
# RE2 finds them in a pass over UTF-8 (its positions are the text's); Python's re tests
# a class holding code points beyond the BMP range by range: ~20x slower.
_INVISIBLE = re2.compile(f"[{_INVISIBLE_CHARS}]")
_INVISIBLE_PY = re.compile(f"[{_INVISIBLE_CHARS}]")

_ONE_FOR_ONE: dict[int, str] = {
    **ascii_lookalikes(),
    0x1680: " ",        # Ogham's space mark: NFKC (lookalikes.py) gives the other spaces already
    # Typographic double quotes: the confusables' prototype is two apostrophes, which
    # would shift positions. With them, English typography folds to ASCII text, which
    # the detectors match with RE2 (fastre.py), faster than the original with re.
    **{ord(quote): '"' for quote in "\u201c\u201d\u201e\u201f\u2033\u301d\u301e"},
    # Tag characters: U+E0020-E007E encode ASCII 0x20-0x7E and render as nothing.
    **{0xE0000 + code: chr(code) for code in range(0x20, 0x7F)},
}


def _char_class(codes) -> str:
    """A regex character class of these code points, as ranges."""
    codes = sorted(codes)
    parts, first = [], 0
    for i, code in enumerate(codes):
        if i + 1 == len(codes) or codes[i + 1] != code + 1:
            start = codes[first]
            parts.append(re.escape(chr(start)) + (f"-{re.escape(chr(code))}" if code > start else ""))
            first = i + 1
    return "".join(parts)


# Most non-ASCII text (accents, most scripts) has none of these: one search says so.
# RE2 (a DFA over UTF-8) tests any class in the same time, ~10 µs per 4 KB; Python's re
# tests a class holding code points beyond the BMP range by range (~1.3 ms). A plain
# character class means the same to both engines.
# Asked of the text's UTF-8 as the detectors' screens encoded it (screen_sets.py's `utf8`), not
# of the text, which RE2's wrapper would encode again.
_FOLDABLE = compile_screen(f"[{_char_class(_ONE_FOR_ONE)}{_INVISIBLE_CHARS}]")


class Folded:
    """A text with its disguises off, and the way back to the original's positions."""

    __slots__ = ("text", "_removed_at", "_removed_from")

    def __init__(self, text: str, removed_from: list[int]) -> None:
        self.text = text
        # Where each removed character was: in the original text, and in the folded one
        # (a removal at original position p lands at p - (removals before it)).
        self._removed_from = removed_from
        self._removed_at = [p - k for k, p in enumerate(removed_from)]

    def original(self, finding: Finding) -> Finding:
        """The finding's span in the original text (invisible characters inside it included)."""
        start = finding.start + bisect.bisect_right(self._removed_at, finding.start)
        last = finding.end - 1
        end = last + bisect.bisect_right(self._removed_at, last) + 1 if finding.end > finding.start else start
        return Finding(start, end, finding.label)

    def folded_position(self, original: int) -> int:
        return original - bisect.bisect_left(self._removed_from, original)

    def original_position(self, folded: int) -> int:
        """Where folded position `folded` starts in the original, invisible characters
        just before it included (held text keeps them with what follows)."""
        return folded + bisect.bisect_left(self._removed_at, folded)


# The last texts folded: each text guardrail folds the same texts (a conversation's
# joined text and its seam view, a stream's held text, a one-message request), and
# non-ASCII text costs ~60 ns per character to fold.
_RECENT = 4
_recent: list[tuple[str, Folded | None]] = []


def fold(text: str) -> Folded | None:
    """The text folded, or None when folding changes nothing (always so for ASCII)."""
    if text.isascii():
        return None
    for seen, folded in _recent:
        if seen is text:
            return folded
    folded = _fold(text)
    _recent.insert(0, (text, folded))
    del _recent[_RECENT:]
    return folded


def _fold(text: str) -> Folded | None:
    try:
        foldable = _FOLDABLE.matches(text)
    except UnicodeEncodeError:      # RE2 reads UTF-8: a lone surrogate (a provider's split emoji)
        foldable = _FOLDABLE.search(as_utf8(text)) is not None
    if not foldable:
        return None
    one_for_one = text.translate(_ONE_FOR_ONE)
    invisible = _INVISIBLE if _utf8_safe(one_for_one) else _INVISIBLE_PY
    removed = [match.start() for match in invisible.finditer(one_for_one)]
    if not removed:
        return Folded(one_for_one, []) if one_for_one != text else None
    return Folded(invisible.sub("", one_for_one), removed)


def _utf8_safe(text: str) -> bool:
    """False for a text UTF-8 cannot carry (a lone surrogate): RE2 cannot read it."""
    try:
        utf8(text)
    except UnicodeEncodeError:
        return False
    return True


class FoldingDetector:
    """A text detector that looks at the folded text and reports original positions."""

    def __init__(self, detector, also_original: bool = False) -> None:
        self.detector = detector
        self.also_original = also_original

    def find(self, text: str) -> list[Finding]:
        found = self._find(text)
        folded = fold(text)
        # Encoded runs (base64, hex, percent, HTML entities: encoded.py), decoded once.
        view = text if folded is None else folded.text
        for start, end, decoded in decoded_runs(view):
            inner = self._find(decoded)
            if inner:
                run = Finding(start, end, inner[0].label)
                found.append(run if folded is None else folded.original(run))
        return found

    def _find(self, text: str) -> list[Finding]:
        folded = fold(text)
        if folded is None:
            return self.detector.find(text)
        found = [folded.original(finding) for finding in self.detector.find(folded.text)]
        if self.also_original:      # the same span found both ways is one finding
            found = sorted(set(found + self.detector.find(text)), key=lambda f: (f.start, f.end))
        return found

    def might_find(self, text: str) -> bool:
        """False when find() finds nothing in `text` nor in any part of it (folding is
        character by character: a part's folded text is part of the whole's)."""
        folded = fold(text)
        view = text if folded is None else folded.text
        # The detector's screens and the encoded runs' each ask RE2 Sets of their own (the
        # runs' screen counts runs of letters and digits, and in one Set with another
        # screen that counts, their states multiply: screen_sets.py, ScreenSet). Each keeps its
        # answer for the text, which find() asks again.
        found = self.detector.might_find(view) or might_hold_runs(view)
        return found or \
            (folded is not None and self.also_original and self.detector.might_find(text))

    def hold_from(self, text: str, start: int = 0) -> int | None:
        folded = fold(text)
        if folded is None:
            return self.detector.hold_from(text, start)
        hold = self.detector.hold_from(folded.text, folded.folded_position(start))
        if hold is not None:        # (never before `start`, even with invisible characters there)
            hold = max(start, folded.original_position(hold))
        if not self.also_original or hold is None:
            return hold
        original = self.detector.hold_from(text, start)
        return None if original is None else min(hold, original)
