"""Streaming guardrails hold back only what could still become a finding
(extproc/guardrails/hold.py, stages/guard/stream.py): table-driven."""

from __future__ import annotations

import re
from re import _parser as sre_parse
from types import SimpleNamespace

import orjson
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from test_guardrails_unit import stream_through_guard, through

from extproc.guardrails import redact
from extproc.guardrails.banned import BannedDetector
from extproc.guardrails.config import Guardrail
from extproc.guardrails.injection import InjectionDetector
from extproc.guardrails.pii import PIIDetector
from extproc.stages.guard.stream import MAX_HOLD_CHARS, StreamGuard
from bare_call import bare_call
from test_prefixes import _operator_patterns

PII = PIIDetector()
INJECTION = InjectionDetector()
BANNED = BannedDetector(("launch code alpha", "zeus"), (r"(?i)internal\s+only",))

# (detector, text so far, the tail that must stay held)
HOLD_CASES = [
    ("pii", "Hello", "Hello"),                                  # may be an e-mail's local part
    ("pii", "Hello! How are you?", ""),
    ("pii", "Sure, write to bob@exa", "bob@exa"),
    ("pii", "Sure, write to bob@example.com", "bob@example.com"),   # may still grow (.com → .community)
    ("pii", "Sure, write to bob@example.com, then", "then"),
    ("pii", "card 4111 1111", "4111 1111"),
    ("pii", "the key is sk-pro", "sk-pro"),
    ("pii", "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkq\nhkiG9w0B",
     "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkq\nhkiG9w0B"),   # held until its END line
    ("pii", "-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----\nDone!", ""),
    ("injection", "please ignore all prev", "ignore all prev"),
    ("injection", "The weather is nice today. ", ""),
    ("banned", "the launch code al", "launch code al"),
    ("banned", "the launch code is secret.", ""),
    ("banned", "for internal", "internal"),
    ("banned", "zeu", "zeu"),
    ("banned", "zebra.", ""),
]


@pytest.mark.parametrize("kind,text,held", HOLD_CASES, ids=[f"{c[0]}: {c[1][:24]!r}" for c in HOLD_CASES])
def test_hold_from(kind, text, held):
    detector = {"pii": PII, "injection": INJECTION, "banned": BANNED}[kind]
    assert text[detector.hold_from(text):] == held


def guard(name: str, kind: str, action: str, detector) -> Guardrail:
    return Guardrail(name, kind, action, frozenset({"response"}), "closed", detector)


def test_each_word_leaves_as_soon_as_the_next_chunk_rules_it_out():
    pieces = ["Hello", "!", " How", " can", " I", " help", " you", " today", "?"]
    released, text = stream_through_guard(pieces, [guard("pii", "pii", "redact", PII),
                                                   guard("inj", "prompt_injection", "block", INJECTION)])
    assert released[:3] == ["", "Hello!", " "]              # "Hello" waited for one chunk only
    assert "".join(released[:-1]) == "Hello! How can I help you "   # "today" waits for "?"
    assert text == "".join(pieces)


def test_a_banned_phrase_split_across_chunks_blocks_before_any_of_it_leaves():
    pieces = ["We", " keep", " the", " launch", " code", " alpha", " safe"]
    released, _ = stream_through_guard(pieces, [guard("words", "banned", "block", BANNED)])
    assert released[:5] == ["We", " keep", " the", " ", ""]   # "launch code" held while undecided
    assert released[5:] == ["<error content_blocked>", ""]


def test_a_secret_in_pieces_is_redacted_whole():
    pieces = ["key: ", "sk-proj-", "AbCdEfGhIj", "KlMnOpQrSt", "UvWxYz0123", " done"]
    released, text = stream_through_guard(pieces)
    assert released[1:5] == ["", "", "", ""]
    assert text == "key: [SECRET] done"


def test_held_text_is_bounded():
    body = "A" * 63 + "\n"
    pieces = ["-----BEGIN PRIVATE KEY-----\n"] + [body] * (MAX_HOLD_CHARS // len(body) + 2)
    released, _ = stream_through_guard(pieces)
    first = next(i for i, r in enumerate(released) if r)
    assert (first + 1) * len(body) > MAX_HOLD_CHARS      # held until the bound, not before
    assert released[first].startswith("[SECRET]\n")       # then released with its header redacted


class Opaque:
    """A detector whose patterns cannot be analysed for partial matches."""

    def find(self, text):
        return []

    def hold_from(self, text, start=0):
        return None


def test_a_detector_that_cannot_tell_falls_back_to_the_window():
    pieces = ["x" * 100, "y" * 100]
    released, text = stream_through_guard(pieces, [guard("opaque", "banned", "redact", Opaque())])
    assert released == ["", "x" * 72]                     # 200 - the window of 128
    assert text == "x" * 100 + "y" * 100


# Each streaming API carries generated text in its own places (stages/guard/stream.py):
# name → (endpoint kind, an event carrying text t, the text an event carries).
def _chat(field):
    return ("chat", lambda t: {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {field: t}}]},
            lambda e: e["choices"][0]["delta"][field])


def _responses(kind, **extra):
    return ("responses", lambda t: {"type": kind, "output_index": 0, **extra, "delta": t}, lambda e: e["delta"])


KINDS = {
    "chat": _chat("content"),
    "chat refusal": _chat("refusal"),
    "chat reasoning_content": _chat("reasoning_content"),
    "chat content parts (Mistral)": ("chat", lambda t: {"choices": [{"index": 0, "delta": {"content": [
        {"type": "thinking", "thinking": [{"type": "text", "text": t}]}]}}]},
        lambda e: e["choices"][0]["delta"]["content"][0]["thinking"][0]["text"]),
    "completions": ("completions", lambda t: {"object": "text_completion", "choices": [{"index": 0, "text": t}]},
                    lambda e: e["choices"][0]["text"]),
    "responses": _responses("response.output_text.delta", content_index=0),
    "responses refusal": _responses("response.refusal.delta", content_index=0),
    "responses reasoning summary": _responses("response.reasoning_summary_text.delta", summary_index=0),
    "responses audio transcript": _responses("response.audio.transcript.delta"),
}


@pytest.mark.parametrize("name", KINDS)
def test_every_streaming_api_is_held_and_redacted_the_same_way(name):
    import orjson

    from extproc.stages.guard.stream import StreamGuard
    kind, event, text_of = KINDS[name]
    call = bare_call(kind)
    stream = StreamGuard(call, [guard("pii", "pii", "redact", PII)], 128)
    pieces = ["Your", " key", " is", " sk-proj-", "AbCdEfGhIj", "KlMnOpQrSt", "UvWxYz0123", ",", " keep", " it"]
    released = []
    for piece in pieces:
        out = through(stream, b"data: " + orjson.dumps(event(piece)) + b"\n\n")
        released.append("".join(text_of(orjson.loads(block[6:])) for block in out.split(b"\n\n") if block))
    done = through(stream, b"data: [DONE]\n\n")
    tail = "".join(text_of(orjson.loads(block[6:])) for block in done.split(b"\n\n")
                   if block.startswith(b"data: {"))
    assert released[:4] == ["", "Your ", "key ", "is "]         # each word once the next one rules it out
    assert released[4:7] == ["", "", ""]                         # the key, held while it grows
    # "0123," may still open a card written in groups ("0123, 4567, ..."): held one word more
    assert released[7:9] == ["", "[SECRET], "]
    assert "".join(released) + tail == "Your key is [SECRET], keep it"


def _run_stream(events: list[tuple[int, str]]) -> dict[int, str]:
    """Chat content events (answer index, text) through a PII StreamGuard, then [DONE]:
    the text each answer released."""
    import orjson

    from extproc.stages.guard.stream import StreamGuard
    call = bare_call("chat")
    stream = StreamGuard(call, [guard("pii", "pii", "redact", PII)], 128)
    out = b""
    for index, text in events:
        data = {"choices": [{"index": index, "delta": {"content": text}}]}
        out += through(stream, b"data: " + orjson.dumps(data) + b"\n\n")
    out += through(stream, b"data: [DONE]\n\n")
    answers: dict[int, str] = {}
    for block in out.split(b"\n\n"):
        if block.startswith(b"data: {"):
            [choice] = orjson.loads(block[6:])["choices"]
            answers[choice["index"]] = answers.get(choice["index"], "") + choice["delta"]["content"]
    return answers


@settings(max_examples=200, deadline=None)
# Read backwards, "4111 11111111 4111" is a card; with the digits after it, a longer
# candidate fails Luhn and the card starts inside it: both must be read, or the first
# chunks' digits leave before the card is known.
@example(pieces=[" 4111 ", "1111", "1111", " 4111 ", "1111 1111 ", "1111 1111 "], turns=[])
@given(st.lists(st.sampled_from(["Your", " key", " sk-proj-", "AbCdEfGhIj", "KlMnOpQrSt", "UvWx",
                                 " a.b", "@example", ".org", " 4111 ", "1111 1111 ", "1111", " ok"]),
                min_size=1, max_size=12),
       st.lists(st.booleans(), max_size=40))
def test_the_answers_of_one_stream_are_held_each_as_if_alone(pieces, turns):
    """Answers of a stream with `n` interleave their chunks: each comes out as it would
    alone. Answer 1 here is answer 0's text in another rhythm (two pieces a chunk),
    the two interleaved as `turns` says."""
    queues = {0: list(pieces), 1: ["".join(pieces[i:i + 2]) for i in range(0, len(pieces), 2)]}
    turns = iter(turns)
    events = []
    while queues[0] or queues[1]:
        index = int(next(turns, False)) if queues[0] and queues[1] else (0 if queues[0] else 1)
        events.append((index, queues[index].pop(0)))
    alone = _run_stream([(0, piece) for piece in pieces])[0]
    assert _run_stream(events) == {0: alone, 1: alone}


# Digit groups, forwards and written backwards: which groups a card is read from depends
# on the text around them, so these are where a hold could release a card's first digits.
DIGIT_PIECES = [" 4111 ", "1111 1111 ", "1111", " 6467 3430", "8841 9354 ", " ", "-", "x"]
# Values whole and in pieces, forwards and written backwards.
VALUE_PIECES = ["Your", " key", " sk-proj-", "AbCdEfGhIj", "KlMnOpQrSt", "UvWx", " a.b", "@example", ".org",
                " 4111 ", "1111 1111 ", " ok", "\n", " gro.", "elpmaxe@", "b.a ", "xWvU", "-jorp-ks ",
                " 6467 3430", " 8841 9354", "9876-54-321 ", " 00 0310 0250 4400 4073 98ED",
                " moc ]tod[ elpmaxe ]ta[ enaj", " nss", ""]      # "": a chunk with nothing new


@settings(max_examples=150, deadline=None)
# Read backwards, the groups from the second on are a card; with more groups after them the
# card is read from the first: a hold that let the first group go would leak it.
@example(pieces=[" 4111 ", "1111 1111 ", " 4111 ", " 4111 ", "1111 1111 ", " 4111 "])
@example(pieces=[" 4111 ", " 4111 ", "1111 1111 ", " 4111 ", " 4111 ", "1111 1111 "])
# A chunk with nothing new between a key's pieces (some providers send `"content": ""`
# between tokens) must not release the first piece as if the answer had ended.
@example(pieces=["Your", " key", " sk-proj-", "AbCdEfGhIj", "", "KlMnOpQrSt", "UvWx", " ok"])
@given(st.one_of(st.lists(st.sampled_from(DIGIT_PIECES), min_size=1, max_size=10),
                 st.lists(st.sampled_from(VALUE_PIECES), min_size=1, max_size=14)))
def test_a_streamed_answer_is_redacted_as_the_whole_text_is(pieces):
    whole = "".join(pieces)
    assert _run_stream([(0, piece) for piece in pieces])[0] == redact(whole, PII.find(whole))


def test_an_answer_that_ends_in_another_answers_event_releases_its_held_text_first():
    import orjson

    from extproc.stages.guard.stream import StreamGuard
    call = bare_call("chat")
    stream = StreamGuard(call, [guard("pii", "pii", "redact", PII)], 128)

    def feed(data):
        out = through(stream, b"data: " + orjson.dumps(data) + b"\n\n")
        return [orjson.loads(block[6:])["choices"] for block in out.split(b"\n\n") if block]
    assert feed({"choices": [{"index": 0, "delta": {"content": "mail a.b"}},
                             {"index": 1, "delta": {"content": "hi a.b"}}]}) == [
        [{"index": 0, "delta": {"content": "mail "}}], [{"index": 1, "delta": {"content": "hi "}}]]
    assert feed({"choices": [{"index": 0, "delta": {"content": "@example.org ok"}},
                             {"index": 1, "delta": {}, "finish_reason": "stop"}]}) == [
        [{"index": 0, "delta": {"content": "[EMAIL] "}}],
        [{"index": 1, "delta": {"content": "a.b"}}],                     # its held word, then its end
        [{"index": 1, "delta": {}, "finish_reason": "stop"}]]


def _guarded_tool_call_stream(kind: str, pieces: list[str], answers: int = 1) -> list[dict]:
    """The mock's tool-call stream (`x-mock-tool-call`) of these argument pieces through a
    PII StreamGuard: the events that leave."""
    import orjson

    from extproc.mock.shapes import sse_events
    from extproc.stages.guard.stream import StreamGuard
    call = bare_call(kind)
    stream = StreamGuard(call, [guard("pii", "pii", "redact", PII)], 128)
    usage = {"prompt_tokens": 1, "completion_tokens": 1}
    out = b""
    for raw in sse_events(kind, "gpt-4o-mini", pieces, "stop", usage, False, False, answers, "lookup"):
        out += through(stream, raw)
    return [orjson.loads(block.split(b"data: ", 1)[1]) for block in out.split(b"\n\n")
            if b"data: {" in block]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=30), st.integers(1, 3))
def test_streamed_tool_call_arguments_are_redacted_and_the_calls_stay_whole(sizes, answers):
    """The arguments of a streamed tool call are generated text too: held and redacted
    like content, whatever the pieces. The SDK's own accumulator rebuilds each call with
    its id and name once (a repeated name would be concatenated)."""
    from openai.lib.streaming.chat import ChatCompletionStreamState
    arguments = '{"text": "write to jane.doe@example.com, card 4111 1111 1111 1111, key sk-proj-AbCdEfGhIjKlMnOp"}'
    pieces, position = [], 0
    for size in sizes * (len(arguments) // len(sizes) + 1):
        if position < len(arguments):
            pieces.append(arguments[position:position + size])
            position += size
    state = ChatCompletionStreamState()
    for event in _guarded_tool_call_stream("chat", pieces, answers):
        state.handle_chunk(__import__("openai").types.chat.ChatCompletionChunk.model_validate(event))
    completion = state.get_final_completion()
    assert len(completion.choices) == answers
    for choice in completion.choices:
        [tool_call] = choice.message.tool_calls
        assert tool_call.function.name == "lookup" and tool_call.id.startswith("call_")
        assert tool_call.function.arguments == '{"text": "write to [EMAIL], card [CARD], key [SECRET]"}'
        assert choice.finish_reason == "tool_calls"


def test_responses_function_call_arguments_are_redacted_in_deltas_and_in_the_events_that_repeat_them():
    arguments = '{"text": "mail jane.doe@example.com now"}'
    events = _guarded_tool_call_stream("responses", [arguments[i:i + 4] for i in range(0, len(arguments), 4)])
    redacted = '{"text": "mail [EMAIL] now"}'
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    assert deltas == redacted
    by_type = {e["type"]: e for e in events}
    assert by_type["response.function_call_arguments.done"]["arguments"] == redacted
    assert by_type["response.output_item.done"]["item"]["arguments"] == redacted
    assert by_type["response.completed"]["response"]["output"][0]["arguments"] == redacted
    assert "jane" not in str(events)


def _chat_events_through_guard(deltas: list[dict]):
    """Chat chunks with these deltas (then a tool_calls finish) through a PII StreamGuard:
    the bytes that leave, and the message the SDK's own accumulator makes of them."""
    import openai
    import orjson
    from openai.lib.streaming.chat import ChatCompletionStreamState

    from extproc.stages.guard.stream import StreamGuard
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    events = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    call = bare_call("chat")
    stream = StreamGuard(call, [guard("pii", "pii", "redact", PII)], 128)
    out = b"".join(through(stream, b"data: " + orjson.dumps(e) + b"\n\n") for e in events)
    out += through(stream, b"data: [DONE]\n\n")
    state = ChatCompletionStreamState()
    for block in out.split(b"\n\n"):
        if block.startswith(b"data: {"):
            state.handle_chunk(openai.types.chat.ChatCompletionChunk.model_validate(orjson.loads(block[6:])))
    return out, state.get_final_completion().choices[0].message


@pytest.mark.parametrize("field", ["tool_calls", "function_call"])
def test_a_call_whose_first_delta_already_carries_arguments_keeps_its_id_and_name(field):
    """Some providers send a call's id and name with its first arguments: the id and name
    leave at once, the arguments are held like the rest (and never sent twice)."""
    def delta(piece: str, first: bool) -> dict:
        if field == "function_call":
            return {"function_call": {"name": "send", "arguments": piece} if first else {"arguments": piece}}
        call = {"index": 0, "function": {"arguments": piece}}
        if first:
            call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "send", "arguments": piece}}
        return {"tool_calls": [call]}
    arguments = ['{"to": "jane.d', 'oe@example', '.com"}']
    out, message = _chat_events_through_guard([{"role": "assistant", **delta(piece, i == 0)}
                                               for i, piece in enumerate(arguments)])
    called = message.tool_calls[0].function if field == "tool_calls" else message.function_call
    assert (called.name, called.arguments) == ("send", '{"to": "[EMAIL]"}')
    if field == "tool_calls":
        assert message.tool_calls[0].id == "call_1"
    assert b"jane" not in out


def test_content_and_a_tool_call_in_one_delta_are_held_each_on_its_own():
    """The content's release must not carry the event's tool call along, arguments and all."""
    call = {"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "send", "arguments": '{"to": "jane.doe@example.com"}'}}
    out, message = _chat_events_through_guard([{"role": "assistant", "content": "Sending it. ", "tool_calls": [call]}])
    assert message.content == "Sending it. "
    assert message.tool_calls[0].function.arguments == '{"to": "[EMAIL]"}'
    assert b"jane" not in out


# A provider's event that writes a key twice: the guardrails read the last value (orjson,
# like Python and JavaScript), a client's parser may keep the first. Each event below
# hides PII in the first value, with nothing to scan in the last.
HIDDEN = "mail jane.doe@example.com"
SHADOWED = [
    ("chat role chunk", "chat",
     f'data: {{"choices":[{{"index":0,"delta":{{"role":"assistant","content":"{HIDDEN}","content":""}}}}]}}'),
    ("chat finish chunk", "chat",
     f'data: {{"choices":[{{"index":0,"delta":{{"content":"{HIDDEN}","content":null}},"finish_reason":"stop"}}]}}'),
    ("completions", "completions", f'data: {{"choices":[{{"index":0,"text":"{HIDDEN}","text":""}}]}}'),
    ("responses delta", "responses",
     f'event: response.output_text.delta\ndata: {{"type":"response.output_text.delta","output_index":0,'
     f'"delta":"{HIDDEN}","delta":""}}'),
    ("responses done", "responses",
     f'event: response.output_text.done\ndata: {{"type":"response.output_text.done","output_index":0,'
     f'"text":"{HIDDEN}","text":"hello"}}'),
]


@pytest.mark.parametrize("name,kind,event", SHADOWED, ids=[c[0] for c in SHADOWED])
def test_an_event_that_repeats_a_key_leaves_as_the_guardrails_read_it(name, kind, event):
    import json

    from extproc.stages.guard.stream import StreamGuard
    call = bare_call(kind)
    stream = StreamGuard(call, [guard("pii", "pii", "redact", PII)], 128)
    out = through(stream, event.encode() + b"\n\n")
    assert b"jane" not in out
    lines = out.decode().strip().split("\n")
    data = lines[-1].removeprefix("data: ")
    assert json.loads(data, object_pairs_hook=_no_repeats) == json.loads(event.split("data: ")[1])
    assert lines[:-1] == event.split("\n")[:-1]             # the `event:` line kept


def _no_repeats(pairs):
    keys = [key for key, _ in pairs]
    assert len(keys) == len(set(keys)), keys
    return dict(pairs)


def test_an_event_that_repeats_no_key_leaves_byte_for_byte():
    from extproc.stages.guard.stream import StreamGuard
    call = bare_call("chat")
    stream = StreamGuard(call, [guard("pii", "pii", "redact", PII)], 128)
    event = b'data: {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}], "note": "a:b"}\n\n'
    assert through(stream, event) == event


# Events orjson refuses and clients read (extproc/api/provider_json.py), each carrying PII.
def _chunk(content: bytes, extra: bytes = b"") -> bytes:
    return b'data: {"choices":[{"index":0,"delta":{"content":"mail jane.doe@example.com ' + content + b'"}' \
        + extra + b'}]}\n\n'


LENIENT = [
    ("half an emoji", _chunk(rb"ok \ud83d"), "mail [EMAIL] ok \ud83d"),
    ("NaN", _chunk(b"ok", b',"logprobs":NaN'), "mail [EMAIL] ok"),
    ("1e400", _chunk(b"ok", b',"logprobs":1e400'), "mail [EMAIL] ok"),
    ("half a UTF-8 character", _chunk(b"ok \xe2\x82"), "mail [EMAIL] ok \ufffd"),
]


@pytest.mark.parametrize("name,event,text", LENIENT, ids=[c[0] for c in LENIENT])
def test_an_event_orjson_refuses_is_read_as_clients_read_it_and_guarded(name, event, text):
    import json

    from extproc.stages.guard.stream import StreamGuard
    call = bare_call("chat")
    stream = StreamGuard(call, [guard("pii", "pii", "redact", PII)], 128)
    out = through(stream, event) + through(stream, b"data: [DONE]\n\n")
    assert b"jane" not in out
    chunks = [json.loads(block[6:]) for block in out.decode().split("\n\n") if block.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == text


def test_json_no_client_could_read_is_not_read():
    from extproc.api.provider_json import loads
    assert loads(b'{"choices": [{"delta": {"content": "x"') is None
    assert loads(b"[" * 100_000) is None


def test_each_part_of_a_list_of_parts_is_held_on_its_own():
    """Mistral's thinking chunk and text chunk in one delta: each part's text is a lane of
    its own, released in the part's own shape."""
    import orjson

    from extproc.stages.guard.stream import StreamGuard
    call = bare_call("chat")
    stream = StreamGuard(call, [guard("pii", "pii", "redact", PII)], 128)

    def event(thinking: str, text: str) -> bytes:
        content = [{"type": "thinking", "thinking": [{"type": "text", "text": thinking}]},
                   {"type": "text", "text": text}]
        return b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": {"content": content}}]}) + b"\n\n"
    out = through(stream, event("mail jane.d", "Hi ")) + through(stream, event("oe@example.com ok", "there."))
    out += through(stream, b"data: [DONE]\n\n")
    thinking, text = "", ""
    for block in out.split(b"\n\n"):
        if block.startswith(b"data: {"):
            [part] = orjson.loads(block[6:])["choices"][0]["delta"]["content"]
            if part["type"] == "thinking":
                thinking += part["thinking"][0]["text"]
            else:
                text += part["text"]
    assert (thinking, text) == ("mail [EMAIL] ok", "Hi there.")
    assert b"jane" not in out


@settings(max_examples=150, deadline=None)
# `^` after a newline a finding took: read against the released text as generated, not
# as redacted, the second line's finding is seen.
@example(patterns=[r"(?m:^\W)"], pieces=["\n."])
# An empty content chunk between tokens ends nothing: the held text is still arriving.
@example(patterns=[r"(?m:^\d)"], pieces=["1", "", "1"])
@given(st.lists(st.tuples(_operator_patterns(), st.sampled_from(["a", "1", "x", r"\d", ".", r"\W"])).map("".join),
                min_size=1, max_size=2),
       st.lists(st.text(alphabet="abcx.é1 \n_-", max_size=4), min_size=1, max_size=8))
def test_a_stream_under_any_banned_patterns_is_redacted_as_the_whole_text_is(patterns, pieces):
    """Whatever regexes an operator's banned rule holds (classes, anchors, flags,
    lookarounds, nested repeats; none matching the empty string), a streamed answer comes
    out as its whole text redacted."""
    for pattern in patterns:
        try:
            compiled = re.compile(pattern)
        except re.error:
            assume(False)
        assume(compiled.match("") is None and sre_parse.parse(pattern).getwidth()[0] > 0)
    try:
        detector = BannedDetector((), tuple(patterns))
    except re.error:                    # two patterns naming one group: not a rule
        assume(False)
    whole = "".join(pieces)
    call = bare_call("chat")
    stream = StreamGuard(call, [guard("banned", "banned", "redact", detector)], 128)
    out = b"".join(through(stream, b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": {"content": piece}}]})
                           + b"\n\n") for piece in pieces) + through(stream, b"data: [DONE]\n\n")
    streamed = "".join(orjson.loads(block[6:])["choices"][0]["delta"]["content"]
                       for block in out.split(b"\n\n") if block.startswith(b"data: {"))
    assert streamed == redact(whole, detector.find(whole))


@pytest.mark.parametrize("between", [
    {"type": "response.output_text.annotation.added", "output_index": 0, "content_index": 0,
     "annotation": {"type": "url_citation", "url": "https://example.com"}},
    {"type": "response.in_progress", "response": {"id": "resp_1"}},
    {"type": "response.output_text.done", "output_index": 1, "content_index": 0, "text": "another output"},
])
def test_a_responses_event_between_a_keys_pieces_does_not_release_the_first(between):
    """An output's text ends with its own `….done` event or the response's end, not with
    any event that carries no delta (a citation added, another output done)."""
    call = bare_call("responses")
    stream = StreamGuard(call, [guard("pii", "pii", "redact", PII)], 128)

    def delta(text):
        return {"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": text}
    out = b""
    for event in (delta("Your key sk-proj-AbCdEfGhIj"), between, delta("KlMnOpQrStUvWx ok"),
                  {"type": "response.completed", "response": {"id": "resp_1"}}):
        out += through(stream, b"data: " + orjson.dumps(event) + b"\n\n")
    streamed = "".join(orjson.loads(block[6:]).get("delta", "") for block in out.split(b"\n\n")
                       if block.startswith(b"data: {") and b'output_text.delta"' in block)
    assert streamed == "Your key [SECRET] ok"


@pytest.mark.parametrize("name", ["chat", "completions"])
def test_a_chunk_with_nothing_new_between_a_keys_pieces_does_not_release_the_first(name):
    kind, event, text_of = KINDS[name]
    call = bare_call(kind)
    stream = StreamGuard(call, [guard("pii", "pii", "redact", PII)], 128)
    out = b"".join(through(stream, b"data: " + orjson.dumps(event(piece)) + b"\n\n")
                   for piece in ["Your key sk-proj-AbCdEfGhIj", "", "KlMnOpQrStUvWx ok"])
    out += through(stream, b"data: [DONE]\n\n")
    assert "".join(text_of(orjson.loads(block[6:])) for block in out.split(b"\n\n")
                   if block.startswith(b"data: {")) == "Your key [SECRET] ok"


@settings(max_examples=100, deadline=None)
@example(patterns=[r"(?m:^\W)"], pieces=["\n."])
@given(st.lists(st.tuples(_operator_patterns(), st.sampled_from(["a", "1", "x", r"\d", ".", r"\W"])).map("".join),
                min_size=1, max_size=2),
       st.lists(st.text(alphabet="abcx.é1 \n_-", max_size=4), min_size=1, max_size=8))
def test_a_translated_stream_under_any_banned_patterns_is_redacted_as_the_whole_text_is(patterns, pieces):
    """The same of a translated stream's guard, which reads the conversation model's
    events (stages/guard/events.py): a text block's deltas, then its stop and the end."""
    from extproc.dialects.conversation import Event
    from extproc.stages.guard.events import ModelEventGuard
    for pattern in patterns:
        try:
            assume(re.compile(pattern).match("") is None)
        except re.error:
            assume(False)
    try:
        detector = BannedDetector((), tuple(patterns))
    except re.error:
        assume(False)
    events_guard = ModelEventGuard(bare_call("chat"), [guard("banned", "banned", "redact", detector)], 128)
    out = events_guard.events([Event("block", 0, block={"type": "text", "text": ""})])
    for piece in pieces:
        out += events_guard.events([Event("delta", 0, delta="text", text=piece)])
    out += events_guard.events([Event("block_stop", 0), Event("stop", 0, stop="end"), Event("end", 0)], final=True)
    whole = "".join(pieces)
    assert "".join(e.text for e in out if isinstance(e, Event) and e.kind == "delta") == \
        redact(whole, detector.find(whole))


@pytest.mark.parametrize("name", ["responses", "chat", "responses reasoning summary"])
def test_a_stream_cut_before_its_answer_ends_releases_its_held_text_redacted(name):
    """No final event (`response.completed`, `[DONE]`, a finish reason): the stream's end
    releases what the guard still holds, read as complete, as the whole text reads it."""
    from extproc.api.sse import SSEParser
    from extproc.stages.response_stream import stream_chunk
    kind, event, text_of = KINDS[name]
    call = bare_call(kind, provider_kind=kind, sse=SSEParser(), client_wants_usage=True)
    call.event_filters.append(StreamGuard(call, [guard("pii", "pii", "redact", PII)], 128))
    pieces = ["Write to jane", ".doe@example", ".com"]
    out = b""
    for index, piece in enumerate(pieces):
        chunk = b"data: " + orjson.dumps(event(piece)) + b"\n\n"
        released = stream_chunk(call, chunk, end_of_stream=index == len(pieces) - 1)
        out += chunk if released is None else released
    texts = [text_of(orjson.loads(block[6:])) for block in out.split(b"\n\n") if block.startswith(b"data: {")]
    assert "".join(texts) == redact("Write to jane.doe@example.com", PII.find("Write to jane.doe@example.com"))
    assert "".join(texts) == "Write to [EMAIL]" and b"jane" not in out


def test_a_blocked_stream_releases_nothing_at_its_end():
    stream = StreamGuard(bare_call("chat"), [guard("banned", "banned", "block", BANNED)], 128)
    out = through(stream, b'data: {"choices":[{"index":0,"delta":{"content":"the launch code alpha"}}]}\n\n')
    assert b"alpha" not in out and stream.blocked is not None
    assert stream.end() == b""

