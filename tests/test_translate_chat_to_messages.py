"""An OpenAI Chat Completions caller served by an Anthropic Messages provider: each
request rule as a table row (body in, body fragment or refused field out), answers and
errors, and real recorded streams fed event by event and read back with the openai
SDK's own types and accumulator; a property test that texts, tool calls and usage
survive the round trip."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from extproc.api.sse import SSEParser
from extproc.translate import Bridge, Notes, Refused, Target, translation_for
from translation_cases import ABSENT, cassette, contains, sse_events

T = translation_for("openai", "anthropic", "chat")
TARGET = Target("claude-sonnet-4-5", default_max_tokens=4096)


def chat(*messages: dict, **fields: Any) -> dict:
    return {"model": "gpt-x", "messages": list(messages) or [{"role": "user", "content": "hi"}], **fields}


def user(content: Any) -> dict:
    return {"role": "user", "content": content}


def call(call_id: str, name: str, arguments: str) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                                             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": False}

# --- requests: one row per rule ----------------------------------------------------------

REQUEST_ROWS = [
    ("model from the target", chat(), {"model": "claude-sonnet-4-5"}),
    ("system and developer to system blocks in order",
     chat({"role": "system", "content": "A"}, {"role": "developer", "content": "B"}, user("hi")),
     {"system": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}], "messages": [{"role": "user"}]}),
    ("a developer message after a user turn is hoisted",
     chat(user("hi"), {"role": "developer", "content": "B"}),
     {"system": [{"text": "B"}], "messages": [{"role": "user", "content": "hi"}]}),
    ("system text parts keep cache_control",
     chat({"role": "system", "content": [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}]}, user("q")),
     {"system": [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}]}),
    ("a lone user string stays a string", chat(user("hello")), {"messages": [{"role": "user", "content": "hello"}]}),
    ("text parts become text blocks, empty ones left out",
     chat(user([{"type": "text", "text": "a"}, {"type": "text", "text": ""}, {"type": "text", "text": "b"}])),
     {"messages": [{"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}),
    ("consecutive user messages merge into one turn", chat(user("a"), user("b")),
     {"messages": [{"role": "user", "content": [{"text": "a"}, {"text": "b"}]}]}),
    ("a base64 image",
     chat(user([{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,dGVzdA=="}}])),
     {"messages": [{"content": [{"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                                             "data": "dGVzdA=="}}]}]}),
    ("an http image", chat(user([{"type": "image_url", "image_url": {"url": "https://x/cat.png"}}])),
     {"messages": [{"content": [{"type": "image", "source": {"type": "url", "url": "https://x/cat.png"}}]}]}),
    ("a PDF data URL is a document",
     chat(user([{"type": "image_url", "image_url": {"url": "data:application/pdf;base64,JVBE"}}])),
     {"messages": [{"content": [{"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                                                "data": "JVBE"}}]}]}),
    ("a PDF URL is a url document",
     chat(user([{"type": "image_url", "image_url": {"url": "https://x/y.PDF"}}])),
     {"messages": [{"content": [{"type": "document", "source": {"type": "url", "url": "https://x/y.PDF"}}]}]}),
    ("a file part with PDF data is a titled document",
     chat(user([{"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"}}])),
     {"messages": [{"content": [{"type": "document", "title": "a.pdf",
                                 "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}]}]}),
    ("a file part with plain text is a text document",
     chat(user([{"type": "file", "file": {"file_data": "data:text/plain;base64,aGk="}}])),
     {"messages": [{"content": [{"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                                                "data": "hi"}}]}]}),
    ("assistant tool_calls become tool_use with parsed input; results lead the next user turn",
     chat(user("w?"), {"role": "assistant", "content": "Let me look.", "tool_calls": [call("c1", "get_weather", '{"city":"Paris"}')]},
          {"role": "tool", "tool_call_id": "c1", "content": "sunny"}, user("and tomorrow?"), tools=[WEATHER]),
     {"messages": [{"role": "user", "content": "w?"},
                   {"role": "assistant", "content": [{"type": "text", "text": "Let me look."},
                                                     {"type": "tool_use", "id": "c1", "name": "get_weather",
                                                      "input": {"city": "Paris"}}]},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "sunny"},
                                                {"type": "text", "text": "and tomorrow?"}]}]}),
    ("consecutive tool messages merge into one user turn, cache_control kept",
     chat(user("q"), {"role": "assistant", "content": None, "tool_calls": [call("a", "t", "{}"), call("b", "t", "")]},
          {"role": "tool", "tool_call_id": "a", "content": "1"},
          {"role": "tool", "tool_call_id": "b", "content": [{"type": "text", "text": "2"}],
           "cache_control": {"type": "ephemeral"}}),
     {"messages": [{}, {"content": [{"type": "tool_use", "input": {}}, {"type": "tool_use", "input": {}}]},
                   {"role": "user", "content": [{"tool_use_id": "a", "content": "1", "cache_control": ABSENT},
                                                {"tool_use_id": "b", "content": [{"type": "text", "text": "2"}],
                                                 "cache_control": {"type": "ephemeral"}}]}]}),
    ("a tool message after a user message still leads the turn",
     chat(user("q"), {"role": "assistant", "tool_calls": [call("a", "t", "{}")]}, user("note"),
          {"role": "tool", "tool_call_id": "a", "content": "r"}),
     {"messages": [{}, {}, {"content": [{"type": "tool_result"}, {"type": "text", "text": "note"}]}]}),
    ("an assistant refusal is text",
     chat(user("q"), {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]}, user("why")),
     {"messages": [{}, {"role": "assistant", "content": "No."}, {}]}),
    ("an empty assistant message is left out, its neighbours merge",
     chat(user("a"), {"role": "assistant", "content": ""}, user("b")),
     {"messages": [{"role": "user", "content": [{"text": "a"}, {"text": "b"}]}]}),
    ("a final assistant message is a prefill", chat(user("q"), {"role": "assistant", "content": "The answer is"}),
     {"messages": [{}, {"role": "assistant", "content": "The answer is"}]}),
    ("max_completion_tokens wins over max_tokens", chat(max_completion_tokens=100, max_tokens=50), {"max_tokens": 100}),
    ("max_tokens", chat(max_tokens=50), {"max_tokens": 50}),
    ("no cap: the target's default", chat(), {"max_tokens": 4096}),
    ("stop list and sampling carried", chat(stop=["stop1", "stop2"], temperature=0.1, top_p=0.1),
     {"stop_sequences": ["stop1", "stop2"], "temperature": 0.1, "top_p": 0.1}),
    ("a stop string", chat(stop="stop1"), {"stop_sequences": ["stop1"]}),
    ("whitespace-only stop sequences are left out", chat(stop=[" ", "END"]), {"stop_sequences": ["END"]}),
    ("function tools", chat(tools=[WEATHER]),
     {"tools": [{"name": "get_weather", "description": "Weather.", "input_schema": WEATHER["function"]["parameters"]}]}),
    ("a tool without parameters gets an empty object schema",
     chat(tools=[{"type": "function", "function": {"name": "now"}}]),
     {"tools": [{"name": "now", "input_schema": {"type": "object", "properties": {}}}]}),
    ("tool cache_control kept", chat(tools=[{**WEATHER, "cache_control": {"type": "ephemeral"}}]),
     {"tools": [{"cache_control": {"type": "ephemeral"}}]}),
    ("tool_choice auto", chat(tools=[WEATHER], tool_choice="auto"), {"tool_choice": {"type": "auto"}}),
    ("tool_choice required is any", chat(tools=[WEATHER], tool_choice="required"), {"tool_choice": {"type": "any"}}),
    ("tool_choice none", chat(tools=[WEATHER], tool_choice="none"), {"tool_choice": {"type": "none"}}),
    ("tool_choice function is tool",
     chat(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}}),
     {"tool_choice": {"type": "tool", "name": "get_weather"}}),
    ("parallel_tool_calls false without tool_choice", chat(tools=[WEATHER], parallel_tool_calls=False),
     {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}}),
    ("parallel_tool_calls false with required", chat(tools=[WEATHER], tool_choice="required", parallel_tool_calls=False),
     {"tool_choice": {"type": "any", "disable_parallel_tool_use": True}}),
    ("parallel_tool_calls false is not set on none",
     chat(tools=[WEATHER], tool_choice="none", parallel_tool_calls=False), {"tool_choice": {"type": "none"}}),
    ("reasoning_effort medium is a 2048 budget, the default cap grows by it",
     chat(reasoning_effort="medium"), {"thinking": {"type": "enabled", "budget_tokens": 2048}, "max_tokens": 4096 + 2048}),
    ("reasoning_effort within the caller's cap", chat(reasoning_effort="high", max_completion_tokens=3000),
     {"thinking": {"type": "enabled", "budget_tokens": 2999}, "max_tokens": 3000}),
    ("reasoning_effort minimal is the least budget", chat(reasoning_effort="minimal", max_completion_tokens=20000),
     {"thinking": {"budget_tokens": 1024}}),
    ("reasoning_effort none: no thinking", chat(reasoning_effort="none"), {"thinking": ABSENT}),
    ("temperature 1 stays with thinking", chat(reasoning_effort="low", temperature=1),
     {"thinking": {"budget_tokens": 1024}, "temperature": 1}),
    ("Anthropic's own thinking passes", chat(thinking={"type": "adaptive", "display": "summarized"}),
     {"thinking": {"type": "adaptive", "display": "summarized"}}),
    ("response_format json_schema: a forced answer tool",
     chat(response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": SCHEMA}}),
     {"tools": [{"name": "json_tool_call", "input_schema": SCHEMA}],
      "tool_choice": {"type": "tool", "name": "json_tool_call"}}),
    ("response_format json_object: an open object schema", chat(response_format={"type": "json_object"}),
     {"tools": [{"name": "json_tool_call", "input_schema": {"type": "object", "additionalProperties": True,
                                                            "properties": {}}}]}),
    ("response_format with the caller's tools: any tool must be called",
     chat(tools=[WEATHER], response_format={"type": "json_object"}),
     {"tools": [{"name": "get_weather"}, {"name": "json_tool_call"}], "tool_choice": {"type": "any"}}),
    ("response_format with required tools: the answer is a call, no answer tool",
     chat(tools=[WEATHER], tool_choice="required", response_format={"type": "json_object"}),
     {"tools": [{"name": "get_weather"}], "tool_choice": {"type": "any"}}),
    ("response_format text changes nothing", chat(response_format={"type": "text"}), {"tools": ABSENT}),
    ("user to metadata.user_id", chat(user="u-123"), {"metadata": {"user_id": "u-123"}}),
    ("an email user is hashed", chat(user="a@b.com"),
     {"metadata": {"user_id": hashlib.sha256(b"a@b.com").hexdigest()}}),
    ("safety_identifier when no user", chat(safety_identifier="sid"), {"metadata": {"user_id": "sid"}}),
    ("stream kept, stream_options not sent", chat(stream=True, stream_options={"include_usage": True}),
     {"stream": True, "stream_options": ABSENT}),
    ("n=1 is fine", chat(n=1), {"n": ABSENT}),
]


@pytest.mark.parametrize("body, expected", [row[1:] for row in REQUEST_ROWS], ids=[row[0] for row in REQUEST_ROWS])
def test_request_rule(body, expected):
    contains(T.request(body, TARGET, Notes()), expected)


NOTE_ROWS = [
    ("hints dropped and named", chat(presence_penalty=1, frequency_penalty=1, seed=1, service_tier="auto", store=True,
                                     metadata={"a": "b"}, prediction={}, prompt_cache_key="k", verbosity="low",
                                     max_tokens=5),
     # the conversation's own fields the provider has no place for first, then the hints
     ["metadata", "verbosity", "presence_penalty", "frequency_penalty", "seed", "service_tier", "store", "prediction",
      "prompt_cache_key"], []),
    ("unknown fields dropped and named", chat(top_k=3), ["top_k"], ["max_tokens"]),
    ("no cap is defaulted", chat(), [], ["max_tokens"]),
    ("a caller's cap is not defaulted", chat(max_tokens=5), [], []),
    ("message names", chat({"role": "user", "content": "a", "name": "bob"}, max_tokens=5), ["messages[].name"], []),
    ("a moved system message", chat(user("a"), {"role": "system", "content": "s"}, max_tokens=5),
     ["messages[].role=system:moved_to_top"], []),
    ("unsigned reasoning in history",
     chat(user("a"), {"role": "assistant", "content": "x", "reasoning_content": "hm"}, user("b"), max_tokens=5),
     ["messages[].reasoning_content"], []),
    ("strict tools", chat(tools=[{**WEATHER, "function": {**WEATHER["function"], "strict": True}}], max_tokens=5),
     ["tools[].function.strict"], []),
    ("whitespace stop", chat(stop="\n", max_tokens=5), ["stop:whitespace_only"], []),
    ("thinking yields to a forced tool", chat(tools=[WEATHER], tool_choice="required", reasoning_effort="high",
                                              max_tokens=5000), ["reasoning_effort:forced_tool_choice"], []),
    ("thinking yields to response_format", chat(response_format={"type": "json_object"}, reasoning_effort="high",
                                                max_tokens=5000), ["reasoning_effort:response_format"], []),
    ("thinking yields to temperature", chat(temperature=0.2, reasoning_effort="high", max_tokens=5000),
     ["reasoning_effort:temperature"], []),
    ("thinking yields to top_p", chat(top_p=0.5, reasoning_effort="high", max_tokens=5000), ["reasoning_effort:top_p"], []),
    ("thinking yields to a prefill", chat(user("a"), {"role": "assistant", "content": "b"}, reasoning_effort="low",
                                          max_tokens=5000), ["reasoning_effort:assistant_prefill"], []),
    ("thinking yields in a tool loop without signed thinking",
     chat(user("a"), {"role": "assistant", "tool_calls": [call("c", "t", "{}")]},
          {"role": "tool", "tool_call_id": "c", "content": "r"}, reasoning_effort="low", max_tokens=5000),
     ["reasoning_effort:tool_loop_without_signed_thinking"], []),
    ("a cap too small for thinking", chat(reasoning_effort="high", max_tokens=1000),
     ["reasoning_effort:max_tokens_below_least_budget"], []),
    ("strict json_schema", chat(response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": SCHEMA,
                                                                                      "strict": True}}, max_tokens=9),
     ["response_format.json_schema.strict"], []),
]


@pytest.mark.parametrize("body, dropped, defaulted", [row[1:] for row in NOTE_ROWS], ids=[row[0] for row in NOTE_ROWS])
def test_request_notes(body, dropped, defaulted):
    notes = Notes()
    out = T.request(body, TARGET, notes)
    assert notes.dropped == dropped and notes.defaulted == defaulted
    if any(name.startswith("reasoning_effort:") for name in dropped):
        assert "thinking" not in out


REFUSED_ROWS = [
    ("n above 1", chat(n=2), "n"),
    ("logprobs", chat(logprobs=True), "logprobs"),
    ("top_logprobs", chat(top_logprobs=2), "top_logprobs"),
    ("logit_bias", chat(logit_bias={"50256": -100}), "logit_bias"),
    ("audio output", chat(modalities=["text", "audio"]), "modalities"),
    ("audio options", chat(audio={"voice": "alloy"}), "audio"),
    ("deprecated functions", chat(functions=[{"name": "f"}]), "functions"),
    ("web search", chat(web_search_options={}), "web_search_options"),
    ("temperature above 1", chat(temperature=2.5), "temperature"),
    ("temperature below 0", chat(temperature=-2.5), "temperature"),
    ("audio input", chat(user([{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}])),
     "messages[0].content[0]"),
    ("a bmp image", chat(user([{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AA=="}}])),
     "messages[0].content[0]"),
    ("an image that is neither http nor data", chat(user([{"type": "image_url", "image_url": {"url": "ftp://x/a.png"}}])),
     "messages[0].content[0]"),
    ("a file id", chat(user([{"type": "file", "file": {"file_id": "file-1"}}])), "messages[0].content[0]"),
    ("a file of another type", chat(user([{"type": "file", "file": {"file_data": "data:text/csv;base64,YQ=="}}])),
     "messages[0].content[0]"),
    ("truncated tool arguments",
     chat(user("q"), {"role": "assistant", "tool_calls": [call("c", "t", '{"location":')]}),
     "messages[1].tool_calls[0].function.arguments"),
    ("tool arguments that are not an object", chat(user("q"), {"role": "assistant", "tool_calls": [call("c", "t", "[1]")]}),
     "messages[1].tool_calls[0].function.arguments"),
    ("a tool call without id", chat(user("q"), {"role": "assistant", "tool_calls": [{"type": "function",
                                                                                      "function": {"name": "t"}}]}),
     "messages[1].tool_calls[0].id"),
    ("a tool message without tool_call_id", chat(user("q"), {"role": "tool", "content": "x"}), "messages[1].tool_call_id"),
    ("a function message", chat({"role": "function", "name": "f", "content": "x"}), "messages[0].role"),
    ("an image in a system message", chat({"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}),
     "messages[0].content[0]"),
    ("custom tools", chat(tools=[{"type": "custom", "custom": {"name": "g"}}]), "tools[0]"),
    ("allowed_tools tool_choice", chat(tools=[WEATHER], tool_choice={"type": "allowed_tools", "allowed_tools": {}}),
     "tool_choice"),
    ("a response schema that is not an object",
     chat(response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "array"}}}),
     "response_format"),
    ("a tool named like the answer tool",
     chat(tools=[{"type": "function", "function": {"name": "json_tool_call"}}], response_format={"type": "json_object"}),
     "tools"),
    ("an unknown reasoning_effort", chat(reasoning_effort="extreme"), "reasoning_effort"),
    ("no messages", {"model": "m", "messages": []}, "messages"),
]


@pytest.mark.parametrize("body, field", [row[1:] for row in REFUSED_ROWS], ids=[row[0] for row in REFUSED_ROWS])
def test_request_refused(body, field):
    with pytest.raises(Refused) as refused:
        T.request(body, TARGET, Notes())
    assert refused.value.field == field and refused.value.message


def test_a_refusal_quotes_no_more_than_a_few_hundred_characters_of_the_value():
    with pytest.raises(Refused) as refused:
        T.request(chat(tool_choice="x" * 100_000), TARGET, Notes())
    assert refused.value.field == "tool_choice" and len(refused.value.message) <= Refused.MAX_MESSAGE + 1


def test_translation_for_the_pair():
    assert isinstance(translation_for("openai", "anthropic", "chat"), Bridge)
    assert translation_for("openai", "openai", "chat") is None
    with pytest.raises(Refused):
        translation_for("openai", "anthropic", "embeddings")


def test_the_recorded_tool_conversation_round_trips_as_anthropic_sent_it():
    """The second recorded tools request, said in OpenAI's words, comes out as the
    Messages turns the Anthropic SDK sent."""
    recorded = orjson.loads(cassette("anthropic-recordings/anthropic-messages-tools.yaml")[1]["request"]["body"])
    body = chat({"role": "system", "content": "Use parallel tool calling."},
                user("Please retrieve the secrets associated with each of these passwords: mellon,radiance"),
                {"role": "assistant", "content": "I'll retrieve the secrets for both passwords you provided.",
                 "tool_calls": [call("toolu_01BUvqBj8Yb34pNAbCJJY1oc", "secret_retrieval_tool", '{"password":"mellon"}'),
                                call("toolu_01VPuQJ1LonDBYXrr8pqPkqQ", "secret_retrieval_tool", '{"password": "radiance"}')]},
                {"role": "tool", "tool_call_id": "toolu_01BUvqBj8Yb34pNAbCJJY1oc", "content": "Welcome to Moria!"},
                {"role": "tool", "tool_call_id": "toolu_01VPuQJ1LonDBYXrr8pqPkqQ", "content": "Life before Death"},
                max_tokens=16000)
    out = T.request(body, Target("claude-sonnet-4-0"), Notes())
    strip = lambda blocks: [{k: v for k, v in b.items() if k not in ("cache_control", "citations")} for b in blocks]
    assert out["messages"][0] == recorded["messages"][0]
    assert strip(out["messages"][1]["content"]) == strip(recorded["messages"][1]["content"])
    assert strip(out["messages"][2]["content"]) == strip(recorded["messages"][2]["content"])
    assert out["max_tokens"] == recorded["max_tokens"] and out["model"] == recorded["model"]


# --- answers -----------------------------------------------------------------------------

def anthropic_message(*content: dict, stop: str = "end_turn", **usage: int) -> dict:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "content": list(content),
            "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 20, **usage}}


TEXT = {"type": "text", "text": "Hello"}
RESPONSE_ROWS = [
    ("text, usage with cache reads and writes",
     anthropic_message(TEXT, cache_read_input_tokens=5, cache_creation_input_tokens=3), chat(),
     {"choices": [{"message": {"role": "assistant", "content": "Hello", "tool_calls": ABSENT}, "finish_reason": "stop"}],
      "usage": {"prompt_tokens": 18, "completion_tokens": 20, "total_tokens": 38,
                "prompt_tokens_details": {"cached_tokens": 5, "cache_creation_tokens": 3}}}),
    ("all text blocks joined", anthropic_message(TEXT, {"type": "text", "text": " world"}), chat(),
     {"choices": [{"message": {"content": "Hello world"}}]}),
    ("text and tool_use",
     anthropic_message(TEXT, {"type": "tool_use", "id": "t1", "name": "get_weather",
                              "input": {"location": "Tokyo", "unit": "celsius"}}, stop="tool_use",
                       input_tokens=25, cache_read_input_tokens=10, cache_creation_input_tokens=7, output_tokens=15),
     chat(), {"choices": [{"message": {"content": "Hello", "tool_calls": [
         {"id": "t1", "type": "function", "function": {"name": "get_weather",
                                                       "arguments": '{"location":"Tokyo","unit":"celsius"}'}}]},
         "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 42, "total_tokens": 57}}),
    ("only a tool call: content null", anthropic_message({"type": "tool_use", "id": "t", "name": "n", "input": {}},
                                                         stop="tool_use"), chat(),
     {"choices": [{"message": {"content": None, "tool_calls": [{"function": {"arguments": "{}"}}]}}]}),
    ("thinking is reasoning_content",
     anthropic_message({"type": "thinking", "thinking": "Let me think...", "signature": "signature_123"}, TEXT,
                       input_tokens=15, cache_read_input_tokens=3), chat(),
     {"choices": [{"message": {"reasoning_content": "Let me think...", "content": "Hello"}}],
      "usage": {"prompt_tokens": 18}}),
    ("redacted thinking shows nothing", anthropic_message({"type": "redacted_thinking", "data": "x"}, TEXT),
     chat(), {"choices": [{"message": {"reasoning_content": ABSENT, "content": "Hello"}}]}),
    ("no content at all: an empty string", anthropic_message(stop="max_tokens"), chat(),
     {"choices": [{"message": {"content": ""}, "finish_reason": "length"}]}),
    ("stop_sequence is stop", anthropic_message(TEXT, stop="stop_sequence"), chat(), {"choices": [{"finish_reason": "stop"}]}),
    ("refusal is content_filter", anthropic_message(stop="refusal"), chat(), {"choices": [{"finish_reason": "content_filter"}]}),
    ("a full context window is length", anthropic_message(stop="model_context_window_exceeded"), chat(),
     {"choices": [{"finish_reason": "length"}]}),
    ("pause_turn and unknown reasons are stop", anthropic_message(stop="pause_turn"), chat(),
     {"choices": [{"finish_reason": "stop"}]}),
    ("thinking tokens are reasoning tokens",
     anthropic_message(TEXT, output_tokens_details={"thinking_tokens": 7}), chat(),
     {"usage": {"completion_tokens_details": {"reasoning_tokens": 7}}}),
    ("the JSON answer tool is the content, finish stop",
     anthropic_message({"type": "tool_use", "id": "t", "name": "json_tool_call", "input": {"a": 1}}, stop="tool_use"),
     chat(response_format={"type": "json_object"}),
     {"choices": [{"message": {"content": '{"a":1}', "tool_calls": ABSENT}, "finish_reason": "stop"}]}),
    ("a tool named json_tool_call is a call when no JSON was asked",
     anthropic_message({"type": "tool_use", "id": "t", "name": "json_tool_call", "input": {}}, stop="tool_use"), chat(),
     {"choices": [{"message": {"tool_calls": [{"function": {"name": "json_tool_call"}}]}, "finish_reason": "tool_calls"}]}),
    ("the model falls back to the request's", {**anthropic_message(TEXT), "model": None}, chat(), {"model": "gpt-x"}),
    ("service tier", {**anthropic_message(TEXT), "usage": {"input_tokens": 1, "output_tokens": 1,
                                                           "service_tier": "standard"}}, chat(), {"service_tier": "default"}),
]


@pytest.mark.parametrize("body, request_body, expected", [row[1:] for row in RESPONSE_ROWS],
                         ids=[row[0] for row in RESPONSE_ROWS])
def test_response_rule(body, request_body, expected):
    out = T.response(body, request_body)
    contains(out, {"id": "msg_1", "object": "chat.completion", **expected})
    ChatCompletion.model_validate(out)


def test_the_recorded_tools_answer():
    body = orjson.loads(cassette("anthropic-recordings/anthropic-messages-tools.yaml")[0]["response"]["body"])
    out = ChatCompletion.model_validate(T.response(body, chat()))
    message = out.choices[0].message
    assert message.content == "I'll retrieve the secrets for both passwords you provided."
    assert [(c.id, c.function.name, orjson.loads(c.function.arguments)) for c in message.tool_calls] == [
        ("toolu_01BUvqBj8Yb34pNAbCJJY1oc", "secret_retrieval_tool", {"password": "mellon"}),
        ("toolu_01VPuQJ1LonDBYXrr8pqPkqQ", "secret_retrieval_tool", {"password": "radiance"})]
    assert out.choices[0].finish_reason == "tool_calls" and out.model == "claude-sonnet-4-20250514"
    assert (out.usage.prompt_tokens, out.usage.completion_tokens, out.usage.total_tokens) == (416, 109, 525)


# --- errors ------------------------------------------------------------------------------

ERROR_ROWS = [
    ("the recorded 401", 401, orjson.loads(
        cassette("anthropic-recordings/anthropic-error-401.yaml")[0]["response"]["body"]),
     401, "invalid_request_error", "invalid_api_key", "invalid x-api-key"),
    ("overloaded 529 is 503", 529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
     503, "server_error", None, "Overloaded"),
    ("a bad request", 400, {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}},
     400, "invalid_request_error", None, "bad"),
    ("a rate limit", 429, {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
     429, "requests", "rate_limit_exceeded", "slow"),
    ("not found", 404, {"type": "error", "error": {"type": "not_found_error", "message": "model: x"}},
     404, "invalid_request_error", "model_not_found", "model: x"),
    ("a body that is not JSON", 502, None, 502, "server_error", None, "The provider answered 502."),
    ("an array-wrapped error", 404, [{"error": {"code": 404, "message": "gone", "status": "NOT_FOUND"}}],
     404, "invalid_request_error", "model_not_found", "gone"),
]


@pytest.mark.parametrize("status, body, out_status, kind, code, message", [row[1:] for row in ERROR_ROWS],
                         ids=[row[0] for row in ERROR_ROWS])
def test_error(status, body, out_status, kind, code, message):
    got_status, raw = T.error(status, body)
    assert got_status == out_status
    assert orjson.loads(raw) == {"error": {"message": message, "type": kind, "param": None, "code": code}}


# --- streams -----------------------------------------------------------------------------

def anthropic_stream_of(message: dict) -> bytes:
    """The events Anthropic streams for a message (text and tool input cut in pieces)."""
    def event(data: dict) -> bytes:
        return b"event: " + data["type"].encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
    start = {**message, "content": [], "stop_reason": None,
             "usage": {**message["usage"], "output_tokens": min(1, message["usage"]["output_tokens"])}}
    out = event({"type": "message_start", "message": start})
    for i, block in enumerate(message["content"]):
        if block["type"] == "tool_use":
            out += event({"type": "content_block_start", "index": i, "content_block": {**block, "input": {}}})
            text = orjson.dumps(block["input"]).decode()
            pieces = [{"type": "input_json_delta", "partial_json": text[j:j + 7]} for j in range(0, len(text), 7)]
        else:
            out += event({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}})
            pieces = [{"type": "text_delta", "text": block["text"][j:j + 9]} for j in range(0, len(block["text"]), 9)]
        for piece in pieces:
            out += event({"type": "content_block_delta", "index": i, "delta": piece})
        out += event({"type": "content_block_stop", "index": i})
    out += event({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                  "usage": message["usage"]})
    return out + event({"type": "message_stop"})


def translated(body: bytes, request: dict, cut: int | None = None) -> bytes:
    stream = T.stream(request)
    events = sse_events(body)[:cut]
    return b"".join(stream.event(*event) for event in events) + stream.end()


def chunks_of(out: bytes) -> tuple[list[dict], bool]:
    """The chunks of an OpenAI stream, each checked against the SDK's type, and whether
    it ended with [DONE] (and nothing after it)."""
    events = SSEParser().feed(out, final=True)
    assert all(event.raw.startswith(b"data: ") and event.raw.endswith(b"\n\n") for event in events)
    done = bool(events) and events[-1].is_done
    chunks = [orjson.loads(event.data) for event in events if not event.is_done]
    for chunk in chunks:
        if "error" not in chunk:
            ChatCompletionChunk.model_validate(chunk)
    return chunks, done


def accumulated(chunks: list[dict]) -> Any:
    state = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    return state.get_final_completion()


def recorded_stream(name: str) -> bytes:
    return cassette(f"anthropic-recordings/{name}")[0]["response"]["body"].encode()


@pytest.mark.parametrize("include_usage", [True, False])
def test_the_recorded_text_stream(include_usage):
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks, done = chunks_of(translated(recorded_stream("anthropic-messages-stream.yaml"), chat(stream=True, **options)))
    assert done
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert all(("usage" in chunk) == include_usage for chunk in chunks)
    assert all(chunk["usage"] is None for chunk in chunks[:-1]) if include_usage else True
    final = accumulated([c for c in chunks if c["choices"]])
    assert final.choices[0].message.content == "Hello" and final.choices[0].finish_reason == "stop"
    assert final.id == "msg_01T8kTq7cYyYJeQ5DxcVUc6D" and final.model == "claude-haiku-4-5-20251001"
    if include_usage:
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 10
        assert chunks[-1]["usage"]["completion_tokens"] == 4 and chunks[-1]["usage"]["total_tokens"] == 14
    else:
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_the_recorded_thinking_stream():
    chunks, done = chunks_of(translated(recorded_stream("anthropic-messages-stream-thinking.yaml"),
                                        chat(stream=True, stream_options={"include_usage": True})))
    final = accumulated([c for c in chunks if c["choices"]])
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks if c["choices"])
    assert reasoning.startswith("The user wants two names") and reasoning.endswith("brief, catchy names:")
    assert final.choices[0].message.content == '1. **Pouch** - references their iconic bill pouch\n2. **Pelé** - ' \
                                               'playful take on "pelican"'
    assert done and chunks[-1]["usage"]["prompt_tokens"] == 46 and chunks[-1]["usage"]["completion_tokens"] == 133
    assert not any("signature" in orjson.dumps(c).decode() for c in chunks)


def test_the_recorded_tools_answer_streamed():
    message = orjson.loads(cassette("anthropic-recordings/anthropic-messages-tools.yaml")[0]["response"]["body"])
    chunks, done = chunks_of(translated(anthropic_stream_of(message), chat(stream=True, stream_options={"include_usage": True})))
    assert done
    final = accumulated([c for c in chunks if c["choices"]])
    calls = final.choices[0].message.tool_calls
    assert [(c.index, c.id, c.function.name, orjson.loads(c.function.arguments)) for c in calls] == [
        (0, "toolu_01BUvqBj8Yb34pNAbCJJY1oc", "secret_retrieval_tool", {"password": "mellon"}),
        (1, "toolu_01VPuQJ1LonDBYXrr8pqPkqQ", "secret_retrieval_tool", {"password": "radiance"})]
    assert final.choices[0].message.content == "I'll retrieve the secrets for both passwords you provided."
    assert final.choices[0].finish_reason == "tool_calls" and chunks[-1]["usage"]["prompt_tokens"] == 416


def test_a_streamed_json_answer_is_content():
    message = anthropic_message({"type": "tool_use", "id": "t", "name": "json_tool_call", "input": {"a": [1, 2]}},
                                stop="tool_use")
    chunks, _ = chunks_of(translated(anthropic_stream_of(message), chat(stream=True, response_format={"type": "json_object"})))
    final = accumulated(chunks)
    assert orjson.loads(final.choices[0].message.content) == {"a": [1, 2]}
    assert not final.choices[0].message.tool_calls and final.choices[0].finish_reason == "stop"


def test_the_documented_error_event():
    out = translated(recorded_stream("anthropic-messages-stream-error-overloaded.yaml"), chat(stream=True))
    assert out == b'data: {"error":{"message":"Overloaded","type":"server_error","param":null,"code":null}}\n\n'


def test_an_error_mid_stream_ends_it():
    body = recorded_stream("anthropic-messages-stream.yaml")
    events = sse_events(body)[:4] + [({"type": "error", "error": {"type": "api_error", "message": "boom"}}, b"error", b"")]
    stream = T.stream(chat(stream=True))
    out = b"".join(stream.event(*event) for event in events) + stream.end()
    chunks, done = chunks_of(out)
    assert not done and chunks[-1] == {"error": {"message": "boom", "type": "server_error", "param": None, "code": None}}
    assert stream.event(*sse_events(body)[-1]) == b""


def test_a_cut_stream_ends_with_an_error_chunk():
    chunks, done = chunks_of(translated(recorded_stream("anthropic-messages-stream.yaml"), chat(stream=True), cut=4))
    assert not done and chunks[-1]["error"]["type"] == "server_error"
    assert "ended before" in chunks[-1]["error"]["message"]


def test_a_stream_missing_only_message_stop_closes_properly():
    chunks, done = chunks_of(translated(recorded_stream("anthropic-messages-stream.yaml"),
                                        chat(stream=True, stream_options={"include_usage": True}), cut=-1))
    assert done and chunks[-1]["usage"]["completion_tokens"] == 4


def test_a_closed_stream_has_nothing_to_end():
    stream = T.stream(chat(stream=True))
    for event in sse_events(recorded_stream("anthropic-messages-stream.yaml")):
        stream.event(*event)
    assert stream.end() == b""


# --- round trip: what the caller says and hears survives ----------------------------------

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
ids = st.from_regex(r"call_[A-Za-z0-9]{4,12}", fullmatch=True)
names = st.from_regex(r"[a-z_]{1,20}", fullmatch=True)
json_objects = st.dictionaries(names, st.one_of(st.integers(-2**53, 2**53), texts, st.booleans(), st.none()),
                               max_size=4)
counts = st.integers(min_value=0, max_value=10**6)


@st.composite
def conversations(draw: Any) -> dict:
    messages: list[dict] = [{"role": "system", "content": draw(texts)}]
    for _ in range(draw(st.integers(1, 4))):
        messages.append(user(draw(texts)))
        calls = draw(st.lists(st.tuples(ids, names, json_objects), max_size=3, unique_by=lambda c: c[0]))
        messages.append({"role": "assistant", "content": draw(st.one_of(st.none(), texts)),
                         "tool_calls": [call(i, n, orjson.dumps(a).decode()) for i, n, a in calls] or None})
        messages.extend({"role": "tool", "tool_call_id": i, "content": draw(texts)} for i, _, _ in calls)
    messages.append(user(draw(texts)))
    return chat(*messages)


def request_texts(body: dict) -> list[str]:
    found = [b["text"] for b in body.get("system", ())]
    for turn in body["messages"]:
        blocks = [{"type": "text", "text": turn["content"]}] if isinstance(turn["content"], str) else turn["content"]
        for block in blocks:
            if block["type"] == "text":
                found.append(block["text"])
            elif block["type"] == "tool_result":
                found.append(block["content"])
    return found


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversation=conversations(),
       answer=st.tuples(st.lists(texts, max_size=3), st.lists(st.tuples(ids, names, json_objects), max_size=3),
                        counts, counts, counts, counts))
def test_round_trip_keeps_texts_calls_and_usage(conversation, answer):
    out = T.request(conversation, TARGET, Notes())
    said = [m["content"] for m in conversation["messages"] if isinstance(m.get("content"), str)]
    assert sorted(request_texts(out)) == sorted(said)
    sent_calls = [(b["id"], b["name"], b["input"]) for t in out["messages"] if isinstance(t["content"], list)
                  for b in t["content"] if b["type"] == "tool_use"]
    assert sent_calls == [(c["id"], c["function"]["name"], orjson.loads(c["function"]["arguments"]))
                          for m in conversation["messages"] for c in m.get("tool_calls") or ()]

    answer_texts, answer_calls, fresh, read, written, output = answer
    message = anthropic_message(*({"type": "text", "text": t} for t in answer_texts),
                                *({"type": "tool_use", "id": i, "name": n, "input": a} for i, n, a in answer_calls),
                                stop="tool_use" if answer_calls else "end_turn", input_tokens=fresh,
                                cache_read_input_tokens=read, cache_creation_input_tokens=written, output_tokens=output)
    streamed = accumulated([c for c in chunks_of(translated(anthropic_stream_of(message), chat(
        stream=True, stream_options={"include_usage": True})))[0] if c["choices"]])
    usage = chunks_of(translated(anthropic_stream_of(message), chat(stream=True, stream_options={"include_usage": True})))[0][-1]["usage"]
    for heard, heard_usage in ((ChatCompletion.model_validate(T.response(message, conversation)), None), (streamed, usage)):
        got = heard.choices[0].message
        assert (got.content or "") == "".join(answer_texts)
        assert [(c.id, c.function.name, orjson.loads(c.function.arguments)) for c in got.tool_calls or ()] == answer_calls
        numbers = heard_usage or heard.usage.model_dump()
        assert numbers["prompt_tokens"] == fresh + read + written and numbers["completion_tokens"] == output
        assert numbers["prompt_tokens_details"]["cached_tokens"] == read
        assert numbers["prompt_tokens_details"].get("cache_creation_tokens", 0) == written


def test_created_is_now():
    out = T.response(anthropic_message(TEXT), chat())
    assert abs(out["created"] - time.time()) < 5
