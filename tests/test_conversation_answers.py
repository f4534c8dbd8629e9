"""The answer and error codecs of each dialect (dialects/{chat,messages,responses}_answer.py),
one table row per rule: a provider's body read into the model's Answer (or Problem), an
Answer (or Problem) written as a caller's body. Then every recorded JSON answer and error
read from its provider's dialect and written in each caller's, checked with the SDKs' own
types, and a property test that texts, tool calls and usage survive each dialect both ways."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import orjson
import pytest
from anthropic.types import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from extproc.api.usage import Usage
from extproc.dialects.anthropic import messages_answer
from extproc.dialects.openai import chat_answer, responses_answer
from extproc.dialects.conversation import (
    CONTENT_FILTER,
    END,
    LENGTH,
    PAUSE,
    REFUSAL,
    STOP_SEQUENCE,
    TOOL_USE,
    Answer,
    AnswerFormat,
    Conversation,
    Notes,
    Problem,
    Reasoning,
    ToolChoice,
)
from extproc.dialects.vocabulary import openai_tool_name
from translation_cases import ABSENT, cassette, contains

CHAT, MESSAGES, RESPONSES = chat_answer, messages_answer, responses_answer
SDK_TYPES = {CHAT: ChatCompletion, MESSAGES: Message, RESPONSES: Response}
LONG_NAME = "a_tool_whose_name_is_longer_than_the_sixty_four_characters_openai_allows"


def conversation(dialect: str = "openai", **fields: Any) -> Conversation:
    """The head of a caller's request, as decode_request(whole=False) makes it."""
    return Conversation(dialect=dialect, model="caller-model", **fields)


def answer(*content: dict, **fields: Any) -> Answer:
    return Answer(**{"id": "ans_1", "model": "provider-model", "content": list(content),
                     "usage": Usage(10, 20), **fields})


TEXT = {"type": "text", "text": "Hello"}


def use(call_id: str = "t1", name: str = "get_weather", **arguments: Any) -> dict:
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}


def thought(text: str = "hmm", signature: str = "", origin: str = "openai") -> dict:
    return {"type": "thinking", "thinking": text, "signature": signature, "origin": origin}


# --- provider bodies ----------------------------------------------------------------------

def completion(message: dict, finish: str = "stop", **usage: Any) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30, **usage}}


def call(call_id: Any, name: str, arguments: str) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def anthropic_message(*content: dict, stop: str | None = "end_turn", **usage: Any) -> dict:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "content": list(content),
            "stop_reason": stop, "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 20, **usage}}


def response(*output: dict, status: str = "completed", **fields: Any) -> dict:
    return {"id": "resp_1", "object": "response", "created_at": 1, "model": "gpt-r", "status": status,
            "output": list(output), "usage": {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4},
                                              "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 2},
                                              "total_tokens": 15}, **fields}


def message_item(*parts: dict) -> dict:
    return {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed", "content": list(parts)}


def output_text(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": []}


def function_call(call_id: Any, name: str, arguments: str) -> dict:
    return {"type": "function_call", "id": "fc_1", "call_id": call_id, "name": name, "arguments": arguments}


JSON_FORMAT = AnswerFormat("json_object")
LONG_TOOL = {"name": LONG_NAME, "input_schema": {"type": "object"}}

# --- decode: a provider's answer into the model ---------------------------------------------

DECODE_ROWS = [  # (name, codec, provider body, caller's conversation, Answer fragment, notes dropped)
    # Chat Completions
    ("chat: text, id, model, usage with a compatible server's cache writes", CHAT,
     completion({"content": "Hi"}, prompt_tokens=100,
                prompt_tokens_details={"cached_tokens": 30, "cache_creation_tokens": 20},
                completion_tokens_details={"reasoning_tokens": 12}), conversation(),
     {"id": "chatcmpl-1", "model": "gpt-x", "content": [{"type": "text", "text": "Hi"}], "stop": END,
      "usage": {"input_tokens": 100, "output_tokens": 20, "cached_tokens": 30, "cache_write_tokens": 20,
                "reasoning_tokens": 12}}, []),
    ("chat: text parts joined", CHAT, completion({"content": [{"type": "text", "text": "a"},
                                                              {"type": "text", "text": "b"}]}), conversation(),
     {"content": [{"type": "text", "text": "ab"}]}, []),
    ("chat: empty content is no block", CHAT, completion({"content": ""}, "length"), conversation(),
     {"content": [], "stop": LENGTH}, []),
    ("chat: reasoning_content is a thinking block first, unsigned", CHAT,
     completion({"reasoning_content": "hmm", "content": "A", "tool_calls": [call("c", "n", "{}")]}, "tool_calls"),
     conversation(), {"content": [thought("hmm"), {"type": "text", "text": "A"}, {"type": "tool_use"}],
                      "stop": TOOL_USE}, []),
    ("chat: `reasoning` read as well", CHAT, completion({"reasoning": "hmm", "content": "A"}), conversation(),
     {"content": [thought("hmm"), {"type": "text"}]}, []),
    ("chat: a refusal is text, stop REFUSAL", CHAT, completion({"content": None, "refusal": "I can't."}),
     conversation(), {"content": [{"type": "text", "text": "I can't."}], "stop": REFUSAL}, []),
    ("chat: a tool call, arguments parsed", CHAT,
     completion({"content": None, "tool_calls": [call("call-abc", "get_weather", '{"location":"NYC"}')]},
                "tool_calls"), conversation(),
     {"content": [{"type": "tool_use", "id": "call-abc", "name": "get_weather", "input": {"location": "NYC"}}],
      "stop": TOOL_USE}, []),
    ("chat: malformed arguments are {} and noted", CHAT,
     completion({"tool_calls": [call("c", "n", '{"a":')]}, "tool_calls"), conversation(),
     {"content": [{"type": "tool_use", "input": {}}]}, ["tool_calls[].function.arguments:malformed"]),
    ("chat: arguments not an object are {} and noted", CHAT,
     completion({"tool_calls": [call("c", "n", "[1]")]}, "tool_calls"), conversation(),
     {"content": [{"input": {}}]}, ["tool_calls[].function.arguments:malformed"]),
    ("chat: empty arguments are {} unnoted", CHAT, completion({"tool_calls": [call("c", "n", "")]}, "tool_calls"),
     conversation(), {"content": [{"input": {}}]}, []),
    ("chat: a shortened tool name is restored", CHAT,
     completion({"tool_calls": [call("c", openai_tool_name(LONG_NAME), "{}")]}, "tool_calls"),
     conversation("anthropic", tools=[LONG_TOOL]), {"content": [{"name": LONG_NAME}]}, []),
    ("chat: content_filter", CHAT, completion({"content": "x"}, "content_filter"), conversation(),
     {"stop": CONTENT_FILTER}, []),
    ("chat: function_call is TOOL_USE", CHAT, completion({"content": "x"}, "function_call"), conversation(),
     {"stop": TOOL_USE}, []),
    ("chat: an unknown finish_reason is END", CHAT, completion({"content": "x"}, "eos"), conversation(),
     {"stop": END, "stop_sequence": None}, []),
    ("chat: the tier that served it", CHAT, {**completion({"content": "x"}), "service_tier": "priority"},
     conversation(), {"service_tier": "priority"}, []),
    ("chat: no choices at all", CHAT, {"id": "x", "choices": []}, conversation(),
     {"content": [], "stop": END, "usage": None, "model": None}, []),
    # Messages
    ("messages: text, usage with cache reads and writes", MESSAGES,
     anthropic_message(TEXT, cache_read_input_tokens=5, cache_creation_input_tokens=3), conversation(),
     {"id": "msg_1", "model": "claude-x", "content": [TEXT], "stop": END,
      "usage": {"input_tokens": 18, "output_tokens": 20, "cached_tokens": 5, "cache_write_tokens": 3}}, []),
    ("messages: thinking keeps its signature, redacted thinking kept", MESSAGES,
     anthropic_message({"type": "thinking", "thinking": "Let me think", "signature": "sig"},
                       {"type": "redacted_thinking", "data": "opaque"}, TEXT), conversation(),
     {"content": [thought("Let me think", "sig", "anthropic"),
                  {"type": "redacted_thinking", "data": "opaque", "origin": "anthropic"}, TEXT]}, []),
    ("messages: tool_use", MESSAGES, anthropic_message(TEXT, use(location="Tokyo"), stop="tool_use"),
     conversation(), {"content": [TEXT, use(location="Tokyo")], "stop": TOOL_USE}, []),
    ("messages: the JSON answer tool is text, stop END", MESSAGES,
     anthropic_message(use("t", "json_tool_call", a=1, b=[2]), stop="tool_use"),
     conversation(answer_format=JSON_FORMAT), {"content": [{"type": "text", "text": '{"a":1,"b":[2]}'}],
                                               "stop": END}, []),
    ("messages: the JSON answer beside a call stays TOOL_USE", MESSAGES,
     anthropic_message(use("t", "json_tool_call", a=1), use("u", "lookup"), stop="tool_use"),
     conversation(answer_format=JSON_FORMAT), {"content": [{"type": "text"}, {"type": "tool_use"}],
                                               "stop": TOOL_USE}, []),
    ("messages: json_tool_call is a call when no JSON was asked", MESSAGES,
     anthropic_message(use("t", "json_tool_call"), stop="tool_use"), conversation(),
     {"content": [{"type": "tool_use", "name": "json_tool_call"}], "stop": TOOL_USE}, []),
    ("messages: json_tool_call is a call when a tool choice forces the caller's tools", MESSAGES,
     anthropic_message(use("t", "json_tool_call"), stop="tool_use"),
     conversation(answer_format=JSON_FORMAT, tool_choice=ToolChoice("any")),
     {"content": [{"type": "tool_use"}], "stop": TOOL_USE}, []),
    ("messages: max_tokens is LENGTH", MESSAGES, anthropic_message(stop="max_tokens"), conversation(),
     {"content": [], "stop": LENGTH}, []),
    ("messages: a full context window is LENGTH", MESSAGES,
     anthropic_message(stop="model_context_window_exceeded"), conversation(), {"stop": LENGTH}, []),
    ("messages: the stop sequence", MESSAGES,
     {**anthropic_message(TEXT, stop="stop_sequence"), "stop_sequence": "END"}, conversation(),
     {"stop": STOP_SEQUENCE, "stop_sequence": "END"}, []),
    ("messages: refusal", MESSAGES, anthropic_message(stop="refusal"), conversation(), {"stop": REFUSAL}, []),
    ("messages: pause_turn", MESSAGES, anthropic_message(stop="pause_turn"), conversation(), {"stop": PAUSE}, []),
    ("messages: an unknown or missing reason is END", MESSAGES, anthropic_message(stop=None), conversation(),
     {"stop": END}, []),
    ("messages: thinking tokens are reasoning tokens", MESSAGES,
     anthropic_message(TEXT, output_tokens_details={"thinking_tokens": 7}), conversation(),
     {"usage": {"reasoning_tokens": 7}}, []),
    ("messages: the standard tier is OpenAI's default", MESSAGES,
     anthropic_message(TEXT, service_tier="standard"), conversation(), {"service_tier": "default"}, []),
    ("messages: server tool blocks are noted", MESSAGES,
     anthropic_message({"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}, TEXT),
     conversation(), {"content": [TEXT]}, ["content[].server_tool_use"]),
    ("messages: citations are noted, the text kept", MESSAGES,
     anthropic_message({**TEXT, "citations": [{"type": "char_location"}]}), conversation(),
     {"content": [TEXT]}, ["content[].citations"]),
    # Responses
    ("responses: reasoning, message and call", RESPONSES,
     response({"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "thought"}]},
              message_item(output_text("Hello")), function_call("call_9", "lookup", '{"q":"x"}')), conversation(),
     {"id": "resp_1", "model": "gpt-r",
      "content": [thought("thought", "", "openai-responses"), TEXT,
                  {"type": "tool_use", "id": "call_9", "name": "lookup", "input": {"q": "x"}}],
      "stop": TOOL_USE, "usage": {"input_tokens": 10, "output_tokens": 5, "cached_tokens": 4,
                                  "reasoning_tokens": 2}}, []),
    ("responses: reasoning keeps its encrypted content as the signature; reasoning_text without a summary",
     RESPONSES, response({"type": "reasoning", "id": "rs", "summary": [], "encrypted_content": "enc",
                          "content": [{"type": "reasoning_text", "text": "raw"}]}), conversation(),
     {"content": [thought("raw", "enc", "openai-responses")], "stop": END}, []),
    ("responses: a refusal part is text, stop REFUSAL", RESPONSES,
     response(message_item({"type": "refusal", "refusal": "No."})), conversation(),
     {"content": [{"type": "text", "text": "No."}], "stop": REFUSAL}, []),
    ("responses: cut at its cap is LENGTH", RESPONSES,
     response(message_item(output_text("part")), status="incomplete",
              incomplete_details={"reason": "max_output_tokens"}), conversation(), {"stop": LENGTH}, []),
    ("responses: filtered is CONTENT_FILTER", RESPONSES,
     response(status="incomplete", incomplete_details={"reason": "content_filter"}), conversation(),
     {"stop": CONTENT_FILTER}, []),
    ("responses: malformed arguments are {} and noted", RESPONSES,
     response(function_call("c", "n", "nope")), conversation(), {"content": [{"input": {}}], "stop": TOOL_USE},
     ["output[].arguments:malformed"]),
    ("responses: a missing call_id is made up, a shortened name restored", RESPONSES,
     response(function_call(None, openai_tool_name(LONG_NAME), "{}")), conversation(tools=[LONG_TOOL]),
     {"content": [{"name": LONG_NAME}]}, []),
    ("responses: OpenAI's own tools' items are noted", RESPONSES,
     response({"type": "web_search_call", "id": "ws", "status": "completed"}, message_item(output_text("x"))),
     conversation(), {"content": [{"type": "text", "text": "x"}]}, ["output[].web_search_call"]),
    ("responses: the tier that served it", RESPONSES, response(service_tier="flex"), conversation(),
     {"service_tier": "flex"}, []),
    ("responses: cache writes", RESPONSES,
     response(usage={"input_tokens": 50, "output_tokens": 5, "total_tokens": 55,
                     "input_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 30}}), conversation(),
     {"usage": {"input_tokens": 50, "cached_tokens": 10, "cache_write_tokens": 30}}, []),
]


@pytest.mark.parametrize("codec, body, head, expected, dropped", [row[1:] for row in DECODE_ROWS],
                         ids=[row[0] for row in DECODE_ROWS])
def test_decode(codec, body, head, expected, dropped):
    notes = Notes()
    decoded = codec.decode(body, head, notes)
    contains(asdict(decoded), expected)
    assert notes.dropped == dropped
    codec.decode(body, head, None)                     # no notes: nothing to name them in


def test_a_missing_tool_call_id_is_made_up():
    decoded = CHAT.decode(completion({"tool_calls": [call(None, "n", "{}")]}), conversation(), None)
    assert decoded.content[0]["id"].startswith("toolu_")
    decoded = RESPONSES.decode(response(function_call("", "n", "{}")), conversation(), None)
    assert decoded.content[0]["id"].startswith("toolu_")


# --- encode: the model as the caller's answer ---------------------------------------------

ENCODE_ROWS = [  # (name, codec, Answer, caller's conversation, body fragment)
    # Chat Completions
    ("chat: texts joined, usage with cache reads and writes", CHAT,
     answer(TEXT, {"type": "text", "text": " world"}, usage=Usage(18, 20, cached_tokens=5, cache_write_tokens=3)),
     conversation(),
     {"id": "ans_1", "object": "chat.completion", "model": "provider-model",
      "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello world", "tool_calls": ABSENT,
                                           "reasoning_content": ABSENT}, "finish_reason": "stop"}],
      "usage": {"prompt_tokens": 18, "completion_tokens": 20, "total_tokens": 38,
                "prompt_tokens_details": {"cached_tokens": 5, "cache_creation_tokens": 3}}}),
    ("chat: text and calls, arguments compact", CHAT,
     answer(TEXT, use(location="Tokyo", unit="celsius"), stop=TOOL_USE), conversation(),
     {"choices": [{"message": {"content": "Hello", "tool_calls": [
         {"id": "t1", "type": "function",
          "function": {"name": "get_weather", "arguments": '{"location":"Tokyo","unit":"celsius"}'}}]},
         "finish_reason": "tool_calls"}]}),
    ("chat: only calls: content null", CHAT, answer(use(), stop=TOOL_USE), conversation(),
     {"choices": [{"message": {"content": None, "tool_calls": [{"function": {"arguments": "{}"}}]}}]}),
    ("chat: thinking is reasoning_content, whoever made it", CHAT,
     answer(thought("a", "sig", "anthropic"), thought("b"), TEXT), conversation(),
     {"choices": [{"message": {"reasoning_content": "ab", "content": "Hello"}}]}),
    ("chat: redacted thinking shows nothing", CHAT,
     answer({"type": "redacted_thinking", "data": "x", "origin": "anthropic"}, TEXT), conversation(),
     {"choices": [{"message": {"reasoning_content": ABSENT, "content": "Hello"}}]}),
    ("chat: no content at all: an empty string", CHAT, answer(stop=LENGTH), conversation(),
     {"choices": [{"message": {"content": ""}, "finish_reason": "length"}]}),
    ("chat: a stop sequence is stop", CHAT, answer(TEXT, stop=STOP_SEQUENCE, stop_sequence="X"), conversation(),
     {"choices": [{"finish_reason": "stop"}]}),
    ("chat: a refusal is content_filter", CHAT, answer(stop=REFUSAL), conversation(),
     {"choices": [{"finish_reason": "content_filter"}]}),
    ("chat: filtered is content_filter", CHAT, answer(stop=CONTENT_FILTER), conversation(),
     {"choices": [{"finish_reason": "content_filter"}]}),
    ("chat: a pause is stop", CHAT, answer(stop=PAUSE), conversation(), {"choices": [{"finish_reason": "stop"}]}),
    ("chat: TOOL_USE without a call is stop", CHAT, answer(TEXT, stop=TOOL_USE), conversation(),
     {"choices": [{"finish_reason": "stop"}]}),
    ("chat: thinking tokens are reasoning tokens", CHAT, answer(TEXT, usage=Usage(1, 9, reasoning_tokens=7)),
     conversation(), {"usage": {"completion_tokens_details": {"reasoning_tokens": 7}}}),
    ("chat: the model falls back to the request's, the tier kept", CHAT,
     answer(TEXT, model=None, service_tier="default"), conversation(),
     {"model": "caller-model", "service_tier": "default"}),
    ("chat: no usage reads as none used", CHAT, answer(TEXT, usage=None), conversation(),
     {"usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}),
    # Messages
    ("messages: text, stop, usage without cache reads and writes in input_tokens", MESSAGES,
     answer(TEXT, usage=Usage(100, 20, cached_tokens=30, cache_write_tokens=20)), conversation("anthropic"),
     {"id": "ans_1", "type": "message", "role": "assistant", "model": "provider-model", "content": [TEXT],
      "stop_reason": "end_turn", "stop_sequence": None,
      "usage": {"input_tokens": 50, "cache_read_input_tokens": 30, "cache_creation_input_tokens": 20,
                "output_tokens": 20, "output_tokens_details": ABSENT}}),
    ("messages: thinking first; a signature only to its maker", MESSAGES,
     answer(TEXT, thought("a", "sig", "anthropic"), thought("b", "gsig", "gemini"), use(), stop=TOOL_USE),
     conversation("anthropic"),
     {"content": [{"type": "thinking", "thinking": "a", "signature": "sig"},
                  {"type": "thinking", "thinking": "b", "signature": ""}, TEXT,
                  {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}], "stop_reason": "tool_use"}),
    ("messages: thinking display omitted: no thinking", MESSAGES, answer(thought("hmm"), TEXT),
     conversation("anthropic", reasoning=Reasoning(hidden=True)), {"content": [TEXT]}),
    ("messages: redacted thinking only back to Anthropic", MESSAGES,
     answer({"type": "redacted_thinking", "data": "x", "origin": "anthropic"},
            {"type": "redacted_thinking", "data": "y", "origin": "openai"}, TEXT), conversation("anthropic"),
     {"content": [{"type": "redacted_thinking", "data": "x"}, TEXT]}),
    ("messages: an empty unsigned thinking block is none", MESSAGES, answer(thought(""), TEXT),
     conversation("anthropic"), {"content": [TEXT]}),
    ("messages: LENGTH is max_tokens", MESSAGES, answer(stop=LENGTH), conversation("anthropic"),
     {"content": [], "stop_reason": "max_tokens"}),
    ("messages: the stop sequence", MESSAGES, answer(TEXT, stop=STOP_SEQUENCE, stop_sequence="END"),
     conversation("anthropic"), {"stop_reason": "stop_sequence", "stop_sequence": "END"}),
    ("messages: filtered is refusal", MESSAGES, answer(stop=CONTENT_FILTER), conversation("anthropic"),
     {"stop_reason": "refusal"}),
    ("messages: a pause is pause_turn", MESSAGES, answer(stop=PAUSE), conversation("anthropic"),
     {"stop_reason": "pause_turn"}),
    ("messages: reasoning tokens are thinking tokens", MESSAGES, answer(TEXT, usage=Usage(1, 20, reasoning_tokens=12)),
     conversation("anthropic"), {"usage": {"output_tokens": 20, "output_tokens_details": {"thinking_tokens": 12}}}),
    ("messages: OpenAI's default tier is standard", MESSAGES, answer(TEXT, service_tier="default"),
     conversation("anthropic"), {"usage": {"service_tier": "standard"}}),
    ("messages: no id or model: a new id, the request's model", MESSAGES, answer(TEXT, id=None, model=None),
     conversation("anthropic"), {"model": "caller-model"}),
    # Responses
    ("responses: reasoning, message and calls as items", RESPONSES,
     answer(thought("thought"), TEXT, use("call_9", "lookup", q="x"), stop=TOOL_USE,
            usage=Usage(10, 5, cached_tokens=4, reasoning_tokens=2)), conversation(),
     {"object": "response", "status": "completed", "error": None, "incomplete_details": None,
      "model": "provider-model", "store": False,
      "output": [{"type": "reasoning", "summary": [{"type": "summary_text", "text": "thought"}]},
                 {"type": "message", "role": "assistant", "status": "completed",
                  "content": [{"type": "output_text", "text": "Hello", "annotations": []}]},
                 {"type": "function_call", "call_id": "call_9", "name": "lookup", "arguments": '{"q":"x"}',
                  "status": "completed"}],
      "usage": {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
                "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 15}}),
    ("responses: texts joined in one message", RESPONSES, answer(TEXT, {"type": "text", "text": "!"}), conversation(),
     {"output": [{"content": [{"text": "Hello!"}]}]}),
    ("responses: cut at its cap", RESPONSES, answer(TEXT, stop=LENGTH), conversation(),
     {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}),
    ("responses: filtered", RESPONSES, answer(stop=CONTENT_FILTER), conversation(),
     {"status": "incomplete", "incomplete_details": {"reason": "content_filter"}, "output": []}),
    ("responses: a refusal is complete", RESPONSES, answer(TEXT, stop=REFUSAL), conversation(),
     {"status": "completed", "incomplete_details": None}),
    ("responses: the request's settings echoed, OpenAI's defaults otherwise", RESPONSES,
     answer(TEXT), conversation(echo={"max_output_tokens": 4, "temperature": 0.2, "instructions": "brief",
                                      "tool_choice": "required", "model": "echoed-model"}),
     {"max_output_tokens": 4, "temperature": 0.2, "instructions": "brief", "tool_choice": "required",
      "parallel_tool_calls": True, "tools": [], "model": "provider-model"}),
    ("responses: no model: the request's; no usage: null", RESPONSES, answer(TEXT, model=None, usage=None),
     conversation(), {"model": "caller-model", "usage": None}),
    ("responses: the tier that served it", RESPONSES, answer(TEXT, service_tier="priority"),
     conversation(echo={"service_tier": "auto"}), {"service_tier": "priority"}),
]


@pytest.mark.parametrize("codec, given_answer, head, expected", [row[1:] for row in ENCODE_ROWS],
                         ids=[row[0] for row in ENCODE_ROWS])
def test_encode(codec, given_answer, head, expected):
    out = codec.encode(given_answer, head)
    contains(out, expected)
    SDK_TYPES[codec].model_validate(out)
    assert "origin" not in orjson.dumps(out).decode()


def test_a_chat_completion_is_created_now():
    assert abs(CHAT.encode(answer(TEXT), conversation())["created"] - time.time()) < 5


def test_a_message_without_an_id_gets_one():
    assert MESSAGES.encode(answer(TEXT, id=None), conversation("anthropic"))["id"].startswith("msg_")


def test_response_and_item_ids_share_a_stem():
    out = RESPONSES.encode(answer(thought("t"), TEXT, use("c1"), use("c2"), stop=TOOL_USE), conversation())
    stem = out["id"].removeprefix("resp_")
    assert out["id"].startswith("resp_") and out["id"] != "ans_1"
    assert [item["id"] for item in out["output"]] == [f"rs_{stem}00", f"msg_{stem}01", f"fc_{stem}02",
                                                      f"fc_{stem}03"]
    assert abs(out["created_at"] - time.time()) < 5


def test_echoed_tools_are_not_shared_between_answers():
    first = RESPONSES.encode(answer(TEXT), conversation())
    first["tools"].append({"type": "function"})
    assert RESPONSES.encode(answer(TEXT), conversation())["tools"] == []


# --- errors --------------------------------------------------------------------------------

def recorded(name: str) -> Any:
    return orjson.loads(cassette(name)[0]["response"]["body"])


OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
OPENAI_LIMIT = {"error": {"message": "slow down", "type": "requests", "param": None, "code": "rate_limit_exceeded"}}

DECODE_ERROR_ROWS = [  # (name, codec, status, body, Problem)
    ("messages: the recorded 401", MESSAGES, 401, recorded("anthropic-recordings/anthropic-error-401.yaml"),
     Problem("authentication_error", "invalid x-api-key")),
    ("messages: overloaded", MESSAGES, 529, OVERLOADED, Problem("overloaded_error", "Overloaded")),
    ("messages: not JSON: the status's kind", MESSAGES, 502, None, Problem("api_error", "The provider answered 502.")),
    ("messages: a list wrapping an error", MESSAGES, 404, [{"error": {"code": 404, "message": "gone"}}],
     Problem("not_found_error", "gone")),
    ("messages: no message", MESSAGES, 400, {"type": "error", "error": {"type": "invalid_request_error"}},
     Problem("invalid_request_error", "The provider answered 400 (invalid_request_error).")),
    ("chat: the recorded 400 keeps OpenAI's words", CHAT, 400, recorded("openai-recordings/chat-bad-request.yaml"),
     Problem("invalid_request_error", "Unsupported parameter: 'max_tokens' is not supported with this model. "
             "Use 'max_completion_tokens' instead.", "invalid_request_error", "unsupported_parameter", "max_tokens")),
    ("chat: the recorded 404: the kind from the status", CHAT, 404,
     recorded("openai-recordings/chat-unknown-model.yaml"),
     Problem("not_found_error", "The model `gpt-4.1-nano-wrong` does not exist or you do not have access to it.",
             "invalid_request_error", "model_not_found", None)),
    ("chat: a rate limit", CHAT, 429, OPENAI_LIMIT,
     Problem("rate_limit_error", "slow down", "requests", "rate_limit_exceeded", None)),
    ("chat: unavailable without a body", CHAT, 503, None, Problem("api_error", "The provider answered 503.")),
    ("chat: an Anthropic-shaped body keeps its message, not its type", CHAT, 400,
     {"type": "error", "error": {"type": "invalid_request_error", "message": "Bad request"}},
     Problem("invalid_request_error", "Bad request")),
    ("chat: a bare error string", CHAT, 500, {"error": "boom"}, Problem("api_error", "boom")),
    ("chat: mid-stream, the kind from OpenAI's type", CHAT, 0, {"error": {"message": "m", "type": "server_error"}},
     Problem("api_error", "m", "server_error")),
    ("chat: mid-stream, nothing said", CHAT, 0, None, Problem("api_error", "The provider's stream failed.")),
    ("responses: a rate limit, as chat", RESPONSES, 429, OPENAI_LIMIT,
     Problem("rate_limit_error", "slow down", "requests", "rate_limit_exceeded", None)),
]


@pytest.mark.parametrize("codec, status, body, expected", [row[1:] for row in DECODE_ERROR_ROWS],
                         ids=[row[0] for row in DECODE_ERROR_ROWS])
def test_decode_error(codec, status, body, expected):
    assert codec.decode_error(status, body) == expected


ERROR_ROWS = [  # (name, provider codec, caller codec, status, body, caller's status, caller's error object)
    ("Anthropic's recorded 401 to chat", MESSAGES, CHAT, 401,
     recorded("anthropic-recordings/anthropic-error-401.yaml"), 401,
     {"message": "invalid x-api-key", "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}),
    ("Anthropic's 529 is 503 to chat", MESSAGES, CHAT, 529, OVERLOADED, 503,
     {"message": "Overloaded", "type": "server_error", "param": None, "code": None}),
    ("Anthropic's 529 is 503 to responses", MESSAGES, RESPONSES, 529, OVERLOADED, 503,
     {"message": "Overloaded", "type": "server_error", "param": None, "code": None}),
    ("Anthropic's rate limit to chat", MESSAGES, CHAT, 429,
     {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}, 429,
     {"message": "slow", "type": "requests", "param": None, "code": "rate_limit_exceeded"}),
    ("Anthropic's billing error to responses", MESSAGES, RESPONSES, 402,
     {"type": "error", "error": {"type": "billing_error", "message": "pay"}}, 402,
     {"message": "pay", "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}),
    ("Anthropic's not found to chat", MESSAGES, CHAT, 404,
     {"type": "error", "error": {"type": "not_found_error", "message": "model: x"}}, 404,
     {"message": "model: x", "type": "invalid_request_error", "param": None, "code": "model_not_found"}),
    ("not JSON to chat", MESSAGES, CHAT, 502, None, 502,
     {"message": "The provider answered 502.", "type": "server_error", "param": None, "code": None}),
    ("OpenAI's recorded 400 passes to chat in its own words", CHAT, CHAT, 400,
     recorded("openai-recordings/chat-bad-request.yaml"), 400, recorded("openai-recordings/chat-bad-request.yaml")
     ["error"]),
    ("a Responses provider's error passes to chat", RESPONSES, CHAT, 400,
     {"error": {"message": "bad", "type": "invalid_request_error", "param": "input", "code": None}}, 400,
     {"message": "bad", "type": "invalid_request_error", "param": "input", "code": None}),
    ("a Responses provider's bare failure to chat", RESPONSES, CHAT, 500, None, 500,
     {"message": "The provider answered 500.", "type": "server_error", "param": None, "code": None}),
]


@pytest.mark.parametrize("provider, caller, status, body, out_status, error", [row[1:] for row in ERROR_ROWS],
                         ids=[row[0] for row in ERROR_ROWS])
def test_error_to_an_openai_caller(provider, caller, status, body, out_status, error):
    got_status, raw = caller.encode_error(status, provider.decode_error(status, body))
    assert got_status == out_status and orjson.loads(raw) == {"error": error}


ANTHROPIC_ERROR_ROWS = [  # (name, provider codec, status, body, caller's status, type, message)
    ("the recorded 400", CHAT, 400, recorded("openai-recordings/chat-bad-request.yaml"), 400, "invalid_request_error",
     "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead."),
    ("the recorded 404", CHAT, 404, recorded("openai-recordings/chat-unknown-model.yaml"), 404, "not_found_error",
     "The model `gpt-4.1-nano-wrong` does not exist or you do not have access to it."),
    ("a rate limit", CHAT, 429, OPENAI_LIMIT, 429, "rate_limit_error", "slow down"),
    ("a server error", CHAT, 500, {"error": {"message": "oops", "type": "server_error"}}, 500, "api_error", "oops"),
    ("unavailable: api_error (only Anthropic's own 529 is overloaded_error)", CHAT, 503, None, 503, "api_error",
     "The provider answered 503."),
    ("an Anthropic-shaped body keeps its message", CHAT, 400,
     {"type": "error", "error": {"type": "invalid_request_error", "message": "Bad request"}}, 400,
     "invalid_request_error", "Bad request"),
    ("a Responses provider's rate limit", RESPONSES, 429, OPENAI_LIMIT, 429, "rate_limit_error", "slow down"),
    ("a Responses provider's 401", RESPONSES, 401, {"error": {"message": "key", "type": "invalid_request_error",
                                                             "code": "invalid_api_key"}},
     401, "authentication_error", "key"),
]


@pytest.mark.parametrize("provider, status, body, out_status, kind, message",
                         [row[1:] for row in ANTHROPIC_ERROR_ROWS], ids=[row[0] for row in ANTHROPIC_ERROR_ROWS])
def test_error_to_a_messages_caller(provider, status, body, out_status, kind, message):
    got_status, raw = MESSAGES.encode_error(status, provider.decode_error(status, body))
    assert got_status == out_status
    assert orjson.loads(raw) == {"type": "error", "error": {"type": kind, "message": message}}


# --- golden replays: every recorded JSON answer, in each caller's dialect -------------------

def heard(codec: Any, body: dict) -> tuple[str, list[tuple], tuple[int, int, int, int]]:
    """What a caller reads in its own dialect's answer: its text, its tool calls (id, name,
    input) and its usage (prompt tokens with cache reads and writes, output, cached,
    reasoning), read straight from the body, not through the codecs."""
    if codec is CHAT:
        message = body["choices"][0]["message"]
        calls = [(c["id"], c["function"]["name"], orjson.loads(c["function"]["arguments"]))
                 for c in message.get("tool_calls") or ()]
        usage = body["usage"]
        return message["content"] or "", calls, (
            usage["prompt_tokens"], usage["completion_tokens"], usage["prompt_tokens_details"]["cached_tokens"],
            (usage.get("completion_tokens_details") or {}).get("reasoning_tokens", 0))
    if codec is MESSAGES:
        usage = body["usage"]
        return "".join(b["text"] for b in body["content"] if b["type"] == "text"), \
            [(b["id"], b["name"], b["input"]) for b in body["content"] if b["type"] == "tool_use"], (
            usage["input_tokens"] + (usage.get("cache_read_input_tokens") or 0) +
            (usage.get("cache_creation_input_tokens") or 0), usage["output_tokens"],
            usage.get("cache_read_input_tokens") or 0,
            (usage.get("output_tokens_details") or {}).get("thinking_tokens", 0))
    usage = body["usage"]
    return "".join(part["text"] for item in body["output"] if item["type"] == "message"
                   for part in item["content"] if part["type"] == "output_text"), \
        [(i["call_id"], i["name"], orjson.loads(i["arguments"])) for i in body["output"]
         if i["type"] == "function_call"], (
        usage["input_tokens"], usage["output_tokens"], usage["input_tokens_details"]["cached_tokens"],
        usage["output_tokens_details"]["reasoning_tokens"])


RECORDED_ANSWERS = [  # (cassette, interaction, the provider's codec)
    ("anthropic-recordings/anthropic-messages.yaml", 0, MESSAGES),
    ("anthropic-recordings/anthropic-messages-tools.yaml", 0, MESSAGES),
    ("anthropic-recordings/anthropic-messages-tools.yaml", 1, MESSAGES),
    ("openai-recordings/chat-basic.yaml", 0, CHAT),
    ("openai-recordings/azure-chat-basic.yaml", 0, CHAT),
    ("openai-recordings/chat-tools.yaml", 0, CHAT),
]


@pytest.mark.parametrize("caller", [CHAT, MESSAGES, RESPONSES], ids=["to chat", "to messages", "to responses"])
@pytest.mark.parametrize("name, interaction, provider", RECORDED_ANSWERS,
                         ids=[f"{row[0].split('/')[1]}[{row[1]}]" for row in RECORDED_ANSWERS])
def test_a_recorded_answer_keeps_its_text_calls_and_usage(name, interaction, provider, caller):
    body = orjson.loads(cassette(name)[interaction]["response"]["body"])
    notes = Notes()
    out = caller.encode(provider.decode(body, conversation(), notes), conversation())
    SDK_TYPES[caller].model_validate(out)
    assert heard(caller, out) == heard(provider, body)
    assert notes.dropped == []
    assert out["model"] == body["model"]


# --- round trip: each dialect written, then read back ----------------------------------------

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
names = st.from_regex(r"[a-z_]{1,20}", fullmatch=True)
json_objects = st.dictionaries(names, st.one_of(st.integers(-2**53, 2**53), texts, st.booleans(), st.none()),
                               max_size=4)
counts = st.integers(min_value=0, max_value=10**6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(said=st.lists(texts, max_size=3),
       calls=st.lists(st.tuples(st.from_regex(r"call_[A-Za-z0-9]{4,12}", fullmatch=True), names, json_objects),
                      max_size=3, unique_by=lambda c: c[0]),
       fresh=counts, cached=counts, written=counts, output=counts, reasoning=counts)
def test_each_dialect_reads_back_what_it_wrote(said, calls, fresh, cached, written, output, reasoning):
    usage = Usage(fresh + cached + written, output + reasoning, cached_tokens=cached, reasoning_tokens=reasoning,
                  cache_write_tokens=written)
    given_answer = answer(*({"type": "text", "text": t} for t in said), *(use(i, n, **a) for i, n, a in calls),
                          stop=TOOL_USE if calls else END, usage=usage)
    for codec in (CHAT, MESSAGES, RESPONSES):
        back = codec.decode(codec.encode(given_answer, conversation()), conversation(), None)
        assert "".join(b["text"] for b in back.content if b["type"] == "text") == "".join(said)
        assert [(b["id"], b["name"], b["input"]) for b in back.content if b["type"] == "tool_use"] == calls
        assert back.stop == given_answer.stop
        kept = (back.usage.input_tokens, back.usage.output_tokens, back.usage.cached_tokens,
                back.usage.reasoning_tokens)
        assert kept == (usage.input_tokens, usage.output_tokens, cached, reasoning)
        assert back.usage.cache_write_tokens == written
