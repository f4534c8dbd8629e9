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
from .screen import Unscreenable, rewrite, screen, screen_source
from .screen_sets import EVERY, ScreenSet, might_match

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
    def might_find(self, text: str) -> bool:
        """False when find() finds nothing in `text` nor in any part of it."""
        return _ANY is None or bool(_ANY.matching(text))

    def hold_from(self, text: str, start: int = 0) -> int | None:
        return _TAIL.hold_from(text, start)

    def find(self, text: str) -> list[Finding]:
        # The rules' screen each way, and the signs of leetspeak or spaced letters, asked
        # once (a guardrail asked might_find() first: the answer is kept) say when there is
        # nothing to look for (most text) and which readings to try.
        matching = _ANY.matching(text) if _ANY is not None else EVERY
        if not matching:
            return []
        if _FORWARD in matching:
            match = _COMBINED.search(text)
            if match:
                return [Finding(match.start(), match.end(), f"INJECTION:{match.lastgroup}")]
        # An instruction written backwards ("snoitcurtsni suoiverp lla erongi"), read the
        # right way round where the rules read backwards might match (backwards.py).
        if _BACKWARD in matching:
            reversed_text = text[::-1]
            match = _COMBINED.search(reversed_text)
            if match:
                return flipped([Finding(match.start(), match.end(), f"INJECTION:{match.lastgroup}")], len(text))
        # Leetspeak ("1gn0r3 4ll pr3v10u5 1n5truct10n5") and spaced letters ("i g n o r e"),
        # read back as words: only text with digits among letters, or runs of lone letters.
        if _SIGNS not in matching:
            return []
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


def _screen_sources() -> list[str] | None:
    """The rules' screen each way and the views' signs, or None (no screen: read it all)."""
    forward = screen_source(_COMBINED.python)
    if forward is None or _BACKWARDS_SOURCE is None:
        return None
    return [forward, _BACKWARDS_SOURCE, f"{_LEET_SIGNS_SOURCE}|{_SPACED_SIGNS_SOURCE}"]


# Each in an RE2 Set of its own (in one Set their states multiply: on code, 37 MB/s
# against ~65 apart; screen_sets.py, ScreenSet), which keeps its answer for the last text.
_FORWARD, _BACKWARD, _SIGNS = 0, 1, 2
_SOURCES = _screen_sources()
_ANY = ScreenSet(_SOURCES, frozenset(range(len(_SOURCES)))) if _SOURCES is not None else None
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
