"""Encoded runs (extproc/guardrails/encoded.py) and screens asked together (screen.py's
ScreenSet): each faster path must find exactly what the plain reading finds."""

from __future__ import annotations

import functools

import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.guardrails import encoded, pii
from extproc.guardrails.screen_sets import ScreenSet, options

PIECES = ["YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo=", "amFuZUBleGFtcGxlLmNvbQ==", "some_long_identifier_name_here",
          "path/to/a/module/file.py", "6a616e65406578616d706c652e636f6d", "de ad be ef 01 02 03 04 05 06 07",
          "%6a%61%6e%65%40", "jane%40example.com", "&#106;&#97;&#110;&#101;&amp;", "&lt;b&gt;&lt;i&gt;",
          " ", "\n", "=", "-", "_", "%", "&", ";", "é", "Zürich", "東京", "…", "\u00a0", "\u3000", "٤١", "ß",
          "0123456789abcdef", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "x", "\ud800",
          # where the alternatives meet: base64's characters before a percent run, hex
          # with colons, padding past two '=', an entity run after an identifier
          "abcdefghijklmnopqrstu%41%42%43", "de:ad:be:ef:01:02:03:04:05:06:07", "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo===",
          "identifier_name&#65;&#66;&#67;", "==", "0x", ":"]
texts = st.lists(st.sampled_from(PIECES), max_size=30).map("".join) | st.text(max_size=120)


def plain_runs(text: str) -> list[tuple[int, int, str]]:
    """Every run as Python's re reads the whole pattern, decoded."""
    found = []
    for match in encoded._RUNS.python.finditer(text):
        decoded = encoded._decode(match.lastgroup, match.group())
        if decoded is not None:
            found.append((match.start(), match.end(), decoded))
    return found


@settings(max_examples=400, deadline=None)
@given(texts)
def test_runs_are_what_python_re_finds_in_ascii_text_and_in_any_other(text):
    expected = plain_runs(text) if encoded.might_hold_runs(text) else []
    assert list(encoded.decoded_runs(text)) == expected


def test_a_run_is_decoded_in_ascii_and_in_non_ascii_text():
    for text in ("mail: amFuZUBleGFtcGxlLmNvbQ== done", "courriel (é): amFuZUBleGFtcGxlLmNvbQ== …"):
        runs = list(encoded.decoded_runs(text))
        assert [decoded for _, _, decoded in runs] == ["jane@example.com"]
        start, end, _ = runs[0]
        assert text[start:end] == "amFuZUBleGFtcGxlLmNvbQ=="


SOURCES = [source for entity in pii.ENTITIES for source in [pii.screen_source(*pii._SCREENED[entity])]] + \
    [encoded.SCREEN_SOURCE]


def _alone(source: str):
    regex_set = re2.Set.SearchSet(options())
    regex_set.Add(source)
    regex_set.Compile()
    return regex_set


ALONE = [_alone(source) for source in SOURCES]


@functools.cache
def screen_set(alone: frozenset[int]) -> ScreenSet:
    return ScreenSet(SOURCES, alone)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES + ["jane@example.com", "+1 415 555 0100", "4111 1111 1111 1111",
                                         "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx", "10.1.2.3"]), max_size=12).map("".join),
       st.sampled_from([frozenset(), frozenset({0, 6}), frozenset({0, 6, 7}), frozenset(range(8))]))
def test_screens_in_sets_say_which_match_as_each_alone_does(text, alone):
    screens = screen_set(alone)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:          # RE2 cannot read it: every screen may match
        assert all(index in screens.matching(text) for index in range(len(SOURCES)))
        return
    expected = frozenset(index for index, regex_set in enumerate(ALONE) if regex_set.Match(text))
    assert screens.matching(text) == expected
    assert screens.matches(text) == bool(expected)


def test_a_long_texts_chunks_are_read_for_runs_once_whichever_rule_reads_them(monkeypatch):
    """A rule reads every chunk of a long text before the next rule reads them again
    (joined.py): the next finds each chunk's runs kept, as long as they fit the budget;
    a text longer than a chunk is kept among the last few only."""
    computed = []
    real = encoded._decoded_runs
    monkeypatch.setattr(encoded, "_decoded_runs", lambda text: computed.append(text) or real(text))
    code = "".join(f"value_{i} = decode('amFuZUBleGFtcGxlLmNvbQ==', some_long_identifier_{i})\n" for i in range(400))
    chunks = [code[i:i + 2448] for i in range(0, len(code), 2048)]
    first = [encoded.decoded_runs(chunk) for chunk in chunks]
    assert len(computed) == len(chunks) and all(first)
    again = [encoded.decoded_runs(chunk[:1] + chunk[1:]) for chunk in chunks]     # equal texts, new objects
    assert again == first and len(computed) == len(chunks)
    assert sum(map(len, encoded._short)) <= encoded._SHORT_KEPT_CHARS
    # More than the budget: the oldest go first.
    filler = [f"{i:06d} " + "x" * 4000 for i in range(80)]
    for text in filler:
        encoded.decoded_runs(text + " amFuZUBleGFtcGxlLmNvbQ==")
    assert sum(map(len, encoded._short)) <= encoded._SHORT_KEPT_CHARS
    computed.clear()
    encoded.decoded_runs(chunks[0][:1] + chunks[0][1:])
    assert computed                                          # pushed out by the filler
    longs = [code[:10000] + f" {i}" for i in range(6)]
    for text in longs:
        encoded.decoded_runs(text)
    computed.clear()
    encoded.decoded_runs(longs[-1])
    encoded.decoded_runs(longs[0])
    assert computed == [longs[0]]                            # only the last four long texts kept
