"""A long body parsed from the values it shares with earlier bodies (api/resent_values.py)
is the value orjson gives the whole body, for any JSON and any way of writing it; bytes
orjson refuses are never given a value; a value handed out can be changed without
changing the next body's; one scope's values never answer another's."""

from __future__ import annotations

import json
import os

import orjson
import pytest
from any_json import through_pipeline
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extproc.api.resent_values import MIN_BODY_BYTES, ResentValues
from extproc.pipeline.call import Call

DEEP = os.environ.get("LLMGW_EXAMPLES") == "deep"
EXAMPLES = 400 if DEEP else 60

# Any JSON (finite numbers: Python's writer writes infinity as `Infinity`, which no JSON holds).
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
# Texts with what a parser can get wrong: escapes, quotes, non-ASCII, astral characters.
TEXT = st.text(alphabet=st.sampled_from('ab "\\/\n\té…漢字😀\u2028\x00\x1f'), min_size=0, max_size=40)
LONG_TEXT = st.builds(lambda head, fill: head + "x" * fill, TEXT, st.integers(0, 600))
ITEM = st.one_of(JSON, st.dictionaries(st.sampled_from(["role", "content", "type", "text"]),
                                        st.one_of(LONG_TEXT, JSON), max_size=3), LONG_TEXT)
BODY = st.dictionaries(st.one_of(st.sampled_from(["model", "messages", "tools", "system", "n"]), TEXT),
                       st.one_of(JSON, st.lists(ITEM, max_size=8), st.dictionaries(TEXT, ITEM, max_size=3)),
                       min_size=1, max_size=5)
# How clients write JSON: compact UTF-8 (orjson, JSON.stringify), Python's spaced ASCII escapes.
WRITERS = st.sampled_from([
    orjson.dumps,
    lambda value: json.dumps(value).encode(),
    lambda value: json.dumps(value, ensure_ascii=False, indent=1).encode(),
])


def padded(body: dict) -> dict:
    """The body made long enough to be split, by a history of long messages."""
    body = dict(body)
    body["padding"] = [{"role": "user", "content": f"{index} " + "é" * 600} for index in range(30)]
    return body


def same(left, right) -> bool:
    """Equal values of the same types, keys in the same order (0 is not 0.0, nor -0.0 0.0)."""
    return orjson.dumps(left) == orjson.dumps(right)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(BODY, WRITERS)
def test_a_long_body_parses_as_orjson_parses_it_again_and_again(body, write):
    raw = write(padded(body))
    assert len(raw) >= MIN_BODY_BYTES
    values = ResentValues()
    expected = orjson.loads(raw)
    # The first time split, the second every long value found again, then the body whole;
    # each handed out and then changed everywhere (as stages change a body in place),
    # which never reaches the next.
    for time in range(4):
        parsed = values.loads(raw, "team")
        assert parsed is not None, "a body of any JSON, written as clients write it, is split"
        assert same(parsed, expected), time
        changed_everywhere(parsed)


def changed_everywhere(value) -> None:
    """Every container of `value` changed in place: a member added, an item appended."""
    if type(value) is dict:
        for item in list(value.values()):
            changed_everywhere(item)
        value["changed"] = True
    elif type(value) is list:
        for item in list(value):
            changed_everywhere(item)
        value.append("changed")


@settings(max_examples=EXAMPLES * 2, deadline=None, suppress_health_check=list(HealthCheck))
@given(BODY, st.data())
def test_broken_bytes_get_a_value_only_when_orjson_reads_them_the_same(body, data):
    values = ResentValues()
    raw = orjson.dumps(padded(body))
    values.loads(raw, "team")                   # its values known, as an earlier turn's
    at = data.draw(st.integers(0, len(raw) - 1))
    cut = data.draw(st.integers(0, 3))
    inserted = data.draw(st.binary(min_size=0, max_size=3) | st.sampled_from(
        [b"\xff", b"\\ud800", b"\"", b",", b"]", b"}", b"NaN", b"1e999", b"123456789012345678901234"]))
    broken = raw[:at] + inserted + raw[at + cut:]
    parsed = values.loads(broken, "team")
    try:
        expected = orjson.loads(broken)
    except orjson.JSONDecodeError:
        assert parsed is None, broken[max(0, at - 20):at + 20]
        return
    if parsed is not None:
        assert same(parsed, expected)


@pytest.mark.parametrize("raw", [
    b'{"n": 123456789012345678901234567890, "pad": "%s"}',         # orjson: a float
    b'{"n": -9223372036854775809, "pad": "%s"}',
    b'{"x": 1e999, "pad": "%s"}',
    b'{"x": NaN, "pad": "%s"}',
    b'{"\\ud800": 1, "pad": "%s"}',
    b'\xef\xbb\xbf{"pad": "%s"}',
    b'{"pad": "%s"} []',
    b'[{"pad": "%s"}]',
])
def test_what_the_top_level_reads_otherwise_is_left_to_orjson(raw):
    raw = raw % (b"y" * MIN_BODY_BYTES)
    assert ResentValues().loads(raw) is None


def test_integers_orjson_reads_as_integers_stay_integers():
    raw = b'{"a": 18446744073709551615, "b": -9223372036854775808, "c": 1.0, "d": -0, "pad": "%s"}' % (
        b"y" * MIN_BODY_BYTES)
    assert same(ResentValues().loads(raw), orjson.loads(raw))


def test_a_value_handed_out_can_change_without_changing_the_next():
    values = ResentValues()
    raw = orjson.dumps(padded({"messages": [{"role": "user", "content": [{"type": "text", "text": "a" * 400}]}]}))
    for _ in range(3):          # parsed, then the same body found again, twice
        handed = values.loads(raw, "team")
        assert same(handed, orjson.loads(raw))
        handed["messages"][0]["content"][0]["text"] = "[REDACTED]"
        handed["messages"][0]["content"].append({"type": "text", "text": "added"})
        handed["padding"][0]["content"] = "changed"
        handed["model"] = "another"
    changed = raw.replace(b'"padding"', b'"padded"')      # another body of the same values
    assert same(values.loads(changed, "team"), orjson.loads(changed))


def test_a_value_met_again_is_the_same_text_within_a_scope_and_never_across():
    values = ResentValues()
    raw = orjson.dumps(padded({"model": "m"}))
    first, again = values.loads(raw, "team-a"), values.loads(raw, "team-a")
    other = values.loads(raw, "team-b")
    assert again["padding"][3]["content"] is first["padding"][3]["content"]
    assert other["padding"][3]["content"] is not first["padding"][3]["content"]
    assert other["padding"][3]["content"] == first["padding"][3]["content"]


def test_the_values_kept_stay_within_their_bound():
    values = ResentValues(max_bytes=2_000_000)
    bodies = set()
    for turn in range(40):
        values.loads(orjson.dumps(padded({"turn": turn, "more": [{"text": f"{turn} {i} " + "z" * 700} for i in range(20)]})))
        assert values.held <= 2_000_000 and values.bodies_held <= 2_000_000 // 2
        bodies.add(values.bodies_held)
    assert len(values) > 0 and max(bodies) > 2_000_000 // 2 - 200_000      # both filled to their bounds
    assert values.held > 2_000_000 - 10_000


def test_a_short_body_is_left_to_orjson():
    assert ResentValues().loads(b'{"model": "m", "messages": []}') is None


def test_a_redacted_history_is_redacted_again_when_it_comes_again(tmp_path):
    """Through the quickstart's pipeline: the `pii` rule redacts an email in a long
    history; the same history again is redacted again (the value handed out the first
    time was changed; the one kept was not), and what reaches the provider is the same."""
    from test_guard_parts_absent import runtime_with_open_text_rules

    runtime = runtime_with_open_text_rules(tmp_path)
    history = [{"role": "user" if index % 2 == 0 else "assistant",
                "content": f"Turn {index}: " + "plain words and more of them. " * 40} for index in range(30)]
    history[4]["content"] += " Mail jane.doe@example.com about it."
    body = {"model": "gpt-4o-mini", "messages": history}
    sent = []
    for _ in range(2):
        call = Call(runtime.config)
        reply = through_pipeline(runtime, "/v1/chat/completions", body, "sk-demo-alice", call=call)
        assert not reply.HasField("immediate_response"), reply.immediate_response.body
        sent.append(reply.request_body.response.body_mutation.body)
        assert {v["guardrail"]: v["verdict"] for v in call.verdicts}["pii"] == "redacted"
    assert b"jane.doe@example.com" not in sent[0]
    assert sent[0] == sent[1] and sent[0]


def test_the_same_body_is_read_once_and_a_session_grows_from_it(monkeypatch):
    values = ResentValues()
    split, splits = ResentValues._split, []
    monkeypatch.setattr(ResentValues, "_split", lambda self, raw, scope: splits.append(raw) or split(self, raw, scope))
    history = [{"role": "user", "content": f"{index} " + "é" * 600} for index in range(60)]
    resent = orjson.dumps({"model": "m", "messages": history})
    for _ in range(4):
        assert same(values.loads(resent, "team"), orjson.loads(resent))
    assert len(splits) == 1                 # read the first time, then found (whole from the third)
    sizes = []
    for turn in range(3):                   # a session: each body grown from the one before
        history = history + [{"role": "assistant", "content": f"answer {turn}"},
                             {"role": "user", "content": f"turn {turn} " + "ü" * 400}]
        grown = orjson.dumps({"model": "m", "messages": history})
        assert same(values.loads(grown, "team"), orjson.loads(grown))
        sizes.append(len(grown))
    assert len(splits) == 1, "a grown body is read from the one before, not split"
    # Each grown body is kept as its bytes and what its values came from, not as a copy.
    assert values.bodies_held == 2 * len(resent) + 2 * sum(sizes)
