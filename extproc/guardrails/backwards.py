"""Text written backwards: `moc.elpmaxe@enaj`, a key or a card number reversed, an
instruction spelt from its end. A model asked to "read this backwards" reads the value;
a detector's regexes do not.

Reading every text a second time backwards would double the guardrails' cost, so a
detector reads backwards only where its patterns, read backwards, might match
(screen.py, `reverse=True`), folded into the detector's one RE2 pre-check. Most text
holds nothing such a screen matches (no reversed top-level domain before an '@', no
reversed key prefix, no reversed rule), and costs nothing more than that pass.

PII reads a value written backwards with its pattern reversed (`reversed_source`), run
forwards over the text as written, not with its pattern run over the text reversed.
Both find the same values; they differ in where a reading starts, which decides the
winner among candidates that overlap (a run of digit groups holds several cards' worth
of digits; Luhn keeps some). Run over the reversed text, the reading starts at the
text's end, so text still to come could change which candidate a stream's earlier text
held: a stream would release the first digits of a card the whole text redacts. Run
forwards, a backwards reading depends on what came before, like every other reading,
and a stream's hold (hold.py) covers it with the reversed patterns' prefixes.
"""

from __future__ import annotations

import re
from re import _constants as sre
from re import _parser as sre_parse

from . import Finding

_CATEGORY = {sre.CATEGORY_DIGIT: r"\d", sre.CATEGORY_NOT_DIGIT: r"\D", sre.CATEGORY_SPACE: r"\s",
             sre.CATEGORY_NOT_SPACE: r"\S", sre.CATEGORY_WORD: r"\w", sre.CATEGORY_NOT_WORD: r"\W"}
# Anchors read backwards: the start of the text is its end, \b stays \b (MULTILINE's
# line anchors: below).
_AT = {sre.AT_BEGINNING_STRING: r"\Z", sre.AT_END_STRING: r"\A",
       sre.AT_BOUNDARY: r"\b", sre.AT_NON_BOUNDARY: r"\B"}
_FLAG_LETTERS = ((re.IGNORECASE, "i"), (re.MULTILINE, "m"), (re.DOTALL, "s"), (re.VERBOSE, "x"),
                 (re.ASCII, "a"), (re.UNICODE, "u"))


class Irreversible(ValueError):
    """A pattern whose reading backwards is not a regex here (a backreference)."""


def flipped(findings, length: int) -> list[Finding]:
    """Findings in a text of `length` characters read backwards, as spans of the text."""
    return [Finding(length - f.end, length - f.start, f.label) for f in findings]


def reversed_source(pattern: str, flags: int = 0, first_character: bool = True) -> str:
    """A regex source that matches exactly the reversed strings of those `pattern`
    matches (lookarounds turned round and mirrored, group names kept), under the same
    flags. The reversed pattern's lookbehinds are its original's lookaheads: `re` needs
    them of a fixed width. `first_character`: led by a lookahead for what a match can
    start with, for re (RE2 takes no lookarounds, and skips ahead without one)."""
    parsed = sre_parse.parse(pattern, flags)
    names = {index: name for name, index in parsed.state.groupdict.items()}
    source = _Reverser(names).sequence(parsed, parsed.state.flags)
    # What a match can start with, asked first: a reversed pattern tends to open with a
    # lookbehind or a repeated group, where re finds no first character to skip to and
    # tries a match at every place (a card's, reversed: 10x slower on text with digits).
    first = _last_characters(parsed) if first_character else None
    return f"(?=[{''.join(dict.fromkeys(first))}]){source}" if first else source


def reversed_pattern(compiled: re.Pattern) -> re.Pattern:
    return re.compile(reversed_source(compiled.pattern, compiled.flags), compiled.flags & ~re.VERBOSE)


class _Reverser:
    def __init__(self, names: dict[int, str]) -> None:
        self.names = names

    def sequence(self, nodes, flags: int) -> str:
        return "".join(reversed([self.node(op, value, flags) for op, value in nodes]))

    def node(self, op, value, flags: int) -> str:
        if op is sre.LITERAL:
            return _literal(value, in_class=False)
        if op is sre.NOT_LITERAL:
            return f"[^{_literal(value, in_class=True)}]"
        if op is sre.ANY:
            return "."
        if op is sre.IN:
            return "[" + "".join(_class_item(item_op, item) for item_op, item in value) + "]"
        if op is sre.CATEGORY:
            return _CATEGORY[value]
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
            low, high, item = value
            bound = f"{{{low},}}" if high is sre.MAXREPEAT else f"{{{low},{high}}}"
            mode = {sre.MAX_REPEAT: "", sre.MIN_REPEAT: "?", sre.POSSESSIVE_REPEAT: "+"}[op]
            return f"(?:{self.sequence(item, flags)}){bound}{mode}"
        if op is sre.SUBPATTERN:
            group, add, remove, item = value
            inner = self.sequence(item, (flags | add) & ~remove)
            scoped = _letters(add) + (f"-{_letters(remove)}" if remove else "")
            if scoped:
                inner = f"(?{scoped}:{inner})"
            if group is None:
                return f"(?:{inner})"
            name = self.names.get(group)
            return f"(?P<{name}>{inner})" if name else f"({inner})"
        if op is sre.ATOMIC_GROUP:
            return f"(?>{self.sequence(value, flags)})"
        if op is sre.BRANCH:
            return "(?:" + "|".join(self.sequence(item, flags) for item in value[1]) + ")"
        if op in (sre.ASSERT, sre.ASSERT_NOT):
            direction, item = value
            # A lookahead at a place reads, backwards, as a lookbehind at the mirrored place.
            kind = "<" if direction == 1 else ""
            return f"(?{kind}{'=' if op is sre.ASSERT else '!'}{self.sequence(item, flags)})"
        if op is sre.AT:
            if value is sre.AT_BEGINNING:
                return "$" if flags & re.MULTILINE else r"\Z"
            if value is sre.AT_END:
                # MULTILINE: before a newline or at the end, which reads back as '^';
                # without, at the end or before a final newline: the start, or after a
                # newline that opens the text.
                return "^" if flags & re.MULTILINE else r"(?:\A|(?<=\A\n))"
            return _AT[value] if value in _AT else _raise(f"anchor {value}")
        raise Irreversible(f"regex operator {op}")


def _last_characters(nodes) -> list[str] | None:
    """Class items for the characters a match of `nodes` can end with (those its reversal
    starts with); None when a match may be empty or its last character is not one of a
    short list (a negated class, '.', a scoped flag)."""
    found = _last_or_empty(nodes)
    return None if found is None or found[1] else found[0]


def _node_last(op, value) -> tuple[list[str] | None, bool]:
    if op is sre.LITERAL:
        return [_literal(value, in_class=True)], False
    if op is sre.IN:
        if value and value[0][0] is sre.NEGATE:
            return None, False
        return [_class_item(item_op, item) for item_op, item in value], False
    if op is sre.CATEGORY:
        return [_CATEGORY[value]], False
    if op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):
        return [], True                     # zero-width: the character is the one before
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
        low, _high, item = value
        last = _last_or_empty(item)
        return (None, False) if last is None else (last[0], low == 0 or last[1])
    if op is sre.SUBPATTERN:
        _group, add, remove, item = value
        return (None, False) if add or remove else (_last_or_empty(item) or (None, False))
    if op is sre.BRANCH:
        items, may_be_empty = [], False
        for branch in value[1]:
            last = _last_or_empty(branch)
            if last is None:
                return None, False
            items += last[0]
            may_be_empty = may_be_empty or last[1]
        return items, may_be_empty
    return None, False


def _last_or_empty(nodes) -> tuple[list[str], bool] | None:
    """(class items, whether a match may be empty) of a sequence; None if unknown."""
    items: list[str] = []
    for op, value in reversed(list(nodes)):
        last, may_be_empty = _node_last(op, value)
        if last is None:
            return None
        items += last
        if not may_be_empty:
            return items, False
    return items, True


def _raise(why: str) -> str:
    raise Irreversible(why)


def _letters(flags: int) -> str:
    return "".join(letter for flag, letter in _FLAG_LETTERS if flags & flag)


def _literal(code: int, in_class: bool) -> str:
    char = chr(code)
    if char.isalnum() and code < 128 or code >= 128:
        return char
    return f"\\x{code:02x}"


def _class_item(op, value) -> str:
    if op is sre.NEGATE:
        return "^"
    if op is sre.LITERAL:
        return _literal(value, in_class=True)
    if op is sre.RANGE:
        return f"{_literal(value[0], True)}-{_literal(value[1], True)}"
    if op is sre.CATEGORY:
        return _CATEGORY[value]
    raise Irreversible(f"class item {op}")
