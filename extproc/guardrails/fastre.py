"""Guardrail regexes: RE2 on ASCII text, Python's re on anything else. Same matches.

Python's re backtracks through every alternative at every position: the prompt
injection rules took ~270 ns per character. RE2 (google-re2) runs a DFA in
linear time: 30-100x faster on the same rules (bench/guardrails.py), and no body
can make it backtrack.

On ASCII text the two engines agree match for match once `\\s` is spelled the
way Python reads it (RE2's `\\s` leaves out \\v and \\x1c-\\x1f). On other text
they differ (Python's `\\b`, `\\d`, `\\w` and case folding are Unicode-aware,
RE2's are not), so non-ASCII text keeps Python's re and the rules keep the
meaning they were written with; a screen (screen.py) run by RE2 says where re's matches
may start, re is run there only (screened.py), and where the screen finds nothing, which
is most of the time, re is not run at all. Patterns RE2 cannot
compile (lookarounds, backreferences: operators may write those in banned patterns)
use re, behind their screen, on ASCII text too.
"""

from __future__ import annotations

import re

import re2

from .screen import screen
from .screened import screened_finditer

# Python's \s restricted to ASCII, which is all RE2 ever sees here.
_ASCII_SPACE = r"\t-\r\x1c-\x1f "


def for_re2(pattern: str) -> str:
    """The pattern with `\\s`/`\\S` spelled out; ValueError where that cannot be done."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            escape = pattern[i:i + 2]
            if escape == r"\s":
                out.append(_ASCII_SPACE if in_class else f"[{_ASCII_SPACE}]")
            elif escape == r"\S":
                if in_class:
                    raise ValueError(r"\S inside a character class")
                out.append(f"[^{_ASCII_SPACE}]")
            else:
                out.append(escape)
            i += 2
            continue
        if char == "[" and not in_class:
            in_class = True
            out.append(char)
            # A ']' (or '^]') right after '[' is a literal, not the end of the class.
            for literal in ("^]", "]"):
                if pattern.startswith(literal, i + 1):
                    out.append(literal)
                    i += len(literal)
                    break
        elif char == "]" and in_class:
            in_class = False
            out.append(char)
        else:
            out.append(char)
        i += 1
    return "".join(out)


class Pattern:
    """A compiled guardrail regex with re's search/finditer interface."""

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self.python = re.compile(pattern, flags)
        self.re2 = None
        if flags & ~re.IGNORECASE:
            return                      # only IGNORECASE maps onto RE2 options here
        options = re2.Options()
        options.case_sensitive = not flags & re.IGNORECASE
        options.max_mem = 64 << 20      # room for the DFA of the larger rule sets
        options.log_errors = False      # an unsupported pattern falls back quietly
        try:
            self.re2 = re2.compile(for_re2(pattern), options)
        except (ValueError, re2.error):
            self.re2 = None

        self.screen = screen(self.python)

    def search(self, text: str):
        return next(self.finditer(text), None)

    def finditer(self, text: str):
        """RE2 where it reads as re does (ASCII text); elsewhere re, run only where the
        screen says a match may start (screened.py), or everywhere when there is no screen."""
        if self.re2 is not None and text.isascii():
            return self.re2.finditer(text)
        if self.screen is None:
            return self.python.finditer(text)
        return screened_finditer(self.python, self.screen, text)
