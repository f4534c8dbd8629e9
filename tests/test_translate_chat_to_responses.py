"""A chat (or Messages) caller on a provider that speaks only the Responses API: the
request as the Responses request it stands for, one row per field of the module's table;
the answer, its stream and its errors read back as chat (responses_to_chat.py), and for a
Messages caller as Messages, through chat."""

from __future__ import annotations

import orjson
import pytest

from extproc.api.sse import SSEParser
from extproc.translate import Notes, Refused, Target, translation_for

TARGET = Target("gpt-4o-mini")
responses_request = translation_for("openai", "openai-responses", "chat").request
CALL = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"x"}'}}
TOOL = {"type": "function", "function": {"name": "lookup", "description": "d", "parameters": {"type": "object"},
                                         "strict": True}}

CARRIED = [  # (chat fields besides model, what the Responses request holds, what is noted as dropped)
    ({"messages": [{"role": "user", "content": "hi"}]},
     {"input": [{"type": "message", "role": "user", "content": "hi"}], "store": False}, []),
    ({"messages": [{"role": "system", "content": "brief"}, {"role": "developer", "content": "rules"}]},
     {"input": [{"type": "message", "role": "system", "content": "brief"},
                {"type": "message", "role": "developer", "content": "rules"}]}, []),
    ({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
        {"type": "file", "file": {"file_data": "data:text/plain;base64,aGk=", "filename": "a.txt"}}]}]},
     {"input": [{"type": "message", "role": "user", "content": [
         {"type": "input_text", "text": "look"},
         {"type": "input_image", "image_url": "data:image/png;base64,AA", "detail": "auto"},
         {"type": "input_file", "file_data": "data:text/plain;base64,aGk=", "filename": "a.txt"}]}]}, []),
    ({"messages": [{"role": "user", "content": "go"}, {"role": "assistant", "content": "ok", "tool_calls": [CALL]},
                   {"role": "tool", "tool_call_id": "call_1", "content": "found"}]},
     {"input": [{"type": "message", "role": "user", "content": "go"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
                {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": '{"q":"x"}'},
                {"type": "function_call_output", "call_id": "call_1", "output": "found"}]}, []),
    ({"messages": [], "tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "lookup"}}},
     {"tools": [{"type": "function", "name": "lookup", "description": "d", "parameters": {"type": "object"},
                 "strict": True}], "tool_choice": {"type": "function", "name": "lookup"}}, []),
    ({"messages": [], "tool_choice": "required", "parallel_tool_calls": False},
     {"tool_choice": "required", "parallel_tool_calls": False}, []),
    ({"messages": [], "max_tokens": 50, "temperature": 0.2, "top_p": 0.9, "user": "u", "metadata": {"a": "b"}},
     {"max_output_tokens": 50, "temperature": 0.2, "top_p": 0.9, "user": "u", "metadata": {"a": "b"}}, []),
    ({"messages": [], "max_completion_tokens": 70}, {"max_output_tokens": 70}, []),
    ({"messages": [], "reasoning_effort": "low", "verbosity": "high"},
     {"reasoning": {"effort": "low"}, "text": {"verbosity": "high"}}, []),
    ({"messages": [], "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {}}}},
     {"text": {"format": {"type": "json_schema", "name": "a", "schema": {}}}}, []),
    ({"messages": [], "response_format": {"type": "json_object"}}, {"text": {"format": {"type": "json_object"}}}, []),
    ({"messages": [], "stream": True, "stream_options": {"include_usage": True}}, {"stream": True}, []),
    ({"messages": [], "seed": 7, "store": True, "something_new": 1}, {"store": False},
     ["seed", "store", "something_new"]),
]

REFUSED = [  # (chat fields, the field the 400 names)
    ({"messages": [], "n": 2}, "n"),
    ({"messages": [], "stop": ["x"]}, "stop"),
    ({"messages": [], "logprobs": True}, "logprobs"),
    ({"messages": [], "presence_penalty": 0.5}, "presence_penalty"),
    ({"messages": [], "functions": [{"name": "f"}]}, "functions"),
    ({"messages": [], "modalities": ["text", "audio"]}, "modalities"),
    ({"messages": [], "tools": [{"type": "custom", "custom": {"name": "g"}}]}, "tools[0]"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
     "messages[0].content[0]"),
    ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}]},
     "messages[0].function_call"),
]


@pytest.mark.parametrize("fields,expected,dropped", CARRIED)
def test_what_the_request_carries(fields, expected, dropped):
    notes = Notes()
    out = responses_request({"model": "gpt-4o-mini", **fields}, TARGET, notes)
    assert out["model"] == "gpt-4o-mini"
    for key, value in expected.items():
        assert out[key] == value, key
    assert notes.dropped == dropped


@pytest.mark.parametrize("fields,field", REFUSED)
def test_what_the_request_refuses_names_the_field(fields, field):
    with pytest.raises(Refused) as refused:
        responses_request({"model": "m", **fields}, TARGET, Notes())
    assert refused.value.field == field


ANSWER = {"id": "resp_1", "object": "response", "created_at": 1700000000, "model": "gpt-4o-mini-2024-07-18",
          "status": "completed", "output": [
              {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "thought"}]},
              {"type": "message", "id": "msg_1", "role": "assistant",
               "content": [{"type": "output_text", "text": "Hello", "annotations": []}]},
              {"type": "function_call", "id": "fc_1", "call_id": "call_9", "name": "lookup", "arguments": "{}"}],
          "usage": {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 5,
                    "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 15}}


def test_the_answer_as_a_chat_completion():
    chat = translation_for("openai", "openai-responses", "chat").response(ANSWER, {"model": "gpt-4o-mini"})
    [choice] = chat["choices"]
    assert choice["message"]["content"] == "Hello" and choice["message"]["reasoning_content"] == "thought"
    assert choice["message"]["tool_calls"] == [{"id": "call_9", "type": "function",
                                                "function": {"name": "lookup", "arguments": "{}"}}]
    assert choice["finish_reason"] == "tool_calls"
    assert chat["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                             "prompt_tokens_details": {"cached_tokens": 4},
                             "completion_tokens_details": {"reasoning_tokens": 2}}
    cut = {**ANSWER, "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
           "output": ANSWER["output"][1:2]}
    assert translation_for("openai", "openai-responses", "chat").response(cut, {})["choices"][0]["finish_reason"] \
        == "length"


def test_the_answer_as_an_anthropic_message():
    request = {"model": "claude-sonnet-4-6", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    message = translation_for("anthropic", "openai-responses", "messages").response(ANSWER, request)
    assert message["type"] == "message" and message["stop_reason"] == "tool_use"
    assert [b["type"] for b in message["content"]] == ["thinking", "text", "tool_use"]
    assert message["content"][0]["thinking"] == "thought"
    assert message["content"][1]["text"] == "Hello" and message["content"][2]["name"] == "lookup"
    assert message["usage"]["output_tokens"] == 5


def _events(*events: dict) -> list[tuple[dict, bytes]]:
    return [(e, b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n") for e in events]


STREAM = _events(
    {"type": "response.created", "response": {"id": "resp_2", "model": "gpt-4o-mini", "status": "in_progress"}},
    {"type": "response.output_item.added", "output_index": 0, "item": {"type": "message", "id": "msg_2"}},
    {"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "Hel"},
    {"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "lo"},
    {"type": "response.output_item.added", "output_index": 1,
     "item": {"type": "function_call", "id": "fc_2", "call_id": "call_7", "name": "lookup", "arguments": ""}},
    {"type": "response.function_call_arguments.delta", "output_index": 1, "delta": '{"q":'},
    {"type": "response.function_call_arguments.delta", "output_index": 1, "delta": '"x"}'},
    {"type": "response.completed", "response": {"id": "resp_2", "status": "completed", "usage": {
        "input_tokens": 8, "output_tokens": 3, "total_tokens": 11}}})


def _read(stream, events) -> list:
    written = b"".join(stream.event(data, data["type"].encode(), raw) for data, raw in events) + stream.end()
    return [event for event in SSEParser().feed(written, final=True)]


def test_the_stream_as_chat_chunks():
    stream = translation_for("openai", "openai-responses", "chat").stream(
        {"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True}})
    events = _read(stream, STREAM)
    assert events[-1].is_done
    chunks = [orjson.loads(e.data) for e in events if not e.is_done]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    arguments = "".join(t["function"]["arguments"] for c in chunks if c["choices"]
                        for t in c["choices"][0]["delta"].get("tool_calls") or ())
    assert text == "Hello" and arguments == '{"q":"x"}'
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 11


def test_the_stream_as_anthropic_events():
    request = {"model": "claude-sonnet-4-6", "max_tokens": 100, "stream": True,
               "messages": [{"role": "user", "content": "hi"}]}
    stream = translation_for("anthropic", "openai-responses", "messages").stream(request)
    events = _read(stream, STREAM)
    names = [e.name for e in events]
    assert names[0] == b"message_start" and names[-1] == b"message_stop"
    deltas = [orjson.loads(e.data)["delta"] for e in events if e.name == b"content_block_delta"]
    assert "".join(d.get("text", "") for d in deltas) == "Hello"
    assert "".join(d.get("partial_json", "") for d in deltas) == '{"q":"x"}'
    stop = [orjson.loads(e.data) for e in events if e.name == b"message_delta"][-1]
    assert stop["delta"]["stop_reason"] == "tool_use" and stop["usage"]["output_tokens"] == 3


def test_a_stream_cut_short_ends_with_an_error_in_the_caller_s_shape():
    stream = translation_for("openai", "openai-responses", "chat").stream({"model": "m", "stream": True})
    events = _read(stream, STREAM[:3])
    assert b"error" in events[-1].data


def test_errors_pass_in_openai_s_shape_and_reach_a_messages_caller_in_anthropic_s():
    error = {"error": {"message": "bad", "type": "invalid_request_error", "code": None}}
    status, body = translation_for("openai", "openai-responses", "chat").error(400, error)
    assert status == 400 and orjson.loads(body) == {"error": {**error["error"], "param": None}}  # OpenAI's names param
    status, body = translation_for("anthropic", "openai-responses", "messages").error(429, error)
    assert status == 429 and orjson.loads(body)["type"] == "error"


def test_other_endpoints_are_refused_naming_what_the_provider_serves():
    assert translation_for("openai", "openai-responses", "responses") is None
    with pytest.raises(Refused) as refused:
        translation_for("openai", "openai-responses", "embeddings")
    assert "Responses API only" in refused.value.message
