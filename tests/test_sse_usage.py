"""SSE parser and usage extraction, without Envoy (token counting: test_tokens.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.api.openai import (
    chat_prompt_texts,
    completions_prompt_texts,
    responses_usage_from_event,
    usage_from_response,
)
from extproc.api.sse import SSEParser
from extproc.dialects import codec_of


def parse_all(chunks: list[bytes]) -> tuple[list, bytes]:
    parser = SSEParser()
    events = [e for chunk in chunks for e in parser.feed(chunk)]
    events += parser.feed(b"", final=True)
    return events, parser.pending


SSE_CASES = [
    ("one event", [b"data: a\n\n"], [b"a"]),
    ("split in the middle", [b"da", b"ta: a\n", b"\n"], [b"a"]),
    ("two in one chunk", [b"data: a\n\ndata: b\n\n"], [b"a", b"b"]),
    ("crlf", [b"data: a\r\n\r\ndata: b\r\n\r\n"], [b"a", b"b"]),
    ("crlf split between cr and lf", [b"data: a\r", b"\n\r", b"\n"], [b"a"]),
    ("bare cr", [b"data: a\r\rdata: b\r\r"], [b"a", b"b"]),
    ("comment kept raw, no data", [b": keep-alive\n\ndata: a\n\n"], [b"", b"a"]),
    ("multi-line data", [b"data: a\ndata: b\n\n"], [b"a\nb"]),
    ("named event", [b"event: response.completed\ndata: {}\n\n"], [b"{}"]),
    ("done", [b"data: [DONE]\n\n"], [b"[DONE]"]),
    ("no space after colon", [b"data:x\n\n"], [b"x"]),
    # The stream ends where no blank line ended its last event: read as ended there.
    ("last event unended", [b"data: a\n\ndata: b"], [b"a", b"b"]),
    ("byte order mark first", [b"\xef\xbb", b"\xbfdata: a\n\n"], [b"a"]),
    ("last event ended by one line end", [b"data: a\n\nevent: e\r\ndata: b\r\n"], [b"a", b"b"]),
]


@pytest.mark.parametrize("name,chunks,expected", SSE_CASES, ids=[c[0] for c in SSE_CASES])
def test_sse_parser(name, chunks, expected):
    events, tail = parse_all(chunks)
    assert [e.data for e in events] == expected
    assert b"".join(e.raw for e in events) + tail == b"".join(chunks)


_event = st.builds(lambda data, crlf: (b"data: " + data + (b"\r\n\r\n" if crlf else b"\n\n")),
                   st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")),
                   st.booleans())


@settings(max_examples=300, deadline=None)
@given(st.lists(_event, max_size=8), st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_sse_any_split_gives_same_events_and_loses_no_byte(events, cuts):
    stream = b"".join(events)
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)])]
    whole, _ = parse_all([stream])
    split, tail = parse_all(chunks)
    assert [e.data for e in split] == [e.data for e in whole]
    assert b"".join(e.raw for e in split) + tail == stream


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=30), max_size=10))
def test_sse_never_raises_and_never_loses_bytes(chunks):
    events, tail = parse_all(chunks)
    assert b"".join(e.raw for e in events) + tail == b"".join(chunks)


USAGE_CASES = [
    ("chat with details",
     {"usage": {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 4},
                "completion_tokens_details": {"reasoning_tokens": 3}}}, (10, 5, 4, 3)),
    ("embeddings", {"usage": {"prompt_tokens": 7, "total_tokens": 7}}, (7, 0, 0, 0)),
    ("responses", {"usage": {"input_tokens": 9, "output_tokens": 2,
                             "input_tokens_details": {"cached_tokens": 1},
                             "output_tokens_details": {"reasoning_tokens": 1}}}, (9, 2, 1, 1)),
    ("null details", {"usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                "prompt_tokens_details": None}}, (1, 1, 0, 0)),
]


@pytest.mark.parametrize("name,body,expected", USAGE_CASES, ids=[c[0] for c in USAGE_CASES])
def test_usage_shapes(name, body, expected):
    usage = usage_from_response(body)
    assert (usage.input_tokens, usage.output_tokens, usage.cached_tokens, usage.reasoning_tokens) == expected


def test_responses_stream_usage_comes_from_completed_event():
    event = {"type": "response.completed", "response": {"usage": {"input_tokens": 3, "output_tokens": 4}}}
    assert responses_usage_from_event(event).output_tokens == 4
    assert responses_usage_from_event({"type": "response.output_text.delta", "delta": "x"}) is None
    # the codec keeps what it had until then
    so_far = responses_usage_from_event(event)
    assert codec_of("responses").usage_from_event({"type": "response.output_text.delta"}, so_far) is so_far


def test_prompt_texts_cover_every_role_and_part():
    body = {"messages": [
        {"role": "system", "content": "S"},
        {"role": "user", "content": [{"type": "text", "text": "U"}, {"type": "image_url"}]},
        {"role": "assistant", "content": None,
         "tool_calls": [{"function": {"name": "f", "arguments": "{\"a\":1}"}}]},
        {"role": "tool", "content": "T"}]}
    texts, messages = chat_prompt_texts(body)
    assert texts == ["S", "U", "f", "{\"a\":1}", "T"] and messages == 4


ANSWERS = [
    # kind, body, answers the provider generates (and bills) for one request
    ("chat", {}, 1),
    ("chat", {"n": 4}, 4),
    ("chat", {"n": 0}, 1),                     # not a count the provider accepts: its error
    ("chat", {"n": "4"}, 1),
    ("chat", {"n": True}, 1),
    ("completions", {"prompt": "p", "n": 2}, 2),
    ("completions", {"prompt": "p", "n": 2, "best_of": 5}, 5),
    ("completions", {"prompt": ["a", "b", "c"], "n": 2}, 6),
    ("completions", {"prompt": [[1, 2], [3]], "best_of": 3}, 6),
    ("completions", {"prompt": [1, 2, 3]}, 1),  # one prompt, as token ids
    ("completions", {"prompt": []}, 1),
    ("responses", {"n": 3}, 1),
    ("embeddings", {"n": 3}, 1),
]


@pytest.mark.parametrize("kind,body,expected", ANSWERS)
def test_answers_per_request(kind, body, expected):
    assert codec_of(kind).answers_per_request(body) == expected


def test_a_completions_suffix_is_prompt_text():
    texts, messages = completions_prompt_texts({"prompt": "def f():", "suffix": "    return x"})
    assert texts == ["def f():", "    return x"] and messages == 0


TOKEN_IDS = [
    ("completions", {"prompt": [1, 2, 3]}, 3),
    ("completions", {"prompt": [[1, 2], [3]]}, 3),
    ("completions", {"prompt": "text"}, 0),
    ("completions", {"prompt": ["a", "b"]}, 0),
    ("embeddings", {"input": [[5, 6, 7], [8]]}, 4),
    ("embeddings", {"input": [1, "x"]}, 0),     # not a list of ids: the provider's error
    ("chat", {"prompt": [1, 2]}, 0),
]


@pytest.mark.parametrize("kind,body,expected", TOKEN_IDS)
def test_prompts_given_as_token_ids_are_counted(kind, body, expected):
    assert codec_of(kind).prompt_token_ids(body) == expected


# --- the usage stage on a stream cut anywhere ------------------------------------------

_CHUNKS = [b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"%d"}}],"usage":null}\n\n' % i
           for i in range(3)]
_USAGE_CHUNK = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":4,"completion_tokens":3}}\n\n'
_PROVIDER_STREAM = b"".join(_CHUNKS) + _USAGE_CHUNK + b"data: [DONE]\n\n"


def _through_usage_stage(chunks: list[bytes], client_wants_usage: bool):
    """What the client gets: each chunk as the stage replaces it (None: unchanged)."""
    from test_one_message import QUICKSTART

    from extproc.api.openai import ENDPOINTS
    from extproc.config.filter_config import load_config
    from extproc.pipeline.call import Call
    from extproc.stages.response_stream import stream_chunk

    call = Call(load_config(QUICKSTART))
    call.endpoint, call.response_streamed = ENDPOINTS["/v1/chat/completions"], True
    call.provider_kind = "chat"
    call.sse, call.client_wants_usage = SSEParser(), client_wants_usage
    out = b""
    for index, chunk in enumerate(chunks):
        replaced = stream_chunk(call, chunk, index == len(chunks) - 1)
        out += chunk if replaced is None else replaced
    return out, call.usage


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(_PROVIDER_STREAM)), max_size=12),
       st.booleans())
def test_usage_stage_gives_the_same_stream_however_the_provider_cuts_it(cuts, wants_usage):
    """A chunk that completes a held event with nothing to change must still bring out
    the held bytes (it once passed unchanged, and `data: [DONE]` lost all but its end)."""
    points = sorted(set(cuts))
    chunks = [_PROVIDER_STREAM[a:b] for a, b in zip([0, *points], [*points, len(_PROVIDER_STREAM)])]
    out, usage = _through_usage_stage(chunks, wants_usage)
    unasked = b"".join(c.replace(b',"usage":null', b"") for c in _CHUNKS) + b"data: [DONE]\n\n"
    assert out == (_PROVIDER_STREAM if wants_usage else unasked)
    assert (usage.input_tokens, usage.output_tokens) == (4, 3)
