"""Prefix screens: where, at the end of a text, a match may still be under way.

A stream's hold (hold.py) keeps back the text from the leftmost place where what has
arrived could still grow into a match: `text[x:]` is the start of some match. `regex`
answers that exactly with partial matching, but tries a match at every place of the
text, each pattern in turn: ~0.25 µs a character per pattern, most of a stream
guardrail's work per event.

The prefixes of a regex's matches are themselves a regular language, written here as
an RE2 pattern from the screen's rewrite (screen.py): a sequence `A B C` becomes
`A (B (C | C') | B') | A'`, where each X' stands for the prefixes of X, a one-character
atom `c` becomes `c?`, a repeat `X{m,n}` becomes `X{0,n-1} X'`, lookbehinds and anchors
are dropped, and a lookahead that reads k characters lets k - 1 characters of anything
follow (the match stays undecided until they arrive). It matches every prefix of every
match and a little more (the screen's classes are supersets, its assertions gone), so a
hold read from it never starts after the exact one. Followed by `\\z`, RE2 finds its leftmost match in one linear pass: that
place is where the hold starts.
"""

from __future__ import annotations

import functools
import re

import re2
from re2 import _re2

from . import screens_made
from .screen import Rewrite, Unscreenable, parsed_pattern, re2_class, sre, widened
from .screen_sets import utf8
from .wide_classes import non_ascii_part

_OPTIONS = re2.Options()
_OPTIONS.max_mem = 64 << 20
_OPTIONS.log_errors = False


_SURROGATE = re.compile("[\ud800-\udfff]")
_UNANCHORED = _re2.RE2.Anchor.UNANCHORED


class _Short(Rewrite):
    """The screen's rewrite with each class's non-ASCII part written short
    (wide_classes.py): spelt range by range, Unicode's digits and letters made a card's
    prefixes 265 KB of RE2 source; short, a few KB."""

    def node(self, op, value, flags: int) -> str:
        ranges = self.one_character(op, value, flags)
        if ranges is None:
            return super().node(op, value, flags)
        ascii_part = tuple((low, min(high, 0x7F)) for low, high in ranges if low < 0x80)
        wide = non_ascii_part(ranges)
        if wide is None:
            return re2_class(ascii_part)
        if not ascii_part:
            return wide
        if wide.startswith("[^"):
            return f"(?:{re2_class(ascii_part)}|{wide})"
        return re2_class(ascii_part)[:-1] + wide[1:]


class _Prefixes:
    """The RE2 source of the prefixes of a parsed pattern's matches."""

    def __init__(self) -> None:
        self.whole = _Short()           # a node's own screen: what a whole match of it reads

    def sequence(self, nodes, flags: int) -> str:
        # Prefixes of n1 n2 ... nk: n1 whole then a prefix of the rest, or a prefix of n1.
        out = ""
        for op, value in reversed(list(nodes)):
            whole, prefix = self.whole.node(op, value, flags), self.node(op, value, flags)
            if op is sre.AT and value in _STARTS:
                # A match that starts a line starts nowhere else: kept, it leaves the space
                # after a sentence alone, where a rule opens with `^\s*` (RE2 reads these
                # anchors as re does; `\b`, which RE2 reads in ASCII only, is dropped).
                whole = "(?m:^)" if value is sre.AT_BEGINNING and flags & re.MULTILINE else r"\A"
            if not whole and not prefix:
                continue                    # zero-width: dropped
            out = f"(?:{whole}{out}|{prefix})" if out else prefix
        return out

    def node(self, op, value, flags: int) -> str:
        if self.whole.one_character(op, value, flags) is not None:
            return f"(?:{self.whole.node(op, value, flags)})?"
        if op in _REPEATS:
            _low, high, item = value
            if high == 0:
                return ""
            whole, prefix = self.whole.sequence(item, flags), self.sequence(item, flags)
            unbounded = widened(high, item, flags, self.whole) or high - 1 > 1000
            bound = "*" if unbounded else f"{{0,{high - 1}}}"
            return f"(?:{whole}){bound}(?:{prefix})"
        if op is sre.SUBPATTERN:
            _group, add, remove, item = value
            return self.sequence(item, (flags | add) & ~remove)
        if op is sre.ATOMIC_GROUP:
            return self.sequence(value, flags)
        if op is sre.BRANCH:
            return "(?:" + "|".join(self.sequence(item, flags) for item in value[1]) + ")"
        if op is sre.GROUPREF_EXISTS:
            _group, yes, no = value
            return f"(?:{self.sequence(yes, flags)}|{self.sequence(no, flags) if no else ''})"
        if op in _LOOKAROUNDS and value[0] == 1:
            return _slack(_reach(value[1]))
        if op is sre.AT and value is sre.AT_END and not flags & re.MULTILINE:
            return _slack(2)                # also before a final newline: the end and one more
        if op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):
            return ""                       # reads what came before, or the next character only
        if op is sre.GROUPREF:
            return "(?s:.*)"
        raise Unscreenable(f"regex operator {op}")


_STARTS = (sre.AT_BEGINNING, sre.AT_BEGINNING_STRING)


def _reach(nodes) -> int:
    """How far past where it starts a lookahead's content may read: its width, and what a
    lookahead or an anchor inside it reads beyond (bounded above, never below)."""
    inner = 0
    for op, value in nodes:
        if op is sre.AT:
            inner = max(inner, 1)
        elif op not in _LOOKAROUNDS or value[0] == 1:       # (a lookbehind reads the past)
            inner = max([inner, *(_reach(item) for item in _inner(op, value))])
    return min(nodes.getwidth()[1], _UNBOUNDED) + inner if hasattr(nodes, "getwidth") else _UNBOUNDED


def _inner(op, value) -> list:
    """The sequences a node holds: a group's, a repeat's, a branch's, a lookaround's."""
    if op in _LOOKAROUNDS:
        return [value[1]]
    if op in _REPEATS:
        return [value[2]]
    if op is sre.SUBPATTERN:
        return [value[3]]
    if op is sre.ATOMIC_GROUP:
        return [value]
    if op is sre.BRANCH:
        return list(value[1])
    if op is sre.GROUPREF_EXISTS:
        return [item for item in value[1:] if item is not None]
    return []


_LOOKAROUNDS = (sre.ASSERT, sre.ASSERT_NOT)
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)
_UNBOUNDED = 1 << 20


def _slack(width: int) -> str:
    """The prefixes of a lookahead that reads up to `width` characters: a match is
    undecided until all but the first of them have arrived (the first is always there
    to read, or the match would still be a prefix itself), so up to width - 1 characters
    of anything may follow what it has matched so far."""
    if width <= 1:
        return ""
    return "(?s:.)*" if width - 1 > 1000 else f"(?s:.){{0,{width - 1}}}"


def prefix_screenable(pattern: str, flags: int = 0) -> bool:
    """Whether the prefixes read the pattern closely: not where a lookaround sits inside a
    repeat (`(?:(?!-----END).)*`, a private key's body), which the prefixes would drop and
    let the repeat run on past what ends it."""
    try:
        parsed, _flags = parsed_pattern(pattern, flags)
    except (Unscreenable, re.error):
        return False
    return not _lookaround_repeated(parsed, False)


def _lookaround_repeated(nodes, in_repeat: bool) -> bool:
    for op, value in nodes:
        if op in _LOOKAROUNDS and in_repeat:
            return True
        if any(_lookaround_repeated(item, in_repeat or op in _REPEATS) for item in _inner(op, value)):
            return True
    return False


@functools.lru_cache(maxsize=256)
def prefixes_source(pattern: str, flags: int = 0) -> str:
    """RE2 source matching every prefix of every match of `pattern` (and more); raises
    Unscreenable where the screen's rewrite does not cover the pattern. The built-in
    rules' are read as shipped (screens_made.py), the others made."""
    made = screens_made.shipped(pattern, flags, screens_made.PREFIXES) if screens_made.from_file_allowed() \
        else screens_made.NOT_MADE
    if made is None:
        raise Unscreenable("the rewrite does not cover this pattern (as made)")
    return made if made is not screens_made.NOT_MADE else made_prefixes(pattern, flags)


def made_prefixes(pattern: str, flags: int = 0) -> str:
    parsed, flags = parsed_pattern(pattern, flags)
    return _Prefixes().sequence(parsed, flags)


class PrefixScreen:
    """Where the leftmost possible match still under way at the end of a text starts."""

    __slots__ = ("regex", "_match")

    def __init__(self, patterns: list[tuple[str, int]]) -> None:
        sources = [prefixes_source(source, flags) for source, flags in patterns]
        self.regex = re2.compile(f"(?:{'|'.join(f'(?:{s})' for s in sources)})\\z", _OPTIONS)
        # RE2's own (C) match over the text's UTF-8: the wrapper's search, a generator
        # that encodes the text and maps every offset back, cost more than the match (a
        # stream asks once per event and rule).
        inner = getattr(self.regex, "_regexp", None)
        self._match = inner.Match if callable(getattr(inner, "Match", None)) else None

    def start(self, text: str, start: int = 0) -> int:
        try:
            data = utf8(text)
        except UnicodeEncodeError:
            # A lone surrogate (half an emoji) has no UTF-8: read as U+FFFD, which every
            # class that holds a surrogate holds too (wide_classes.py).
            text = _SURROGATE.sub("\ufffd", text)
            data = text.encode("utf-8")
        if self._match is None:
            match = self.regex.search(text, start)
            return len(text) if match is None else match.start()
        ascii = len(data) == len(text)
        at = start if ascii else _re2.CharLenToBytes(data, 0, start)
        found = self._match(_UNANCHORED, data, at, len(data))[0][0]
        if found < 0:
            return len(text)
        return found if ascii else _re2.BytesToCharLen(data, 0, found)


def prefix_screen(patterns: list[tuple[str, int]]) -> PrefixScreen | None:
    """The patterns' prefix screen, or None where one cannot be made."""
    try:
        return PrefixScreen(patterns)
    except (Unscreenable, re2.error):
        return None
