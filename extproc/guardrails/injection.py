"""Prompt injection rules for the common families.

  override       "ignore all previous instructions", "disregard the rules above"
  impersonation  fake system/developer turns, chat-template tokens, jailbreak personas
  exfiltration   "reveal your system prompt", "repeat the text above verbatim"
  (payloads encoded in base64, hex, percent-encoding or HTML entities are decoded for
  every text guardrail: encoded.py)
Rules are written to need an instruction verb *and* its target, which keeps
benign text ("ignore the noise in this data") passing.
"""

from __future__ import annotations

import re

import re2

from . import Finding
from .backwards import flipped
from .fastre import Pattern
from .hold import Tail, of
from .injection_rules import all_rules
from .screen import Unscreenable, compile_screen, might_match, rewrite, screen

RULES = all_rules()

# One alternation, one pass over the text; the named group says which family matched.
_COMBINED = Pattern("|".join(f"(?P<{family}>{'|'.join(f'(?:{p})' for p in patterns)})"
                             for family, patterns in RULES.items()), re.IGNORECASE)
# Encoded payloads (base64, hex...) are decoded for every text guardrail (encoded.py);
# a stream holds a run that may still be one until it ends.
_BASE64 = Pattern(r"[A-Za-z0-9+/]{24,}={0,2}")
_HEX = Pattern(r"\b(?:[0-9a-fA-F]{2}){16,}\b")


_TAIL = Tail(of(_COMBINED, _BASE64, _HEX))
# Where none of the three might match, find() finds nothing (screen.py).
_SCREEN = screen(_COMBINED.python)


class InjectionDetector:
    @property
    def screen_source(self) -> str | None:
        """The RE2 source might_find() searches with (fold.py folds it into its screen)."""
        return SCREEN_SOURCE

    def might_find(self, text: str) -> bool:
        """False when find() finds nothing in `text` nor in any part of it."""
        return _ANY is None or might_match(_ANY, text)

    def hold_from(self, text: str, start: int = 0) -> int | None:
        return _TAIL.hold_from(text, start)

    def find(self, text: str) -> list[Finding]:
        # One RE2 pass (the rules' screen, and the signs of leetspeak or spaced letters)
        # says when there is nothing to look for: most text.
        if not self.might_find(text):
            return []
        if _SCREEN is None or might_match(_SCREEN, text):
            match = _COMBINED.search(text)
            if match:
                return [Finding(match.start(), match.end(), f"INJECTION:{match.lastgroup}")]
        # An instruction written backwards ("snoitcurtsni suoiverp lla erongi"), read the
        # right way round where the rules read backwards might match (backwards.py).
        if _BACKWARDS is None or might_match(_BACKWARDS, text):
            reversed_text = text[::-1]
            match = _COMBINED.search(reversed_text)
            if match:
                return flipped([Finding(match.start(), match.end(), f"INJECTION:{match.lastgroup}")], len(text))
        # Leetspeak ("1gn0r3 4ll pr3v10u5 1n5truct10n5") and spaced letters ("i g n o r e"),
        # read back as words: only text with digits among letters, or runs of lone letters.
        for view in _views(text):
            if _SCREEN is None or might_match(_SCREEN, view):
                match = _COMBINED.search(view)
                if match:
                    return [Finding(0, len(text), f"INJECTION:{match.lastgroup}")]
        return []


_LEET_SIGNS_SOURCE = r"[A-Za-z][0-9@$][A-Za-z]|\b[0-9][A-Za-z]{2}"
_SPACED_SIGNS_SOURCE = r"(?:\b\w[ .*_/-]){4}"
_LEET_SIGNS = re2.compile(_LEET_SIGNS_SOURCE)
_LEET = [str.maketrans("0134578@$|!", "oieastbasii"), str.maketrans("0134578@$|!", "oleastbasll")]
_SPACED_SIGNS = re2.compile(_SPACED_SIGNS_SOURCE)


def _rules_backwards() -> str | None:
    """The rules' screen read backwards: where the reversed text might hold a match."""
    try:
        return rewrite(_COMBINED.python.pattern, _COMBINED.python.flags, reverse=True)
    except Unscreenable:
        return None


_BACKWARDS_SOURCE = _rules_backwards()
_BACKWARDS = compile_screen(_BACKWARDS_SOURCE)


def _any_screen_source() -> str | None:
    """The rules' screen (both ways) and the views' signs as one RE2 source, or None."""
    try:
        rules = rewrite(_COMBINED.python.pattern, _COMBINED.python.flags)
    except Unscreenable:
        return None
    if _BACKWARDS is None:
        return None
    return f"(?:{rules})|(?:{_BACKWARDS_SOURCE})|{_LEET_SIGNS_SOURCE}|{_SPACED_SIGNS_SOURCE}"


SCREEN_SOURCE = _any_screen_source()
_ANY = compile_screen(SCREEN_SOURCE)
if _ANY is None:
    SCREEN_SOURCE = None
_SPACED_GAPS = re.compile(r"(?<=\w)[ .*_/-]{2,}(?=\w)")
_SPACED = re.compile(r"(?<=\b\w)[ .*_/-](?=\w\b)")


# How far around a sign of leetspeak or spaced letters its views reach: longer than any
# rule's match. Views of 4 KB of text a single '@' or 'x1y' marks would cost a pass of
# Python's re over all of it when the text is not ASCII (~1 ms).
_VIEW_REACH = 200


def _windows(text: str, signs) -> list[tuple[int, int]]:
    """The parts of `text` within _VIEW_REACH of a sign, merged, cut at spaces."""
    windows: list[list[int]] = []
    for sign in signs.finditer(text):
        low, high = max(0, sign.start() - _VIEW_REACH), min(len(text), sign.end() + _VIEW_REACH)
        if windows and low <= windows[-1][1]:
            windows[-1][1] = high
        else:
            windows.append([low, high])
    out = []
    for low, high in windows:
        if low > 0:                     # start and end at a space: no word cut in two
            space = text.find(" ", low)
            low = space + 1 if 0 <= space < high else low
        if high < len(text):
            space = text.rfind(" ", low, high)
            high = space if space > low else high
        out.append((low, high))
    return out


def _leet(text: str):
    """The text with leetspeak read back: '11' as 'll' (a11, wi11), then each digit or
    sign as the letter it stands for, in the two readings of '1' and '|'."""
    doubled = text.replace("11", "ll")
    for table in _LEET:
        yield doubled.translate(table)


def _views(text: str):
    """The text as a reader undoes leetspeak or letters spaced out, around their signs."""
    try:
        leet = _windows(text, _LEET_SIGNS)
        spaced = _windows(text, _SPACED_SIGNS)
    except UnicodeEncodeError:          # a lone surrogate: RE2 reads UTF-8
        return
    for low, high in leet:
        yield from _leet(text[low:high])
    for low, high in spaced:
        joined = _SPACED_GAPS.sub(" ", _SPACED.sub("", text[low:high]))
        yield joined
        if _LEET_SIGNS.search(joined):
            yield from _leet(joined)
