"""Banned words, regexes and topics from config, compiled once into one regex."""

from __future__ import annotations

import re
from re import _parser as sre_parse       # as screen.py: the parser re itself compiles with

from . import Finding
from .fastre import Pattern
from .hold import Tail, of
from .screen_sets import might_match

_GLOBAL_FLAGS = re.compile(r"\(\?([aiLmsux]+)\)")


def scoped(pattern: str) -> str:
    """`(?i)internal only` → `(?i:internal only)`: global flags must open the whole
    expression, and here each pattern is one alternative of a larger one."""
    match = _GLOBAL_FLAGS.match(pattern)
    return f"(?{match.group(1)}:{pattern[match.end():]})" if match else pattern


def shortest_match(pattern: str) -> int:
    """The fewest characters a match of `pattern` can span (lookarounds and anchors span
    none): 0 for a pattern that can match the empty string."""
    return sre_parse.parse(scoped(pattern)).getwidth()[0]


class BannedDetector:
    def __init__(self, words: tuple[str, ...], patterns: tuple[str, ...], label: str = "BANNED") -> None:
        parts = [rf"\b{re.escape(word)}\b" for word in words] + [scoped(p) for p in patterns]
        self.regex = Pattern("|".join(f"(?:{p})" for p in parts), re.IGNORECASE) if parts else None
        self.label = label
        self.tail = Tail(of(self.regex) if self.regex else [])

    def might_find(self, text: str) -> bool:
        """False when find() finds nothing in `text` nor in any part of it."""
        if self.regex is None:
            return False
        return self.regex.screen is None or might_match(self.regex.screen, text)

    def find(self, text: str) -> list[Finding]:
        if self.regex is None:
            return []
        return [Finding(m.start(), m.end(), self.label) for m in self.regex.finditer(text)]

    def hold_from(self, text: str, start: int = 0) -> int | None:
        return self.tail.hold_from(text, start)
