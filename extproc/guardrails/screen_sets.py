"""Screens compiled: RE2 asked whether a text might hold a match (screen.py writes the
screens' sources), each text's UTF-8 made once for all the screens that read it.

Imports nothing of the guardrails but RE2: the rules, the fold, the encoded runs and the
prefix screens all ask their questions here.
"""

from __future__ import annotations

import re2


def set_match(regex_set):
    """A compiled RE2 Set's match of UTF-8 bytes: google-re2's own (C) method, which
    answers a list (empty: no match), where the wrapper's costs a Python call more per
    question (~12 per call of new text); the wrapper's where it holds none."""
    inner = getattr(regex_set, "_set", None)
    return inner.Match if callable(getattr(inner, "Match", None)) else regex_set.Match


class Screen:
    """A compiled screen. Whether it matches is asked of an RE2 Set (its DFA alone, one
    pass: ~10-20 us per 4 KB), where a search must also say where the match lies, which
    for a large screen costs a slower engine (~0.7 ms per 4 KB of text with PII in it)."""

    __slots__ = ("regex", "_match")

    def __init__(self, source: str, options) -> None:
        self.regex = re2.compile(source, options)
        regex_set = re2.Set.SearchSet(options)
        regex_set.Add(source)
        regex_set.Compile()
        self._match = set_match(regex_set)

    def matches(self, text: str) -> bool:
        return bool(self._match(utf8(text)))

    def search(self, text: str, *bounds):
        return self.regex.search(text, *bounds)

    def fullmatch(self, text: str, *bounds):
        return self.regex.fullmatch(text, *bounds)


def options():
    options = re2.Options()
    options.max_mem = 64 << 20          # room for the DFA of the larger rule sets
    options.log_errors = False
    return options


def compile_screen(source: str | None) -> Screen | None:
    """A screen's source (or several joined by '|') compiled by RE2, or None."""
    if source is None:
        return None
    try:
        return Screen(source, options())
    except re2.error:
        return None


# The text encoded last, and the few before it (newest first): (text, its UTF-8).
_ENCODED_LAST: tuple[str | None, bytes] = (None, b"")
_EARLIER: list[tuple[str | None, bytes]] = []
_EARLIER_KEPT = 3


def utf8(text: str) -> bytes:
    """`text.encode("utf-8")` (raising as it does for a lone surrogate), made once for each
    of the last few texts asked: each detector's screens, the encoded runs' and the fold's
    check ask it of the same texts (an agent's new turn: ~10 encodes of each text read,
    5% of such a call's instructions), one rule's reads between another's (a new turn's
    texts, then the seams joining them to the turns before). Non-ASCII text costs ~8
    instructions a character to encode. Each entry is one tuple, replaced whole: a thread
    asking meanwhile finds this text's bytes or makes its own."""
    global _ENCODED_LAST
    last = _ENCODED_LAST
    if last[0] is text:
        return last[1]
    if not text.isascii():          # (ASCII is copied: cheaper than looking further)
        for seen, encoded in _EARLIER:
            if seen is text:
                return encoded
    encoded = text.encode("utf-8")
    _ENCODED_LAST = (text, encoded)
    _EARLIER.insert(0, last)
    del _EARLIER[_EARLIER_KEPT:]
    return encoded


class ScreenSet:
    """Several screens asked of one text together: which of them match (`matching`), or
    whether any does (`matches`).

    An RE2 Set reads all its patterns in one pass, but its automaton tracks them
    together: where two of them each count a run of characters (an address's parts, a
    secret's 20 and more characters), their states multiply. On prose that stays small;
    on source code, which is what an agent's tool results mostly hold, such a Set's DFA
    outgrows its memory and is rebuilt again and again: the PII screens in one Set read
    code at ~0.4 MB/s, each alone at 40-500 MB/s (docs/decisions/guardrails-screens-in-sets.md).
    So the screens listed in `alone` get a Set each, the others share one; the text is
    encoded once for all of them."""

    __slots__ = ("_sets", "_indexes", "_last")

    def __init__(self, sources: list[str], alone: frozenset[int] = frozenset()) -> None:
        # The last text asked and its answer: a guardrail asks of the same text twice
        # (might_find, then find), one tuple so that it is replaced whole.
        self._last: tuple[str | None, frozenset[int]] = (None, frozenset())
        shared = [index for index in range(len(sources)) if index not in alone]
        groups = ([shared] if shared else []) + [[index] for index in range(len(sources)) if index in alone]
        self._sets, self._indexes = [], []
        for group in groups:
            self._sets.append(set_match(_compiled_set([sources[index] for index in group])))
            self._indexes.append(tuple(group))

    def matching(self, text: str) -> frozenset[int]:
        """The indexes of the screens that match in `text` (all, for a text RE2 cannot
        read: a lone surrogate)."""
        last, answer = self._last
        if last is text:
            return answer
        try:
            encoded = utf8(text)
        except UnicodeEncodeError:
            return EVERY
        found: list[int] = []
        for regex_set, indexes in zip(self._sets, self._indexes):     # (each a set_match)
            matched = regex_set(encoded)
            if matched:
                found.extend(indexes[position] for position in matched)
        answer = frozenset(found)
        self._last = (text, answer)
        return answer

    def matches(self, text: str) -> bool:
        """Whether any screen matches in `text` (raises UnicodeEncodeError for a text RE2
        cannot read, as Screen.matches does: might_match() answers True for it)."""
        last, answer = self._last
        if last is text:
            return bool(answer)
        encoded = utf8(text)
        return any(regex_set(encoded) for regex_set in self._sets)


def _compiled_set(sources: list[str]):
    regex_set = re2.Set.SearchSet(options())
    for source in sources:
        regex_set.Add(source)
    regex_set.Compile()
    return regex_set


class _Every(frozenset):
    def __contains__(self, _item) -> bool:
        return True

    def __bool__(self) -> bool:
        return True


EVERY = _Every()


def first_possible(screen_regex, text: str) -> int | None:
    """Where in `text` the first match of a pattern behind the screen may start (none
    starts earlier: each of its matches is one of the screen's), or None: no match."""
    try:
        found = screen_regex.search(text)
    except UnicodeEncodeError:          # a lone surrogate: UTF-8 cannot carry the text
        return 0
    return found.start() if found is not None else None


def might_match(screen_regex, text: str) -> bool:
    """False only when no pattern behind the screen can match in `text`."""
    try:
        return screen_regex.matches(text)
    except UnicodeEncodeError:          # a lone surrogate: UTF-8 cannot carry the text
        return True
