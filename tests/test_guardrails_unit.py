"""Guardrail detectors, table-driven, plus properties (hypothesis) and the corpora."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from extproc.guardrails import Finding, redact
from extproc.guardrails.injection import InjectionDetector
from extproc.guardrails.pii import PIIDetector
from extproc.dialects import codec_of
from bare_call import bare_call

CORPORA = Path(__file__).parent / "corpora"
PII = PIIDetector()

PII_CASES = [
    ("email", "write to jane.doe+x@example.co.uk today", "EMAIL"),
    ("card with spaces (Luhn ok)", "card 4111 1111 1111 1111 please", "CARD"),
    ("card with dashes", "4242-4242-4242-4242", "CARD"),
    # the first candidate, "1234 4111 1111 1111", fails Luhn; the card starts inside it
    ("card after another number", "order 1234 4111 1111 1111 1111 shipped", "CARD"),
    ("ssn", "my ssn is 123-45-6789", "SSN"),
    ("iban", "IBAN DE89 3704 0044 0532 0130 00 thanks", "IBAN"),
    ("phone", "call me at +1 415 555 2671", "PHONE"),
    ("ipv4", "server 203.0.113.42 is down", "IP"),
    ("openai key", "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "SECRET"),
    ("openai legacy key", "key=sk-AbCdEfGhIjKlMnOpQrStUvWxYz01234567", "SECRET"),
    ("anthropic", "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123", "SECRET"),
    ("aws access key", "AKIAIOSFODNN7EXAMPLE", "SECRET"),
    ("github token", "ghp_" + "a1B2c3D4e5" * 4, "SECRET"),
    ("slack token", "xoxb-1234567890-abcdefghij", "SECRET"),
    ("google api key", "AIza" + "S" * 35, "SECRET"),
    ("private key", "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----", "SECRET"),
]


@pytest.mark.parametrize("name,text,label", PII_CASES, ids=[c[0] for c in PII_CASES])
def test_pii_found(name, text, label):
    assert label in {f.label for f in PII.find(text)}


NOT_PII = [
    ("card failing Luhn", "4111 1111 1111 1112"),
    ("invalid ssn area 000", "000-12-3456"),
    ("invalid iban checksum", "DE00 3704 0044 0532 0130 00"),
    ("order number", "order 12345 shipped"),
    ("version string", "version 1.2.3 of the app, build 2024.10.1"),
    ("plain prose", "The meeting is at 10:30 in room 4."),
    ("short sk- word", "the sk-ate park"),
]


@pytest.mark.parametrize("name,text", NOT_PII, ids=[c[0] for c in NOT_PII])
def test_not_pii(name, text):
    assert PII.find(text) == []


def test_a_repeated_phone_number_is_found_each_time():
    # Verdicts on candidates are remembered within a text (libphonenumber is slow).
    text = "call +1 415 555 2671, or +1 415 555 2671, not 12 12 12 12 12"
    assert [text[f.start:f.end] for f in PII.find(text) if f.label == "PHONE"] == ["+1 415 555 2671"] * 2


def test_redact_replaces_spans_with_placeholders():
    text = "mail a@b.io or c@d.io"
    assert redact(text, PII.find(text)) == "mail [EMAIL] or [EMAIL]"
    # Overlapping spans merge, named by the first: every character of each is gone.
    assert redact("abcdefgh", [Finding(0, 4, "X"), Finding(2, 6, "Y")]) == "[X]gh"
    # One starting where a longer one starts (an SSN that begins a card number), or inside it.
    assert redact("123-45-6789 555 2671 ok", [Finding(0, 11, "SSN"), Finding(0, 20, "CARD")]) == "[CARD] ok"
    assert redact("abcdefghij", [Finding(1, 9, "X"), Finding(3, 5, "Y")]) == "a[X]j"
    assert redact("abcdef", [Finding(0, 2, "X"), Finding(2, 4, "Y")]) == "[X][Y]ef"   # touching: two


def _lines(name: str) -> list[str]:
    return [l for l in (CORPORA / name).read_text().splitlines() if l.strip()]


def test_injection_corpus_rates():
    from extproc.guardrails.fold import FoldingDetector
    detector = FoldingDetector(InjectionDetector(), also_original=True)    # as the config builds it
    attacks, benign = _lines("injection.txt"), _lines("benign.txt")
    caught = [t for t in attacks if detector.find(t)]
    false_alarms = [t for t in benign if detector.find(t)]
    print(f"\ninjection: blocked {len(caught)}/{len(attacks)}, "
          f"benign passed {len(benign) - len(false_alarms)}/{len(benign)}")
    assert len(caught) == len(attacks), set(attacks) - set(caught)
    assert false_alarms == []


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_detectors_never_raise_and_redaction_removes_every_finding(text):
    findings = PII.find(text)
    InjectionDetector().find(text)
    cleaned = redact(text, findings)
    remaining = [f for f in PII.find(cleaned) if f.label in ("SECRET", "CARD", "SSN", "EMAIL")]
    assert not [f for f in remaining if cleaned[f.start:f.end] in
                {text[g.start:g.end] for g in findings}]


STREAM_PIECES = ["hello ", "sk-proj-", "AbCdEfGhIj", "KlMnOpQrSt", "UvWxYz0123", " 4111 ", "1111 ", "a@b.io ",
                 "\n", "ok ", "+1 415 ", "555 2671", "123-45-", "6789 ", ".",
                 "-----BEGIN PRIVATE KEY-----\n", "MIIabc\n", "-----END PRIVATE KEY-----"]


def through(stream, raw: bytes) -> bytes:
    """One SSE event's bytes through a stream filter, parsed as ResponseUsage hands it over."""
    from extproc.api.provider_json import loads
    from extproc.api.sse import SSEParser
    [event] = SSEParser().feed(raw)
    return stream(event, loads(event.data) if event.data.startswith(b"{") else None, event.raw)


def stream_through_guard(pieces: list[str], guards: list | None = None) -> tuple[list[str], str]:
    """Feed pieces as chat SSE content events; the text released after each piece, and
    the whole released text (the stream's end included)."""
    from types import SimpleNamespace

    import orjson

    from extproc.guardrails.config import Guardrail
    from extproc.stages.guard.stream import StreamGuard
    guards = guards or [Guardrail("pii", "pii", "redact", frozenset({"response"}), "closed", PII)]
    call = bare_call("chat")
    stream = StreamGuard(call, guards, 128)

    def text_of(chunk: bytes) -> str:
        events = [orjson.loads(block[6:]) for block in chunk.split(b"\n\n") if block.startswith(b"data: {")]
        return "".join(f"<error {e['error']['code']}>" if "error" in e else e["choices"][0]["delta"]["content"]
                       for e in events)
    released = []
    for piece in pieces:
        data = {"choices": [{"index": 0, "delta": {"content": piece}}]}
        released.append(text_of(through(stream, b"data: " + orjson.dumps(data) + b"\n\n")))
    return released, "".join(released) + text_of(through(stream, b"data: [DONE]\n\n"))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(STREAM_PIECES), max_size=30))
# The released text the scan sees was once cut mid-word: "sk-proj-sk-proj-" became a
# key at the cut, which swallowed the start of the private key's header.
@example(["AbCdEfGhIj", "sk-proj-", "sk-proj-", "-----BEGIN PRIVATE KEY-----\n"])
# A card inside a longer run of digit groups: the context once started inside the run,
# so the card finder split it elsewhere than in the whole text and found no card.
@example(["555 2671", "555 2671", "555 2671", " 4111 ", "555 2671"])
# ... nor a run whose groups are two spaces or " +" apart.
@example(["UvWxYz0123", " 4111 ", " 4111 ", "+1 415 ", "555 2671", " 4111 ", " 4111 "])
def test_stream_guard_releases_everything_and_no_secret_escapes(pieces):
    _, text = stream_through_guard(pieces)
    whole = "".join(pieces)
    # Nothing of a finding of the whole text may leave, not even a tail of it (a piece
    # is a leak when it occurs nowhere else in the text).
    for finding in PII.find(whole):
        value = whole[finding.start:finding.end]
        elsewhere = whole[:finding.start] + "\0" + whole[finding.end:]
        pieces_of_it = {value[i:i + 8] for i in range(max(1, len(value) - 7))}
        leaked = [p for p in pieces_of_it if p in text and p not in elsewhere]
        assert not leaked, (value, text)
    # And streaming loses nothing: text with nothing to redact comes out whole.
    if not PII.find(whole):
        assert text == whole


TOOL_NAMES = [
    # endpoint, declared tool, the name an allowlist sees
    ("chat", {"type": "function", "function": {"name": "get_weather"}}, "get_weather"),
    ("chat", {"type": "function", "function": {"name": "evil"}, "name": "get_weather"}, "evil"),
    ("chat", {"type": "custom", "custom": {"name": "grep"}}, "grep"),
    ("responses", {"type": "function", "name": "get_weather"}, "get_weather"),
    ("responses", {"type": "function", "name": "evil", "function": {"name": "get_weather"}}, "evil"),
    ("responses", {"type": "custom", "name": "grep"}, "grep"),
    ("responses", {"type": "web_search_preview"}, "web_search_preview"),
    ("responses", {"type": "mcp", "server_label": "x", "server_url": "https://mcp.example",
                   "name": "get_weather"}, "mcp"),
    ("responses", {"type": "code_interpreter", "container": {"type": "auto"}}, "code_interpreter"),
    ("messages", {"name": "Bash", "input_schema": {"type": "object"}}, "Bash"),   # Anthropic: no type
    ("messages", {"type": "custom", "name": "Read", "input_schema": {}}, "Read"),
    ("count_tokens", {"name": "Bash", "input_schema": {}}, "Bash"),
    ("messages", {"type": "web_search_20250305", "name": "web_search"}, "web_search_20250305"),
    ("chat", {"function": {"name": "get_weather"}}, ""),      # no type: named by nothing
    ("chat", "get_weather", ""),
]


@pytest.mark.parametrize("kind,tool,name", TOOL_NAMES)
def test_tool_names_as_the_provider_reads_them(kind, tool, name):
    assert codec_of(kind).tool_name(tool) == name


def test_deprecated_functions_are_tools_too():
    body = {"functions": [{"name": "delete_database"}], "tools": [
        {"type": "function", "function": {"name": "get_weather"}}]}
    assert codec_of("chat").tool_names(body) == ["get_weather", "delete_database"]
    answer = {"choices": [{"message": {"function_call": {"name": "delete_database", "arguments": "{}"}}}]}
    assert codec_of("chat").called_tools(answer) == ["delete_database"]


# Generated text of a JSON response beyond the answer's content (guardrails/response_walk.py).
GENERATED_ELSEWHERE = [
    ("chat refusal", "chat",
     {"choices": [{"message": {"content": None, "refusal": "Not mailing jane.doe@example.com"}}]}),
    ("chat reasoning_content", "chat",
     {"choices": [{"message": {"content": "ok", "reasoning_content": "the user is jane.doe@example.com"}}]}),
    ("responses reasoning summary", "responses",
     {"output": [{"type": "reasoning", "summary": [{"type": "summary_text", "text": "mail jane.doe@example.com"}]}]}),
    ("chat content as Mistral's list of chunks, thinking nested", "chat",
     {"choices": [{"message": {"content": [
         {"type": "thinking", "thinking": [{"type": "text", "text": "mail jane.doe@example.com"}]},
         {"type": "text", "text": "ok"}]}}]}),
    ("responses refusal", "responses",
     {"output": [{"type": "message", "content": [{"type": "refusal", "refusal": "not jane.doe@example.com"}]}]}),
]


@pytest.mark.parametrize("name,kind,body", GENERATED_ELSEWHERE, ids=[c[0] for c in GENERATED_ELSEWHERE])
def test_every_generated_text_of_a_json_response_is_scanned(name, kind, body):
    from extproc.guardrails.response_walk import response_slots
    assert any("jane.doe@example.com" in container[key] for container, key in response_slots(kind, body))


# JSON answers the response guardrails must read as a client would (api/provider_json.py,
# api/repeated_keys.py), each with an address in its content; what the client gets.
HARD_TO_READ = [
    ("half an emoji", rb'"content":"mail jane.doe@example.com \ud83d"', "mail [EMAIL] \ud83d"),
    ("NaN", b'"content":"mail jane.doe@example.com","score":NaN', "mail [EMAIL]"),
    ("half a UTF-8 character", b'"content":"mail jane.doe@example.com \xe2\x82"', "mail [EMAIL] \ufffd"),
    ("a key written twice", b'"content":"mail jane.doe@example.com","content":"hi"', "hi"),
]


@pytest.mark.parametrize("name,message,content", HARD_TO_READ, ids=[c[0] for c in HARD_TO_READ])
def test_a_json_answer_leaves_as_the_guardrails_read_it(name, message, content):
    import asyncio
    import json
    from types import SimpleNamespace

    from extproc.api.provider_json import loads
    from extproc.guardrails.config import Guardrail, GuardrailSettings
    from extproc.guardrails.fold import FoldingDetector
    from extproc.stages.guard.response import GuardResponse
    pii = Guardrail("pii", "pii", "redact", frozenset({"response"}), "closed", FoldingDetector(PII))
    raw = b'{"choices":[{"index":0,"message":{"role":"assistant",' + message + b'}}]}'
    call = bare_call("chat", response_streamed=False, status=200, key=SimpleNamespace(id="k", team=""),
                     config=SimpleNamespace(guardrails=GuardrailSettings(default=(pii,))),
                     response_json=loads(raw))     # as ResponseUsage reads it
    out = asyncio.run(GuardResponse().response_body(call, raw, True))
    assert b"jane" not in out
    keys = []
    body = json.loads(out.decode(), object_pairs_hook=lambda pairs: keys.append([k for k, _ in pairs]) or dict(pairs))
    assert body["choices"][0]["message"]["content"] == content
    assert all(len(set(names)) == len(names) for names in keys)


def test_digit_groups_inside_a_uuid_are_neither_cards_nor_phones():
    """Agents send UUIDs (Codex's prompt_cache_key, session ids): their all-digit groups can
    pass Luhn or read as a phone number, and a redaction would corrupt the id."""
    import random
    import uuid
    detector = PIIDetector()
    rng = random.Random(7)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(20000)]
    ids += ["d095cd03-1310-4071-8f12-4af9106ace32", "01a21087-1e3a-7a53-b464-483817304066"]
    assert [u for u in ids if detector.find(f'{{"id":"{u}"}}')] == []
    assert sorted(f.label for f in detector.find("card 4111-1111-1111-1111, call +1 415-555-2671")) == ["CARD", "PHONE"]


def test_the_luhn_check_agrees_with_stdnum():
    """pii._luhn is summed in C for speed; stdnum's is the reference."""
    import random

    from stdnum import luhn

    from extproc.guardrails.pii import _luhn
    numbers = ["4111111111111111", "4111111111111112", "4242424242424242", "0", "18", "79927398713",
               "\u0664\u0661\u0661\u0661" * 4]                        # Arabic-Indic digits
    generator = random.Random(7)
    numbers += ["".join(generator.choice("0123456789") for _ in range(generator.randint(1, 19))) for _ in range(5000)]
    assert [_luhn(n) for n in numbers] == [luhn.is_valid(n) for n in numbers]
    assert sum(_luhn(n) for n in numbers) > 400          # both answers are exercised


def test_a_verdict_with_nothing_found_is_one_entry_no_call_can_change():
    """Calls that get a rule's verdict with nothing found share one log-line entry (made
    once per rule, direction and verdict); one with findings gets its own. The shared one
    refuses every change, so no call's log line can alter another's."""
    from types import SimpleNamespace

    import orjson

    from extproc.stages.guard.request import record_verdict

    rule = SimpleNamespace(name="pii-unit")
    first, second = SimpleNamespace(verdicts=[]), SimpleNamespace(verdicts=[])
    record_verdict(first, rule, "request", "passed")
    record_verdict(second, rule, "request", "passed")
    record_verdict(second, rule, "request", "redacted", ["email"], ["user"])
    shared = first.verdicts[0]
    assert second.verdicts[0] is shared
    assert orjson.loads(orjson.dumps(second.verdicts)) == [
        {"guardrail": "pii-unit", "direction": "request", "verdict": "passed"},
        {"guardrail": "pii-unit", "direction": "request", "verdict": "redacted", "found": ["email"],
         "where": ["user"]}]
    for change in (lambda: shared.__setitem__("found", ["x"]), lambda: shared.update(verdict="blocked"),
                   lambda: shared.pop("verdict"), lambda: shared.setdefault("where", []), shared.clear,
                   lambda: shared.__delitem__("verdict"), lambda: shared.__ior__({"a": 1})):
        with pytest.raises(TypeError):
            change()
    assert shared == {"guardrail": "pii-unit", "direction": "request", "verdict": "passed"}
    record_verdict(first, rule, "request", "redacted", ["card"])
    assert first.verdicts[1] is not second.verdicts[1] and first.verdicts[1]["found"] == ["card"]


def test_the_rules_reading_each_direction_are_those_of_the_callers_policy_in_order():
    """A call asks which of its key's rules read the request and which the answer: the
    answer is the policy's rules of that direction, in order, a rule of a type that reads
    no answer (caps) left out of the answer's; a key's own policy, its team's, or the
    default, as policy_for chooses."""
    from types import SimpleNamespace

    from extproc.guardrails.config import Caps, Guardrail, GuardrailSettings

    def rule(name, kind, *directions):
        return Guardrail(name, kind, "block", frozenset(directions), "closed",
                         caps=Caps(None, None, None) if kind == "caps" else None)

    both, asked, answered = rule("pii", "pii", "request", "response"), rule("inj", "prompt_injection", "request"), \
        rule("banned", "banned", "response")
    caps = rule("caps", "caps", "request", "response")
    settings = GuardrailSettings(default=(both, asked, caps, answered), by_team={"red": (answered,)},
                                 by_key={"k1": (caps, both)})
    alice, red, k1 = SimpleNamespace(id="a", team=""), SimpleNamespace(id="b", team="red"), \
        SimpleNamespace(id="k1", team="red")
    for _ in range(2):                          # worked out, then remembered: the same answer
        assert settings.policy_reading(alice, "request") == (both, asked, caps)
        assert settings.policy_reading(alice, "response") == (both, answered)
        assert settings.policy_reading(red, "request") == ()
        assert settings.policy_reading(red, "response") == (answered,)
        assert settings.policy_reading(k1, "request") == (caps, both)
        assert settings.policy_reading(k1, "response") == (both,)
