"""Python's re run only where a screen says a match may start.

On text RE2 cannot read the way re does (non-ASCII: fastre.py), a guardrail regex runs
on re, which tries its pattern at every position: ~40 ns a character for the encoded
runs' pattern, ~160 µs for 4 KB of prose with one 'é' in it. A screen (screen.py)
matches wherever re might, so its first match from a position is where re's next match
can start at the earliest. `screened_finditer` asks the screen (RE2's DFA over the
UTF-8 bytes, ~2 µs per KB) for that place, lets re match there only, anchored, and
goes on after re's match, or one character further where re has none: the same matches
as re's finditer, with re run at a few places instead of at every one.

Where the screen's places are mostly not re's (a `\\b` the screen leaves out, next to a
non-ASCII letter, at every place), each costs a search of its own, so after
MISSES_BEFORE_RE such places re's own finditer reads the rest: never much slower than
re alone. A pattern that can match the empty string is left to re's finditer (its
empty matches follow rules of their own).

Imports only screen_sets.py of the gateway.
"""

from __future__ import annotations

import functools
import re
from re import _parser as sre_parse
from typing import Iterator

from .screen_sets import Screen, first_possible, utf8

MISSES_BEFORE_RE = 16


@functools.lru_cache(maxsize=1024)
def _never_empty(pattern: str | bytes, flags: int) -> bool:
    try:
        return sre_parse.parse(pattern, flags).getwidth()[0] > 0
    except Exception:           # noqa: BLE001 - a pattern re compiled: re's own reading decides
        return False


def screened_finditer(python: re.Pattern, screen: Screen, text: str) -> Iterator[re.Match]:
    """re's matches of `python` in `text`, as `python.finditer(text)` gives them, with re
    tried only where `screen` (a screen of `python`, or of patterns that match wherever
    it does) finds a match may start."""
    if not _never_empty(python.pattern, python.flags):
        start = first_possible(screen, text)
        return iter(()) if start is None else python.finditer(text, start)
    try:
        encoded = utf8(text)
    except UnicodeEncodeError:          # a lone surrogate: UTF-8 cannot carry the text
        return python.finditer(text)
    return _matches(python, screen.regex, text, encoded)


def _matches(python: re.Pattern, regex, text: str, encoded: bytes) -> Iterator[re.Match]:
    at, at_byte, misses = 0, 0, 0       # a character offset and its byte offset, together
    search, match, end = regex.search, python.match, len(encoded)
    while at_byte < end:
        found = search(encoded, at_byte)
        if found is None:
            return
        start_byte = found.start()
        try:
            start = at + len(encoded[at_byte:start_byte].decode("utf-8"))
        except UnicodeDecodeError:      # not at a character's start: let re read the rest
            yield from python.finditer(text, at)
            return
        matched = match(text, start)    # re still sees the text before `start` (\b, lookbehinds)
        if matched is not None:
            yield matched
            after = matched.end()
        else:
            misses += 1
            if misses > MISSES_BEFORE_RE:
                yield from python.finditer(text, start)
                return
            after = start + 1
        at_byte = start_byte + len(text[start:after].encode("utf-8"))
        at = after
