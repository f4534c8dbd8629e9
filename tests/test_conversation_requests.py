"""The request codecs of each dialect (dialects/{chat,messages,responses}_request.py): one
table row per rule of what a caller's body becomes in the conversation model, what the
model has no place for refused naming the caller's field, the head an answer is read back
with (never refused), and for each dialect a body written back in its own dialect
(encode(decode(body))) that keeps all the model holds: texts, images, documents, tool
calls and results, thinking with its signature, system, tools and sampling."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest

from extproc.dialects.anthropic import messages_request
from extproc.dialects.openai import chat_request, responses_request
from extproc.dialects.conversation import Notes, Refused, Target
from translation_cases import ABSENT, contains

CHAT, MESSAGES, RESPONSES = chat_request, messages_request, responses_request
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": False}
PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}}


def chat(*messages: dict, **fields: Any) -> dict:
    return {"model": "gpt-x", "messages": list(messages) or [{"role": "user", "content": "hi"}], **fields}


def messages(*turns: dict, **fields: Any) -> dict:
    return {"model": "claude-x", "max_tokens": 1024, "messages": list(turns) or [{"role": "user", "content": "hi"}],
            **fields}


def responses(**fields: Any) -> dict:
    return {"model": "gpt-x", "input": "hi", **fields}


def decoded(codec: Any, body: dict, whole: bool = True) -> dict:
    return asdict(codec.decode(body, Notes(), whole))


# --- what each body becomes ------------------------------------------------------------

DECODE_ROWS = [
    ("chat: a system message is a system turn where it stands", CHAT,
     chat({"role": "user", "content": "q"}, {"role": "developer", "content": "B"}),
     {"system": [], "turns": [{"role": "user", "content": [{"type": "text", "text": "q"}]},
                              {"role": "developer", "content": [{"type": "text", "text": "B"}]}]}),
    ("chat: a tool message is a user turn of one tool result", CHAT,
     chat({"role": "tool", "tool_call_id": "c", "content": "r"}),
     {"turns": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c", "content": "r"}]}]}),
    ("chat: reasoning_content is unsigned thinking of OpenAI's", CHAT,
     chat({"role": "assistant", "content": "x", "reasoning_content": "hm"}),
     {"turns": [{"role": "assistant", "content": [
         {"type": "thinking", "thinking": "hm", "signature": "", "origin": "openai"}, {"type": "text", "text": "x"}]}]}),
    ("chat: tool call arguments are parsed", CHAT,
     chat({"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                                                "function": {"name": "f", "arguments": '{"a":1}'}}]}),
     {"turns": [{"content": [{"type": "tool_use", "id": "c", "name": "f", "input": {"a": 1}}]}]}),
    ("chat: a PDF by URL is a document, an image keeps its detail", CHAT,
     chat({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.pdf"}},
                                       {"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": "low"}}]}),
     {"turns": [{"content": [{"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}},
                             {"type": "image", "source": {"type": "url"}, "detail": "low"}]}]}),
    ("chat: a file's data stays base64, its name the title", CHAT,
     chat({"role": "user", "content": [{"type": "file", "file": {"file_data": "data:text/plain;base64,aGk=",
                                                                  "filename": "a.txt"}}]}),
     {"turns": [{"content": [{"type": "document", "title": "a.txt", "source": {
         "type": "base64", "media_type": "text/plain", "data": "aGk="}}]}]}),
    ("chat: the cap the caller used is named", CHAT, chat(max_tokens=5),
     {"max_output": 5, "names": {"max_output": "max_tokens"}}),
    ("chat: n is held as candidates", CHAT, chat(n=3), {"candidates": 3, "names": {"candidates": "n"}}),
    ("chat: a stop string", CHAT, chat(stop="END"), {"stop": ["END"]}),
    ("chat: reasoning_effort none turns thinking off", CHAT, chat(reasoning_effort="none"),
     {"reasoning": {"enabled": False, "effort": "none"}, "names": {"reasoning": "reasoning_effort"}}),
    ("chat: Anthropic's thinking, kept whole", CHAT,
     chat(thinking={"type": "enabled", "budget_tokens": 2048, "display": "omitted"}),
     {"reasoning": {"budget": 2048, "hidden": True, "raw": {"type": "enabled"}}, "names": {"reasoning": "thinking"}}),
    ("chat: a json_schema response_format", CHAT,
     chat(response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": SCHEMA, "strict": True}}),
     {"answer_format": {"kind": "json_schema", "schema": SCHEMA, "name": "r", "strict": True}}),
    ("chat: response_format text asks nothing", CHAT, chat(response_format={"type": "text"}), {"answer_format": None}),
    ("chat: tools and a forced choice", CHAT,
     chat(tools=[{"type": "function", "function": {"name": "f", "parameters": PARAMETERS, "strict": True}}],
          tool_choice="required", parallel_tool_calls=False),
     {"tools": [{"name": "f", "input_schema": PARAMETERS, "strict": True}], "tool_choice": {"mode": "any"},
      "parallel_tool_calls": False}),
    ("chat: the usage option of a stream", CHAT, chat(stream=True, stream_options={"include_usage": True}),
     {"stream": True, "include_usage": True}),
    ("chat: hints by the caller's name, unknown fields too", CHAT, chat(seed=1, top_k=3, user="u"),
     {"hints": {"seed": 1, "top_k": 3}, "user": "u", "top_k": None}),
    ("messages: system and signed thinking of Anthropic's", MESSAGES,
     messages({"role": "user", "content": "q"},
              {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s1"}]},
              {"role": "user", "content": "r"}, system="Be brief."),
     {"system": [{"type": "text", "text": "Be brief."}], "turns": [{}, {"content": [
         {"type": "thinking", "signature": "s1", "origin": "anthropic"}]}, {}]}),
    ("messages: blocks only Messages knows stay as written", MESSAGES,
     messages({"role": "user", "content": [{"type": "search_result", "title": "T", "source": "s", "content": []}]}),
     {"turns": [{"content": [{"type": "search_result", "title": "T"}]}]}),
    ("messages: sampling, stop and the cap", MESSAGES,
     messages(temperature=0.5, top_p=0.9, top_k=40, stop_sequences=["END"]),
     {"temperature": 0.5, "top_p": 0.9, "top_k": 40, "stop": ["END"], "max_output": 1024,
      "names": {"stop": "stop_sequences", "max_output": "max_tokens"}}),
    ("messages: the user id and the rest of metadata", MESSAGES, messages(metadata={"user_id": "u", "x": 1}),
     {"user": "u", "metadata": {"x": 1}}),
    ("messages: disable_parallel_tool_use", MESSAGES,
     messages(tools=[{"name": "f", "input_schema": PARAMETERS}],
              tool_choice={"type": "tool", "name": "f", "disable_parallel_tool_use": True}),
     {"tool_choice": {"mode": "tool", "name": "f"}, "parallel_tool_calls": False}),
    ("messages: adaptive thinking with an effort", MESSAGES,
     messages(thinking={"type": "adaptive"}, output_config={"effort": "max"}),
     {"reasoning": {"adaptive": True, "effort": "max", "budget": None}, "names": {"reasoning": "thinking"}}),
    ("messages: an output format is a strict json_schema", MESSAGES,
     messages(output_config={"format": {"type": "json_schema", "schema": SCHEMA}}),
     {"answer_format": {"kind": "json_schema", "schema": SCHEMA, "strict": True}}),
    ("messages: a stream always reports its usage", MESSAGES, messages(stream=True),
     {"stream": True, "include_usage": True}),
    ("messages: hints", MESSAGES, messages(service_tier="auto", speed="fast"),
     {"hints": {"service_tier": "auto", "speed": "fast"}}),
    ("responses: instructions are the system, a string input one user turn", RESPONSES,
     responses(instructions="brief"),
     {"system": [{"type": "text", "text": "brief"}], "turns": [{"role": "user", "content": [{"text": "hi"}]}]}),
    ("responses: a call joins the assistant turn it follows; its output is a tool result", RESPONSES,
     responses(input=[{"role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
                      {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                      {"type": "function_call_output", "call_id": "c", "output": "r"}]),
     {"turns": [{"role": "assistant", "content": [{"type": "text"}, {"type": "tool_use", "id": "c", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c", "content": "r"}]}]}),
    ("responses: reasoning, text format and verbosity", RESPONSES,
     responses(reasoning={"effort": "low", "summary": "auto"},
               text={"format": {"type": "json_schema", "name": "r", "schema": SCHEMA}, "verbosity": "low"}),
     {"reasoning": {"effort": "low", "summary": "auto"}, "verbosity": "low",
      "answer_format": {"kind": "json_schema", "name": "r", "strict": None},
      "names": {"reasoning": "reasoning.effort", "answer_format": "text.format", "verbosity": "text.verbosity"}}),
    ("responses: the settings an answer repeats are echoed as written", RESPONSES,
     responses(instructions="brief", max_output_tokens=9, store=False),
     {"echo": {"instructions": "brief", "max_output_tokens": 9, "store": ABSENT}, "max_output": 9,
      "hints": {"store": False}}),
]


@pytest.mark.parametrize("codec, body, expected", [row[1:] for row in DECODE_ROWS], ids=[row[0] for row in DECODE_ROWS])
def test_decode_rule(codec, body, expected):
    contains(decoded(codec, body), expected)


def test_hints_keep_the_order_an_encoder_names_them_in():
    assert list(CHAT.decode(chat(something=1, store=True, seed=2), Notes()).hints) == ["seed", "store", "something"]
    assert list(MESSAGES.decode(messages(speed=1, inference_geo="us", cache_control={}), Notes()).hints) == \
        ["cache_control", "inference_geo", "speed"]


DECODE_NOTES = [
    ("chat: a message's name", CHAT, chat({"role": "user", "content": "a", "name": "bob"}), ["messages[].name"]),
    ("messages: other tool options", MESSAGES, messages(tools=[{"name": "f", "eager_input_streaming": True}]),
     ["tools[].eager_input_streaming"]),
    ("messages: other output_config fields", MESSAGES, messages(output_config={"task_budget": 1}),
     ["output_config.task_budget"]),
    ("responses: reasoning items and hosted tools", RESPONSES,
     responses(input=[{"type": "reasoning", "id": "r"}, {"role": "user", "content": "q"}], tools=[{"type": "web_search"}]),
     ["tools[].web_search", "input[].reasoning"]),
]


@pytest.mark.parametrize("codec, body, dropped", [row[1:] for row in DECODE_NOTES], ids=[row[0] for row in DECODE_NOTES])
def test_decode_notes(codec, body, dropped):
    notes = Notes()
    codec.decode(body, notes)
    assert notes.dropped == dropped


REFUSED_ROWS = [
    ("chat: log probabilities", CHAT, chat(logprobs=True), "logprobs"),
    ("chat: deprecated functions", CHAT, chat(functions=[{"name": "f"}]), "functions"),
    ("chat: an unknown effort", CHAT, chat(reasoning_effort="extreme"), "reasoning_effort"),
    ("chat: a custom tool", CHAT, chat(tools=[{"type": "custom", "custom": {"name": "g"}}]), "tools[0]"),
    ("chat: a function message", CHAT, chat({"role": "function", "content": "x"}), "messages[0].role"),
    ("messages: a server tool", MESSAGES, messages(tools=[{"type": "bash_20250124", "name": "bash"}]), "tools[0].type"),
    ("messages: mcp servers", MESSAGES, messages(mcp_servers=[{"url": "u"}]), "mcp_servers"),
    ("messages: an image in a system turn", MESSAGES,
     messages({"role": "system", "content": [{"type": "image", "source": {}}]}), "messages[0].content[0]"),
    ("responses: a stored response", RESPONSES, responses(previous_response_id="resp_1"), "previous_response_id"),
    ("responses: an unknown effort", RESPONSES, responses(reasoning={"effort": "extreme"}), "reasoning.effort"),
    ("responses: truncated call arguments", RESPONSES,
     responses(input=[{"type": "function_call", "call_id": "c", "name": "f", "arguments": '{"a":'}]),
     "input[0].arguments"),
]


@pytest.mark.parametrize("codec, body, field", [row[1:] for row in REFUSED_ROWS], ids=[row[0] for row in REFUSED_ROWS])
def test_decode_refused(codec, body, field):
    with pytest.raises(Refused) as refused:
        codec.decode(body, Notes())
    assert refused.value.field == field and refused.value.message


@pytest.mark.parametrize("codec, body", [
    (CHAT, chat({"role": "function", "content": "x"}, logprobs=True, response_format={"type": "json_object"},
                stream=True, stream_options={"include_usage": True})),
    (MESSAGES, messages({"role": "tool"}, mcp_servers=[{}], thinking={"type": "adaptive", "display": "omitted"})),
    (RESPONSES, responses(input=7, previous_response_id="r", tools=[{"type": "function", "name": "f"}])),
], ids=["chat", "messages", "responses"])
def test_the_head_is_read_without_turns_and_never_refused(codec, body):
    head = decoded(codec, body, whole=False)
    assert head["turns"] == [] and head["system"] == [] and head["places"] == {}
    assert head["model"] == body["model"]
    if codec is CHAT:
        assert head["answer_format"]["kind"] == "json_object" and head["include_usage"]
    if codec is MESSAGES:
        assert head["reasoning"]["hidden"]
    if codec is RESPONSES:
        assert head["tools"] == [{"name": "f"}]


# --- a body written back in its own dialect keeps all the model holds --------------------

TOOL_CALL = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
CHAT_BODY = {
    "model": "gpt-x",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Rules."},
        {"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO", "detail": "low"}},
            {"type": "image_url", "image_url": {"url": "https://x/cat.png"}},
            {"type": "file", "file": {"filename": "r.pdf", "file_data": "data:application/pdf;base64,JVBE"}},
            {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}]},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [TOOL_CALL]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "user", "content": "thanks"}],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                                                "parameters": PARAMETERS, "strict": True}}],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "parallel_tool_calls": False,
    "temperature": 0.3, "top_p": 0.9, "stop": ["END"], "max_completion_tokens": 100, "reasoning_effort": "low",
    "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": SCHEMA, "strict": True}},
    "verbosity": "low", "user": "u-1", "stream": True, "stream_options": {"include_usage": True}}

MESSAGES_BODY = {
    "model": "claude-x", "max_tokens": 1024,
    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
            {"type": "image", "source": {"type": "url", "url": "https://x/cat.png"}},
            {"type": "document", "title": "r.pdf",
             "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hm", "signature": "sig_1"},
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                {"type": "text", "text": "sunny"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}]},
            {"type": "text", "text": "and tomorrow?"}]},
        {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "xyz"}, {"type": "text", "text": "Rain."}]},
        {"role": "user", "content": "thanks"}],
    "tools": [{"name": "get_weather", "description": "Weather.", "input_schema": PARAMETERS,
               "cache_control": {"type": "ephemeral"}}],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    "temperature": 0.3, "top_p": 0.9, "top_k": 40, "stop_sequences": ["END"],
    "thinking": {"type": "enabled", "budget_tokens": 2048}, "metadata": {"user_id": "u-1"}, "stream": True}

RESPONSES_BODY = {
    "model": "gpt-x", "instructions": "Be brief.",
    "input": [
        {"type": "message", "role": "developer", "content": "Rules."},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBO", "detail": "low"},
            {"type": "input_file", "file_data": "data:application/pdf;base64,JVBE", "filename": "r.pdf"},
            {"type": "input_file", "file_id": "file-1"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me look."}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "message", "role": "user", "content": "thanks"}],
    "tools": [{"type": "function", "name": "get_weather", "description": "Weather.", "parameters": PARAMETERS,
               "strict": True}],
    "tool_choice": "required", "parallel_tool_calls": False, "temperature": 0.3, "top_p": 0.9,
    "max_output_tokens": 100, "reasoning": {"effort": "low", "summary": "auto"},
    "text": {"format": {"type": "json_schema", "name": "r", "schema": SCHEMA, "strict": True}, "verbosity": "low"},
    "user": "u-1", "metadata": {"a": "b"}, "store": False, "stream": True}


@pytest.mark.parametrize("codec, body", [(CHAT, CHAT_BODY), (MESSAGES, MESSAGES_BODY), (RESPONSES, RESPONSES_BODY)],
                         ids=["chat", "messages", "responses"])
def test_a_body_written_back_in_its_own_dialect_is_the_same(codec, body):
    notes = Notes()
    written = codec.encode(codec.decode(body, notes), Target(body["model"]), notes)
    assert written == body
    assert notes.dropped == [] and notes.defaulted == []


def test_a_prefill_is_kept_in_messages_and_history_in_chat():
    """A final assistant turn continues in Messages; in chat it is only history."""
    for codec, body in ((MESSAGES, messages({"role": "user", "content": "q"}, {"role": "assistant", "content": "A"})),
                        (CHAT, chat({"role": "user", "content": "q"}, {"role": "assistant", "content": "A"}))):
        written = codec.encode(codec.decode(body, Notes()), Target("m"), Notes())
        assert written["messages"] == body["messages"]
