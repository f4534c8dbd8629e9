"""Screens: a regex widened so that RE2 can tell, on any text, when Python's re cannot match.

fastre.py runs a guardrail regex on RE2 exactly where RE2 and re agree: ASCII text.
Other text needed Python's re (its `\\b`, `\\d`, `\\w`, `\\s` and case folding are
Unicode-aware; RE2's are not), at up to ~270 ns a character for the injection rules:
one 'é', '…' or emoji in a 4 KB prompt took its guardrails from ~0.05 to ~3 ms.

A screen is the pattern rewritten for RE2 to match at least everything re matches:
- each one-character atom (a literal, a class, `\\d` `\\w` `\\s`, '.') becomes the set
  of code points re matches with it, under the pattern's flags (case folding
  included), spelled out as ranges; the sets come from re itself, run once over every
  code point, so they follow the running Python's Unicode tables;
- zero-width assertions (`\\b`, `^`, `$`, lookarounds) are dropped: a pattern without
  them matches more, never less; a backreference becomes "any text";
- repeats keep their bounds (RE2 takes at most 1,000: a larger one is widened).
Where the screen finds nothing, re would find nothing, which is what most text gets;
where it finds something, re runs as before. A pattern the rewrite does not cover
(a case-insensitive class with a long non-ASCII range, say) gets no screen: re alone.
Here the sources are written; screen_sets.py compiles them and asks them of texts.
"""

from __future__ import annotations

import functools
import re
import string
from array import array

# The parser re itself compiles with (Python 3.11 to 3.14 have it at this place; its
# node types are checked by tests/test_screen.py against re over every code point).
from re import _constants as sre
from re import _parser as sre_parse

from . import screens_made
from .screen_sets import compile_screen

Ranges = tuple[tuple[int, int], ...]    # sorted, disjoint, inclusive

_LAST = 0x10FFFF
_RE2_MAX_REPEAT = 1000
_WIDEN_REPEAT_OVER = 8
_LARGE_CLASS = 64          # ranges: beyond this, a bounded repeat of it is widened


def _large(item, flags: int, rewrite) -> bool:
    """Whether a repeated item is one character of a class with many ranges."""
    if len(item) != 1:
        return False
    ranges = rewrite.one_character(*item[0], flags)
    return ranges is not None and len(ranges) > _LARGE_CLASS


class Unscreenable(ValueError):
    """The pattern has a construct the rewrite does not cover."""


@functools.cache
def every_code_point() -> str:
    """U+0000 to U+10FFFF as one string (surrogates included), built once (~50 ms, 4.4 MB)."""
    return array("I", range(_LAST + 1)).tobytes().decode("utf-32-le", "surrogatepass")


@functools.cache
def _matched_by(atom: str, flags: int) -> Ranges:
    """The code points re matches with this one-character pattern."""
    return tuple((m.start(), m.end() - 1) for m in re.finditer(f"(?:{atom})+", every_code_point(), flags))


def _union(*sets: Ranges) -> Ranges:
    merged: list[list[int]] = []
    for low, high in sorted(r for ranges in sets for r in ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    return tuple((low, high) for low, high in merged)


def _complement(ranges: Ranges) -> Ranges:
    out, start = [], 0
    for low, high in ranges:
        if low > start:
            out.append((start, low - 1))
        start = high + 1
    if start <= _LAST:
        out.append((start, _LAST))
    return tuple(out)


# Each category as (the class re matches, whether it is that class's complement).
_CATEGORIES = {sre.CATEGORY_DIGIT: (r"\d", False), sre.CATEGORY_NOT_DIGIT: (r"\d", True),
               sre.CATEGORY_SPACE: (r"\s", False), sre.CATEGORY_NOT_SPACE: (r"\s", True),
               sre.CATEGORY_WORD: (r"\w", False), sre.CATEGORY_NOT_WORD: (r"\w", True)}


# Letters with case all lie below U+20000 (Latin to Adlam), their partners too.
_CASED_END = 0x20000
# A case-insensitive class with a longer non-ASCII range (each of its letters costs a
# scan of the cased planes, ~2 ms) gets no screen.
_MAX_CASED_RANGE = 256


@functools.cache
def _case_partners(char: str, case_flags: int) -> Ranges:
    """What re matches with this non-ASCII letter, case-insensitively (Greek 'σ': Σ, ς)."""
    return tuple((m.start(), m.end() - 1) for m in re.finditer(
        f"(?:{re.escape(char)})+", every_code_point()[:_CASED_END], case_flags))


@functools.cache
def _letter_partners(case_flags: int) -> dict[str, Ranges]:
    """Each ASCII letter's case-insensitive matches under re: both cases, and the few
    other letters re's case folding adds ('K' Kelvin sign for k, dotless 'ı' for i...)."""
    others = [code for low, high in _matched_by("[a-z]", case_flags) for code in range(low, high + 1)
              if code >= 128]
    return {letter: _union(((ord(letter), ord(letter)), (ord(letter.upper()), ord(letter.upper()))),
                           *(((code, code),) for code in others if re.fullmatch(letter, chr(code), case_flags)))
            for letter in string.ascii_lowercase}


class _Rewrite:
    def __init__(self, reverse: bool = False) -> None:
        self.reverse = reverse          # the screen of the pattern read backwards

    def _case_flags(self, flags: int) -> int:
        return flags & (re.IGNORECASE | re.ASCII)

    def _literal(self, code: int, flags: int) -> Ranges:
        if not flags & re.IGNORECASE:
            return ((code, code),)
        char = chr(code)
        if code < 128 and char in string.ascii_letters:
            return _letter_partners(self._case_flags(flags))[char.lower()]
        if char.lower() == char == char.upper():     # uncased: no other character matches it
            return ((code, code),)
        return _case_partners(char, self._case_flags(flags))

    def _range(self, low: int, high: int, flags: int) -> Ranges:
        if not flags & re.IGNORECASE:
            return ((low, high),)
        if high >= 128 and high - max(low, 128) >= _MAX_CASED_RANGE:
            raise Unscreenable("long case-insensitive range beyond ASCII")
        return _union(((low, high),), *(self._literal(code, flags) for code in range(low, high + 1)
                                        if chr(code) in string.ascii_letters or code >= 128))

    def _category(self, category, flags: int) -> Ranges:
        atom, negated = _CATEGORIES[category]
        ranges = _matched_by(atom, flags & re.ASCII)
        return _complement(ranges) if negated else ranges

    def _class(self, items, flags: int) -> Ranges:
        negate = bool(items) and items[0][0] is sre.NEGATE
        parts = []
        for op, value in items[1:] if negate else items:
            if op is sre.LITERAL:
                parts.append(self._literal(value, flags))
            elif op is sre.RANGE:
                parts.append(self._range(*value, flags))
            elif op is sre.CATEGORY:
                parts.append(self._category(value, flags))
            else:
                raise Unscreenable(f"class item {op}")
        ranges = _union(*parts)
        return _complement(ranges) if negate else ranges

    def one_character(self, op, value, flags: int) -> Ranges | None:
        if op is sre.LITERAL:
            return self._literal(value, flags)
        if op is sre.NOT_LITERAL:
            return _complement(self._literal(value, flags))
        if op is sre.IN:
            return self._class(value, flags)
        if op is sre.ANY:
            return ((0, _LAST),) if flags & re.DOTALL else _complement(((10, 10),))
        if op is sre.CATEGORY:
            return self._category(value, flags)
        return None

    def sequence(self, nodes, flags: int) -> str:
        parts = [self.node(op, value, flags) for op, value in nodes]
        return "".join(reversed(parts) if self.reverse else parts)

    def node(self, op, value, flags: int) -> str:
        ranges = self.one_character(op, value, flags)
        if ranges is not None:
            return _re2_class(ranges)
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
            low, high, item = value     # lazy or possessive: matches a subset of greedy's
            low = min(low, _RE2_MAX_REPEAT)
            bound = "" if high is sre.MAXREPEAT or high > _RE2_MAX_REPEAT or widened(high, item, flags, self) \
                else str(high)
            return f"(?:{self.sequence(item, flags)}){{{low},{bound}}}"
        if op is sre.SUBPATTERN:
            _group, add, remove, item = value
            return f"(?:{self.sequence(item, (flags | add) & ~remove)})"
        if op is sre.ATOMIC_GROUP:
            return f"(?:{self.sequence(value, flags)})"
        if op is sre.BRANCH:
            return "(?:" + "|".join(self.sequence(item, flags) for item in value[1]) + ")"
        if op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):
            return ""                   # zero-width: dropped, the screen matches more
        if op is sre.GROUPREF:
            return "(?s:.*)"            # whatever the group held
        if op is sre.GROUPREF_EXISTS:
            _group, yes, no = value
            return f"(?:{self.sequence(yes, flags)}|{self.sequence(no, flags) if no else ''})"
        raise Unscreenable(f"regex operator {op}")


Rewrite = _Rewrite


def widened(high: int, item, flags: int, rewrite: _Rewrite) -> bool:
    """Whether a repeat's upper bound is dropped: a long bounded repeat of a large class
    (`[\\w.]{1,64}`: Unicode's letters) is as many copies of the class in RE2's automaton,
    whose DFA then outgrows its memory and RE2 falls back to a slow engine."""
    return high is not sre.MAXREPEAT and high > _WIDEN_REPEAT_OVER and _large(item, flags, rewrite)


@functools.lru_cache(maxsize=8192)     # a rule's pattern repeats its classes: a word's letters
def _re2_class(ranges: Ranges) -> str:
    parts = []
    for low, high in ranges:
        # RE2 reads UTF-8, which cannot hold surrogates: leave them out of the class.
        for start, end in ((low, min(high, 0xD7FF)), (max(low, 0xE000), high)):
            if start <= end:
                parts.append(f"\\x{{{start:x}}}" if start == end else f"\\x{{{start:x}}}-\\x{{{end:x}}}")
    return f"[{''.join(parts)}]" if parts else r"[^\x00-\x{10ffff}]"


@functools.lru_cache(maxsize=256)      # a detector asks for its pattern's screen more than once
def rewrite(pattern: str, flags: int = 0, reverse: bool = False) -> str:
    """The screen's RE2 source; Unscreenable when the rewrite does not cover the pattern.
    With `reverse`, the screen of the pattern read backwards: it matches in a text
    wherever the pattern might match in that text reversed (each sequence's order
    turned round; one-character atoms and repeats read the same both ways).
    The built-in rules' screens are read as shipped (screens_made.py), the others made."""
    made = screens_made.shipped(pattern, flags, reverse) if screens_made.from_file_allowed() else screens_made.NOT_MADE
    if made is None:
        raise Unscreenable("the rewrite does not cover this pattern (as made)")
    return made if made is not screens_made.NOT_MADE else _rewritten(pattern, flags, reverse)


re2_class = _re2_class
union = _union


def parsed_pattern(pattern: str, flags: int = 0):
    """re's parse of the pattern and its flags, inline ones included."""
    parsed = sre_parse.parse(pattern, flags)
    if parsed.state.flags & re.LOCALE:
        raise Unscreenable("locale-dependent pattern")
    return parsed, parsed.state.flags


def _rewritten(pattern: str, flags: int = 0, reverse: bool = False) -> str:
    parsed, flags = parsed_pattern(pattern, flags)
    return _Rewrite(reverse).sequence(parsed, flags)


def screen_source(*patterns: re.Pattern | tuple[str, int], reverse: bool = False) -> str | None:
    """The RE2 source of one screen for all the patterns (read backwards with
    `reverse`), or None."""
    try:
        sources = [rewrite(*(p if isinstance(p, tuple) else (p.pattern, p.flags)), reverse=reverse)
                   for p in patterns]
    except Unscreenable:
        return None
    return "|".join(f"(?:{s})" for s in sources)


def screen(*patterns: re.Pattern | tuple[str, int]):
    """One RE2 regex that matches wherever any of the patterns might, or None."""
    return compile_screen(screen_source(*patterns))
