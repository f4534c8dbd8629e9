"""What a resent history costs once: token counts of long texts and the checks of a long
body are remembered by the text and the bytes themselves, exactly, within a bound."""

from __future__ import annotations

import sys

from types import SimpleNamespace

import orjson
import pytest

from extproc.api import resent_values, tokens
from extproc.api.openai import ENDPOINTS
from extproc.guardrails import text_digests
from extproc.pipeline.call import Call
from extproc.pipeline.errors import GatewayError
from extproc.stages import resolve
from extproc.stages.resolve import ParseRequest


def prose(seed: int, size: int = 2000) -> str:
    words = [f"w{(seed * 7919 + i * 31) % 5000}é" if i % 17 == 0 else f"word{(seed + i) % 97}" for i in range(size)]
    return " ".join(words)[:size]


def test_a_remembered_count_is_the_texts_own():
    text = prose(1)
    uncached = tokens._count(text, "o200k_base")
    assert tokens.count_text(text) == uncached
    assert tokens.count_text(text[:-1] + "!") == tokens._count(text[:-1] + "!", "o200k_base")
    assert tokens.count_text(text) == uncached                       # a hit
    assert tokens.count_text(text, "cl100k_base") == tokens._count(text, "cl100k_base")   # per encoding


# The memories of resent texts: (module, the name of its memory, the call that fills it,
# the same answer worked out without it).
MEMORIES = {
    "token counts": (tokens, "COUNTED", lambda text: tokens.count_text(text),
                     lambda text: tokens._count(text, "o200k_base")),
    "digests": (text_digests, "DIGESTED", lambda text: text_digests.text_digest(text),
                lambda text: text_digests._hash(text)),
}


@pytest.mark.parametrize("memory", MEMORIES)
@pytest.mark.parametrize("accent", ["", "é", "🚀"])
def test_the_memories_of_resent_texts_stay_within_their_bound_in_bytes(monkeypatch, memory, accent):
    module, name, asked, worked_out = MEMORIES[memory]
    kept = getattr(module, name)
    kept.clear()
    monkeypatch.setattr(kept, "max_bytes", 100_000)
    for seed in range(40):
        text = prose(seed) + accent
        assert asked(text) == worked_out(text)
        assert asked(text) == worked_out(text)                  # again: found, the same
        assert kept.held <= 100_000
    held = [sys.getsizeof(text) + (0 if text.isascii() else len(text)) for text in kept.texts()]
    assert kept.held == sum(held)
    assert sum(held) > 100_000 - max(held)       # filled to the bound, the oldest gone
    assert kept.texts()[-1] == prose(39) + accent
    # Each kept text is found by its identity while kept, and only then: a text gone takes
    # its identity with it (its id may be another text's next).
    assert len(kept._objects) == len(kept)
    assert all(kept._kept[key][0] is not None and id(kept._kept[key][0]) == ident
               for (ident, _scope), key in kept._objects.items())
    alike = (prose(39) + accent)[:-1] + (prose(39) + accent)[-1]       # equal, another object
    assert asked(alike) == worked_out(alike)


def test_texts_alike_at_their_ends_keep_their_own_counts(monkeypatch):
    tokens.COUNTED.clear()
    head, tail = "a" * 300, "z" * 300
    one, other = head + " one two three " + tail, head + " four five six " + tail
    assert len(one) == len(other)
    for _ in range(2):
        assert tokens.count_text(one) == tokens._count(one, "o200k_base")
        assert tokens.count_text(other) == tokens._count(other, "o200k_base")


STAGE = ParseRequest()          # one pipeline's stage: its remembered bodies are its own


def parse(raw: bytes, stage: ParseRequest = STAGE, team: str = "team-a") -> Call:
    call = Call(None)
    call.raw_body, call.endpoint = raw, ENDPOINTS["/v1/chat/completions"]
    call.key = SimpleNamespace(id="key-" + team, team=team)
    stage.request_body(call)
    return call


def long_body(repeat: str = "") -> bytes:
    turns = ",".join(orjson.dumps({"role": "user", "content": prose(i)}).decode() for i in range(30))
    return f'{{"model":"gpt-4o-mini",{repeat}"messages":[{turns}]}}'.encode()


def test_a_long_body_resent_is_parsed_afresh_and_a_changed_one_checked_again():
    sound = long_body()
    assert len(sound) >= resent_values.MIN_BODY_BYTES
    stage = ParseRequest()
    first, again, third = parse(sound, stage), parse(sound, stage), parse(sound, stage)
    assert first.body == again.body == third.body
    assert first.body is not again.body and again.body is not third.body   # each call its own body
    # The facts found of these bytes are the same ones every time: found sound once.
    assert first.body_facts is again.body_facts is third.body_facts
    assert first.body_facts == {(resolve.SOUND, first.endpoint.kind): True}
    # Another tenant's same bytes: facts of their own, checked again.
    other = parse(sound, stage, team="team-b")
    assert other.body_facts is not first.body_facts and other.body == first.body
    # The same length, one key repeated: other bytes, checked, refused every time.
    repeated = long_body('"model":"gpt-4o",')
    for _ in range(3):
        with pytest.raises(GatewayError) as refused:
            parse(repeated, stage)
        assert refused.value.status == 400 and "repeats the key 'model'" in refused.value.message
    # The wrong shape: never found sound.
    bad = sound.replace(b'"role":"user"', b'"role":7', 1)
    for _ in range(3):
        with pytest.raises(GatewayError):
            parse(bad, stage)


def test_a_body_found_sound_is_not_checked_again(monkeypatch):
    """The check is skipped on the fact alone (the test fails if it still runs)."""
    sound = long_body()
    stage = ParseRequest()
    parse(sound, stage)
    monkeypatch.setattr(ParseRequest, "_check", staticmethod(lambda *args: pytest.fail("checked again")))
    monkeypatch.setattr(resolve, "refuse_repeated_keys", lambda *args: pytest.fail("checked again"))
    assert parse(sound, stage).body == orjson.loads(sound)
    with pytest.raises(pytest.fail.Exception):      # other bytes are checked
        parse(long_body('"user":"u",'), stage)


def test_remembered_bodies_and_their_facts_stay_within_their_bound():
    stage = ParseRequest()
    stage.resent = resent_values.ResentValues(max_bytes=1_000_000)    # whole bodies: 500 KB
    kept = []
    for seed in range(10):
        call = parse(long_body(f'"user":"u{seed}",'), stage)
        kept.append(call.body_facts)
        assert stage.resent.bodies_held <= 500_000
    assert ParseRequest().resent.bodies_held == 0           # another pipeline (a reload) starts with none
    # The oldest went, and their facts with them: found again, they are found afresh.
    assert parse(long_body('"user":"u0",'), stage).body_facts is not kept[0]
    assert parse(long_body('"user":"u9",'), stage).body_facts is kept[9]


def test_values_looked_up_together_are_each_texts_own():
    """`get_many` answers what `get` answers text by text: the kept objects found by
    identity, an equal text that is another object by a compare, a short or unknown text
    not at all, and a text kept in another scope not in this one."""
    from extproc.api.resent_texts import ResentTexts

    kept = ResentTexts(min_chars=100, max_bytes=1_000_000)
    texts = [prose(seed, 400) for seed in range(6)]
    for index, text in enumerate(texts[:4]):
        kept.put(text, index, "a")
    kept.put(texts[4], 4, "b")
    asked = [texts[0], texts[1][:-1] + texts[1][-1], "short", texts[2], texts[4], texts[5], "", texts[3]]
    assert asked[1] is not texts[1]
    assert kept.get_many(asked, "a") == [kept.get(text, "a") for text in asked] == [0, 1, None, 2, None, None, None, 3]
    assert kept.get_many(asked, "b") == [None, None, None, None, 4, None, None, None]
