"""AWS Bedrock's Converse dialect (dialects/bedrock/dialect.py, converse_*.py), the provider's side.

One table row per rule: each other dialect's request written as a Converse request for a
Bedrock model (checked field by field, and with botocore's model of bedrock-runtime: what
is written is what AWS's SDK would send), what cannot be carried refused naming the
caller's field, what is dropped named in the notes; Converse answers (the recording, the
mock's builders, hand-written ones) read back and written for chat, messages and responses
callers (checked with their SDKs' types); Bedrock's errors; ConverseStream's event stream
(the recording, the mock's frames) read message by message and heard whole by each caller,
an exception frame and a cut stream as errors; and the answer and stream written for a
Bedrock caller, read back the same."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import botocore.session
import orjson
import pytest
from anthropic.types import Message
from botocore.validate import ParamValidator
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from extproc.api.eventstream import EventStreamDecoder
from extproc.api.usage import Usage
from extproc.dialects import codec_of, dialect_named
from extproc.dialects.bedrock import converse_answer
from extproc.dialects.bedrock.dialect import BEDROCK, Converse
from extproc.dialects.conversation import (
    CONTENT_FILTER,
    END,
    LENGTH,
    STOP_SEQUENCE,
    TOOL_USE,
    Answer,
    Event,
    Notes,
    Problem,
    Refused,
    Target,
)
from extproc.dialects.vocabulary import openai_tool_name
from extproc.mock.anthropic_shapes import ReportedUsage
from extproc.mock.bedrock_shapes import ConverseAnswer, converse_events, converse_json, first_of, frames_of
from extproc.translate.bridge import Bridge
from test_conversation_streams import Heard, heard_in_chat, heard_in_messages, heard_in_responses
from translation_cases import ABSENT, cassette, contains

CODEC = Converse()
NOVA, CLAUDE, LLAMA = "amazon.nova-micro-v1:0", "us.anthropic.claude-haiku-4-5-20251001-v1:0", "meta.llama3-1-8b-instruct-v1:0"
# Each caller: its dialect's name, codec, and a request of it (the head its answer is read with).
CALLERS = {
    "chat": ("openai", codec_of("chat"), {"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}],
                                          "stream": True, "stream_options": {"include_usage": True}}),
    "messages": ("anthropic", codec_of("messages"), {"model": "claude-x", "max_tokens": 100, "stream": True,
                                                     "messages": [{"role": "user", "content": "hi"}]}),
    "responses": ("openai", codec_of("responses"), {"model": "gpt-x", "input": "hi", "stream": True}),
}
SDK_TYPES = {"chat": ChatCompletion, "messages": Message, "responses": Response}
HEARD_IN = {"chat": heard_in_chat, "messages": heard_in_messages, "responses": heard_in_responses}
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
SIGNATURE = "EqQBCkYIBxgCKkD2signature"

# --- botocore's model of bedrock-runtime: what is written is what AWS's SDK sends ----------

SERVICE = botocore.session.get_session().get_service_model("bedrock-runtime")


def _as_sent(value: Any, shape: Any) -> Any:
    """A body's value as boto3 takes it: a blob's base64 text as its bytes."""
    if shape.type_name == "blob":
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError):
            raise AssertionError(f"a blob that is not base64: {value!r}") from None
    if shape.type_name == "structure" and not shape.is_document_type and isinstance(value, dict):
        return {key: _as_sent(inner, shape.members[key]) if key in shape.members else inner
                for key, inner in value.items()}
    if shape.type_name == "list" and isinstance(value, list):
        return [_as_sent(inner, shape.member) for inner in value]
    return value


def valid(shape: Any, value: dict) -> dict:
    report = ParamValidator().validate(_as_sent(value, shape), shape)
    assert not report.has_errors(), report.generate_report()
    return value


def valid_request(body: dict) -> dict:
    valid(SERVICE.operation_model("Converse").input_shape, {"modelId": NOVA, **body})
    return body


def test_the_sdk_model_is_strict():
    with pytest.raises(AssertionError):
        valid_request({"messages": [{"role": "user", "content": [{"txt": "a"}]}]})
    with pytest.raises(AssertionError):
        valid_request({"messages": [{"role": "user", "content": [{"image": {"format": "png", "source": {
            "bytes": "not base64!"}}}]}]})


# --- the dialect and the codec's reading of bodies ------------------------------------------

@pytest.mark.parametrize("model, served", [
    (NOVA, True), (CLAUDE, True), (LLAMA, True), ("mistral.mistral-large-2407-v1:0", True),
    ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", True), ("deepseek.r1-v1:0", True),
    ("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0", True),
    ("gpt-4.1", False), ("gpt-4o-mini", False), ("claude-sonnet-4-6", False), ("claude-3.5-sonnet", False),
    ("gemini-2.5-flash", False), ("o3", False)])
def test_the_dialect_serves_bedrock_model_ids(model, served):
    assert BEDROCK.serves(model) is served


def test_the_dialect():
    assert dialect_named("bedrock") is BEDROCK and codec_of("converse").kind == CODEC.kind == "converse"
    assert (BEDROCK.name, BEDROCK.generation_kind, BEDROCK.described) == ("bedrock", "converse",
                                                                        "AWS Bedrock's Converse API")
    assert not BEDROCK.needs_output_cap and BEDROCK.reports_stream_usage
    assert orjson.loads(BEDROCK.error_body(429, "Slow down.", "rate_limit_error", None, "r-1")) == {"message": "Slow down."}
    (frame,) = EventStreamDecoder().feed(BEDROCK.error_event("Blocked.", "content_blocked"))
    assert frame.headers[":message-type"] == "exception" and frame.headers[":exception-type"] == "validationException"
    assert orjson.loads(frame.payload) == {"message": "Blocked."}
    listed = orjson.loads(BEDROCK.model_list([BEDROCK.model_entry(NOVA, 1700000000)]))
    assert listed["modelSummaries"][0]["modelId"] == NOVA and listed["modelSummaries"][0]["providerName"] == "amazon"
    assert BEDROCK.attempt_headers({"anthropic-version": "v", "anthropic-beta": "b"}) == \
        ({}, ["anthropic-version", "anthropic-beta"], ["anthropic-beta"])


def recording(name: str) -> dict:
    return cassette(f"provider-recordings/{name}")[0]


def test_the_codec_reads_what_the_gateway_counts_and_guards():
    body = {"system": [{"text": "S"}, {"cachePoint": {"type": "default"}}],
            "messages": [{"role": "user", "content": [{"text": "a"}]},
                         {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t", "name": "f", "input": {}}}]},
                         {"role": "user", "content": [{"toolResult": {"toolUseId": "t", "content": [{"text": "r"}]}}]}],
            "inferenceConfig": {"maxTokens": 50},
            "toolConfig": {"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {}}}}, {"cachePoint": {"type": "default"}},
                                     {"toolSpec": {"name": "g", "inputSchema": {"json": {}}}}],
                           "toolChoice": {"tool": {"name": "f"}}}}
    assert CODEC.generates and CODEC.charges_output and CODEC.answers_in_json and CODEC.streams
    assert CODEC.operation == "chat" and not CODEC.model_in_body and CODEC.output_cap_field == "inferenceConfig.maxTokens"
    assert CODEC.prompt_texts(body) == (["S", "a", "r"], 3)
    assert CODEC.max_output_tokens(body) == 50 and CODEC.max_output_tokens({"messages": []}) is None
    assert CODEC.with_output_cap({"messages": []}, 70)["inferenceConfig"] == {"maxTokens": 70}
    assert CODEC.tool_names(body) == ["f", "g"]
    CODEC.remove_tools(body, ["f"])
    assert body["toolConfig"] == {"tools": [{"toolSpec": {"name": "g", "inputSchema": {"json": {}}}}]}
    CODEC.remove_tools(body, ["g"])
    assert "toolConfig" not in body
    answer = orjson.loads(recording("bedrock-converse.yaml")["response"]["body"])
    assert CODEC.usage_from_response(answer) == Usage(12, 56)
    assert list(CODEC.generated_texts(answer))[0].startswith("To find the sum")
    called = orjson.loads(converse_json(ConverseAnswer("x", "tool_use", ReportedUsage(3, 0, 0, 2), tool="lookup"), 5))
    assert CODEC.called_tools(called) == ["lookup"] and list(CODEC.generated_texts(called)) == ['{"text":"x"}']
    assert CODEC.called_tools({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t", "name": "f"}}}) == ["f"]
    delta = {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hm"}}, "p": "abc"}
    assert list(CODEC.generated_texts(delta)) == ["hm"]
    so_far = Usage(1, 2)
    assert CODEC.usage_from_event(delta, so_far) is so_far
    metadata = {"usage": {"inputTokens": 5, "outputTokens": 7, "totalTokens": 112, "cacheReadInputTokens": 60,
                          "cacheWriteInputTokens": 40}, "metrics": {"latencyMs": 9}}
    assert CODEC.usage_from_event(metadata, so_far) == Usage(105, 7, cached_tokens=60, cache_write_tokens=40)


def test_a_bedrock_callers_request_is_refused_for_now():
    with pytest.raises(Refused) as refused:
        CODEC.decode_request({"messages": []}, Notes())
    assert refused.value.field == "model"


# --- requests: another dialect's caller, written for Bedrock ------------------------------------

def chat(*messages: dict, **fields: Any) -> tuple[str, dict]:
    return "chat", {"model": "gpt-x", "messages": list(messages) or [{"role": "user", "content": "hi"}], **fields}


def messages(*turns: dict, **fields: Any) -> tuple[str, dict]:
    return "messages", {"model": "claude-x", "max_tokens": 1000,
                        "messages": list(turns) or [{"role": "user", "content": "hi"}], **fields}


def responses(**fields: Any) -> tuple[str, dict]:
    return "responses", {"model": "gpt-x", **fields}


def gemini(*contents: dict, **fields: Any) -> tuple[str, dict]:
    return "generate_content", {"contents": list(contents), **fields}


def call(call_id: str, name: str, arguments: str = "{}") -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def function(name: str, **fields: Any) -> dict:
    return {"type": "function", "function": {"name": name, "parameters": SCHEMA, **fields}}


USER, HI = {"role": "user", "content": "hi"}, [{"text": "hi"}]
TOOL_LOOP = ({"role": "user", "content": "weather?"}, {"role": "assistant", "content": None,
                                                       "tool_calls": [call("call_1", "weather", '{"city":"Paris"}')]},
             {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}, {"role": "user", "content": "and?"})
SIGNED = {"type": "thinking", "thinking": "Let me think.", "signature": SIGNATURE}
CACHED = {"type": "ephemeral"}

ENCODE_ROWS = [  # (name, (caller, body), model, fragment of the Converse body, notes.dropped)
    ("a chat's system, turns and sampling",
     chat({"role": "system", "content": "Be brief."}, USER, max_tokens=50, temperature=0.5, top_p=0.9,
          stop=["END", " "]),
     NOVA, {"system": [{"text": "Be brief."}], "messages": [{"role": "user", "content": HI}],
            "inferenceConfig": {"maxTokens": 50, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]},
            "toolConfig": ABSENT, "additionalModelRequestFields": ABSENT}, ["stop:whitespace_only"]),
    ("one role's turns merged; a later system turn moved to the top, noted",
     chat(USER, {"role": "user", "content": [{"type": "text", "text": "again"}, {"type": "text", "text": " "}]},
          {"role": "system", "content": "late"}, {"role": "assistant", "content": "ok"}),
     NOVA, {"system": [{"text": "late"}], "messages": [{"role": "user", "content": [{"text": "hi"}, {"text": "again"}]},
                                                       {"role": "assistant", "content": [{"text": "ok"}]}]},
     ["messages[].role=system:moved_to_top"]),
    ("a tool loop: the call, its result in a user turn (leading it), the tools and a forced choice",
     chat(*TOOL_LOOP, tools=[function("weather", description="Weather.")], tool_choice="required"),
     NOVA, {"messages": [{"role": "user"}, {"role": "assistant", "content": [{"toolUse": {
         "toolUseId": "call_1", "name": "weather", "input": {"city": "Paris"}}}]},
         {"role": "user", "content": [{"toolResult": {"toolUseId": "call_1", "content": [{"text": "sunny"}],
                                                      "status": ABSENT}}, {"text": "and?"}]}],
         "toolConfig": {"tools": [{"toolSpec": {"name": "weather", "description": "Weather.",
                                                "inputSchema": {"json": SCHEMA}}}], "toolChoice": {"any": {}}}}, []),
    ("a named tool choice", chat(tools=[function("f"), function("g")],
                                 tool_choice={"type": "function", "function": {"name": "g"}}),
     NOVA, {"toolConfig": {"toolChoice": {"tool": {"name": "g"}}}}, []),
    ("tool choice none and no calls: no tools at all", chat(tools=[function("f")], tool_choice="none"),
     NOVA, {"toolConfig": ABSENT}, []),
    ("tool choice none with calls in the history: the tools stay, the choice is noted",
     chat(*TOOL_LOOP, tools=[function("weather")], tool_choice="none"),
     NOVA, {"toolConfig": {"tools": [{"toolSpec": {"name": "weather"}}], "toolChoice": ABSENT}}, ["tool_choice=none"]),
    ("calls in the history and no tools: the called tools declared",
     chat(*TOOL_LOOP), NOVA, {"toolConfig": {"tools": [{"toolSpec": {"name": "weather", "inputSchema": {
         "json": {"type": "object", "properties": {}}}}}]}}, ["tools:declared_from_history"]),
    ("a long tool name shortened as for OpenAI, in the tools and the calls alike",
     chat(USER, {"role": "assistant", "content": None, "tool_calls": [call("c", "t" * 70)]},
          {"role": "tool", "tool_call_id": "c", "content": "r"}, tools=[function("t" * 70)]),
     NOVA, {"messages": [{}, {"content": [{"toolUse": {"name": openai_tool_name("t" * 70)}}]}, {}],
            "toolConfig": {"tools": [{"toolSpec": {"name": openai_tool_name("t" * 70)}}]}}, []),
    ("an image and a PDF as bytes",
     chat({"role": "user", "content": [
         {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}",
                                                                             "detail": "high"}},
         {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "r.pdf"}}]}),
     NOVA, {"messages": [{"content": [{"text": "look"}, {"image": {"format": "png", "source": {"bytes": PNG}}},
                                      {"document": {"format": "pdf", "source": {"bytes": "JVBERi0="}}}]}]}, []),
    ("cache breakpoints as cache points, for Claude (the ttl kept)",
     messages({"role": "user", "content": [{"type": "text", "text": "long", "cache_control": {**CACHED, "ttl": "1h"}}]},
              system=[{"type": "text", "text": "S", "cache_control": CACHED}],
              tools=[{"name": "f", "input_schema": SCHEMA, "cache_control": CACHED}]),
     CLAUDE, {"system": [{"text": "S"}, {"cachePoint": {"type": "default"}}],
              "messages": [{"content": [{"text": "long"}, {"cachePoint": {"type": "default", "ttl": "1h"}}]}],
              "toolConfig": {"tools": [{"toolSpec": {"name": "f"}}, {"cachePoint": {"type": "default"}}]}}, []),
    ("cache breakpoints for Nova too",
     messages({"role": "user", "content": [{"type": "text", "text": "long", "cache_control": CACHED}]}),
     NOVA, {"messages": [{"content": [{"text": "long"}, {"cachePoint": {"type": "default"}}]}]}, []),
    ("cache breakpoints dropped for a model without prompt caching",
     messages({"role": "user", "content": [{"type": "text", "text": "long", "cache_control": CACHED}]}),
     LLAMA, {"messages": [{"content": [{"text": "long"}]}]}, ["cache_control"]),
    ("Claude's signed thinking back to Claude on Bedrock, a budget and top_k",
     messages(USER, {"role": "assistant", "content": [SIGNED, {"type": "redacted_thinking", "data": "cmVk"},
                                                      {"type": "text", "text": "A"}]}, USER,
              thinking={"type": "enabled", "budget_tokens": 2048}, top_k=5, max_tokens=4000),
     CLAUDE, {"messages": [{}, {"content": [
         {"reasoningContent": {"reasoningText": {"text": "Let me think.", "signature": SIGNATURE}}},
         {"reasoningContent": {"redactedContent": "cmVk"}}, {"text": "A"}]}, {}],
         "inferenceConfig": {"maxTokens": 4000},
         "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 2048}, "top_k": 5}}, []),
    ("thinking and top_k dropped for a model that is not Claude",
     messages(USER, {"role": "assistant", "content": [SIGNED, {"type": "text", "text": "A"}]}, USER,
              thinking={"type": "enabled", "budget_tokens": 2048}, top_k=5),
     NOVA, {"messages": [{}, {"content": [{"text": "A"}]}, {}], "additionalModelRequestFields": ABSENT},
     ["thinking_history", "top_k", "thinking"]),
    ("an effort as a budget, the cap not given growing by it",
     chat(USER, reasoning_effort="medium"),
     CLAUDE, {"inferenceConfig": {"maxTokens": 4096 + 2048},
              "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 2048}}}, []),
    ("an effort within a small cap: below the least budget, dropped",
     chat(USER, reasoning_effort="high", max_completion_tokens=600),
     CLAUDE, {"inferenceConfig": {"maxTokens": 600}, "additionalModelRequestFields": ABSENT},
     ["reasoning_effort:max_tokens_below_least_budget"]),
    ("thinking with a temperature Claude refuses it with: dropped",
     chat(USER, reasoning_effort="low", temperature=0.2),
     CLAUDE, {"additionalModelRequestFields": ABSENT}, ["reasoning_effort:temperature"]),
    ("a failed call's result: status error for Claude",
     messages(USER, {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
                                            "content": [{"type": "text", "text": "boom"}]}]},
              tools=[{"name": "f", "input_schema": SCHEMA}]),
     CLAUDE, {"messages": [{}, {}, {"content": [{"toolResult": {"toolUseId": "toolu_1", "status": "error",
                                                                "content": [{"text": "boom"}]}}]}]}, []),
    ("a failed call's result for a model that reads no status: noted",
     messages(USER, {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
                                            "content": "boom"}]}, tools=[{"name": "f", "input_schema": SCHEMA}]),
     LLAMA, {"messages": [{}, {}, {"content": [{"toolResult": {"status": ABSENT}}]}]}, ["tool_result.is_error"]),
    ("a call id Bedrock refuses: one hash for the call and its result",
     chat(USER, {"role": "assistant", "content": None, "tool_calls": [call("call/1ä", "f")]},
          {"role": "tool", "tool_call_id": "call/1ä", "content": "r"}, USER, tools=[function("f")]),
     NOVA, {}, []),
    ("a text document and its title as the name",
     messages({"role": "user", "content": [
         {"type": "document", "title": "Q3: report/final", "source": {"type": "text", "media_type": "text/plain",
                                                                      "data": "notes"}},
         {"type": "document", "title": "Q3: report/final", "source": {"type": "base64", "media_type": "text/csv",
                                                                      "data": "YSxi"}}, {"type": "text", "text": "?"}]}),
     NOVA, {"messages": [{"content": [
         {"document": {"format": "txt", "name": "Q3 report final", "source": {"bytes": base64.b64encode(b"notes").decode()}}},
         {"document": {"format": "csv", "name": "Q3 report final 2", "source": {"bytes": "YSxi"}}}, {"text": "?"}]}]},
     []),
    ("a JSON schema answer as outputConfig.textFormat",
     chat(response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA, "strict": True}}),
     NOVA, {"outputConfig": {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {
         "schema": orjson.dumps(SCHEMA).decode(), "name": "city"}}}}}, []),
    ("any JSON object", chat(response_format={"type": "json_object"}),
     NOVA, {"outputConfig": {"textFormat": {"structure": {"jsonSchema": {
         "schema": '{"type":"object","properties":{}}', "name": "answer"}}}}}, []),
    ("string metadata as requestMetadata; the user and OpenAI's hints noted",
     chat(metadata={"team": "a"}, user="u-1", seed=7, parallel_tool_calls=False, tools=[function("f")]),
     NOVA, {"requestMetadata": {"team": "a"}}, ["user", "parallel_tool_calls", "seed"]),
    ("a Responses caller: instructions, input and its cap",
     responses(instructions="S", input="hello", max_output_tokens=64),
     NOVA, {"system": [{"text": "S"}], "messages": [{"role": "user", "content": [{"text": "hello"}]}],
            "inferenceConfig": {"maxTokens": 64}}, []),
    ("a Gemini caller: a function's response object as json, its generationConfig",
     gemini({"role": "user", "parts": [{"text": "q"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"x": 1}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"output": 2}}}]},
            tools=[{"functionDeclarations": [{"name": "f", "parametersJsonSchema": SCHEMA}]}],
            generationConfig={"maxOutputTokens": 30, "stopSequences": ["X"]}),
     NOVA, {"messages": [{}, {"content": [{"toolUse": {"name": "f", "input": {"x": 1}}}]},
                         {"content": [{"toolResult": {"content": [{"json": {"output": 2}}]}}]}],
            "inferenceConfig": {"maxTokens": 30, "stopSequences": ["X"]}}, []),
]


def written(caller: str, body: dict, model: str = NOVA) -> tuple[dict, Notes]:
    notes = Notes()
    conversation = codec_of(caller).decode_request(body, notes)
    return CODEC.encode_request(conversation, Target(model, 4096, False), notes), notes


@pytest.mark.parametrize("request_, model, expected, dropped", [row[1:] for row in ENCODE_ROWS],
                         ids=[row[0] for row in ENCODE_ROWS])
def test_encode_rule(request_, model, expected, dropped):
    out, notes = written(*request_, model)
    contains(valid_request(out), expected)
    assert notes.dropped == dropped
    assert "model" not in out                     # the path names it


def test_ids_bedrock_refuses_pair_the_call_with_its_result():
    out, _ = written(*ENCODE_ROWS[[row[0] for row in ENCODE_ROWS].index(
        "a call id Bedrock refuses: one hash for the call and its result")][1])
    use, result = out["messages"][1]["content"][0]["toolUse"], out["messages"][2]["content"][0]["toolResult"]
    assert out["messages"][2]["content"][1] == {"text": "hi"}      # the result leads its user turn
    assert use["toolUseId"] == result["toolUseId"] != "call/1ä" and use["toolUseId"].startswith("tooluse_")


def test_a_defaulted_cap_is_named():
    _, notes = written(*chat(USER, reasoning_effort="medium"), CLAUDE)
    assert notes.defaulted == ["inferenceConfig.maxTokens"]
    _, notes = written(*chat(USER))
    assert notes.defaulted == []                  # Bedrock needs no cap: the model's own applies


REFUSED_ROWS = [  # (name, (caller, body), the field named)
    ("an image by URL (Bedrock takes bytes only)",
     chat({"role": "user", "content": [{"type": "text", "text": "a"},
                                       {"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]}),
     "messages[0].content[1]"),
    ("an image by URL, a Responses caller's", responses(input=[{"role": "user", "content": [
        {"type": "input_text", "text": "a"}, {"type": "input_image", "image_url": "https://x/a.png"}]}]),
     "input[0].content[1]"),
    ("an image of a type Bedrock does not read",
     messages({"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/bmp",
                                                                        "data": PNG}}]}), "messages[0].content[0]"),
    ("a document by URL", messages({"role": "user", "content": [
        {"type": "document", "source": {"type": "url", "url": "https://x/r.pdf"}}]}), "messages[0].content[0]"),
    ("audio", chat({"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "UklG",
                                                                                       "format": "wav"}}]}),
     "messages[0].content[0]"),
    ("several answers", chat(n=2), "n"),
    ("a temperature outside 0..1", chat(temperature=1.5), "temperature"),
    ("a conversation that starts with the assistant", chat({"role": "assistant", "content": "hello"}), "messages"),
    ("a tool name Bedrock refuses", chat(tools=[function("mcp.server.tool")]), "tools[0]"),
]


@pytest.mark.parametrize("request_, field", [row[1:] for row in REFUSED_ROWS], ids=[row[0] for row in REFUSED_ROWS])
def test_refused_rule(request_, field):
    with pytest.raises(Refused) as refused:
        written(*request_)
    assert refused.value.field == field
    assert field in refused.value.message or "[" not in field      # a block's place is named in the message too


# --- answers: Converse's JSON read back and written for each caller ----------------------------

def heard_in_json(caller: str, body: dict) -> tuple[str, list[tuple], tuple[int, int, int], str]:
    """What a caller reads in its dialect's JSON answer, checked with its SDK's type: the
    text, the calls (name, input), the usage (prompt, output, cached) and the stop."""
    read = SDK_TYPES[caller].model_validate(body)
    if caller == "chat":
        message, usage = read.choices[0].message, read.usage
        return message.content or "", [(c.function.name, orjson.loads(c.function.arguments))
                                       for c in message.tool_calls or ()], (
            usage.prompt_tokens, usage.completion_tokens, usage.prompt_tokens_details.cached_tokens), \
            read.choices[0].finish_reason
    if caller == "messages":
        usage = body["usage"]
        return "".join(b.text for b in read.content if b.type == "text"), \
            [(b.name, b.input) for b in read.content if b.type == "tool_use"], (
            usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"],
            usage["output_tokens"], usage["cache_read_input_tokens"]), read.stop_reason
    return read.output_text, [(item.name, orjson.loads(item.arguments)) for item in read.output
                              if item.type == "function_call"], (
        read.usage.input_tokens, read.usage.output_tokens, read.usage.input_tokens_details.cached_tokens), read.status


def bridge(caller: str) -> Bridge:
    return Bridge(CALLERS[caller][0], CALLERS[caller][1], "bedrock", CODEC)


STOPPED = {"chat": {END: "stop", TOOL_USE: "tool_calls", LENGTH: "length"},
           "messages": {END: "end_turn", TOOL_USE: "tool_use", LENGTH: "max_tokens"},
           "responses": {END: "completed", TOOL_USE: "completed", LENGTH: "incomplete"}}
MOCK_ANSWERS = {  # the mock's answer, and what any caller hears: text, calls, (prompt, output, cached), stop
    "text": (ConverseAnswer("Hello, mock! Ünïcödé.", "end_turn", ReportedUsage(12, 0, 0, 9)),
             ("Hello, mock! Ünïcödé.", [], (12, 9, 0), END)),
    "a tool call": (ConverseAnswer("Paris", "tool_use", ReportedUsage(20, 0, 0, 5), tool="lookup"),
                    ("", [("lookup", {"text": "Paris"})], (20, 5, 0), TOOL_USE)),
    "cache reads and writes counted in the prompt": (
        ConverseAnswer("ok", "end_turn", ReportedUsage(4, 60, 40, 2), cache_reported=True),
        ("ok", [], (104, 2, 60), END)),
    "cut at the cap": (ConverseAnswer("Hel", "max_tokens", ReportedUsage(3, 0, 0, 1)), ("Hel", [], (3, 1, 0), LENGTH)),
}


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("case", MOCK_ANSWERS)
def test_the_mocks_converse_answer_is_read_back(case, caller):
    mock, (text, calls, usage, stop) = MOCK_ANSWERS[case]
    body = orjson.loads(converse_json(mock, 317))
    out = bridge(caller).response(body, CALLERS[caller][2])
    assert heard_in_json(caller, out) == (text, calls, usage, STOPPED[caller][stop])


@pytest.mark.parametrize("caller", CALLERS)
def test_the_recorded_answer_is_read_back(caller):
    body = orjson.loads(recording("bedrock-converse.yaml")["response"]["body"])
    notes = Notes()
    out = bridge(caller).response(body, CALLERS[caller][2], notes)
    text, _, usage, _ = heard_in_json(caller, out)
    assert text == body["output"]["message"]["content"][0]["text"] and usage == (12, 56, 0)
    assert notes.dropped == [] and out["model"] == CALLERS[caller][2]["model"]   # Bedrock names no model


DECODE_ANSWER_ROWS = [  # (name, answer body, fragment of the Answer, notes.dropped)
    ("Claude's signed reasoning and redacted reasoning",
     {"output": {"message": {"role": "assistant", "content": [
         {"reasoningContent": {"reasoningText": {"text": "hm", "signature": SIGNATURE}}},
         {"reasoningContent": {"redactedContent": "cmVk"}}, {"text": "A"}]}}, "stopReason": "end_turn"},
     {"content": [{"type": "thinking", "thinking": "hm", "signature": SIGNATURE, "origin": "anthropic"},
                  {"type": "redacted_thinking", "data": "cmVk", "origin": "anthropic"}, {"type": "text", "text": "A"}],
      "stop": END}, []),
    ("unsigned reasoning (another vendor's model) is Bedrock's",
     {"output": {"message": {"content": [{"reasoningContent": {"reasoningText": {"text": "hm"}}}]}},
      "stopReason": "end_turn"},
     {"content": [{"type": "thinking", "thinking": "hm", "signature": "", "origin": "bedrock"}]}, []),
    ("a stop sequence Claude names", {"output": {"message": {"content": [{"text": "a"}]}}, "stopReason": "stop_sequence",
                                      "additionalModelResponseFields": {"stop_sequence": "END"}},
     {"stop": STOP_SEQUENCE, "stop_sequence": "END"}, []),
    ("a guardrail's intervention is a filtered answer",
     {"output": {"message": {"content": [{"text": "Sorry."}]}}, "stopReason": "guardrail_intervened"},
     {"stop": CONTENT_FILTER}, []),
    ("a malformed call ends the answer, noted",
     {"output": {"message": {"content": [{"text": "a"}]}}, "stopReason": "malformed_tool_use"},
     {"stop": END}, ["stopReason=malformed_tool_use"]),
    ("a cited text is its text; the citations and unknown blocks are noted",
     {"output": {"message": {"content": [
         {"citationsContent": {"content": [{"text": "cited"}], "citations": [{"title": "t"}]}},
         {"image": {"format": "png", "source": {"bytes": PNG}}}]}}, "stopReason": "end_turn",
      "serviceTier": {"type": "priority"}},
     {"content": [{"type": "text", "text": "cited"}], "service_tier": "priority"},
     ["content[].citationsContent.citations", "content[].image"]),
]


@pytest.mark.parametrize("body, expected, dropped", [row[1:] for row in DECODE_ANSWER_ROWS],
                         ids=[row[0] for row in DECODE_ANSWER_ROWS])
def test_decode_answer_rule(body, expected, dropped):
    notes = Notes()
    answer = converse_answer.decode(body, codec_of("chat").decode_request(CALLERS["chat"][2], Notes(), False), notes)
    contains({name: getattr(answer, name) for name in Answer.__slots__}, expected)
    assert notes.dropped == dropped


def test_a_shortened_tool_name_is_the_callers_again():
    long = "t" * 70
    request = {"model": "gpt-x", "messages": [USER], "tools": [function(long)]}
    out, _ = written("chat", request)
    sent = out["toolConfig"]["tools"][0]["toolSpec"]["name"]
    body = {"output": {"message": {"content": [{"toolUse": {"toolUseId": "t1", "name": sent, "input": {}}}]}},
            "stopReason": "tool_use", "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}}
    answer = bridge("chat").response(body, request)
    assert answer["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == long


def test_signed_thinking_reaches_a_messages_caller_signed():
    body = DECODE_ANSWER_ROWS[0][1]
    out = bridge("messages").response(body, CALLERS["messages"][2])
    assert out["content"][0] == {"type": "thinking", "thinking": "hm", "signature": SIGNATURE}
    assert out["content"][1] == {"type": "redacted_thinking", "data": "cmVk"}


# --- errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("status, body, kind, message", [
    (400, {"message": "The provided model identifier is invalid."}, "invalid_request_error",
     "The provided model identifier is invalid."),
    (403, {"Message": "Authorization header is missing"}, "permission_error", "Authorization header is missing"),
    (404, {"message": "Not here."}, "not_found_error", "Not here."),
    (424, {"message": "The model failed."}, "api_error", "The model failed."),
    (429, {"message": "Too many requests."}, "rate_limit_error", "Too many requests."),
    (500, None, "api_error", "The provider answered 500."),
    (503, {"message": "Unavailable."}, "overloaded_error", "Unavailable."),
    (400, {"type": "error", "error": {"type": "invalid_request_error", "message": "Claude says no."}},
     "invalid_request_error", "Claude says no.")])
def test_decode_error_rule(status, body, kind, message):
    assert CODEC.decode_error(status, body) == Problem(kind, message)


def test_the_recorded_error_reaches_each_caller_in_its_shape():
    recorded = recording("bedrock-converse-error-validation.yaml")["response"]
    status, body = recorded["code"], orjson.loads(recorded["body"])
    chat_status, chat_body = bridge("chat").error(status, body)
    assert chat_status == 400 and orjson.loads(chat_body)["error"]["message"] == "The provided model identifier is invalid."
    _, messages_body = bridge("messages").error(status, body)
    assert orjson.loads(messages_body)["error"] == {"type": "invalid_request_error",
                                                   "message": "The provided model identifier is invalid."}
    assert CODEC.encode_error(0, Problem("rate_limit_error", "Slow.")) == (429, b'{"message":"Slow."}')
    assert CODEC.encode_error(529, Problem("overloaded_error", "Busy."))[0] == 503


# --- streams: ConverseStream's event stream, message by message --------------------------------

def stream_messages(raw: bytes) -> list[tuple[dict | None, bytes, bytes]]:
    """The (data, name, raw) the gateway's framing hands a stream translation, one per message."""
    out = []
    for message in EventStreamDecoder().feed(raw):
        name = message.headers.get(":exception-type") or message.headers.get(":event-type") or ""
        data = orjson.loads(message.payload) if message.payload else None
        out.append((data if isinstance(data, dict) else None, str(name).encode(), message.payload))
    return out


def through(caller: str, raw: bytes, notes: Notes | None = None) -> bytes:
    stream = bridge(caller).stream(CALLERS[caller][2], notes)
    return b"".join(stream.event(*message) for message in stream_messages(raw)) + stream.end()


RECORDED_STREAM = base64.b64decode(recording("bedrock-converse-stream.yaml")["response"]["body"])


def recorded_text() -> str:
    return "".join(data["delta"]["text"] for data, name, _ in stream_messages(RECORDED_STREAM)
                   if name == b"contentBlockDelta")


@pytest.mark.parametrize("caller", CALLERS)
def test_the_recorded_stream_is_heard_whole(caller):
    metadata = [data for data, name, _ in stream_messages(RECORDED_STREAM) if name == b"metadata"][0]
    assert all("p" in data for data, _, _ in stream_messages(RECORDED_STREAM))      # padded: ignored
    usage = metadata["usage"]
    notes = Notes()
    heard = HEARD_IN[caller](through(caller, RECORDED_STREAM, notes))
    assert heard == Heard(recorded_text(), "", [], usage["inputTokens"], usage["outputTokens"], False)
    assert recorded_text().startswith("To find the sum") and notes.dropped == []


def test_the_recorded_stream_ends_a_chat_stream_with_stop_and_usage():
    chunks = [orjson.loads(line[6:]) for line in through("chat", RECORDED_STREAM).split(b"\n\n")
              if line.startswith(b"data: {")]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["usage"]["prompt_tokens"] == 12 and chunks[-1]["usage"]["total_tokens"] == 12 + \
        chunks[-1]["usage"]["completion_tokens"]


def mock_stream(answer: ConverseAnswer, exception: str | None = None) -> bytes:
    """The mock's event stream of an answer, its text (a call's input JSON) in pieces of 4."""
    said = orjson.dumps({"text": answer.text}).decode() if answer.tool else answer.text
    pieces = [said[i:i + 4] for i in range(0, len(said), 4)]
    events = converse_events(answer, pieces, 99)
    return b"".join(frames_of(events, exception, first_of(events, "contentBlockDelta")))


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("case", MOCK_ANSWERS)
def test_the_mocks_stream_is_heard_whole(case, caller):
    mock, (text, calls, (prompt, output, _), _) = MOCK_ANSWERS[case]
    heard = HEARD_IN[caller](through(caller, mock_stream(mock)))
    assert heard.text == text and [(name, arguments) for _, name, arguments in heard.calls] == calls
    assert (heard.prompt_tokens, heard.output_tokens, heard.failed) == (prompt, output, False)


@pytest.mark.parametrize("exception, kind", [
    ("throttlingException", "rate_limit_error"), ("validationException", "invalid_request_error"),
    ("modelStreamErrorException", "api_error"), ("serviceUnavailableException", "overloaded_error"),
    ("internalServerException", "api_error"), ("modelTimeoutException", "timeout_error")])
def test_an_exception_frame_is_an_error(exception, kind):
    raw = mock_stream(MOCK_ANSWERS["text"][0], exception)
    decoder = CODEC.stream_decoder(codec_of("chat").decode_request(CALLERS["chat"][2], Notes(), False), Notes())
    events = [event for message in stream_messages(raw) for event in decoder.read(*message)]
    assert [event.kind for event in events] == ["start", "block", "delta", "error"]
    assert events[-1].problem.kind == kind and events[-1].problem.message
    assert decoder.end() == [] and decoder.read({"role": "assistant"}, b"messageStart", b"") == []
    for caller in ("chat", "messages"):
        assert HEARD_IN[caller](through(caller, raw)).failed
    # (OpenAI's SDK types know no code for an invalid request mid-stream: the event is read as written.)
    assert b"event: response.failed" in through("responses", raw)


@pytest.mark.parametrize("last", ["contentBlockDelta", "contentBlockStop"])
def test_a_cut_stream_is_an_error_to_every_caller(last):
    messages_ = stream_messages(RECORDED_STREAM)
    cut = max(i for i, (_, name, _) in enumerate(messages_) if name.decode() == last)
    raw = b"".join(frame for frame in _frames(RECORDED_STREAM)[:cut + 1])
    for caller in CALLERS:
        assert HEARD_IN[caller](through(caller, raw)).failed


def test_a_stream_without_its_metadata_is_whole():
    frames = _frames(RECORDED_STREAM)
    decoder = CODEC.stream_decoder(codec_of("chat").decode_request(CALLERS["chat"][2], Notes(), False), Notes())
    events = [event for message in stream_messages(b"".join(frames[:-1])) for event in decoder.read(*message)]
    assert events[-1].kind == "stop" and events[-1].stop == END
    assert [event.kind for event in decoder.end()] == ["end"]


def _frames(raw: bytes) -> list[bytes]:
    out, at = [], 0
    while at < len(raw):
        total = int.from_bytes(raw[at:at + 4], "big")
        out.append(raw[at:at + total])
        at += total
    return out


def frame(event_type: str, payload: dict) -> tuple[dict, bytes, bytes]:
    return {**payload, "p": "abc"}, event_type.encode(), b""


THINKING_STREAM = [
    frame("messageStart", {"role": "assistant"}),
    frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Let me "}}}),
    frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "think."}}}),
    frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": SIGNATURE}}}),
    frame("contentBlockStop", {"contentBlockIndex": 0}),
    frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "Calling."}}),
    frame("contentBlockStop", {"contentBlockIndex": 1}),
    frame("contentBlockStart", {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "f"}}}),
    frame("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '{"a":'}}}),
    frame("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": "1}"}}}),
    frame("contentBlockStop", {"contentBlockIndex": 2}),
    frame("messageStop", {"stopReason": "tool_use"}),
    frame("metadata", {"usage": {"inputTokens": 10, "outputTokens": 20, "totalTokens": 130,
                                 "cacheReadInputTokens": 100}, "metrics": {"latencyMs": 5}}),
]


def test_a_thinking_stream_with_a_call_reaches_a_messages_caller_signed():
    stream = bridge("messages").stream(CALLERS["messages"][2])
    out = b"".join(stream.event(*message) for message in THINKING_STREAM) + stream.end()
    assert heard_in_messages(out) == Heard("Calling.", "Let me think.", [("tooluse_1", "f", {"a": 1})], 110, 20, False)
    assert b'"signature_delta","signature":"' + SIGNATURE.encode() in out
    chat_out = b"".join(bridge("chat").stream(CALLERS["chat"][2]).event(*m) for m in THINKING_STREAM)
    assert heard_in_chat(chat_out).calls == [("tooluse_1", "f", {"a": 1})]


# --- a Bedrock caller: the answer and the stream written, read back the same --------------------

def test_an_answer_written_for_a_bedrock_caller_reads_back_the_same():
    head = codec_of("chat").decode_request(CALLERS["chat"][2], Notes(), False)
    answer = Answer(content=[{"type": "thinking", "thinking": "hm", "signature": SIGNATURE, "origin": "anthropic"},
                             {"type": "text", "text": "A"},
                             {"type": "tool_use", "id": "tooluse_1", "name": "f", "input": {"a": 1}}],
                    stop=TOOL_USE, usage=Usage(110, 20, cached_tokens=100))
    body = valid(SERVICE.operation_model("Converse").output_shape, CODEC.encode_answer(answer, head))
    assert body["usage"] == {"inputTokens": 10, "outputTokens": 20, "totalTokens": 130, "cacheReadInputTokens": 100,
                             "cacheWriteInputTokens": 0}
    back = CODEC.decode_answer(body, head, Notes())
    assert (back.content, back.stop, back.usage) == (answer.content, answer.stop, answer.usage)


def test_a_stream_written_for_a_bedrock_caller_reads_back_the_same():
    head = codec_of("chat").decode_request(CALLERS["chat"][2], Notes(), False)
    decoder = CODEC.stream_decoder(head, None)
    events = [event for message in THINKING_STREAM for event in decoder.read(*message)]
    encoder = CODEC.stream_encoder(head, None)
    encoder.cost_usd = 0.5
    raw = b"".join(encoder.write(event) for event in events)
    assert encoder.write(Event("end")) == b""                  # nothing after the end
    again = stream_messages(raw)
    assert [name for _, name, _ in again] == [name for _, name, _ in THINKING_STREAM]
    output = SERVICE.shape_for("ConverseStreamOutput")
    for data, name, _ in again:
        if name == b"metadata":
            assert data["usage"].pop("cost_usd") == 0.5        # the call's cost, as the gateway adds it
        valid(output.members[name.decode()], data)
    decoder = CODEC.stream_decoder(head, None)
    read_back = [event for message in again for event in decoder.read(*message)]
    assert [repr(event) for event in read_back] == [repr(event) for event in events]


@pytest.mark.parametrize("kind, exception", [
    ("rate_limit_error", "throttlingException"), ("overloaded_error", "serviceUnavailableException"),
    ("invalid_request_error", "validationException"), ("api_error", "internalServerException"),
    ("billing_error", "modelStreamErrorException")])
def test_an_error_ends_a_bedrock_callers_stream_with_its_exception(kind, exception):
    head = codec_of("chat").decode_request(CALLERS["chat"][2], Notes(), False)
    encoder = CODEC.stream_encoder(head, None)
    encoder.write(Event("start"))
    (message,) = EventStreamDecoder().feed(encoder.write(Event("error", problem=Problem(kind, "No."))))
    assert message.headers[":message-type"] == "exception" and message.headers[":exception-type"] == exception
    assert orjson.loads(message.payload) == {"message": "No."} and encoder.write(Event("end")) == b""
    assert converse_answer.exception_problem(exception.encode(), {"message": "No."}).kind == \
        (kind if kind != "billing_error" else "api_error")
