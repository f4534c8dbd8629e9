"""A stored JSON answer replayed as its caller's stream (dialects/replay.py): read back by
the same dialect's stream decoder, the events carry the answer's text, tool calls, stop
and usage, for OpenAI's chat, Anthropic's Messages and Gemini's callers."""

from __future__ import annotations

import json

import pytest

from extproc.dialects import codec_of
from extproc.dialects.conversation import Notes
from extproc.dialects.replay import replayed_stream

CHAT_REQUEST = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True,
                "stream_options": {"include_usage": True}}
CHAT_ANSWER = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
               "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                   "role": "assistant", "content": "Let me look.",
                   "tool_calls": [{"id": "call_1", "type": "function",
                                   "function": {"name": "lookup", "arguments": "{\"q\": \"x\"}"}}]}}],
               "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}
MESSAGES_REQUEST = {"model": "m", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}], "stream": True}
MESSAGES_ANSWER = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
                   "content": [{"type": "thinking", "thinking": "hmm", "signature": "sig"},
                               {"type": "text", "text": "Hello there."}],
                   "stop_reason": "end_turn", "stop_sequence": None,
                   "usage": {"input_tokens": 5, "output_tokens": 3}}
GEMINI_REQUEST = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
GEMINI_ANSWER = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hello from Gemini."}]},
                                 "finishReason": "STOP", "index": 0}],
                 "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 5, "totalTokenCount": 9},
                 "modelVersion": "gemini-2.5-flash"}


def _events(kind: str, request: dict, stream: bytes) -> list:
    codec = codec_of(kind)
    decoder = codec.stream_decoder(codec.decode_request(request, Notes(), whole=False), None)
    events = []
    for block in stream.replace(b"\r\n", b"\n").split(b"\n\n"):
        lines = block.split(b"\n")
        name = next((line[6:].strip() for line in lines if line.startswith(b"event:")), b"")
        data = b"".join(line[5:].strip() for line in lines if line.startswith(b"data:"))
        if not data:
            continue
        parsed = None if data == b"[DONE]" else json.loads(data)
        events.extend(decoder.read(parsed, name, block))
    return events + decoder.end()


@pytest.mark.parametrize("kind, request_body, answer, text", [
    ("chat", CHAT_REQUEST, CHAT_ANSWER, "Let me look."),
    ("messages", MESSAGES_REQUEST, MESSAGES_ANSWER, "Hello there."),
    ("generate_content", GEMINI_REQUEST, GEMINI_ANSWER, "Hello from Gemini."),
])
def test_a_replayed_stream_reads_back_as_the_answer(kind, request_body, answer, text):
    stream = replayed_stream(codec_of(kind), request_body, answer)
    events = _events(kind, request_body, stream)
    kinds = [event.kind for event in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and "error" not in kinds
    assert "".join(e.text for e in events if e.kind == "delta" and e.delta == "text") == text
    usage = [e.usage for e in events if e.usage is not None][-1]
    assert usage.output_tokens == {"chat": 7, "messages": 3, "generate_content": 5}[kind]


def test_a_chat_replay_carries_the_tool_call_and_its_arguments():
    events = _events("chat", CHAT_REQUEST, replayed_stream(codec_of("chat"), CHAT_REQUEST, CHAT_ANSWER))
    [call] = [e.block for e in events if e.kind == "block" and e.block.get("type") == "tool_use"]
    assert call["id"] == "call_1" and call["name"] == "lookup"
    arguments = "".join(e.text for e in events if e.kind == "delta" and e.delta == "json")
    assert json.loads(arguments) == {"q": "x"}
    assert [e.stop for e in events if e.kind == "stop"] == ["tool_use"]


def test_a_chat_replay_without_usage_asked_has_no_usage_chunk():
    request = {**CHAT_REQUEST, "stream_options": {"include_usage": False}}
    stream = replayed_stream(codec_of("chat"), request, CHAT_ANSWER)
    assert b'"usage":{' not in stream and stream.endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize("kind, request_body, answer", [
    ("chat", CHAT_REQUEST, CHAT_ANSWER), ("messages", MESSAGES_REQUEST, MESSAGES_ANSWER),
    ("generate_content", GEMINI_REQUEST, GEMINI_ANSWER)])
def test_a_caller_s_stream_assembles_into_the_json_answer_it_told(kind, request_body, answer):
    from extproc.api.sse import SSEParser
    from extproc.dialects.replay import StreamAnswer
    codec = codec_of(kind)
    reader = StreamAnswer(codec, request_body)
    stream = replayed_stream(codec, request_body, answer)
    for event in SSEParser().feed(stream, final=True):
        reader.read(None if not event.data or event.is_done else json.loads(event.data), event.name, event.raw)
    assembled = reader.answer()
    conversation = codec.decode_request(request_body, Notes(), whole=False)
    again, original = codec.decode_answer(assembled, conversation, None), codec.decode_answer(answer, conversation, None)
    assert [{k: v for k, v in b.items() if k != "origin"} for b in again.content] == \
        [{k: v for k, v in b.items() if k != "origin"} for b in original.content]
    assert (again.stop, again.usage.output_tokens) == (original.stop, original.usage.output_tokens)


def test_a_stream_cut_short_assembles_into_nothing():
    from extproc.dialects.replay import StreamAnswer
    reader = StreamAnswer(codec_of("messages"), MESSAGES_REQUEST)
    stream = replayed_stream(codec_of("messages"), MESSAGES_REQUEST, MESSAGES_ANSWER)
    from extproc.api.sse import SSEParser
    events = SSEParser().feed(stream, final=True)
    for event in events[:3]:                                # the start and a block, then nothing
        reader.read(json.loads(event.data), event.name, event.raw)
    assert reader.answer() is None
