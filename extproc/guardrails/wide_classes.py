"""A character class's non-ASCII part, written short for RE2 and never narrower.

Python's `\\d`, `\\w` and their complements read Unicode: dozens to hundreds of ranges
each. The prefix screens (prefixes.py) repeat each class many times over, so classes
spelt out range by range made a card's prefixes 265 KB of RE2 source. Reading every
non-ASCII character alike is short but loose: a Cyrillic letter would read as a digit,
and a stream in Russian would hold back whole sentences as a card number that might be
under way. Between the two, a class's non-ASCII part is written as:

- its own ranges, when it has few (`\\s`: a handful);
- else one of a few Unicode properties that holds it (`\\p{Nd}` for `\\d`, `[\\p{L}\\p{N}]`
  for `\\w`), or everything but one (`\\W`); the properties' members are read off RE2's own
  tables, so the class is never narrower where RE2's Unicode version differs from Python's
  (a later RE2, whose tables only gain members, reads a shipped property at least as wide);
- else any non-ASCII character.

It must not import the detectors (screen.py's ranges only).
"""

from __future__ import annotations

import functools

import re2

from .screen import Ranges, every_code_point, union

_ASCII_END = 0x80
_SURROGATES = (0xD800, 0xDFFF)
_REPLACEMENT = 0xFFFD       # what a lone surrogate is read as (prefixes.py)
_EXACT_UP_TO = 16           # ranges written out as they are
# Properties, narrowest first, tried for a class and for its complement.
_PROPERTIES = (r"\p{Nd}", r"\p{N}", r"\p{L}\p{N}", r"\p{L}\p{M}\p{N}")


def non_ascii_part(ranges: Ranges) -> str | None:
    """RE2 source (a bracket's contents, or a negated bracket) for the non-ASCII part of
    the class `ranges`, at least as wide; None when the class has none."""
    wide = tuple((max(low, _ASCII_END), high) for low, high in ranges if high >= _ASCII_END)
    if not wide:
        return None
    surrogate = any(low <= _SURROGATES[1] and high >= _SURROGATES[0] for low, high in wide)
    if surrogate:
        wide = union(wide, ((_REPLACEMENT, _REPLACEMENT),))
    if len(wide) <= _EXACT_UP_TO:
        return "[" + "".join(_range(low, high) for low, high in wide) + "]"
    for prop in _PROPERTIES:
        if _within(wide, _members(prop)):
            return f"[{prop}]"
    for prop in _PROPERTIES:
        if not _meets(wide, _members(prop)):
            return f"[^\\x00-\\x7f{prop}]"
    return r"[^\x00-\x7f]"


def _range(low: int, high: int) -> str:
    return f"\\x{{{low:x}}}" if low == high else f"\\x{{{low:x}}}-\\x{{{high:x}}}"


@functools.cache
def _non_ascii_utf8() -> bytes:
    """Every non-ASCII code point but the surrogates (which have no UTF-8), as UTF-8."""
    every = every_code_point()
    return (every[_ASCII_END:_SURROGATES[0]] + every[_SURROGATES[1] + 1:]).encode("utf-8")


@functools.cache
def _members(prop: str) -> Ranges:
    """The non-ASCII code points RE2's tables put in `[prop]`: ~0.1 s each, made only
    for a pattern whose prefixes are not shipped (screens_made.py)."""
    data = _non_ascii_utf8()
    found = []
    for match in re2.compile(f"[{prop}]+").finditer(data):
        start, end = match.span()
        first = data[start:start + 4].decode("utf-8", "ignore")[0]
        last = data[max(start, end - 4):end].decode("utf-8", "ignore")[-1]
        found.append((ord(first), ord(last)))
    return tuple(found)


def _within(ranges: Ranges, members: Ranges) -> bool:
    """Whether every code point of `ranges` (surrogates aside) is among `members`."""
    return all(_covered(low, high, members) for low, high in _without_surrogates(ranges))


def _meets(ranges: Ranges, members: Ranges) -> bool:
    return any(low <= m_high and m_low <= high for low, high in ranges for m_low, m_high in members)


def _covered(low: int, high: int, members: Ranges) -> bool:
    at = low
    for m_low, m_high in members:
        if m_high < at:
            continue
        if m_low > at:
            return False
        at = m_high + 1
        if at > high:
            return True
    return False


def _without_surrogates(ranges: Ranges) -> Ranges:
    out = []
    for low, high in ranges:
        if high < _SURROGATES[0] or low > _SURROGATES[1]:
            out.append((low, high))
            continue
        if low < _SURROGATES[0]:
            out.append((low, _SURROGATES[0] - 1))
        if high > _SURROGATES[1]:
            out.append((_SURROGATES[1] + 1, high))
    return tuple(out)
