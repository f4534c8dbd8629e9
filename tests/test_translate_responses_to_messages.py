"""An OpenAI Responses caller served by an Anthropic Messages provider: the Messages request
each field of the Responses request makes, one row per rule of the codecs' tables; what
cannot be carried is refused naming the caller's field; the answer and its stream read back
as Responses."""

from __future__ import annotations

import orjson
import pytest

from extproc.translate import Notes, Refused, Target, translation_for

BASE = {"model": "claude-sonnet-4-6"}
TARGET = Target("claude-sonnet-4-6")
CALL = {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": '{"q":"x"}'}
TOOL = {"type": "function", "name": "lookup", "description": "d", "parameters": {"type": "object"}, "strict": True}
T = translation_for("openai", "anthropic", "responses")

CARRIED = [  # (request fields, what the Messages request holds, what is noted as dropped)
    ({"input": "hi"}, {"messages": [{"role": "user", "content": "hi"}]}, []),
    ({"input": "hi", "instructions": "brief"},
     {"system": [{"type": "text", "text": "brief"}], "messages": [{"role": "user", "content": "hi"}]}, []),
    ({"input": [{"role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
                {"role": "user", "content": "hi"}]},
     {"system": [{"type": "text", "text": "rules"}], "messages": [{"role": "user", "content": "hi"}]}, []),
    ({"input": [{"type": "message", "role": "user",
                 "content": [{"type": "input_image", "image_url": "data:image/png;base64,AA", "detail": "low"}]}]},
     {"messages": [{"role": "user", "content": [{"type": "image", "source": {
         "type": "base64", "media_type": "image/png", "data": "AA"}}]}]}, []),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_data": "data:text/plain;base64,aGk=",
                                               "filename": "a.txt"}]}]},
     {"messages": [{"role": "user", "content": [{"type": "document", "title": "a.txt", "source": {
         "type": "text", "media_type": "text/plain", "data": "hi"}}]}]}, []),
    ({"input": [{"role": "user", "content": "go"}, {"type": "message", "role": "assistant",
                                                     "content": [{"type": "output_text", "text": "ok"}]},
                CALL, {"type": "function_call_output", "call_id": "call_1", "output": "found"}]},
     {"messages": [{"role": "user", "content": "go"},
                   {"role": "assistant", "content": [{"type": "text", "text": "ok"}, {
                       "type": "tool_use", "id": "call_1", "name": "lookup", "input": {"q": "x"}}]},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1",
                                                 "content": "found"}]}]}, []),
    ({"input": [{"role": "user", "content": "q"}, CALL, {**CALL, "call_id": "call_2"}]},
     {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": [
         {"type": "tool_use", "id": "call_1", "name": "lookup", "input": {"q": "x"}},
         {"type": "tool_use", "id": "call_2", "name": "lookup", "input": {"q": "x"}}]}]}, []),
    ({"input": [{"type": "reasoning", "id": "rs_1", "summary": []}, {"role": "user", "content": "hi"}]},
     {"messages": [{"role": "user", "content": "hi"}]}, ["input[].reasoning"]),
    ({"input": "hi", "tools": [TOOL, {"type": "web_search"}, {"type": "namespace", "name": "n", "tools": []}]},
     {"tools": [{"name": "lookup", "description": "d", "input_schema": {"type": "object"}}]},
     ["tools[].web_search", "tools[].namespace", "tools[].strict"]),
    ({"input": "hi", "tools": [TOOL], "tool_choice": {"type": "function", "name": "lookup"}},
     {"tool_choice": {"type": "tool", "name": "lookup"}}, ["tools[].strict"]),
    ({"input": "hi", "tools": [{**TOOL, "strict": False}], "tool_choice": "required", "parallel_tool_calls": False},
     {"tool_choice": {"type": "any", "disable_parallel_tool_use": True}}, []),
    ({"input": "hi", "max_output_tokens": 99, "temperature": 0.2, "top_p": 0.9, "user": "u"},
     {"max_tokens": 99, "temperature": 0.2, "top_p": 0.9, "metadata": {"user_id": "u"}}, []),
    ({"input": "hi", "reasoning": {"effort": "low", "summary": "auto"}},
     {"thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 4096 + 1024}, ["reasoning.summary"]),
    ({"input": "hi", "text": {"format": {"type": "json_schema", "name": "a", "schema": {"type": "object"}},
                              "verbosity": "low"}},
     {"tools": [{"name": "json_tool_call", "description": "Give the answer as this tool's input.",
                 "input_schema": {"type": "object"}}], "tool_choice": {"type": "tool", "name": "json_tool_call"}},
     ["text.verbosity"]),
    ({"input": "hi", "stream": True}, {"stream": True}, []),
    ({"input": "hi", "store": False, "include": ["x"], "prompt_cache_key": "k", "metadata": {"a": "b"}}, {},
     ["store", "include", "prompt_cache_key", "metadata"]),
]


@pytest.mark.parametrize("fields, expected, dropped", CARRIED)
def test_each_field_is_carried_or_named_as_dropped(fields, expected, dropped):
    notes = Notes()
    out = T.request({**BASE, **fields}, TARGET, notes)
    assert {name: out[name] for name in expected} == expected
    assert sorted(notes.dropped) == sorted(dropped)


@pytest.mark.parametrize("fields, named", [
    ({"input": "hi", "previous_response_id": "resp_1"}, "previous_response_id"),
    ({"input": "hi", "conversation": "conv_1"}, "conversation"),
    ({"input": "hi", "background": True}, "background"),
    ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]},
     "input[0].content[0]"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
    ({"input": 7}, "input"),
])
def test_what_cannot_be_carried_is_refused_naming_the_field(fields, named):
    with pytest.raises(Refused) as refused:
        T.request({**BASE, **fields}, TARGET, Notes())
    assert refused.value.field == named


def test_the_messages_request():
    body = T.request({**BASE, "input": "hi", "instructions": "brief", "max_output_tokens": 50},
                     Target("claude-sonnet-4-6"), Notes())
    assert body["system"] == [{"type": "text", "text": "brief"}]
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["max_tokens"] == 50 and body["model"] == "claude-sonnet-4-6"


def test_a_stream_reads_as_openais_event_sequence():
    translation = translation_for("openai", "anthropic", "responses")
    request = {**BASE, "input": "hi", "stream": True}
    stream = translation.stream(request)
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "model": "claude-sonnet-4-6",
                                              "usage": {"input_tokens": 5, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1,
         "content_block": {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"q":'}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '"x"}'}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ]
    out = b"".join(stream.event(e, e["type"].encode(), b"") for e in events) + stream.end()
    parsed = [orjson.loads(line.split(b"data: ", 1)[1]) for line in out.split(b"\n\n") if b"data: " in line]
    kinds = [e["type"] for e in parsed]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
                     "response.output_text.done", "response.content_part.done", "response.output_item.done",
                     "response.output_item.added", "response.function_call_arguments.delta",
                     "response.function_call_arguments.delta", "response.function_call_arguments.done",
                     "response.output_item.done", "response.completed"]
    assert [e["sequence_number"] for e in parsed] == list(range(len(parsed)))
    final = parsed[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["message", "function_call"]
    assert final["output"][0]["content"][0]["text"] == "Hello"
    assert final["output"][1]["call_id"] == "toolu_1" and final["output"][1]["arguments"] == '{"q":"x"}'
    assert final["usage"]["input_tokens"] == 5 and final["usage"]["output_tokens"] == 9


def test_an_answer_cut_at_its_cap_is_incomplete():
    translation = translation_for("openai", "anthropic", "responses")
    answer = translation.response({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
                                   "content": [{"type": "text", "text": "partial"}], "stop_reason": "max_tokens",
                                   "usage": {"input_tokens": 3, "output_tokens": 4}},
                                  {**BASE, "input": "hi", "max_output_tokens": 4})
    assert answer["status"] == "incomplete" and answer["incomplete_details"] == {"reason": "max_output_tokens"}
    assert answer["output"][0]["content"][0]["text"] == "partial" and answer["max_output_tokens"] == 4
