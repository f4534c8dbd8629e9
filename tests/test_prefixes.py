"""Prefix screens (guardrails/prefixes.py): RE2 over the prefixes of the hold patterns'
matches never starts a stream's hold after `regex`'s exact partial matching would."""

from __future__ import annotations

import re

import pytest
import re2
import regex
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from extproc.guardrails import injection, pii
from extproc.guardrails.hold import _NEVER, Tail, _scoped, of
from extproc.guardrails.prefixes import PrefixScreen, prefix_screenable

HOLD_PATTERNS = {
    **{f"pii {entity}": pii._HOLD[entity] for entity in pii.ENTITIES},
    **{f"pii {entity} backwards": pii._HOLD_BACKWARDS[entity] for entity in pii.BACKWARDS},
    "injection": of(injection._COMBINED, injection._BASE64, injection._HEX),
}
SCREENED = {name: [p for p in patterns if prefix_screenable(*p)] for name, patterns in HOLD_PATTERNS.items()}
SCREENS = {name: PrefixScreen(patterns) for name, patterns in SCREENED.items() if patterns}
PII = pii.PIIDetector()
EXACT = {name: regex.compile(f"(?:{'|'.join(_scoped(*p) for p in SCREENED[name])}){_NEVER}", regex.VERSION0)
         for name in SCREENS}

_PIECES = ["jane", ".doe", "@", "example", ".com", " [at] ", " dot ", "4111", " 1111", "-", "sk-proj-", "AbCd",
           "DE89", " 3704", "123-45-", "6789", "ssn: ", "ignore all ", "previous instructions", "\n", " ", "é",
           "moc.", "elpmaxe@", "enaj", "jorp-ks", "# SYSTEM: ", "aGVsbG8+", "0a1b2c3d", "🙂", "\u00a0", "٣"]
_TEXTS = st.one_of(st.lists(st.sampled_from(_PIECES), max_size=12).map("".join), st.text(max_size=60))


@settings(max_examples=300, deadline=None)
@example(text="write to jane.doe@exa", start=0)
@example(text="card 4111 1111 ١١١١", start=3)
@given(text=_TEXTS, start=st.integers(0, 8))
def test_the_prefix_screen_holds_from_no_later_than_exact_partial_matching(text, start):
    # `regex` is the reference where it reads a character's class as `re` (which the
    # detectors run) does: on a few it follows a newer Unicode (its \w takes the squared
    # letter U+1F130, re's does not).
    assume(all(bool(regex.match(cls, char)) == bool(re.match(cls, char)) and
               bool(regex.match(cls, char, regex.IGNORECASE)) == bool(re.match(cls, char, re.IGNORECASE))
               for char in text for cls in (r"\w", r"\d", r"\s", "[a-z]")))
    start = min(start, len(text))
    for name, screen in SCREENS.items():
        exact = EXACT[name].search(text, start, partial=True)
        exact_start = len(text) if exact is None else exact.start()
        assert screen.start(text, start) <= exact_start, name


def test_only_a_lookaround_inside_a_repeat_is_left_to_partial_matching():
    left = [name for name, patterns in HOLD_PATTERNS.items() if len(SCREENED[name]) < len(patterns)]
    assert left == ["pii secret", "pii secret backwards"]      # the private key's body
    tail = Tail(pii._HOLD["secret"])
    text = "-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----\nDone!"
    assert tail.hold_from(text) == len(text)
    assert tail.hold_from(text[:40]) == 0


def test_a_line_start_is_read_where_a_rule_opens_with_one():
    screen = SCREENS["injection"]
    assert screen.start("The weather is nice today. ") == len("The weather is nice today. ")
    assert screen.start("Fine.\n# SYSTEM: ") == len("Fine.\n")


def test_half_an_emoji_is_read_as_u_fffd_and_holds_what_exact_matching_holds():
    for text in ("write to jane\ud83d", "card 4111 1111\ud83d", "card 4111 1111 \ud83d"):
        for name, screen in SCREENS.items():
            exact = EXACT[name].search(text, 0, partial=True)
            assert screen.start(text) <= (len(text) if exact is None else exact.start()), name
            assert screen.start(text) == screen.start(text.replace("\ud83d", "\ufffd")), name


@pytest.mark.parametrize("text,held", [
    ("Привет, как дела? Сегодня хорошая погода и мы пойдём гулять в парк", "парк"),
    ("Ελπίζω να είσαι καλά σήμερα φίλε μου", "μου"),
    ("今日はいい天気ですね。公園に散歩に行きましょう", "公園に散歩に行きましょう"),   # no spaces: one word
    ("карта ٤١١١ ١١١١", "٤١١١ ١١١١"),                                           # Arabic-Indic digits
])
def test_a_stream_in_another_script_holds_what_exact_matching_holds(text, held):
    """A class's non-ASCII part is written short but not loose (wide_classes.py): a letter
    of another script never reads as a digit, so a sentence is not held as a card."""
    assert text[PII.hold_from(text):] == held


def test_a_class_s_non_ascii_part_is_never_narrower_than_python_s():
    from re import _parser as sre_parse

    from extproc.guardrails.screen import Rewrite, every_code_point
    from extproc.guardrails.wide_classes import non_ascii_part
    rewrite = Rewrite()
    sample = "".join(every_code_point()[code] for code in range(0x80, 0x110000, 7) if not 0xD800 <= code <= 0xDFFF)
    for atom in (r"\d", r"\w", r"\W", r"\s", r"[^\w\n]", r"[^\W\d_]", r"[\w.%+-]", r"[^\"\n]", "."):
        [(op, value)] = sre_parse.parse(atom, 0)
        written = re2.compile(non_ascii_part(rewrite.one_character(op, value, re.UNICODE)) + "+")
        python = re.compile(atom)
        missed = [char for char in sample if python.fullmatch(char) and not written.fullmatch(char)]
        assert not missed, (atom, missed[:5])


_ATOMS = ["a", "b", "ab", r"\d", r"\w", r"\s", r"\W", "[^a]", "[a-c]", ".", r"\.", "é", "[éa]", r"\b", "^", "$", "x"]


def _operator_patterns():
    """Regexes an operator may write in a banned rule: classes, anchors, groups, flags,
    lookarounds and repeats of each other."""
    def around(inner):
        return st.one_of(
            st.tuples(inner, inner).map("".join),
            st.tuples(inner, inner).map(lambda pair: f"(?:{pair[0]}|{pair[1]})"),
            st.tuples(inner, st.sampled_from(["*", "+", "?", "{2}", "{1,3}", "{0,12}", "*?", "{2,}"])).map(
                lambda pair: f"(?:{pair[0]}){pair[1]}"),
            inner.map(lambda p: f"(?i:{p})"), inner.map(lambda p: f"(?={p})"), inner.map(lambda p: f"(?!{p})"),
            st.sampled_from(["a", r"\d", "ab"]).map(lambda p: f"(?<!{p})"), inner.map(lambda p: f"(?P<g>{p})"),
            inner.map(lambda p: f"(?m:^{p})"))
    return st.recursive(st.sampled_from(_ATOMS), around, max_leaves=8)


@settings(max_examples=300, deadline=None)
@example(patterns=["ab(?=cd)"], text="xabc", start=0)       # a finding undecided one character past its end
@example(patterns=["(?=(?=ba))"], text="b", start=0)
@given(patterns=st.lists(_operator_patterns(), min_size=1, max_size=3),
       text=st.text(alphabet="abcx.é1 \n_-", max_size=14), start=st.integers(0, 4))
def test_a_hold_of_any_patterns_starts_no_later_than_exact_partial_matching(patterns, text, start):
    """What holds what an operator's banned rule may still match: the prefix screen where it
    reads the patterns, `regex` where it does not (a lookahead's reach past a match's end
    read as that many characters more)."""
    pairs = [(pattern, 0) for pattern in patterns]
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error:
            assume(False)
    try:
        exact = regex.compile(f"(?:{'|'.join(_scoped(*p) for p in pairs)}){_NEVER}", regex.VERSION0)
    except regex.error:
        assume(False)
    start = min(start, len(text))
    found = exact.search(text, start, partial=True)
    held = Tail(pairs).hold_from(text, start)
    assert held is not None and held <= (len(text) if found is None else found.start())
