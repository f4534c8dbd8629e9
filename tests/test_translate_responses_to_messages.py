"""The Responses request as the Chat Completions request it stands for (then carried to
Anthropic's Messages API by chat_to_messages): one row per field of the module's table."""

from __future__ import annotations

import orjson
import pytest

from extproc.translate import Notes, Refused, Target, translation_for
from extproc.translate.responses_to_messages import chat_request

BASE = {"model": "claude-sonnet-4-6"}
CALL = {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": '{"q":"x"}'}
TOOL = {"type": "function", "name": "lookup", "description": "d", "parameters": {"type": "object"}, "strict": True}

CARRIED = [  # (request fields, what the chat request holds, what is noted as dropped)
    ({"input": "hi"}, {"messages": [{"role": "user", "content": "hi"}]}, []),
    ({"input": "hi", "instructions": "brief"},
     {"messages": [{"role": "system", "content": "brief"}, {"role": "user", "content": "hi"}]}, []),
    ({"input": [{"role": "developer", "content": [{"type": "input_text", "text": "rules"}]}]},
     {"messages": [{"role": "developer", "content": [{"type": "text", "text": "rules"}]}]}, []),
    ({"input": [{"type": "message", "role": "user",
                 "content": [{"type": "input_image", "image_url": "data:image/png;base64,AA", "detail": "low"}]}]},
     {"messages": [{"role": "user", "content": [{"type": "image_url",
                                                  "image_url": {"url": "data:image/png;base64,AA", "detail": "low"}}]}]},
     []),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_data": "data:text/plain;base64,aGk=",
                                               "filename": "a.txt"}]}]},
     {"messages": [{"role": "user", "content": [{"type": "file", "file": {
         "file_data": "data:text/plain;base64,aGk=", "filename": "a.txt"}}]}]}, []),
    ({"input": [{"role": "user", "content": "go"}, {"type": "message", "role": "assistant",
                                                     "content": [{"type": "output_text", "text": "ok"}]},
                CALL, {"type": "function_call_output", "call_id": "call_1", "output": "found"}]},
     {"messages": [{"role": "user", "content": "go"},
                   {"role": "assistant", "content": [{"type": "text", "text": "ok"}], "tool_calls": [
                       {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"x"}'}}]},
                   {"role": "tool", "tool_call_id": "call_1", "content": "found"}]}, []),
    ({"input": [CALL, {**CALL, "call_id": "call_2"}]},
     {"messages": [{"role": "assistant", "content": None, "tool_calls": [
         {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"x"}'}},
         {"id": "call_2", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"x"}'}}]}]}, []),
    ({"input": [{"type": "reasoning", "id": "rs_1", "summary": []}, {"role": "user", "content": "hi"}]},
     {"messages": [{"role": "user", "content": "hi"}]}, ["input[].reasoning"]),
    ({"input": "hi", "tools": [TOOL, {"type": "web_search"}, {"type": "namespace", "name": "n", "tools": []}]},
     {"tools": [{"type": "function", "function": {"name": "lookup", "description": "d",
                                                  "parameters": {"type": "object"}, "strict": True}}]},
     ["tools[].web_search", "tools[].namespace"]),
    ({"input": "hi", "tool_choice": {"type": "function", "name": "lookup"}},
     {"tool_choice": {"type": "function", "function": {"name": "lookup"}}}, []),
    ({"input": "hi", "tool_choice": "required", "parallel_tool_calls": False},
     {"tool_choice": "required", "parallel_tool_calls": False}, []),
    ({"input": "hi", "max_output_tokens": 99, "temperature": 0.2, "top_p": 0.9, "user": "u"},
     {"max_completion_tokens": 99, "temperature": 0.2, "top_p": 0.9, "user": "u"}, []),
    ({"input": "hi", "reasoning": {"effort": "low", "summary": "auto"}}, {"reasoning_effort": "low"},
     ["reasoning.summary"]),
    ({"input": "hi", "text": {"format": {"type": "json_schema", "name": "a", "schema": {"type": "object"}},
                              "verbosity": "low"}},
     {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}},
     ["text.verbosity"]),
    ({"input": "hi", "stream": True}, {"stream": True, "stream_options": {"include_usage": True}}, []),
    ({"input": "hi", "store": False, "include": ["x"], "prompt_cache_key": "k", "metadata": {"a": "b"}}, {},
     ["store", "include", "prompt_cache_key", "metadata"]),
]


@pytest.mark.parametrize("fields, expected, dropped", CARRIED)
def test_each_field_is_carried_or_named_as_dropped(fields, expected, dropped):
    notes = Notes()
    out = chat_request({**BASE, **fields}, notes)
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
        chat_request({**BASE, **fields}, Notes())
    assert refused.value.field == named


def test_the_messages_request_is_the_chat_translation_of_it():
    translation = translation_for("openai", "anthropic", "responses")
    body = translation.request({**BASE, "input": "hi", "instructions": "brief", "max_output_tokens": 50},
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
