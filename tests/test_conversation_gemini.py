"""Google's Gemini dialect (dialects/google/), generateContent both ways.

One table row per rule: a Gemini caller's body read into the conversation model (what it
cannot hold refused naming its field), the model written as a Gemini request for another
dialect's caller, Gemini answers, errors and streams read and written. A Gemini body
written back as Gemini keeps its contents, signatures, calls, responses, system, tools
and generationConfig. Every Gemini recording (JSON and SSE) is read by the Gemini codec
and written for each other dialect's caller, checked with their SDKs' types; the other
way, a chat or messages caller's request is written for Gemini and the mock's Gemini
answers are read back; everything written in Gemini's shape is checked with google-genai's
types. A property test holds that text, tool calls, thinking and usage survive Gemini
and each other dialect, in JSON and in streams."""

from __future__ import annotations

import base64
from dataclasses import asdict
from typing import Any

import orjson
import pytest
from anthropic.types import Message
from google.genai import types
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from extproc.api.usage import Usage
from extproc.dialects import codec_of
from extproc.dialects.google import gemini_answer, gemini_request, gemini_stream
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
    Event,
    Notes,
    Problem,
    Reasoning,
    Refused,
    Target,
    ToolChoice,
)
from extproc.dialects.google.dialect import GEMINI, GenerateContent
from extproc.mock.gemini_shapes import GeminiAnswer, response_json, sse_frames, stream_chunks
from extproc.translate.bridge import Bridge
from test_conversation_streams import (
    RECORDINGS,
    Heard,
    anthropic_stream_of,
    chat_stream_of,
    heard_in_chat,
    heard_in_messages,
    heard_in_responses,
)
from test_conversation_streams import recorded as recorded_stream
from translation_cases import ABSENT, cassette, contains, sse_events

CODEC = GenerateContent()
CHAT, MESSAGES, RESPONSES = codec_of("chat"), codec_of("messages"), codec_of("responses")
# Each other caller: its dialect's name, codec, and a request of it (the head its answer is read with).
CALLERS = {
    "chat": ("openai", CHAT, {"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}], "stream": True,
                              "stream_options": {"include_usage": True}}),
    "messages": ("anthropic", MESSAGES, {"model": "claude-x", "max_tokens": 100, "stream": True,
                                         "messages": [{"role": "user", "content": "hi"}]}),
    "responses": ("openai", RESPONSES, {"model": "gpt-x", "input": "hi", "stream": True}),
}
# Each other provider: its dialect's name and codec.
PROVIDERS = {"chat": ("openai", CHAT), "messages": ("anthropic", MESSAGES), "responses": ("openai-responses", RESPONSES)}
SDK_TYPES = {"chat": ChatCompletion, "messages": Message, "responses": Response}
HEARD_IN = {"chat": heard_in_chat, "messages": heard_in_messages, "responses": heard_in_responses}
FLASH = "gemini-2.5-flash"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
SIGNATURE = "CtICAdHtim9BiyFrJTR8wDY7/ya4zvN0E7f/NCDBmJdBIPp4X8GlhEBD1aYLPwTQyE6WXqDOxwHUJaTe4J8t"


def provider_recording(name: str) -> list[dict]:
    return cassette(f"provider-recordings/{name}")


def user(*parts: Any) -> dict:
    return {"role": "user", "parts": [{"text": part} if isinstance(part, str) else part for part in parts]}


def model(*parts: Any) -> dict:
    return {"role": "model", "parts": [{"text": part} if isinstance(part, str) else part for part in parts]}


def gemini(*contents: dict, **fields: Any) -> dict:
    return {"contents": list(contents) or [user("hi")], **fields}


def call(name: str, signature: str | None = None, id: str | None = None, **args: Any) -> dict:
    part: dict = {"functionCall": {"name": name, "args": args, **({"id": id} if id else {})}}
    if signature:
        part["thoughtSignature"] = signature
    return part


def result(name: str, response: dict, id: str | None = None) -> dict:
    return {"functionResponse": {"name": name, "response": response, **({"id": id} if id else {})}}


def decoded(body: dict, whole: bool = True, notes: Notes | None = None) -> dict:
    return asdict(gemini_request.decode(body, notes or Notes(), whole))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- google-genai's types: what is written in Gemini's shape is what its SDK reads ----------

def sdk_answer(body: dict) -> types.GenerateContentResponse:
    """An answer or stream chunk as the SDK's type (strict: no field it does not know; the
    gateway's cost_usd, which the SDK drops as it reads, set apart)."""
    body = orjson.loads(orjson.dumps(body))
    (body.get("usageMetadata") or {}).pop("cost_usd", None)
    return types.GenerateContentResponse.model_validate(body)


REQUEST_TYPES = {"contents": types.Content, "systemInstruction": types.Content, "tools": types.Tool,
                 "toolConfig": types.ToolConfig, "generationConfig": types.GenerationConfig,
                 "safetySettings": types.SafetySetting}


def valid_request(body: dict) -> dict:
    """A generateContent body, each field checked with the SDK's type (no `model`: it goes in the path)."""
    assert set(body) <= set(REQUEST_TYPES), f"unknown fields: {set(body) - set(REQUEST_TYPES)}"
    for name, value in body.items():
        for item in value if isinstance(value, list) else [value]:
            REQUEST_TYPES[name].model_validate(item)
    return body


def test_the_sdk_types_are_strict():
    with pytest.raises(ValueError):
        valid_request({"contents": [{"role": "user", "parts": [{"txt": "a"}]}]})
    with pytest.raises(ValueError):
        sdk_answer({"candidates": [], "usage": {}})


# --- the dialect and the codec's reading of bodies ------------------------------------------

@pytest.mark.parametrize("status, name", [
    (400, "INVALID_ARGUMENT"), (401, "UNAUTHENTICATED"), (403, "PERMISSION_DENIED"), (404, "NOT_FOUND"),
    (409, "ABORTED"), (413, "INVALID_ARGUMENT"), (429, "RESOURCE_EXHAUSTED"), (499, "CANCELLED"), (500, "INTERNAL"),
    (501, "NOT_IMPLEMENTED"), (503, "UNAVAILABLE"), (504, "DEADLINE_EXCEEDED")])
def test_the_dialect_writes_google_errors(status, name):
    body = GEMINI.error_body(status, "No.", "invalid_request_error", None, "req-1")
    assert orjson.loads(body) == {"error": {"code": status, "message": "No.", "status": name}}


def test_the_dialect():
    assert (GEMINI.name, GEMINI.generation_kind, GEMINI.described) == ("gemini", "generate_content",
                                                                     "Google's Gemini API")
    assert GEMINI.reports_stream_usage and "x-goog-api-key" in GEMINI.key_hint and "?key=" in GEMINI.key_hint
    event = GEMINI.error_event("Blocked.", "content_blocked")
    assert event.startswith(b"data: {") and event.endswith(b"}\r\n\r\n")
    assert orjson.loads(event[len(b"data: "):])["error"]["message"] == "Blocked."
    listed = orjson.loads(GEMINI.model_list([GEMINI.model_entry(FLASH, 1700000000)]))
    entry = listed["models"][0]
    assert entry["name"] == f"models/{FLASH}" and entry["displayName"] == FLASH
    assert "generateContent" in entry["supportedGenerationMethods"]
    assert GEMINI.serves(FLASH) and not GEMINI.serves("gpt-4o") and not GEMINI.serves("claude-sonnet-4-6")
    assert GEMINI.attempt_headers({"x-goog-api-key": "k"}) == ({}, [], [])
    assert codec_of("generate_content").kind == CODEC.kind == "generate_content"


def test_the_codec_reads_what_the_gateway_counts_and_guards():
    body = gemini(user("a", {"inlineData": {"mimeType": "image/png", "data": "iVBO"}}),
                  model({"text": "t", "thought": True}, "b", call("f", x=1)),
                  systemInstruction={"parts": [{"text": "s"}]},
                  generationConfig={"maxOutputTokens": 50, "candidateCount": 2},
                  tools=[{"functionDeclarations": [{"name": "f"}, {"name": "g"}]}, {"googleSearch": {}}])
    assert CODEC.generates and CODEC.charges_output and CODEC.answers_in_json and CODEC.streams
    assert CODEC.operation == "chat" and CODEC.provider_path is None
    texts, turns = CODEC.prompt_texts(body)
    assert texts[0] == "s" and {"a", "b"} <= set(texts) and turns == 2
    assert CODEC.max_output_tokens(body) == 50 and CODEC.max_output_tokens(gemini()) is None
    assert CODEC.with_output_cap(gemini(), 70)["generationConfig"] == {"maxOutputTokens": 70}
    assert CODEC.answers_per_request(body) == 2 and CODEC.answers_per_request(gemini()) == 1
    assert CODEC.tool_names(body) == ["f", "g"]
    CODEC.remove_tools(body, ["f"])
    assert body["tools"] == [{"functionDeclarations": [{"name": "g"}]}, {"googleSearch": {}}]
    called = orjson.loads(provider_recording("gemini-function-calling.yaml")[0]["response"]["body"])
    assert CODEC.called_tools(called) == ["secret_retrieval_tool", "secret_retrieval_tool"]
    assert CODEC.usage_from_response(called) == Usage(70, 40 + 76, reasoning_tokens=76)
    cached = {"usageMetadata": {"promptTokenCount": 100, "cachedContentTokenCount": 60, "candidatesTokenCount": 5}}
    assert CODEC.usage_from_response(cached) == Usage(100, 5, cached_tokens=60)
    assert CODEC.usage_from_response({"candidates": []}) is None


def test_the_codec_reads_a_recorded_stream_chunk_by_chunk():
    first, last = (data for data, _, _ in sse_events(recorded_stream("provider-recordings/gemini-stream-sse.yaml")))
    assert list(CODEC.generated_texts(first))[0].startswith("To find the sum")
    assert CODEC.usage_from_event(first, None) == Usage(13, 50 + 75, reasoning_tokens=75)
    assert CODEC.usage_from_event(last, None) == Usage(13, 63 + 75, reasoning_tokens=75)     # cumulative: the last
    so_far = Usage(1, 2)
    assert CODEC.usage_from_event({"candidates": []}, so_far) is so_far
    assert list(CODEC.generated_texts({"candidates": [{"content": {"parts": [call("f")]}}]})) == []


# --- requests: what a Gemini caller's body becomes ----------------------------------------

DECODE_ROWS = [  # (name, body, fragment of the Conversation)
    ("text turns of the user and the model; systemInstruction is the system",
     gemini(user("q"), model("a"), user("q2"), systemInstruction={"role": "user", "parts": [{"text": "S"}]}),
     {"dialect": "gemini", "model": None, "system": [{"type": "text", "text": "S"}],
      "turns": [{"role": "user", "content": [{"type": "text", "text": "q"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "a"}]},
                {"role": "user", "content": [{"type": "text", "text": "q2"}]}],
      "include_usage": True, "candidates": 1}),
    ("a content without a role is the user's", gemini({"parts": [{"text": "q"}]}),
     {"turns": [{"role": "user", "content": [{"type": "text", "text": "q"}]}]}),
    ("inline data by its mime type: an image, a PDF, a text document, audio",
     gemini(user({"inlineData": {"mimeType": "image/png", "data": "iVBO"}},
                 {"inlineData": {"mimeType": "application/pdf", "data": "JVBE"}},
                 {"inlineData": {"mimeType": "text/plain", "data": b64("notes")}},
                 {"inlineData": {"mimeType": "audio/wav", "data": "UklG"}})),
     {"turns": [{"content": [
         {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
         {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}},
         {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}},
         {"type": "audio", "format": "wav", "data": "UklG"}]}]}),
    ("fileData by URL: an image or a document from a url source",
     gemini(user({"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x/cat.jpg"}},
                 {"fileData": {"mimeType": "application/pdf", "fileUri": "https://x/r.pdf"}})),
     {"turns": [{"content": [{"type": "image", "source": {"type": "url", "url": "https://x/cat.jpg"}},
                             {"type": "document", "source": {"type": "url", "url": "https://x/r.pdf"}}]}]}),
    ("calls without ids get ids their responses pair with, by name and in order",
     gemini(user("q"), model(call("f", x=1), call("g"), call("f", x=2)),
            user(result("f", {"output": 1}), result("g", {"output": "g"}), result("f", {"output": 2}))),
     {"turns": [{}, {"content": [{"type": "tool_use", "name": "f", "input": {"x": 1}},
                                 {"type": "tool_use", "name": "g", "input": {}},
                                 {"type": "tool_use", "name": "f", "input": {"x": 2}}]},
                {"content": [{"type": "tool_result", "name": "f", "content": '{"output":1}'},
                             {"type": "tool_result", "name": "g", "content": '{"output":"g"}'},
                             {"type": "tool_result", "name": "f", "content": '{"output":2}'}]}]}),
    ("ids Gemini gave are kept", gemini(model(call("f", id="c-1")), user(result("f", {"output": 1}, id="c-1"))),
     {"turns": [{"content": [{"type": "tool_use", "id": "c-1", "name": "f"}]},
                {"content": [{"type": "tool_result", "tool_use_id": "c-1", "name": "f"}]}]}),
    ("a response holding only an error is a failed call's result",
     gemini(model(call("f")), user(result("f", {"error": "boom"}))),
     {"turns": [{}, {"content": [{"type": "tool_result", "content": '{"error":"boom"}', "is_error": True}]}]}),
    ("a thought is thinking of Gemini's; a thoughtSignature signs its part's block",
     gemini(user("q"), model({"text": "hm", "thought": True, "thoughtSignature": "s1"}, "A",
                             call("f", signature="s2"), {"text": "B", "thoughtSignature": "s3"})),
     {"turns": [{}, {"content": [
         {"type": "thinking", "thinking": "hm", "signature": "s1", "origin": "gemini"},
         {"type": "text", "text": "A", "signature": ABSENT},
         {"type": "tool_use", "name": "f", "signature": "s2", "origin": "gemini"},
         {"type": "text", "text": "B", "signature": "s3", "origin": "gemini"}]}]}),
    ("function declarations: parametersJsonSchema or parameters as the input schema",
     gemini(tools=[{"functionDeclarations": [
         {"name": "f", "description": "F.", "parametersJsonSchema": SCHEMA},
         {"name": "g", "parameters": {"type": "object", "properties": {}}}, {"name": "h"}]}]),
     {"tools": [{"name": "f", "description": "F.", "input_schema": SCHEMA},
                {"name": "g", "input_schema": {"type": "object", "properties": {}}},
                {"name": "h", "input_schema": {"type": "object", "properties": {}}}]}),
    ("functionCallingConfig: AUTO, NONE", gemini(toolConfig={"functionCallingConfig": {"mode": "NONE"}}),
     {"tool_choice": {"mode": "none", "name": None}}),
    ("functionCallingConfig: ANY", gemini(toolConfig={"functionCallingConfig": {"mode": "ANY"}}),
     {"tool_choice": {"mode": "any", "name": None}}),
    ("functionCallingConfig: ANY of one function is that tool",
     gemini(toolConfig={"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}}),
     {"tool_choice": {"mode": "tool", "name": "f"}}),
    ("generationConfig's sampling, cap, stop sequences and candidates",
     gemini(generationConfig={"temperature": 0.2, "topP": 0.9, "topK": 40, "maxOutputTokens": 100,
                              "stopSequences": ["END"], "candidateCount": 2}),
     {"temperature": 0.2, "top_p": 0.9, "top_k": 40, "max_output": 100, "stop": ["END"], "candidates": 2,
      "names": {"max_output": "generationConfig.maxOutputTokens", "stop": "generationConfig.stopSequences",
                "candidates": "generationConfig.candidateCount", "tool_choice": "toolConfig",
                "turns": "contents"}}),
    ("JSON answers: a responseJsonSchema", gemini(generationConfig={
        "responseMimeType": "application/json", "responseJsonSchema": SCHEMA}),
     {"answer_format": {"kind": "json_schema", "schema": SCHEMA}}),
    ("JSON answers: a responseSchema, Gemini's Schema, as JSON Schema", gemini(generationConfig={
        "responseMimeType": "application/json", "responseSchema": {
            "type": "OBJECT", "properties": {"city": {"type": "STRING", "nullable": True}}, "required": ["city"]}}),
     {"answer_format": {"kind": "json_schema", "schema": {
         "type": "object", "properties": {"city": {"type": ["string", "null"]}}, "required": ["city"]}}}),
    ("JSON answers: any object", gemini(generationConfig={"responseMimeType": "application/json"}),
     {"answer_format": {"kind": "json_object", "schema": None}}),
    ("text answers have no answer format", gemini(generationConfig={"responseMimeType": "text/plain"}),
     {"answer_format": None}),
    ("thinking: a budget, thoughts shown",
     gemini(generationConfig={"thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}}),
     {"reasoning": {"enabled": True, "budget": 1024, "hidden": False, "adaptive": False}}),
    ("thinking: budget 0 turns it off", gemini(generationConfig={"thinkingConfig": {"thinkingBudget": 0}}),
     {"reasoning": {"enabled": False}}),
    ("thinking: -1 lets the model decide; thoughts not asked for are hidden",
     gemini(generationConfig={"thinkingConfig": {"thinkingBudget": -1}}),
     {"reasoning": {"enabled": True, "adaptive": True, "budget": None, "hidden": True}}),
    ("thinking: includeThoughts false hides them", gemini(generationConfig={"thinkingConfig": {
        "thinkingBudget": 2048, "includeThoughts": False}}), {"reasoning": {"budget": 2048, "hidden": True}}),
    ("thinking: a level is an effort", gemini(generationConfig={"thinkingConfig": {"thinkingLevel": "HIGH"}}),
     {"reasoning": {"effort": "high", "budget": None}}),
    ("penalties and the seed are OpenAI's hints; safetySettings a hint; labels the metadata",
     gemini(generationConfig={"presencePenalty": 0.5, "frequencyPenalty": 0.25, "seed": 7},
            safetySettings=[{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
            labels={"team": "a"}),
     {"hints": {"presence_penalty": 0.5, "frequency_penalty": 0.25, "seed": 7,
                "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]},
      "metadata": {"team": "a"}}),
]


@pytest.mark.parametrize("body, expected", [row[1:] for row in DECODE_ROWS], ids=[row[0] for row in DECODE_ROWS])
def test_decode_rule(body, expected):
    contains(decoded(body), expected)


def test_made_up_call_ids_pair_their_responses():
    conversation = gemini_request.decode(gemini(
        user("q"), model(call("f", x=1), call("g"), call("f", x=2)),
        user(result("f", {"output": 1}), result("g", {"output": "g"}), result("f", {"output": 2})),
        model(call("f", x=3)), user(result("f", {"output": 3}))), Notes())
    calls = [block["id"] for turn in conversation.turns for block in turn["content"] if block["type"] == "tool_use"]
    results = [block["tool_use_id"] for turn in conversation.turns for block in turn["content"]
               if block["type"] == "tool_result"]
    assert calls == results and len(set(calls)) == 4
    assert all(isinstance(ident, str) and ident for ident in calls)


def test_decode_keeps_where_each_turn_and_part_stood():
    conversation = gemini_request.decode(gemini(user("q"), model("a", call("f"))), Notes())
    assert conversation.place(conversation.turns[1]) == "contents[1]"
    assert conversation.place(conversation.turns[1]["content"][1]) == "contents[1].parts[1]"


def test_gemini_schema_types_read_as_json_schema():
    """The SDK writes `parameters` in Gemini's Schema (upper-case types), as the recording
    shows; OpenAI and Anthropic read only JSON Schema's lower-case ones."""
    body = orjson.loads(provider_recording("gemini-function-calling.yaml")[0]["request"]["body"])
    schema = gemini_request.decode(body, Notes()).tools[0]["input_schema"]
    assert schema == {"type": "object", "properties": {"password": {"title": "Password", "type": "string"}},
                      "required": ["password"]}



REFUSED_ROWS = [  # (name, body, the field named)
    ("a cache only Google keeps", gemini(cachedContent="cachedContents/abc"), "cachedContent"),
    ("answers in audio", gemini(generationConfig={"responseModalities": ["TEXT", "AUDIO"]}),
     "generationConfig.responseModalities"),
    ("code Google runs", gemini(model({"executableCode": {"language": "PYTHON", "code": "1"}})),
     "contents[0].parts[0]"),
    ("code Google ran", gemini(user("q"), user({"codeExecutionResult": {"outcome": "OUTCOME_OK"}})),
     "contents[1].parts[0]"),
    ("video", gemini(user({"inlineData": {"mimeType": "video/mp4", "data": "AAAA"}})), "contents[0].parts[0]"),
    ("a file Google keeps", gemini(user({"fileData": {"mimeType": "application/pdf", "fileUri": "gs://b/r.pdf"}})),
     "contents[0].parts[0]"),
    ("a role other than user and model", gemini({"role": "system", "parts": [{"text": "x"}]}), "contents[0].role"),
    ("no contents", {"contents": []}, "contents"),
    ("several allowed functions", gemini(toolConfig={"functionCallingConfig": {
        "mode": "ANY", "allowedFunctionNames": ["f", "g"]}}), "toolConfig.functionCallingConfig.allowedFunctionNames"),
]


@pytest.mark.parametrize("body, field", [row[1:] for row in REFUSED_ROWS], ids=[row[0] for row in REFUSED_ROWS])
def test_decode_refused(body, field):
    with pytest.raises(Refused) as refused:
        gemini_request.decode(body, Notes())
    assert refused.value.field == field and refused.value.message


def test_the_head_is_read_without_turns_and_never_refused():
    body = gemini(model({"executableCode": {"code": "1"}}), cachedContent="c",
                  generationConfig={"responseMimeType": "application/json", "thinkingConfig": {"thinkingBudget": 0}},
                  tools=[{"functionDeclarations": [{"name": "f"}]}])
    head = decoded(body, whole=False)
    assert head["turns"] == [] and head["system"] == [] and head["places"] == {}
    assert head["tools"][0]["name"] == "f" and head["answer_format"]["kind"] == "json_object"
    assert head["reasoning"]["enabled"] is False and head["include_usage"]


# --- requests: the model written for a Gemini provider -------------------------------------

def to_gemini(caller: str, body: dict, notes: Notes | None = None) -> dict:
    dialect, codec, _ = CALLERS[caller]
    return valid_request(Bridge(dialect, codec, "gemini", CODEC).request(body, Target(FLASH), notes or Notes()))


def chat(*messages: dict, **fields: Any) -> dict:
    return {"model": "gpt-x", "messages": list(messages) or [{"role": "user", "content": "hi"}], **fields}


def messages(*turns: dict, **fields: Any) -> dict:
    return {"model": "claude-x", "max_tokens": 1024, "messages": list(turns) or [{"role": "user", "content": "hi"}],
            **fields}


TOOL_CALL = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
CHAT_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather.", "parameters": SCHEMA}}

ENCODE_ROWS = [  # (name, caller, caller's body, fragment of the Gemini body, notes.dropped)
    ("chat: system into systemInstruction, a call and its result; no model in the body", "chat",
     chat({"role": "system", "content": "S"}, {"role": "user", "content": "q"},
          {"role": "assistant", "content": "Let me look.", "tool_calls": [TOOL_CALL]},
          {"role": "tool", "tool_call_id": "c1", "content": "sunny"}, tools=[CHAT_TOOL]),
     {"model": ABSENT, "systemInstruction": {"parts": [{"text": "S"}]},
      "contents": [{"role": "user", "parts": [{"text": "q"}]},
                   {"role": "model", "parts": [{"text": "Let me look."},
                                               {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
                   {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                                                                    "response": {"result": "sunny"}}}]}],
      "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "Weather.",
                                           "parametersJsonSchema": SCHEMA}]}]}, []),
    ("chat: one role's turns in one content", "chat",
     chat({"role": "user", "content": "a"}, {"role": "user", "content": "b"}),
     {"contents": [{"role": "user", "parts": [{"text": "a"}, {"text": "b"}]}]}, []),
    ("chat: a system message after the first turn moves to systemInstruction, noted", "chat",
     chat({"role": "user", "content": "a"}, {"role": "developer", "content": "D"}),
     {"systemInstruction": {"parts": [{"text": "D"}]}, "contents": [{"role": "user", "parts": [{"text": "a"}]}]},
     ["messages[].role=system:moved_to_top"]),
    ("chat: an image inline by data URL, by URL as fileData", "chat",
     chat({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                                       {"type": "image_url", "image_url": {"url": "https://x/c.png"}}]}),
     {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "iVBO"}},
                              {"fileData": {"fileUri": "https://x/c.png"}}]}]}, []),
    ("chat: sampling, cap, stop, n, penalties and seed in generationConfig", "chat",
     chat(temperature=0.3, top_p=0.9, max_completion_tokens=100, stop=["END"], n=2, presence_penalty=0.5,
          frequency_penalty=0.25, seed=7),
     {"generationConfig": {"temperature": 0.3, "topP": 0.9, "maxOutputTokens": 100, "stopSequences": ["END"],
                           "candidateCount": 2, "presencePenalty": 0.5, "frequencyPenalty": 0.25, "seed": 7}}, []),
    ("chat: an effort as a thinking budget", "chat", chat(reasoning_effort="low"),
     {"generationConfig": {"thinkingConfig": {"thinkingBudget": 1024}}}, []),
    ("chat: a JSON schema as responseJsonSchema", "chat",
     chat(response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": SCHEMA}}),
     {"generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": SCHEMA}}, []),
    ("chat: any JSON object", "chat", chat(response_format={"type": "json_object"}),
     {"generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": ABSENT}}, []),
    ("chat: required is ANY", "chat", chat(tools=[CHAT_TOOL], tool_choice="required"),
     {"toolConfig": {"functionCallingConfig": {"mode": "ANY"}}}, []),
    ("chat: none is NONE", "chat", chat(tools=[CHAT_TOOL], tool_choice="none"),
     {"toolConfig": {"functionCallingConfig": {"mode": "NONE"}}}, []),
    ("chat: a named function is ANY of it", "chat",
     chat(tools=[CHAT_TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}}),
     {"toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}}, []),
    ("chat: what Gemini has no place for is noted", "chat",
     chat(tools=[CHAT_TOOL], parallel_tool_calls=False, user="u-1", store=True),
     {}, ["parallel_tool_calls", "user", "store"]),
    ("messages: Anthropic's thinking dropped and noted, a failed call's result as an error, a PDF inline",
     "messages",
     messages({"role": "user", "content": "q"},
              {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "sig"},
                                                {"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
              {"role": "user", "content": [
                  {"type": "tool_result", "tool_use_id": "t1", "content": "bad", "is_error": True},
                  {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                                  "data": "JVBE"}}]}),
     {"contents": [{"role": "user"}, {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
                   {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"error": "bad"}}},
                                              {"inlineData": {"mimeType": "application/pdf", "data": "JVBE"}}]}]},
     ["thinking_history"]),
    ("messages: a thinking budget as it is, thoughts asked for; top_k", "messages",
     messages(thinking={"type": "enabled", "budget_tokens": 2048}, top_k=5),
     {"generationConfig": {"maxOutputTokens": 1024, "topK": 5,
                           "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True}}}, []),
    ("messages: thinking off is budget 0", "messages", messages(thinking={"type": "disabled"}),
     {"generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}}, []),
    ("messages: any tool is ANY", "messages",
     messages(tools=[{"name": "f", "input_schema": SCHEMA}], tool_choice={"type": "any"}),
     {"toolConfig": {"functionCallingConfig": {"mode": "ANY"}}}, []),
]


@pytest.mark.parametrize("caller, body, expected, dropped", [row[1:] for row in ENCODE_ROWS],
                         ids=[row[0] for row in ENCODE_ROWS])
def test_encode_rule(caller, body, expected, dropped):
    notes = Notes()
    contains(to_gemini(caller, body, notes), expected)
    assert notes.dropped == dropped


def test_more_stop_sequences_than_gemini_takes_are_refused_naming_the_callers_field():
    with pytest.raises(Refused) as refused:
        to_gemini("chat", chat(stop=["a", "b", "c", "d", "e", "f"]))
    assert refused.value.field == "stop"
    with pytest.raises(Refused) as refused:
        to_gemini("messages", messages(stop_sequences=["a", "b", "c", "d", "e", "f"]))
    assert refused.value.field == "stop_sequences"


def test_calls_another_caller_made_carry_the_stand_in_signature_gemini_3_asks_for():
    """Gemini 3 refuses a turn's calls without a thoughtSignature; another dialect's caller
    keeps none, so the first call of each model turn carries Google's documented stand-in."""
    out = to_gemini("chat", chat({"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [
        TOOL_CALL, {**TOOL_CALL, "id": "c2"}]}, {"role": "tool", "tool_call_id": "c1", "content": "a"},
        {"role": "tool", "tool_call_id": "c2", "content": "b"}))
    calls = out["contents"][1]["parts"]
    assert calls[0]["thoughtSignature"] == "skip_thought_signature_validator" and "thoughtSignature" not in calls[1]
    body = gemini(user("q"), model(call("f")), user(result("f", {"result": "a"})))
    assert written_back(body)[0] == body                    # a Gemini caller's own calls are as it sent them


def test_a_signed_text_part_goes_to_anthropic_without_its_signature():
    body = gemini(user("q"), model({"text": "A", "thoughtSignature": SIGNATURE}), user("more"))
    out = Bridge("gemini", CODEC, "anthropic", MESSAGES).request(body, Target("claude-x"), Notes())
    assert out["messages"][1]["content"] == "A" or out["messages"][1]["content"] == [{"type": "text", "text": "A"}]


def test_a_gemini_callers_own_tools_are_noted_for_another_provider():
    notes = Notes()
    body = gemini(tools=[{"googleSearch": {}}, {"codeExecution": {}}, {"functionDeclarations": [{"name": "f"}]}],
                  safetySettings=[{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}])
    out = Bridge("gemini", CODEC, "openai", CHAT).request(body, Target("gpt-x"), notes)
    assert [tool["function"]["name"] for tool in out["tools"]] == ["f"]
    assert set(notes.dropped) == {"tools[].googleSearch", "tools[].codeExecution", "safetySettings"}


# --- a Gemini body written back as Gemini keeps what it said --------------------------------

GEMINI_BODY = {
    "contents": [
        user("look", {"inlineData": {"mimeType": "image/png", "data": "iVBO"}},
             {"fileData": {"mimeType": "application/pdf", "fileUri": "https://x/r.pdf"}}),
        model({"text": "hm", "thought": True, "thoughtSignature": SIGNATURE}, "Let me look.",
              call("get_weather", signature=SIGNATURE, city="Paris"), call("get_weather", city="Rome")),
        user("and now?")],
    "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Use tools."}]},
    "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "Weather.",
                                         "parametersJsonSchema": SCHEMA}]}],
    "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
    "generationConfig": {"temperature": 0.3, "topP": 0.9, "topK": 40, "maxOutputTokens": 100,
                         "stopSequences": ["END"], "candidateCount": 2, "responseMimeType": "application/json",
                         "responseJsonSchema": SCHEMA, "thinkingConfig": {"thinkingBudget": 1024,
                                                                          "includeThoughts": True},
                         "presencePenalty": 0.5, "frequencyPenalty": 0.25, "seed": 7},
}


def written_back(body: dict) -> tuple[dict, Notes]:
    notes = Notes()
    return valid_request(gemini_request.encode(gemini_request.decode(body, notes), Target(FLASH), notes)), notes


def test_a_body_written_back_as_gemini_is_the_same():
    out, notes = written_back(GEMINI_BODY)
    assert out == GEMINI_BODY
    assert notes.dropped == [] and notes.defaulted == []


def test_a_signed_text_part_keeps_its_signature():
    body = gemini(user("q"), model({"text": "A", "thoughtSignature": SIGNATURE}), user("more"))
    assert written_back(body)[0] == body
    body = gemini(user("q"), model("A", {"text": "", "thoughtSignature": SIGNATURE}), user("more"))
    assert written_back(body)[0] == body                    # the empty last part Gemini 3 signs


def test_a_function_response_is_written_back_as_it_was():
    body = gemini(user("q"), model(call("f", x=1), call("f", x=2)),
                  user(result("f", {"output": {"temp": 20, "sky": "clear"}}), result("f", {"error": "no data"})))
    assert written_back(body)[0] == body


def test_safety_settings_are_carried_to_gemini():
    settings_ = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
    out, notes = written_back(gemini(safetySettings=settings_))
    assert out["safetySettings"] == settings_ and notes.dropped == []


def test_a_recorded_request_written_back_keeps_its_calls_responses_and_signature():
    body = orjson.loads(provider_recording("gemini-function-calling.yaml")[1]["request"]["body"])
    out, notes = written_back(body)
    assert out["contents"][1] == body["contents"][1]                       # the signed calls, as they came
    assert [part["functionResponse"]["name"] for part in out["contents"][2]["parts"]] == ["secret_retrieval_tool"] * 2
    assert out["systemInstruction"]["parts"] == body["systemInstruction"]["parts"]
    assert notes.dropped == []


# --- answers ----------------------------------------------------------------------------

def candidate(*parts: Any, finish: str | None = "STOP", **fields: Any) -> dict:
    return {"content": {"role": "model", "parts": [{"text": p} if isinstance(p, str) else p for p in parts]},
            **({"finishReason": finish} if finish else {}), "index": 0, **fields}


def answer_body(*candidates: dict, **fields: Any) -> dict:
    return {"candidates": list(candidates),
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 20, "totalTokenCount": 30},
            "modelVersion": "gemini-x", "responseId": "r-1", **fields}


def head(**fields: Any) -> Conversation:
    return Conversation(dialect="gemini", include_usage=True, **fields)


def read(body: dict, notes: Notes | None = None) -> Answer:
    return gemini_answer.decode(body, head(), notes)


ANSWER_DECODE_ROWS = [  # (name, body, fragment of the Answer, notes.dropped)
    ("the recorded calls: the first signed, both with made-up ids; STOP with calls is TOOL_USE",
     orjson.loads(provider_recording("gemini-function-calling.yaml")[0]["response"]["body"]),
     {"id": "AJnyaJv6GPulqtsP5Z6fgAs", "model": "gemini-2.5-flash", "stop": TOOL_USE,
      "content": [{"type": "tool_use", "name": "secret_retrieval_tool", "input": {"password": "mellon"},
                   "origin": "gemini"},
                  {"type": "tool_use", "name": "secret_retrieval_tool", "input": {"password": "radiance"},
                   "signature": ABSENT}],
      "usage": {"input_tokens": 70, "output_tokens": 116, "reasoning_tokens": 76, "cached_tokens": 0}}, []),
    ("a thought is thinking of Gemini's with its signature, then the text",
     answer_body(candidate({"text": "hm", "thought": True, "thoughtSignature": "s1"}, "Hi")),
     {"content": [{"type": "thinking", "thinking": "hm", "signature": "s1", "origin": "gemini"},
                  {"type": "text", "text": "Hi"}], "stop": END}, []),
    ("the prompt's count holds the cached tokens", answer_body(candidate("a"), usageMetadata={
        "promptTokenCount": 100, "cachedContentTokenCount": 60, "candidatesTokenCount": 5, "totalTokenCount": 105}),
     {"usage": {"input_tokens": 100, "cached_tokens": 60, "output_tokens": 5, "reasoning_tokens": 0}}, []),
    ("MAX_TOKENS is LENGTH", answer_body(candidate("a", finish="MAX_TOKENS")), {"stop": LENGTH}, []),
    ("a blocked prompt is CONTENT_FILTER, nothing said",
     {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4},
      "modelVersion": "gemini-x", "responseId": "r-2"},
     {"content": [], "stop": CONTENT_FILTER, "usage": {"input_tokens": 4, "output_tokens": 0}}, []),
    ("further candidates and parts the model has no place for are noted",
     answer_body(candidate("a", {"executableCode": {"code": "1"}}), candidate("b")),
     {"content": [{"type": "text", "text": "a"}]}, ["candidates[1:]", "parts[].executableCode"]),
    ("no usage, no finish reason", {"candidates": [candidate("a", finish=None)]},
     {"usage": None, "stop": END, "id": None}, []),
]


@pytest.mark.parametrize("body, expected, dropped", [row[1:] for row in ANSWER_DECODE_ROWS],
                         ids=[row[0] for row in ANSWER_DECODE_ROWS])
def test_answer_decode(body, expected, dropped):
    notes = Notes()
    contains(asdict(read(body, notes)), expected)
    assert notes.dropped == dropped


@pytest.mark.parametrize("reason, stop", [
    ("STOP", END), ("MAX_TOKENS", LENGTH), ("SAFETY", CONTENT_FILTER), ("RECITATION", CONTENT_FILTER),
    ("BLOCKLIST", CONTENT_FILTER), ("PROHIBITED_CONTENT", CONTENT_FILTER), ("SPII", CONTENT_FILTER),
    ("MALFORMED_FUNCTION_CALL", END), ("OTHER", END)])
def test_answer_finish_reasons(reason, stop):
    assert read(answer_body(candidate("a", finish=reason))).stop == stop
    chunk = answer_body(candidate("a", finish=reason))
    assert decoded_stream([chunk])[-2] == ("stop", stop, None)


def test_a_malformed_function_call_is_noted():
    notes = Notes()
    read(answer_body(candidate(finish="MALFORMED_FUNCTION_CALL")), notes)
    assert notes.dropped == ["finishReason=MALFORMED_FUNCTION_CALL"]
    notes = Notes()
    decoder = gemini_stream.Decoder(head(), notes)
    decoder.read(chunk(finish="MALFORMED_FUNCTION_CALL"), b"", b"")
    assert notes.dropped == ["finishReason=MALFORMED_FUNCTION_CALL"]


def gemini_caller(**fields: Any) -> Conversation:
    return head(model="gemini-caller", **fields)


SHOWN = Reasoning(budget=1024, hidden=False)

ANSWER_ENCODE_ROWS = [  # (name, Answer, the caller's head, fragment of the Gemini answer)
    ("text and a call as parts; the finish, usage, model and id", Answer(
        id="a-1", model="claude-x", content=[{"type": "text", "text": "Hi"},
                                             {"type": "tool_use", "id": "t1", "name": "f", "input": {"x": 1}}],
        stop=TOOL_USE, usage=Usage(10, 20)), gemini_caller(),
     {"candidates": [{"content": {"role": "model", "parts": [
         {"text": "Hi"}, {"functionCall": {"name": "f", "args": {"x": 1}}}]}, "finishReason": "STOP", "index": 0}],
      "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 20, "totalTokenCount": 30,
                        "thoughtsTokenCount": ABSENT, "cachedContentTokenCount": ABSENT},
      "modelVersion": "claude-x", "responseId": "a-1"}),
    ("thinking shown to a caller who asked for thoughts; a Gemini signature kept, another's not", Answer(
        content=[{"type": "thinking", "thinking": "hm", "signature": "s-a", "origin": "anthropic"},
                 {"type": "thinking", "thinking": "more", "signature": "s-g", "origin": "gemini"},
                 {"type": "tool_use", "id": "t1", "name": "f", "input": {}, "signature": "s-g2",
                  "origin": "gemini"}], usage=Usage(10, 20, reasoning_tokens=15, cached_tokens=4)),
     gemini_caller(reasoning=SHOWN),
     {"candidates": [{"content": {"parts": [
         {"text": "hm", "thought": True, "thoughtSignature": ABSENT},
         {"text": "more", "thought": True, "thoughtSignature": "s-g"},
         {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "s-g2"}]}}],
      "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 15,
                        "cachedContentTokenCount": 4, "totalTokenCount": 30}, "modelVersion": "gemini-caller"}),
    ("thinking not shown to a caller who did not ask", Answer(
        content=[{"type": "thinking", "thinking": "hm", "signature": "", "origin": "openai"},
                 {"type": "text", "text": "A"}]), gemini_caller(),
     {"candidates": [{"content": {"parts": [{"text": "A"}]}}],
      "usageMetadata": {"promptTokenCount": 0, "candidatesTokenCount": 0, "totalTokenCount": 0}}),
]


@pytest.mark.parametrize("given_answer, conversation, expected", [row[1:] for row in ANSWER_ENCODE_ROWS],
                         ids=[row[0] for row in ANSWER_ENCODE_ROWS])
def test_answer_encode(given_answer, conversation, expected):
    out = gemini_answer.encode(given_answer, conversation)
    sdk_answer(out)
    contains(out, expected)


@pytest.mark.parametrize("stop, reason", [(END, "STOP"), (TOOL_USE, "STOP"), (STOP_SEQUENCE, "STOP"),
                                          (PAUSE, "STOP"), (LENGTH, "MAX_TOKENS"), (REFUSAL, "SAFETY"),
                                          (CONTENT_FILTER, "SAFETY")])
def test_answer_encode_finish_reasons(stop, reason):
    out = gemini_answer.encode(Answer(content=[{"type": "text", "text": "a"}], stop=stop), gemini_caller())
    assert out["candidates"][0]["finishReason"] == reason
    assert sdk_answer(out).candidates[0].finish_reason == types.FinishReason(reason)


def test_an_answer_without_an_id_gets_one():
    out = gemini_answer.encode(Answer(content=[{"type": "text", "text": "a"}]), gemini_caller())
    assert isinstance(out["responseId"], str) and out["responseId"]


# --- errors -------------------------------------------------------------------------------

RECORDED_400 = orjson.loads(provider_recording("gemini-error-400.yaml")[0]["response"]["body"])
OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
OPENAI_LIMIT = {"error": {"message": "slow down", "type": "requests", "param": None, "code": "rate_limit_exceeded"}}


def google_error(code: int, status: str, message: str = "m") -> dict:
    return {"error": {"code": code, "message": message, "status": status}}


DECODE_ERROR_ROWS = [  # (name, status, body, Problem)
    ("the recorded 400", 400, RECORDED_400,
     Problem("invalid_request_error", "API key not valid. Please pass a valid API key.")),
    ("UNAUTHENTICATED", 401, google_error(401, "UNAUTHENTICATED"), Problem("authentication_error", "m")),
    ("PERMISSION_DENIED", 403, google_error(403, "PERMISSION_DENIED"), Problem("permission_error", "m")),
    ("NOT_FOUND", 404, google_error(404, "NOT_FOUND"), Problem("not_found_error", "m")),
    ("RESOURCE_EXHAUSTED", 429, google_error(429, "RESOURCE_EXHAUSTED"), Problem("rate_limit_error", "m")),
    ("UNAVAILABLE", 503, google_error(503, "UNAVAILABLE"), Problem("overloaded_error", "m")),
    ("DEADLINE_EXCEEDED", 504, google_error(504, "DEADLINE_EXCEEDED"), Problem("timeout_error", "m")),
    ("INTERNAL", 500, google_error(500, "INTERNAL"), Problem("api_error", "m")),
    ("a list wrapping the error (a stream without alt=sse)", 429, [google_error(429, "RESOURCE_EXHAUSTED")],
     Problem("rate_limit_error", "m")),
    ("not JSON", 502, None, Problem("api_error", "The provider answered 502.")),
    ("mid-stream, the kind from the status name", 0, google_error(503, "UNAVAILABLE", "busy"),
     Problem("overloaded_error", "busy")),
]


@pytest.mark.parametrize("status, body, expected", [row[1:] for row in DECODE_ERROR_ROWS],
                         ids=[row[0] for row in DECODE_ERROR_ROWS])
def test_decode_error(status, body, expected):
    assert gemini_answer.decode_error(status, body) == expected


ENCODE_ERROR_ROWS = [  # (name, status, Problem, the caller's status, Google's status name)
    ("a bad request", 400, Problem("invalid_request_error", "bad"), 400, "INVALID_ARGUMENT"),
    ("a rate limit keeps its status", 429, Problem("rate_limit_error", "slow"), 429, "RESOURCE_EXHAUSTED"),
    ("Anthropic's 529 is 503 UNAVAILABLE", 529, Problem("overloaded_error", "Overloaded"), 503, "UNAVAILABLE"),
    ("a server error", 500, Problem("api_error", "oops"), 500, "INTERNAL"),
    ("not found", 404, Problem("not_found_error", "gone"), 404, "NOT_FOUND"),
]


@pytest.mark.parametrize("status, problem, out_status, name", [row[1:] for row in ENCODE_ERROR_ROWS],
                         ids=[row[0] for row in ENCODE_ERROR_ROWS])
def test_encode_error(status, problem, out_status, name):
    got_status, raw = gemini_answer.encode_error(status, problem)
    assert got_status == out_status
    assert orjson.loads(raw) == {"error": {"code": out_status, "message": problem.message, "status": name}}


CROSS_ERROR_ROWS = [  # (name, provider, caller, status, body, the caller's status, fragment of its body)
    ("Gemini's recorded 400 to chat", "gemini", "chat", 400, RECORDED_400, 400,
     {"error": {"message": "API key not valid. Please pass a valid API key.", "type": "invalid_request_error"}}),
    ("Gemini's recorded 400 to messages", "gemini", "messages", 400, RECORDED_400, 400,
     {"type": "error", "error": {"type": "invalid_request_error",
                                 "message": "API key not valid. Please pass a valid API key."}}),
    ("Gemini's recorded 400 to responses", "gemini", "responses", 400, RECORDED_400, 400,
     {"error": {"message": "API key not valid. Please pass a valid API key."}}),
    ("Gemini's 429 to messages", "gemini", "messages", 429, google_error(429, "RESOURCE_EXHAUSTED", "quota"), 429,
     {"error": {"type": "rate_limit_error", "message": "quota"}}),
    ("Anthropic's 529 to a Gemini caller", "messages", "gemini", 529, OVERLOADED, 503,
     {"error": {"code": 503, "message": "Overloaded", "status": "UNAVAILABLE"}}),
    ("OpenAI's rate limit to a Gemini caller", "chat", "gemini", 429, OPENAI_LIMIT, 429,
     {"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}}),
]


def bridge(provider: str, caller: str) -> Bridge:
    """The translation from `provider` to `caller`, one of them Gemini."""
    if caller == "gemini":
        return Bridge("gemini", CODEC, *(PROVIDERS[provider] if provider != "gemini" else ("gemini", CODEC)))
    return Bridge(CALLERS[caller][0], CALLERS[caller][1], "gemini", CODEC)


@pytest.mark.parametrize("provider, caller, status, body, out_status, expected", [row[1:] for row in CROSS_ERROR_ROWS],
                         ids=[row[0] for row in CROSS_ERROR_ROWS])
def test_an_error_crosses_to_the_callers_dialect(provider, caller, status, body, out_status, expected):
    got_status, raw = bridge(provider, caller).error(status, body)
    assert got_status == out_status
    contains(orjson.loads(raw), expected)


# --- streams: the Decoder ----------------------------------------------------------------------

def shape(event: Event) -> tuple:
    """An Event as a tuple of what it says (a made-up call id as `<made up>`)."""
    if event.kind == "start":
        return ("start", event.id, event.model)
    if event.kind == "block":
        header = dict(event.block or {})
        if "id" in header:
            header["id"] = "<made up>" if header["id"].startswith("call_") else header["id"]
        return ("block", event.index, header)
    if event.kind == "delta":
        return ("delta", event.index, event.delta, event.text)
    if event.kind in ("block_stop",):
        return ("block_stop", event.index)
    if event.kind == "usage":
        return ("usage", event.usage)
    if event.kind == "stop":
        return ("stop", event.stop, event.stop_sequence)
    if event.kind == "error":
        return ("error", event.problem)
    return (event.kind,)


def decoded_stream(chunks: list[dict | None], end: bool = True) -> list[tuple]:
    """The Events the Decoder reads from Gemini chunks (None: a data line that is not JSON), then its end()."""
    decoder = gemini_stream.Decoder(head(), Notes())
    out: list[Event] = []
    for data in chunks:
        raw = b"data: " + (orjson.dumps(data) if data is not None else b"{oops") + b"\r\n\r\n"
        out.extend(decoder.read(data, b"", raw))
    if end:
        out.extend(decoder.end())
    return [shape(event) for event in out]


def chunk(*parts: Any, finish: str | None = None, usage: dict | None = None) -> dict:
    body: dict = {"candidates": [candidate(*parts, finish=finish)], "modelVersion": "gemini-x", "responseId": "r-1"}
    if usage is not None:
        body["usageMetadata"] = usage
    return body


USAGE_SO_FAR = {"promptTokenCount": 10, "candidatesTokenCount": 3, "totalTokenCount": 13}
USAGE_AT_END = {"promptTokenCount": 10, "candidatesTokenCount": 7, "thoughtsTokenCount": 4, "totalTokenCount": 21}
STARTED = ("start", "r-1", "gemini-x")
CUT = ("error", Problem("api_error", "The provider's stream ended before the answer was complete."))

DECODER_ROWS = [  # (name, chunks, the Events)
    ("text pieces in one block, usage as it grows; the finish ends the answer after its usage",
     [chunk("Hel", usage=USAGE_SO_FAR), chunk("lo", finish="STOP", usage=USAGE_AT_END)],
     [STARTED, ("block", 0, {"type": "text"}), ("delta", 0, "text", "Hel"), ("usage", Usage(10, 3)),
      ("delta", 0, "text", "lo"), ("usage", Usage(10, 11, reasoning_tokens=4)), ("block_stop", 0),
      ("stop", END, None), ("end",)]),
    ("thoughts then text: a thinking block of Gemini's, its signature a delta, then a text block",
     [chunk({"text": "hm", "thought": True}), chunk({"text": " so", "thought": True, "thoughtSignature": "s1"}),
      chunk("A"), chunk(finish="STOP")],
     [STARTED, ("block", 0, {"type": "thinking", "thinking": "", "signature": "", "origin": "gemini"}),
      ("delta", 0, "thinking", "hm"), ("delta", 0, "thinking", " so"), ("delta", 0, "signature", "s1"),
      ("block_stop", 0), ("block", 1, {"type": "text"}), ("delta", 1, "text", "A"), ("block_stop", 1),
      ("stop", END, None), ("end",)]),
    ("each call whole in its own block, its signature in the header; STOP with calls is TOOL_USE",
     [chunk("Let me look."), chunk(call("f", signature="s2", x=1), call("g")), chunk(finish="STOP", usage=USAGE_AT_END)],
     [STARTED, ("block", 0, {"type": "text"}), ("delta", 0, "text", "Let me look."), ("block_stop", 0),
      ("block", 1, {"type": "tool_use", "id": "<made up>", "name": "f", "signature": "s2", "origin": "gemini"}),
      ("delta", 1, "json", '{"x":1}'), ("block_stop", 1),
      ("block", 2, {"type": "tool_use", "id": "<made up>", "name": "g"}), ("delta", 2, "json", "{}"),
      ("block_stop", 2), ("usage", Usage(10, 11, reasoning_tokens=4)), ("stop", TOOL_USE, None), ("end",)]),
    ("a call's own id is kept", [chunk(call("f", id="fc-1"), finish="STOP")],
     [STARTED, ("block", 0, {"type": "tool_use", "id": "fc-1", "name": "f"}), ("delta", 0, "json", "{}"),
      ("block_stop", 0), ("stop", TOOL_USE, None), ("end",)]),
    ("MAX_TOKENS is LENGTH", [chunk("a", finish="MAX_TOKENS")],
     [STARTED, ("block", 0, {"type": "text"}), ("delta", 0, "text", "a"), ("block_stop", 0), ("stop", LENGTH, None),
      ("end",)]),
    ("SAFETY is CONTENT_FILTER", [chunk("a"), chunk(finish="SAFETY")],
     [STARTED, ("block", 0, {"type": "text"}), ("delta", 0, "text", "a"), ("block_stop", 0),
      ("stop", CONTENT_FILTER, None), ("end",)]),
    ("an error chunk ends the stream; nothing after it is read",
     [chunk("a"), google_error(503, "UNAVAILABLE", "The model is overloaded."), chunk("b")],
     [STARTED, ("block", 0, {"type": "text"}), ("delta", 0, "text", "a"),
      ("error", Problem("overloaded_error", "The model is overloaded."))]),
    ("a data line that is not JSON is nothing", [chunk("a"), None, chunk(finish="STOP")],
     [STARTED, ("block", 0, {"type": "text"}), ("delta", 0, "text", "a"), ("block_stop", 0), ("stop", END, None),
      ("end",)]),
    ("a stream closed before a finish reason is cut", [chunk("a", usage=USAGE_SO_FAR)],
     [STARTED, ("block", 0, {"type": "text"}), ("delta", 0, "text", "a"), ("usage", Usage(10, 3)), CUT]),
    ("a stream of nothing is cut", [], [CUT]),
]


@pytest.mark.parametrize("chunks, expected", [row[1:] for row in DECODER_ROWS], ids=[row[0] for row in DECODER_ROWS])
def test_decoder(chunks, expected):
    assert decoded_stream(chunks) == expected


def test_the_decoder_reads_the_recorded_stream():
    body = recorded_stream("provider-recordings/gemini-stream-sse.yaml")
    decoder = gemini_stream.Decoder(head(), Notes())
    events = [shape(e) for data in sse_events(body) for e in decoder.read(*data)]
    assert events[0] == ("start", "VJfyaP7eE_6zmtkP4qLV6Ao", "gemini-2.5-flash")
    assert events[-3:] == [("block_stop", 0), ("stop", END, None), ("end",)]
    assert events[-4] == ("usage", Usage(13, 63 + 75, reasoning_tokens=75))
    assert "".join(e[3] for e in events if e[0] == "delta").endswith("4200 + 42 = **4242**.")
    assert decoder.end() == []


# --- streams: the Encoder ----------------------------------------------------------------------

def gemini_chunks(out: bytes) -> list[dict]:
    """A Gemini caller's stream: `data: <json>\\r\\n\\r\\n` frames, no event names, no [DONE];
    each chunk (the error aside) checked with the SDK's type."""
    assert out == b"" or out.endswith(b"\r\n\r\n")
    frames = out.split(b"\r\n\r\n")[:-1]
    assert all(frame.startswith(b"data: ") and b"\n" not in frame for frame in frames)
    chunks = [orjson.loads(frame[len(b"data: "):]) for frame in frames]
    for data in chunks:
        if "error" not in data:
            sdk_answer(data)
    return chunks


def encoded(events: list[Event], conversation: Conversation | None = None, cost_usd: float | None = None) -> bytes:
    encoder = gemini_stream.Encoder(conversation or gemini_caller(), Notes())
    encoder.cost_usd = cost_usd
    return b"".join(encoder.write(event) for event in events)


def start(id: str | None = "m-1", model: str | None = "claude-x") -> Event:
    return Event("start", id=id, model=model)


def block(index: int, **header: Any) -> Event:
    return Event("block", index, block=header)


def delta(index: int, kind: str, text: str) -> Event:
    return Event("delta", index, delta=kind, text=text)


def parts_of(chunks: list[dict]) -> list[list[dict]]:
    return [c["candidates"][0]["content"]["parts"] for c in chunks if "candidates" in c]


def test_the_encoder_writes_text_as_gemini_streams_it():
    out = encoded([start(), block(0, type="text"), delta(0, "text", "Hel"), delta(0, "text", 'lo "you"'),
                   Event("block_stop", 0), Event("stop", stop=END), Event("usage", usage=Usage(10, 7, cached_tokens=4)),
                   Event("end")])
    chunks = gemini_chunks(out)
    assert [c["candidates"][0]["content"]["role"] for c in chunks] == ["model"] * 3
    assert parts_of(chunks)[:2] == [[{"text": "Hel"}], [{"text": 'lo "you"'}]]
    assert all(c["modelVersion"] == "claude-x" and c["responseId"] == "m-1" and c["candidates"][0]["index"] == 0
               for c in chunks)
    assert all("finishReason" not in c["candidates"][0] for c in chunks[:-1])
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"] == {"promptTokenCount": 10, "candidatesTokenCount": 7, "totalTokenCount": 17,
                                           "cachedContentTokenCount": 4}


def test_the_encoder_writes_a_call_whole_when_its_block_stops():
    out = encoded([start(), block(0, type="tool_use", id="t1", name="f"), delta(0, "json", '{"a":'),
                   delta(0, "json", "[1,2]}"), Event("block_stop", 0),
                   block(1, type="tool_use", id="t2", name="g", signature="s-g", origin="gemini"),
                   Event("block_stop", 1), Event("stop", stop=TOOL_USE), Event("usage", usage=Usage(3, 5)),
                   Event("end")])
    chunks = gemini_chunks(out)
    assert parts_of(chunks)[:2] == [[{"functionCall": {"name": "f", "args": {"a": [1, 2]}}}],
                                    [{"functionCall": {"name": "g", "args": {}}, "thoughtSignature": "s-g"}]]
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"


def test_the_encoder_shows_thoughts_only_when_asked():
    events = [start(), block(0, type="thinking", signature="", origin="anthropic"), delta(0, "thinking", "hm"),
              delta(0, "signature", "sig"), Event("block_stop", 0), block(1, type="text"), delta(1, "text", "A"),
              Event("block_stop", 1), Event("stop", stop=END), Event("end")]
    shown = parts_of(gemini_chunks(encoded(events, gemini_caller(reasoning=SHOWN))))
    assert shown[:2] == [[{"text": "hm", "thought": True}], [{"text": "A"}]]
    hidden = parts_of(gemini_chunks(encoded(events)))
    assert hidden[0] == [{"text": "A"}] and len(hidden) == 2


@pytest.mark.parametrize("stop, reason", [(END, "STOP"), (LENGTH, "MAX_TOKENS"), (CONTENT_FILTER, "SAFETY"),
                                          (REFUSAL, "SAFETY"), (STOP_SEQUENCE, "STOP"), (TOOL_USE, "STOP")])
def test_the_encoders_finish_reasons(stop, reason):
    chunks = gemini_chunks(encoded([start(), Event("stop", stop=stop), Event("end")]))
    assert chunks[-1]["candidates"][0]["finishReason"] == reason


def test_the_encoder_adds_the_cost_to_the_last_usage():
    out = encoded([start(), Event("usage", usage=Usage(10, 5, reasoning_tokens=2)), Event("stop", stop=END),
                   Event("end")], cost_usd=0.0125)
    assert gemini_chunks(out)[-1]["usageMetadata"] == {
        "promptTokenCount": 10, "candidatesTokenCount": 3, "thoughtsTokenCount": 2, "totalTokenCount": 15,
        "cost_usd": 0.0125}


def test_the_encoder_writes_an_error_and_nothing_after():
    encoder = gemini_stream.Encoder(gemini_caller(), Notes())
    out = b"".join(encoder.write(e) for e in [start(), block(0, type="text"), delta(0, "text", "a"),
                                              Event("error", problem=Problem("api_error", "boom"))])
    chunks = gemini_chunks(out)
    assert chunks[-1]["error"]["message"] == "boom" and isinstance(chunks[-1]["error"]["code"], int)
    assert isinstance(chunks[-1]["error"]["status"], str)
    assert encoder.write(delta(0, "text", "b")) == b"" and encoder.write(Event("end")) == b""


def test_a_mid_stream_error_keeps_its_kinds_status():
    out = encoded([start(), Event("error", problem=Problem("overloaded_error", "Overloaded"))])
    assert gemini_chunks(out)[-1] == {"error": {"code": 503, "message": "Overloaded", "status": "UNAVAILABLE"}}


def test_the_encoder_writes_nothing_after_its_end():
    encoder = gemini_stream.Encoder(gemini_caller(), Notes())
    assert encoder.write(Event("end")) != b""
    assert encoder.write(delta(0, "text", "late")) == b""


# --- golden replays: every Gemini recording, for every other caller ---------------------------

def heard_in_gemini(out: bytes) -> Heard:
    """A Gemini stream, each chunk checked with the SDK's type, read as its callers join it:
    text and thought pieces in order, calls whole, the last chunk's usage."""
    text = thinking = ""
    calls: list[tuple[Any, str, Any]] = []
    usage = None
    finished = False
    for data in gemini_chunks(out):
        if "error" in data:
            return Heard("", "", [], 0, 0, True)
        read = sdk_answer(data)
        assert not finished
        first = read.candidates[0]
        for part in (first.content.parts if first.content else None) or ():
            if part.function_call is not None:
                calls.append((part.function_call.id, part.function_call.name, part.function_call.args))
            elif part.thought:
                thinking += part.text or ""
            else:
                text += part.text or ""
        usage = read.usage_metadata or usage
        finished = first.finish_reason is not None
    assert finished
    return Heard(text, thinking, calls, usage.prompt_token_count or 0,
                 (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0), False)


def gemini_stream_of(body: dict, pieces: int = 7) -> bytes:
    """The chunks Gemini streams for an answer: text and thoughts cut in pieces, each call
    whole, usage on every chunk, the finish on the last."""
    first = body["candidates"][0]
    parts: list[dict] = []
    for part in first["content"]["parts"]:
        if "text" in part:
            text = part["text"]
            cut = [text[i:i + pieces] for i in range(0, len(text), pieces)] or [""]
            parts.extend({**part, "text": piece} for piece in cut)
        else:
            parts.append(part)
    parts = parts or [{"text": ""}]
    envelope = {key: body[key] for key in ("modelVersion", "responseId") if key in body}
    chunks = [{"candidates": [{"content": {"role": "model", "parts": [part]}, "index": 0}],
               "usageMetadata": body["usageMetadata"], **envelope} for part in parts]
    chunks[-1]["candidates"][0]["finishReason"] = first["finishReason"]
    return b"".join(sse_frames(chunks))


def said(heard: Heard) -> Heard:
    """What a caller heard, the calls' ids aside (Gemini's calls have none)."""
    return heard._replace(calls=[(name, arguments) for _, name, arguments in heard.calls])


def heard_in_json(caller: str, body: dict) -> tuple[str, list[tuple], tuple[int, int, int, int]]:
    """What a caller reads in its dialect's JSON answer, checked with its SDK's type: the
    text, the calls (name, input) and the usage (prompt, output, cached, reasoning)."""
    read = SDK_TYPES[caller].model_validate(body)
    if caller == "chat":
        message = read.choices[0].message
        usage = read.usage
        return message.content or "", [(c.function.name, orjson.loads(c.function.arguments))
                                       for c in message.tool_calls or ()], (
            usage.prompt_tokens, usage.completion_tokens, usage.prompt_tokens_details.cached_tokens,
            usage.completion_tokens_details.reasoning_tokens)
    if caller == "messages":
        usage = body["usage"]
        return "".join(b.text for b in read.content if b.type == "text"), \
            [(b.name, b.input) for b in read.content if b.type == "tool_use"], (
            usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"],
            usage["output_tokens"], usage["cache_read_input_tokens"],
            (usage.get("output_tokens_details") or {}).get("thinking_tokens", 0))
    return read.output_text, [(item.name, orjson.loads(item.arguments)) for item in read.output
                              if item.type == "function_call"], (
        read.usage.input_tokens, read.usage.output_tokens, read.usage.input_tokens_details.cached_tokens,
        read.usage.output_tokens_details.reasoning_tokens)


def heard_in_gemini_json(body: dict) -> tuple[str, list[tuple], tuple[int, int, int, int]]:
    read = sdk_answer(body)
    parts = read.candidates[0].content.parts if read.candidates else []
    usage = read.usage_metadata
    return "".join(p.text for p in parts if p.text and not p.thought), \
        [(p.function_call.name, p.function_call.args) for p in parts if p.function_call], (
        usage.prompt_token_count or 0, (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0),
        usage.cached_content_token_count or 0, usage.thoughts_token_count or 0)


GEMINI_ANSWERS = [("gemini-generate-content.yaml", 0), ("gemini-function-calling.yaml", 0),
                  ("gemini-function-calling.yaml", 1), ("vertex-gemini-generate-content.yaml", 0)]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("name, interaction", GEMINI_ANSWERS, ids=[f"{n}[{i}]" for n, i in GEMINI_ANSWERS])
def test_a_recorded_gemini_answer_keeps_its_text_calls_and_usage(name, interaction, caller):
    body = orjson.loads(provider_recording(name)[interaction]["response"]["body"])
    notes = Notes()
    out = bridge("gemini", caller).response(body, CALLERS[caller][2], notes)
    assert heard_in_json(caller, out) == heard_in_gemini_json(body)
    assert out["model"] == body["modelVersion"] and notes.dropped == []


def stream_through(provider: str, caller: str, body: bytes) -> bytes:
    """A provider's stream as a caller reads it, through the Bridge between them."""
    request = CALLERS[caller][2] if caller != "gemini" else GEMINI_CALLER
    stream = bridge(provider, caller).stream(request, Notes())
    return b"".join(stream.event(*data) for data in sse_events(body)) + stream.end()


GEMINI_CALLER = gemini(generationConfig={"thinkingConfig": {"includeThoughts": True}})
GEMINI_STREAMS = ["gemini-stream-sse.yaml", *(name for name, _ in GEMINI_ANSWERS)]


def gemini_recorded_stream(name: str, interaction: int = 0) -> bytes:
    body = provider_recording(name)[interaction]["response"]["body"]
    return body.encode() if body.startswith("data:") else gemini_stream_of(orjson.loads(body))


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("name", GEMINI_STREAMS)
def test_a_recorded_gemini_stream_is_heard_whole(name, caller):
    body = gemini_recorded_stream(name)
    heard = said(heard_in_gemini(body))
    assert heard.text or heard.calls
    assert said(HEARD_IN[caller](stream_through("gemini", caller, body))) == heard


def test_a_cut_gemini_stream_is_an_error_to_every_caller():
    body = gemini_recorded_stream("gemini-stream-sse.yaml")
    cut = body[:body.index(b"\r\n\r\n") + 4]
    for caller in CALLERS:
        assert HEARD_IN[caller](stream_through("gemini", caller, cut)).failed


REVERSE_REPLAYS = [(name, provider) for provider, names in RECORDINGS.items() for name in names]


@pytest.mark.parametrize("name, provider", REVERSE_REPLAYS, ids=[n.split("/")[1] for n, _ in REVERSE_REPLAYS])
def test_a_recorded_stream_of_another_provider_is_heard_whole_by_a_gemini_caller(name, provider):
    body = recorded_stream(name)
    heard = said(HEARD_IN[provider](body))
    assert said(heard_in_gemini(stream_through(provider, "gemini", body))) == heard


def test_gemini_answers_the_other_providers_recorded_json():
    for name, provider in [("anthropic-recordings/anthropic-messages-tools.yaml", "messages"),
                           ("openai-recordings/chat-tools.yaml", "chat"),
                           ("openai-recordings/chat-basic.yaml", "chat")]:
        body = orjson.loads(cassette(name)[0]["response"]["body"])
        out = bridge(provider, "gemini").response(body, GEMINI_CALLER)
        expected = heard_in_json(provider, body)
        got = heard_in_gemini_json(out)
        assert got[:2] == expected[:2] and got[2][:2] == expected[2][:2]


# --- the other way: another caller's request for Gemini, the mock's answers read back -----------

def mock_answer(**fields: Any) -> GeminiAnswer:
    return GeminiAnswer(**{"model": FLASH, "text": "Hello, mock! Ünïcödé and <more> words.", "finish_reason": "STOP",
                           "prompt_tokens": 12, "output_tokens": 9, **fields})


MOCK_ANSWERS = {
    "text": mock_answer(),
    "a shown thought, the text signed": mock_answer(thought="Thinking about: hello", thought_shown=True,
                                                    thought_tokens=5, signed=True),
    "a signed call after a hidden thought": mock_answer(thought="Thinking", thought_tokens=3, tool="lookup",
                                                        signed=True),
    "cached tokens": mock_answer(cached_tokens=8),
    "cut at the cap": mock_answer(finish_reason="MAX_TOKENS"),
    "Vertex's shape": mock_answer(vertex=True),
}


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("case", MOCK_ANSWERS)
def test_the_mocks_gemini_answer_is_read_back(case, caller):
    mock = MOCK_ANSWERS[case]
    dialect, codec, request = CALLERS[caller]
    valid_request(Bridge(dialect, codec, "gemini", CODEC).request(request, Target(FLASH), Notes()))
    body = orjson.loads(response_json(mock))
    out = bridge("gemini", caller).response(body, request)
    assert heard_in_json(caller, out) == heard_in_gemini_json(body)
    chunks = stream_chunks(mock, lambda text: [text[i:i + 5] for i in range(0, len(text), 5)])
    streamed = b"".join(sse_frames(chunks))
    heard = HEARD_IN[caller](stream_through("gemini", caller, streamed))
    assert said(heard) == said(heard_in_gemini(streamed))._replace(thinking=said(heard).thinking)
    if mock.finish_reason == "MAX_TOKENS":
        stop = {"chat": lambda: out["choices"][0]["finish_reason"], "messages": lambda: out["stop_reason"],
                "responses": lambda: out["incomplete_details"]["reason"]}[caller]()
        assert stop in ("length", "max_tokens", "max_output_tokens")


def test_a_signed_call_from_the_mock_goes_back_to_gemini_signed():
    """A Gemini caller's history holding the mock's signed call is written for Gemini with it."""
    mock = MOCK_ANSWERS["a signed call after a hidden thought"]
    answered = orjson.loads(response_json(mock))
    answer = gemini_answer.decode(answered, head(), None)
    caller_history = gemini(user("q"), {"role": "model", "parts": answered["candidates"][0]["content"]["parts"]},
                            user(result("lookup", {"result": "ok"})))
    out, _ = written_back(caller_history)
    assert out["contents"][1]["parts"][0]["thoughtSignature"] == answer.content[0]["signature"]


# --- any answer: what one dialect says, Gemini and the others hear --------------------------------

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)
names = st.from_regex(r"[a-z_]{1,20}", fullmatch=True)
json_objects = st.dictionaries(names, st.one_of(st.integers(-2**53, 2**53), texts, st.booleans(), st.none()),
                               max_size=4)
counts = st.integers(min_value=0, max_value=10**6)
OTHER_ANSWERS = {"chat": codec_of("chat"), "messages": codec_of("messages"), "responses": codec_of("responses")}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(said_texts=st.lists(texts, max_size=3), calls=st.lists(st.tuples(names, json_objects), max_size=3),
       thought=st.one_of(st.none(), texts), fresh=counts, cached=counts, output=counts, reasoning=counts)
def test_text_calls_thinking_and_usage_survive_gemini_and_each_other_dialect(said_texts, calls, thought, fresh,
                                                                              cached, output, reasoning):
    usage = Usage(fresh + cached, output + reasoning, cached_tokens=cached, reasoning_tokens=reasoning)
    thinking = [] if thought is None else [{"type": "thinking", "thinking": thought, "signature": "c2ln",
                                            "origin": "gemini"}]
    given_answer = Answer(id="r-1", model=FLASH, usage=usage, stop=TOOL_USE if calls else END,
                          content=[*thinking, *({"type": "text", "text": t} for t in said_texts),
                                   *({"type": "tool_use", "id": f"call_{i}", "name": n, "input": a}
                                     for i, (n, a) in enumerate(calls))])
    expected = ("".join(said_texts), [(n, a) for n, a in calls], (usage.input_tokens, usage.output_tokens,
                                                                   cached, reasoning))
    # Gemini, read back: the thinking too, with its signature.
    body = gemini_answer.encode(given_answer, gemini_caller(reasoning=SHOWN))
    assert heard_in_gemini_json(body) == expected
    back = gemini_answer.decode(body, head(), None)
    assert [b for b in back.content if b["type"] == "thinking"] == thinking and back.stop == given_answer.stop
    for caller in CALLERS:
        # Gemini's answer as each caller reads it ...
        out = bridge("gemini", caller).response(body, CALLERS[caller][2])
        assert heard_in_json(caller, out) == expected
        # ... and each provider's answer as a Gemini caller reads it.
        codec = OTHER_ANSWERS[caller]
        theirs = codec.encode_answer(given_answer, codec.decode_request(CALLERS[caller][2], Notes(), whole=False))
        assert heard_in_gemini_json(bridge(caller, "gemini").response(theirs, GEMINI_CALLER)) == expected
    # The same answer streamed by Gemini, heard whole by every caller (thinking where its dialect shows it).
    streamed = gemini_stream_of(body)
    heard = Heard("".join(said_texts), thought or "", [(n, a) for n, a in calls], usage.input_tokens,
                  usage.output_tokens, False)
    assert said(heard_in_gemini(streamed)) == heard
    assert said(heard_in_gemini(stream_through("gemini", "gemini", streamed))) == heard
    for caller in CALLERS:
        got = said(HEARD_IN[caller](stream_through("gemini", caller, streamed)))
        assert got._replace(thinking="") == heard._replace(thinking="")
        if caller == "messages":
            assert got.thinking == heard.thinking


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(said_texts=st.lists(texts, max_size=3), calls=st.lists(st.tuples(names, json_objects), max_size=3),
       fresh=counts, read_=counts, output=counts)
def test_any_stream_of_another_provider_is_heard_whole_by_a_gemini_caller(said_texts, calls, fresh, read_, output):
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
               "content": [{"type": "text", "text": text} for text in said_texts] +
                          [{"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": arguments}
                           for i, (name, arguments) in enumerate(calls)],
               "stop_reason": "tool_use" if calls else "end_turn",
               "usage": {"input_tokens": fresh, "cache_read_input_tokens": read_, "output_tokens": output}}
    completion = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x",
                  "choices": [{"index": 0, "finish_reason": "tool_calls" if calls else "stop", "message": {
                      "role": "assistant", "content": "".join(said_texts) or None,
                      "tool_calls": [{"id": f"toolu_{i}", "type": "function", "function": {
                          "name": name, "arguments": orjson.dumps(arguments).decode()}}
                          for i, (name, arguments) in enumerate(calls)] or None}}],
                  "usage": {"prompt_tokens": fresh + read_, "completion_tokens": output,
                            "total_tokens": fresh + read_ + output, "prompt_tokens_details": {"cached_tokens": read_}}}
    heard = Heard("".join(said_texts), "", [(name, arguments) for name, arguments in calls], fresh + read_, output,
                  False)
    for provider, body in (("messages", anthropic_stream_of(message)), ("chat", chat_stream_of(completion))):
        assert said(heard_in_gemini(stream_through(provider, "gemini", body))) == heard
