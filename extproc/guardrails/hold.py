"""Streaming: how much of the text generated so far may leave.

A stream guardrail must not release the first half of a secret before the second
half arrives. Holding back a fixed window (say 128 characters) is safe but delays
the first token by the time the model takes to write the window: hundreds of
milliseconds. What really has to wait is only a tail that could still become a
finding: the word that may be an e-mail's local part, the digits that may become a
card number, "ignore all prev…". `regex` (the `regex` package) answers exactly that
with partial matching: a match that runs into the end of the text is reported as
partial, because more text could complete it.

`Tail.hold_from(text)` is the start of the leftmost possible match that reaches the
end of `text`, complete or partial (a complete one may still grow: `a@b.co` →
`a@b.com`); everything before it can be released. The regexes are the detectors'
own, before their validators (Luhn, checksums), so the hold is a superset of what a
detector could still find.

`regex` prefers any complete match to a partial one, wherever they start, so the
leftmost partial would hide behind a later complete match. Each pattern is therefore
followed by a character class no character is in: nothing can complete, every match
is partial (it has to run into the end of the text), and the search returns the
leftmost. That also lets one regex cover all of a detector's patterns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import regex

from .prefixes import prefix_screen, prefix_screenable

_NEVER = r"[^\x00-\U0010ffff]"      # needs one more character, and none will do
_LONG_TAIL = 256
_FLAG_LETTERS = ((re.IGNORECASE, "i"), (re.MULTILINE, "m"), (re.DOTALL, "s"), (re.VERBOSE, "x"))


class Tail:
    """The hold of a set of patterns: RE2 over their prefixes (prefixes.py), one linear
    pass, for every pattern the prefixes read closely enough; `regex`'s partial matching
    for the others (a lookaround inside a repeat: a private key's body, which the
    prefixes would let run past its END line) and for any the rewrite does not cover."""

    def __init__(self, patterns: Iterable[tuple[str, int]]) -> None:
        screened, partial = [], []
        for pattern in patterns:
            (screened if prefix_screenable(*pattern) else partial).append(pattern)
        self.prefixes = prefix_screen(screened) if screened else None
        if screened and self.prefixes is None:
            partial += screened
        self.regex = None
        self.exact = True
        if partial:
            try:
                self.regex = regex.compile(f"(?:{'|'.join(_scoped(*p) for p in partial)}){_NEVER}", regex.VERSION0)
            except (regex.error, ValueError):
                self.exact = False      # an operator's regex `regex` rejects: the caller's window applies

    def hold_from(self, text: str, start: int = 0) -> int | None:
        """Where the text to hold back starts, looking from `start` on (lookbehinds still
        see what lies before it); len(text): nothing to hold; None when a pattern could
        not be analysed, so the caller falls back to a fixed window."""
        if not self.exact:
            return None
        hold = len(text) if self.prefixes is None else self.prefixes.start(text, start)
        if self.regex is None or hold == start:
            return hold
        # The caller starts where the last hold was: while a possible match from there
        # still runs, the hold stays put. Over a long held run, asking that first,
        # anchored, keeps the work linear: `search` looks for a complete match at every
        # position before it settles for a partial one, quadratic over the run (a base64
        # blob of 4,000 characters cost ~180 ms per chunk). Short text: one call is less.
        if len(text) - start > _LONG_TAIL and self.regex.match(text, start, partial=True) is not None:
            return start
        match = self.regex.search(text, start, partial=True)
        return hold if match is None else min(hold, match.start())


def _scoped(source: str, flags: int) -> str:
    letters = "".join(letter for flag, letter in _FLAG_LETTERS if flags & flag)
    return f"(?{letters}:{source})" if letters else f"(?:{source})"


def of(*compiled) -> list[tuple[str, int]]:
    """(source, flags) of compiled `re` patterns (or fastre.Pattern), for Tail."""
    out = []
    for pattern in compiled:
        python = getattr(pattern, "python", pattern)
        out.append((python.pattern, python.flags))
    return out
