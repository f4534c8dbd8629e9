"""An Anthropic Messages caller served by an OpenAI Chat Completions provider: each
request rule as a table row (body in, body fragment or refused field out), answers and
errors, and real recorded streams fed chunk by chunk and read back with the anthropic
SDK's own event types and accumulator; a property test that texts, tool calls and usage
survive the round trip."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from extproc.api.sse import SSEParser
from extproc.dialects.openai.chat_request import meets_strict_rules
from extproc.translate import Bridge, Notes, Refused, Target, translation_for
from extproc.dialects.vocabulary import openai_tool_name
from translation_cases import ABSENT, cassette, contains, sse_events

T = translation_for("anthropic", "openai", "messages")
TARGET = Target("gpt-5-nano")
EVENT = TypeAdapter(RawMessageStreamEvent)


def messages(*turns: dict, **fields: Any) -> dict:
    return {"model": "claude-x", "max_tokens": 1024, "messages": list(turns) or [user("hi")], **fields}


def user(content: Any) -> dict:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict:
    return {"role": "assistant", "content": content}


def text(value: str, **extra: Any) -> dict:
    return {"type": "text", "text": value, **extra}


def tool_use(call_id: str, name: str, tool_input: dict) -> dict:
    return {"type": "tool_use", "id": call_id, "name": name, "input": tool_input}


def tool_result(call_id: str, content: Any = "ok", **extra: Any) -> dict:
    return {"type": "tool_result", "tool_use_id": call_id, "content": content, **extra}


WEATHER = {"name": "get_weather", "description": "Weather.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
LONG_NAME = "mcp__a_very_long_server_name__and_an_even_longer_tool_name_that_goes_on"
CLOSED = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": False}

# --- requests: one row per rule ----------------------------------------------------------

REQUEST_ROWS = [
    ("model from the target", messages(), {"model": "gpt-5-nano"}),
    ("max_tokens is max_completion_tokens", messages(), {"max_completion_tokens": 1024, "max_tokens": ABSENT}),
    ("a system string leads", messages(system="Be brief."),
     {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]}),
    ("system blocks as text parts", messages(system=[text("A"), text("B", cache_control={"type": "ephemeral"})]),
     {"messages": [{"role": "system", "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]}, {}]}),
    ("a system turn stays where it stands (Claude Code's mid-conversation system)",
     messages(user("q"), {"role": "system", "content": "Agents: a, b"}, user("r")),
     {"messages": [{"role": "user", "content": "q"}, {"role": "system", "content": "Agents: a, b"},
                   {"role": "user", "content": "r"}]}),
    ("user text blocks", messages(user([text("a"), text("b")])),
     {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}),
    ("a base64 image is a data URL",
     messages(user([{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}])),
     {"messages": [{"content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}]}]}),
    ("an image URL", messages(user([{"type": "image", "source": {"type": "url", "url": "https://x/a.png"}}])),
     {"messages": [{"content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}]}]}),
    ("a PDF document is a file part",
     messages(user([{"type": "document", "title": "r.pdf",
                     "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}])),
     {"messages": [{"content": [{"type": "file", "file": {"filename": "r.pdf",
                                                          "file_data": "data:application/pdf;base64,JVBE"}}]}]}),
    ("a text document is text, title and context first",
     messages(user([{"type": "document", "title": "T", "context": "C",
                     "source": {"type": "text", "media_type": "text/plain", "data": "body"}}, text("q")])),
     {"messages": [{"content": [{"type": "text", "text": "T\n\nC\n\nbody"}, {"type": "text", "text": "q"}]}]}),
    ("a content document is its parts",
     messages(user([{"type": "document", "source": {"type": "content", "content": [text("x"), text("y")]}}])),
     {"messages": [{"content": [{"text": "x"}, {"text": "y"}]}]}),
    ("a search result is text",
     messages(user([{"type": "search_result", "title": "T", "source": "https://s", "content": [text("found")]}])),
     {"messages": [{"content": "T\n\nhttps://s\n\nfound"}]}),
    ("assistant text and tool_use is one message",
     messages(user("w?"), assistant([text("Looking."), tool_use("toolu_1", "get_weather", {"city": "Paris"})]),
              user([tool_result("toolu_1", "sunny")]), tools=[WEATHER]),
     {"messages": [{}, {"role": "assistant", "content": "Looking.", "tool_calls": [
         {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
         {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"}]}),
    ("an empty tool input is {}", messages(user("q"), assistant([tool_use("t", "n", {})]), user([tool_result("t")])),
     {"messages": [{}, {"content": None, "tool_calls": [{"function": {"arguments": "{}"}}]}, {}]}),
    ("tool results come before the turn's text; is_error is prefixed",
     messages(user("q"), assistant([tool_use("t", "n", {})]),
              user([text("try again"), tool_result("t", "permission denied", is_error=True)])),
     {"messages": [{}, {}, {"role": "tool", "tool_call_id": "t", "content": "[tool error] permission denied"},
                   {"role": "user", "content": "try again"}]}),
    ("a tool result without content is empty",
     messages(user("q"), assistant([tool_use("t", "n", {})]), user([{"type": "tool_result", "tool_use_id": "t"}])),
     {"messages": [{}, {}, {"role": "tool", "content": ""}]}),
    ("a tool result's several texts make one tool message",
     messages(user("q"), assistant([tool_use("t", "n", {})]), user([tool_result("t", [text("a"), text("b")])])),
     {"messages": [{}, {}, {"role": "tool", "tool_call_id": "t", "content": "a\n\nb"}]}),
    ("an image in a tool result moves to a user message",
     messages(user("q"), assistant([tool_use("t", "read", {})]),
              user([tool_result("t", [text("a picture"), {"type": "image", "source": {
                  "type": "base64", "media_type": "image/png", "data": "iVBO"}}])])),
     {"messages": [{}, {}, {"role": "tool", "content": "a picture"},
                   {"role": "user", "content": [{"type": "text", "text": "(image from the result of tool call t)"},
                                                {"type": "image_url"}]}]}),
    ("thinking in history is left out",
     messages(user("a"), assistant([{"type": "thinking", "thinking": "hm", "signature": "s_t1"}, text("b")]), user("c"),
              assistant([{"type": "redacted_thinking", "data": "x"}, text("d")]), user("e")),
     {"messages": [{}, {"role": "assistant", "content": "b"}, {}, {"content": "d"}, {}]}),
    ("stop_sequences are stop", messages(stop_sequences=["Human:", "AI:"]), {"stop": ["Human:", "AI:"]}),
    ("temperature and top_p carried", messages(temperature=0.5, top_p=0.9), {"temperature": 0.5, "top_p": 0.9}),
    ("stream asks for the usage", messages(stream=True),
     {"stream": True, "stream_options": {"include_usage": True}}),
    ("a plain user id", messages(metadata={"user_id": "user-42"}), {"user": "user-42"}),
    ("Claude Code's JSON user id is hashed", messages(metadata={"user_id": '{"device_id":"d","session_id":"s"}'}),
     {"user": hashlib.sha256(b'{"device_id":"d","session_id":"s"}').hexdigest()}),
    ("custom tools are functions", messages(tools=[{**WEATHER, "strict": True}]),
     {"tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                                                  "parameters": WEATHER["input_schema"], "strict": True}}]}),
    ("a long tool name is shortened",
     messages(tools=[{"name": LONG_NAME, "input_schema": {"type": "object"}}], tool_choice={"type": "tool", "name": LONG_NAME}),
     {"tools": [{"function": {"name": openai_tool_name(LONG_NAME)}}],
      "tool_choice": {"type": "function", "function": {"name": openai_tool_name(LONG_NAME)}}}),
    ("tool_choice auto", messages(tools=[WEATHER], tool_choice={"type": "auto"}), {"tool_choice": "auto"}),
    ("tool_choice any is required", messages(tools=[WEATHER], tool_choice={"type": "any"}),
     {"tool_choice": "required"}),
    ("tool_choice none", messages(tools=[WEATHER], tool_choice={"type": "none"}), {"tool_choice": "none"}),
    ("tool_choice tool is a function", messages(tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"}),
     {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
    ("disable_parallel_tool_use", messages(tools=[WEATHER], tool_choice={"type": "auto", "disable_parallel_tool_use": True}),
     {"parallel_tool_calls": False}),
    ("thinking budget 4096 is high", messages(thinking={"type": "enabled", "budget_tokens": 4096}),
     {"reasoning_effort": "high"}),
    ("thinking budget 2048 is medium", messages(thinking={"type": "enabled", "budget_tokens": 2048}),
     {"reasoning_effort": "medium"}),
    ("thinking budget 1024 is low", messages(thinking={"type": "enabled", "budget_tokens": 1024}), {"reasoning_effort": "low"}),
    ("adaptive thinking with an effort",
     messages(thinking={"type": "adaptive"}, output_config={"effort": "low"}), {"reasoning_effort": "low"}),
    ("adaptive thinking alone: the model's default", messages(thinking={"type": "adaptive"}),
     {"reasoning_effort": ABSENT, "thinking": ABSENT}),
    ("disabled thinking drops the effort", messages(thinking={"type": "disabled"}, output_config={"effort": "high"}),
     {"reasoning_effort": ABSENT}),
    ("effort max is high", messages(output_config={"effort": "max"}), {"reasoning_effort": "high"}),
    ("output_config.format is a json_schema response_format, strict when closed",
     messages(output_config={"format": {"type": "json_schema", "schema": CLOSED}}),
     {"response_format": {"type": "json_schema", "json_schema": {"name": "structured_output", "schema": CLOSED,
                                                                 "strict": True}}}),
    ("the legacy output_format, not strict when open",
     messages(output_format={"type": "json_schema", "schema": {"type": "object", "properties": {"a": {}}}}),
     {"response_format": {"json_schema": {"strict": False}}}),
]


@pytest.mark.parametrize("body, expected", [row[1:] for row in REQUEST_ROWS], ids=[row[0] for row in REQUEST_ROWS])
def test_request_rule(body, expected):
    contains(T.request(body, TARGET, Notes()), expected)


NOTE_ROWS = [
    ("hints dropped and named", messages(top_k=5, context_management={"edits": []}, service_tier="auto",
                                         inference_geo="us", cache_control={"type": "ephemeral"}),
     ["top_k", "cache_control", "context_management", "service_tier", "inference_geo"]),
    ("unknown fields", messages(speed="fast"), ["speed"]),
    ("cache_control on blocks, system and tools",
     messages(user([text("a", cache_control={"type": "ephemeral"})]), system=[text("s", cache_control={})],
              tools=[{**WEATHER, "cache_control": {"type": "ephemeral"}}]), ["cache_control"]),
    ("other tool options", messages(tools=[{**WEATHER, "eager_input_streaming": True}]), ["tools[].eager_input_streaming"]),
    ("thinking history", messages(user("a"), assistant([{"type": "thinking", "thinking": "t", "signature": "s"}, text("b")]),
                                  user("c")), ["thinking_history"]),
    ("an erroring tool result", messages(user("q"), assistant([tool_use("t", "n", {})]),
                                         user([tool_result("t", "bad", is_error=True)])), ["tool_result.is_error:as_text"]),
    ("an effort clamped", messages(output_config={"effort": "xhigh"}), ["output_config.effort=xhigh:as_high"]),
    ("an effort with thinking disabled", messages(thinking={"type": "disabled"}, output_config={"effort": "low"}),
     ["output_config.effort:thinking_disabled"]),
    ("more metadata than the user", messages(metadata={"user_id": "u", "x": 1}), ["metadata"]),
    ("a tool_choice without tools", messages(tool_choice={"type": "auto"}), ["tool_choice:no_tools"]),
    ("document citations", messages(user([{"type": "document", "citations": {"enabled": True},
                                           "source": {"type": "text", "media_type": "text/plain", "data": "d"}}])),
     ["document.citations"]),
]


@pytest.mark.parametrize("body, dropped", [row[1:] for row in NOTE_ROWS], ids=[row[0] for row in NOTE_ROWS])
def test_request_notes(body, dropped):
    notes = Notes()
    T.request(body, TARGET, notes)
    assert notes.dropped == dropped and notes.defaulted == []


REFUSED_ROWS = [
    ("a final assistant prefill", messages(user("q"), assistant("The answer is")), "messages[1]"),
    ("a server tool (web search)", messages(tools=[{"type": "web_search_20250305", "name": "web_search"}]), "tools[0].type"),
    ("a server tool (bash)", messages(tools=[WEATHER, {"type": "bash_20250124", "name": "bash"}]), "tools[1].type"),
    ("mcp servers", messages(mcp_servers=[{"type": "url", "url": "https://m", "name": "m"}]), "mcp_servers"),
    ("a container", messages(container="c_1"), "container"),
    ("more than four stop sequences", messages(stop_sequences=["a", "b", "c", "d", "e"]), "stop_sequences"),
    ("a URL document", messages(user([{"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}])),
     "messages[0].content[0].source"),
    ("a file document", messages(user([{"type": "document", "source": {"type": "file", "file_id": "f"}}])),
     "messages[0].content[0].source"),
    ("a file image", messages(user([{"type": "image", "source": {"type": "file", "file_id": "f"}}])),
     "messages[0].content[0].source"),
    ("a server tool call in history", messages(user("q"), assistant([{"type": "server_tool_use", "id": "s",
                                                                      "name": "web_search", "input": {}}]), user("r")),
     "messages[1].content[0]"),
    ("a container upload", messages(user([{"type": "container_upload", "file_id": "f"}])), "messages[0].content[0]"),
    ("an unknown effort", messages(output_config={"effort": "extreme"}), "output_config.effort"),
    ("an output format that is not a schema", messages(output_config={"format": {"type": "regex"}}), "output_config.format"),
    ("an unknown role in messages", messages({"role": "tool", "content": "s"}), "messages[0].role"),
    ("a system turn with an image", messages(user("q"), {"role": "system", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://x/a.png"}}]}), "messages[1].content[0]"),
    ("no messages", {"model": "m", "max_tokens": 1, "messages": []}, "messages"),
]


@pytest.mark.parametrize("body, field", [row[1:] for row in REFUSED_ROWS], ids=[row[0] for row in REFUSED_ROWS])
def test_request_refused(body, field):
    with pytest.raises(Refused) as refused:
        T.request(body, TARGET, Notes())
    assert refused.value.field == field and refused.value.message


def test_translation_for_the_pair():
    assert isinstance(translation_for("anthropic", "openai", "messages"), Bridge)
    assert translation_for("anthropic", "anthropic", "messages") is None


def test_the_recorded_tools_request():
    """Anthropic's recorded tool conversation, said to OpenAI."""
    body = orjson.loads(cassette("anthropic-recordings/anthropic-messages-tools.yaml")[1]["request"]["body"])
    notes = Notes()
    out = T.request(body, TARGET, notes)
    assert [m["role"] for m in out["messages"]] == ["system", "user", "assistant", "tool", "tool"]
    assert out["messages"][2]["tool_calls"][1] == {"id": "toolu_01VPuQJ1LonDBYXrr8pqPkqQ", "type": "function", "function": {
        "name": "secret_retrieval_tool", "arguments": '{"password":"radiance"}'}}
    assert out["messages"][4] == {"role": "tool", "tool_call_id": "toolu_01VPuQJ1LonDBYXrr8pqPkqQ",
                                  "content": "Life before Death"}
    assert out["max_completion_tokens"] == 16000 and notes.dropped == ["cache_control"]


@pytest.mark.parametrize("schema, strict", [
    (CLOSED, True),
    ({"type": "object", "properties": {"a": {"type": "object", "properties": {}}}, "required": ["a"],
      "additionalProperties": False}, False),
    ({"type": "object", "properties": {"a": {"type": "array", "items": CLOSED}}, "required": ["a"],
      "additionalProperties": False}, True),
    ({**CLOSED, "required": []}, False),
])
def test_strict_only_when_the_schema_already_meets_it(schema, strict):
    assert meets_strict_rules(schema) is strict


# --- answers -----------------------------------------------------------------------------

def completion(message: dict, finish: str = "stop", **usage: Any) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30, **usage}}


def call(call_id: Any, name: str, arguments: str) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


RESPONSE_ROWS = [
    ("text", completion({"content": "Hello from OpenAI!"}), messages(),
     {"content": [{"type": "text", "text": "Hello from OpenAI!"}], "stop_reason": "end_turn", "stop_sequence": None,
      "id": "chatcmpl-1", "model": "gpt-x", "type": "message", "role": "assistant"}),
    ("no model: the request's", {**completion({"content": "x"}), "model": None}, messages(), {"model": "claude-x"}),
    ("a tool call", completion({"content": None, "tool_calls": [call("call-abc", "get_weather",
                                                                                '{"location":"NYC"}')]}, "tool_calls"),
     messages(), {"content": [{"type": "tool_use", "id": "call-abc", "name": "get_weather", "input": {"location": "NYC"}}],
                  "stop_reason": "tool_use"}),
    ("malformed arguments are {}", completion({"tool_calls": [call("c", "n", '{"a":')]}, "tool_calls"), messages(),
     {"content": [{"type": "tool_use", "input": {}}]}),
    ("a shortened tool name is restored", completion({"tool_calls": [call("c", openai_tool_name(LONG_NAME), "{}")]}),
     messages(tools=[{"name": LONG_NAME, "input_schema": {"type": "object"}}]), {"content": [{"name": LONG_NAME}]}),
    ("reasoning content is a thinking block first",
     completion({"reasoning_content": "hmm", "content": "A", "tool_calls": [call("c", "n", "{}")]}), messages(),
     {"content": [{"type": "thinking", "thinking": "hmm", "signature": ""}, {"type": "text", "text": "A"},
                  {"type": "tool_use"}]}),
    ("`reasoning` read as well", completion({"reasoning": "hmm", "content": "A"}), messages(),
     {"content": [{"type": "thinking"}, {"type": "text"}]}),
    ("thinking display omitted: no thinking block",
     completion({"reasoning_content": "hmm", "content": "A"}), messages(thinking={"type": "adaptive", "display": "omitted"}),
     {"content": [{"type": "text", "text": "A"}]}),
    ("a refusal", completion({"content": None, "refusal": "I can't."}), messages(),
     {"content": [{"type": "text", "text": "I can't."}], "stop_reason": "refusal"}),
    ("empty content: no block", completion({"content": ""}, "length"), messages(),
     {"content": [], "stop_reason": "max_tokens"}),
    ("content_filter is refusal", completion({"content": "x"}, "content_filter"), messages(), {"stop_reason": "refusal"}),
    ("function_call is tool_use", completion({"content": "x"}, "function_call"), messages(),
     {"stop_reason": "tool_use"}),
    ("usage: cached tokens are cache reads",
     completion({"content": "x"}, prompt_tokens=100, prompt_tokens_details={"cached_tokens": 30}), messages(),
     {"usage": {"input_tokens": 70, "cache_read_input_tokens": 30, "cache_creation_input_tokens": 0,
                "output_tokens": 20}}),
    ("usage: a compatible server's cache writes",
     completion({"content": "x"}, prompt_tokens=100, prompt_tokens_details={"cached_tokens": 30,
                                                                            "cache_creation_tokens": 20}), messages(),
     {"usage": {"input_tokens": 50, "cache_read_input_tokens": 30, "cache_creation_input_tokens": 20}}),
    ("usage: reasoning tokens as thinking tokens",
     completion({"content": "x"}, completion_tokens_details={"reasoning_tokens": 12}), messages(),
     {"usage": {"output_tokens": 20, "output_tokens_details": {"thinking_tokens": 12}}}),
]


@pytest.mark.parametrize("body, request_body, expected", [row[1:] for row in RESPONSE_ROWS],
                         ids=[row[0] for row in RESPONSE_ROWS])
def test_response_rule(body, request_body, expected):
    out = T.response(body, request_body)
    contains(out, expected)
    Message.model_validate(out)


def test_malformed_arguments_are_noted():
    notes = Notes()
    T.response(completion({"tool_calls": [call("c", "n", "not json")]}), messages(), notes)
    assert notes.dropped == ["tool_calls[].function.arguments:malformed"]


def test_a_missing_tool_call_id_is_made_up():
    out = T.response(completion({"tool_calls": [call(None, "n", "{}")]}), messages())
    assert out["content"][0]["id"].startswith("toolu_")


@pytest.mark.parametrize("name, content, stop, usage", [
    ("chat-basic.yaml", "Hi there! How can I help you today?", "end_turn",
     {"input_tokens": 8, "output_tokens": 377, "output_tokens_details": {"thinking_tokens": 320}}),
    ("chat-tools.yaml", None, "tool_use", {"input_tokens": 162, "output_tokens": 287}),
])
def test_the_recorded_answers(name, content, stop, usage):
    body = orjson.loads(cassette(f"openai-recordings/{name}")[0]["response"]["body"])
    out = T.response(body, messages())
    Message.model_validate(out)
    contains(out, {"stop_reason": stop, "usage": usage, "model": "gpt-5-nano-2025-08-07"})
    if content:
        assert out["content"][0]["text"].startswith(content)
    else:
        assert out["content"] == [{"type": "tool_use", "id": "call_8fxy20OEu9ulvvaa5b5CzVA4", "name": "get_current_weather",
                                   "input": {"location": "Boston, MA", "unit": "fahrenheit"}}]


# --- errors ------------------------------------------------------------------------------

ERROR_ROWS = [
    ("the recorded 400", 400, "chat-bad-request.yaml", "invalid_request_error",
     "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead."),
    ("the recorded 404", 404, "chat-unknown-model.yaml", "not_found_error",
     "The model `gpt-4.1-nano-wrong` does not exist or you do not have access to it."),
    ("a rate limit", 429, {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}},
     "rate_limit_error", "slow down"),
    ("a server error", 500, {"error": {"message": "oops", "type": "server_error"}}, "api_error", "oops"),
    ("unavailable: api_error (only Anthropic's own 529 is overloaded_error)", 503, None, "api_error",
     "The provider answered 503."),
    ("an Anthropic-shaped body keeps its message", 400,
     {"type": "error", "error": {"type": "invalid_request_error", "message": "Bad request"}}, "invalid_request_error",
     "Bad request"),
]


@pytest.mark.parametrize("status, body, kind, message", [row[1:] for row in ERROR_ROWS], ids=[row[0] for row in ERROR_ROWS])
def test_error(status, body, kind, message):
    if isinstance(body, str):
        body = orjson.loads(cassette(f"openai-recordings/{body}")[0]["response"]["body"])
    got_status, raw = T.error(status, body)
    assert got_status == status
    assert orjson.loads(raw) == {"type": "error", "error": {"type": kind, "message": message}}


# --- streams -----------------------------------------------------------------------------

def translated(body: bytes, request: dict, cut: int | None = None, notes: Notes | None = None) -> bytes:
    stream = T.stream(request, notes)
    events = sse_events(body)[:cut]
    return b"".join(stream.event(*event) for event in events) + stream.end()


def read_back(out: bytes) -> tuple[list[dict], Any]:
    """The events of an Anthropic stream, each checked against the SDK's event type,
    and the message the SDK's accumulator makes of them (None without message_start)."""
    events = SSEParser().feed(out, final=True)
    datas = []
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for event in events:
        data = orjson.loads(event.data)
        assert event.name.decode() == data["type"] and event.raw.endswith(b"\n\n")
        datas.append(data)
        if data["type"] != "error":
            snapshot = accumulate_event(event=EVENT.validate_python(data), current_snapshot=snapshot, json_bufs=json_bufs)
    return datas, snapshot


def blocks_are_contiguous(events: list[dict]) -> bool:
    open_index = None
    for event in events:
        if event["type"] == "content_block_start":
            if open_index is not None:
                return False
            open_index = event["index"]
        elif event["type"] == "content_block_delta" and event["index"] != open_index:
            return False
        elif event["type"] == "content_block_stop":
            if event["index"] != open_index:
                return False
            open_index = None
    return open_index is None


def recorded_stream(name: str) -> bytes:
    return cassette(f"openai-recordings/{name}")[0]["response"]["body"].encode()


def test_the_recorded_stream_without_usage():
    notes = Notes()
    events, message = read_back(translated(recorded_stream("chat-streaming.yaml"), messages(stream=True), notes=notes))
    assert [e["type"] for e in events[:3]] == ["message_start", "content_block_start", "content_block_delta"]
    assert [e["type"] for e in events[-3:]] == ["content_block_stop", "message_delta", "message_stop"]
    assert message.content[0].text.startswith("Hi there! How can I help today?")
    assert message.stop_reason == "end_turn" and message.usage.output_tokens == 0 and message.id.startswith("chatcmpl-")
    assert notes.dropped == ["usage:missing"] and blocks_are_contiguous(events)


def test_the_recorded_stream_with_usage():
    events, message = read_back(translated(recorded_stream("chat-streaming-detailed-usage.yaml"), messages(stream=True)))
    assert [e["type"] for e in events] == ["message_start", "message_delta", "message_stop"]
    assert message.content == [] and message.stop_reason == "max_tokens"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 100)
    assert message.usage.output_tokens_details.thinking_tokens == 100


def chat_stream_of(body: dict, include_usage: bool = True, pieces: int = 6) -> bytes:
    """The chunks OpenAI streams for a chat.completion (text and arguments cut in pieces)."""
    envelope = {"id": body["id"], "object": "chat.completion.chunk", "created": body["created"], "model": body["model"]}
    chunk = lambda delta, finish=None: b"data: " + orjson.dumps(
        {**envelope, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + b"\n\n"
    message = body["choices"][0]["message"]
    out = chunk({"role": "assistant", "content": "", "refusal": None})
    for key in ("reasoning_content", "content"):
        value = message.get(key) or ""
        out += b"".join(chunk({key: value[j:j + pieces]}) for j in range(0, len(value), pieces))
    for i, tool in enumerate(message.get("tool_calls") or ()):
        out += chunk({"tool_calls": [{"index": i, "id": tool["id"], "type": "function",
                                      "function": {"name": tool["function"]["name"], "arguments": ""}}]})
        arguments = tool["function"]["arguments"]
        out += b"".join(chunk({"tool_calls": [{"index": i, "function": {"arguments": arguments[j:j + pieces]}}]})
                        for j in range(0, len(arguments), pieces))
    out += chunk({}, body["choices"][0]["finish_reason"])
    if include_usage:
        out += b"data: " + orjson.dumps({**envelope, "choices": [], "usage": body["usage"]}) + b"\n\n"
    return out + b"data: [DONE]\n\n"


def test_the_recorded_tool_call_streamed():
    body = orjson.loads(cassette("openai-recordings/chat-tools.yaml")[0]["response"]["body"])
    events, message = read_back(translated(chat_stream_of(body), messages(stream=True)))
    assert blocks_are_contiguous(events)
    assert [(b.type, b.id, b.name, b.input) for b in message.content] == [
        ("tool_use", "call_8fxy20OEu9ulvvaa5b5CzVA4", "get_current_weather", {"location": "Boston, MA", "unit": "fahrenheit"})]
    assert message.stop_reason == "tool_use" and (message.usage.input_tokens, message.usage.output_tokens) == (162, 287)


def test_a_reasoning_stream_from_the_recorded_thinking():
    """A compatible server's reasoning_content stream: the recorded Anthropic thinking
    stream said in OpenAI's words, then back again."""
    anthropic_body = cassette("anthropic-recordings/anthropic-messages-stream-thinking.yaml")[0]["response"]["body"]
    openai_stream = translation_for("openai", "anthropic", "chat").stream({"stream_options": {"include_usage": True}})
    chat_body = b"".join(openai_stream.event(*e) for e in sse_events(anthropic_body.encode()))
    events, message = read_back(translated(chat_body, messages(stream=True)))
    assert blocks_are_contiguous(events)
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking.startswith("The user wants") and message.content[0].signature == ""
    assert message.content[1].text.endswith('ful take on "pelican"')
    assert (message.usage.input_tokens, message.usage.output_tokens) == (46, 133)


def test_interleaved_tool_calls_make_contiguous_blocks():
    envelope = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    fragments = [{"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": ""}},
                 {"index": 1, "id": "b", "type": "function", "function": {"name": "g", "arguments": '{"y"'}},
                 {"index": 0, "function": {"arguments": '{"x":'}},
                 {"index": 1, "function": {"arguments": ":2}"}},
                 {"index": 0, "function": {"arguments": "1}"}}]
    body = b"".join(b"data: " + orjson.dumps({**envelope, "choices": [{"index": 0, "delta": {"tool_calls": [f]},
                                                                        "finish_reason": None}]}) + b"\n\n"
                    for f in [{"index": 0, "id": "z", "type": "function", "function": {"name": "first", "arguments": "{}"}}]
                    + [{**f, "index": f["index"] + 1} for f in fragments])
    body += b"data: " + orjson.dumps({**envelope, "choices": [{"index": 0, "delta": {"content": "done"},
                                                                "finish_reason": "tool_calls"}]}) + b"\n\ndata: [DONE]\n\n"
    events, message = read_back(translated(body, messages(stream=True)))
    assert blocks_are_contiguous(events)
    assert [(b.type, getattr(b, "id", None), getattr(b, "input", None)) for b in message.content] == [
        ("tool_use", "z", {}), ("tool_use", "a", {"x": 1}), ("tool_use", "b", {"y": 2}), ("text", None, None)]
    assert message.content[3].text == "done"


def test_an_error_chunk_ends_the_stream():
    body = recorded_stream("chat-streaming.yaml")
    events = sse_events(body)[:3] + [({"error": {"message": "boom", "type": "server_error"}}, b"", b"")]
    stream = T.stream(messages(stream=True))
    out = b"".join(stream.event(*e) for e in events) + stream.end()
    datas, _ = read_back(out)
    assert datas[-1] == {"type": "error", "error": {"type": "api_error", "message": "boom"}}
    assert stream.event(*sse_events(body)[-1]) == b""


def test_a_cut_stream_ends_with_an_error_event():
    datas, _ = read_back(translated(recorded_stream("chat-streaming.yaml"), messages(stream=True), cut=5))
    assert datas[-1]["type"] == "error" and "ended before" in datas[-1]["error"]["message"]
    assert not any(d["type"] == "message_stop" for d in datas)


def test_a_stream_missing_only_its_usage_closes_properly():
    body = orjson.loads(cassette("openai-recordings/chat-tools.yaml")[0]["response"]["body"])
    datas, message = read_back(translated(chat_stream_of(body, include_usage=False), messages(stream=True), cut=-1))
    assert datas[-1]["type"] == "message_stop" and message.stop_reason == "tool_use"


def test_an_empty_stream_is_an_error():
    assert b"event: error" in translated(b"data: [DONE]\n\n", messages(stream=True))


# --- round trip: what the caller says and hears survives ----------------------------------

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
ids = st.from_regex(r"toolu_[A-Za-z0-9]{4,12}", fullmatch=True)
names = st.from_regex(r"[a-z_]{1,20}", fullmatch=True)
json_objects = st.dictionaries(names, st.one_of(st.integers(-2**53, 2**53), texts, st.booleans(), st.none()),
                               max_size=4)
counts = st.integers(min_value=0, max_value=10**6)


@st.composite
def conversations(draw: Any) -> dict:
    turns: list[dict] = []
    for _ in range(draw(st.integers(1, 4))):
        uses = draw(st.lists(st.tuples(ids, names, json_objects), max_size=3, unique_by=lambda c: c[0]))
        turns.append(user([text(draw(texts))]))
        turns.append(assistant([text(t) for t in draw(st.lists(texts, max_size=2))] +
                               [tool_use(i, n, a) for i, n, a in uses] or [text(draw(texts))]))
        if uses:
            turns.append(user([tool_result(i, draw(texts)) for i, _, _ in uses]))
    turns.append(user(draw(texts)))
    return messages(*turns, system=draw(texts))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversation=conversations(),
       answer=st.tuples(st.one_of(st.none(), texts), st.lists(st.tuples(ids, names, json_objects), max_size=3),
                        counts, counts, counts, counts))
def test_round_trip_keeps_texts_calls_and_usage(conversation, answer):
    out = T.request(conversation, TARGET, Notes())
    sent_texts = [m["content"] for m in out["messages"] if isinstance(m.get("content"), str)]
    said = [conversation["system"], conversation["messages"][-1]["content"]]
    for turn in conversation["messages"][:-1]:
        blocks = turn["content"]
        if turn["role"] == "assistant":
            joined = "".join(b["text"] for b in blocks if b["type"] == "text")
            said += [joined] if joined else []
        else:
            said += [b.get("text") or b.get("content") for b in blocks]
    assert sorted(sent_texts) == sorted(said)
    assert [(c["id"], c["function"]["name"], orjson.loads(c["function"]["arguments"]))
            for m in out["messages"] for c in m.get("tool_calls") or ()] == \
        [(b["id"], b["name"], b["input"]) for t in conversation["messages"] if isinstance(t["content"], list)
         for b in t["content"] if b["type"] == "tool_use"]

    answer_text, answer_calls, prompt, cached, written, output = answer
    cached, written = min(cached, prompt), min(written, max(prompt - cached, 0))
    body = completion({"content": answer_text,
                       "tool_calls": [call(i, n, orjson.dumps(a).decode()) for i, n, a in answer_calls] or None},
                      "tool_calls" if answer_calls else "stop", prompt_tokens=prompt, completion_tokens=output,
                      prompt_tokens_details={"cached_tokens": cached, "cache_creation_tokens": written})
    streamed = read_back(translated(chat_stream_of(body, pieces=5), conversation))[1]
    for heard in (Message.model_validate(T.response(body, conversation)), streamed):
        assert "".join(b.text for b in heard.content if b.type == "text") == (answer_text or "")
        assert [(b.id, b.name, b.input) for b in heard.content if b.type == "tool_use"] == answer_calls
        assert heard.usage.input_tokens + heard.usage.cache_read_input_tokens + \
            heard.usage.cache_creation_input_tokens == prompt
        assert (heard.usage.cache_read_input_tokens, heard.usage.cache_creation_input_tokens) == (cached, written)
        assert heard.usage.output_tokens == output
