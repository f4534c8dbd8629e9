"""Prefix screens (guardrails/prefixes.py): RE2 over the prefixes of the hold patterns'
matches never starts a stream's hold after `regex`'s exact partial matching would."""

from __future__ import annotations

import regex
from hypothesis import example, given, settings
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


def test_half_an_emoji_reads_as_any_other_non_ascii_character():
    screen = SCREENS["pii email"]
    assert screen.start("write to jane\ud83d") == screen.start("write to jane\ufffd") == len("write to ")
