"""The stream codecs of the three dialects (dialects/{chat,messages,responses}_stream.py).

Each Decoder has its rows (a provider's events -> the model's Events) and each Encoder its
rows (Events -> what its caller reads). Then every recorded stream (and every recorded
answer, streamed as its provider streams it) is replayed through its dialect's Decoder and
every other dialect's Encoder, and read back with the official SDKs' own accumulators
(openai's ChatCompletionStreamState and ResponseStreamState, anthropic's
accumulate_event): the text, tool calls, thinking and usage the provider sent must be the
ones the caller hears. Responses providers have no recording: their streams are the
recorded ones written by the Responses Encoder, read back by its Decoder."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import RawMessageStreamEvent
from openai import omit
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseStreamEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from extproc.api.sse import SSEParser
from extproc.api.usage import Usage
from extproc.dialects.anthropic import messages_stream
from extproc.dialects.openai import chat_stream, responses_stream
from extproc.dialects.conversation import (
    END,
    LENGTH,
    REFUSAL,
    TOOL_USE,
    AnswerFormat,
    Conversation,
    Event,
    Notes,
    Problem,
    Reasoning,
    ToolChoice,
)
from extproc.dialects.vocabulary import openai_tool_name
from translation_cases import ABSENT, cassette, contains, sse_events

ANTHROPIC_EVENT = TypeAdapter(RawMessageStreamEvent)
RESPONSES_EVENT = TypeAdapter(ResponseStreamEvent)
LONG_NAME = "a_tool_whose_name_is_longer_than_the_sixty_four_characters_openai_takes"


def chat_caller(**fields: Any) -> Conversation:
    return Conversation("openai", model="gpt-x", stream=True, **fields)


def messages_caller(**fields: Any) -> Conversation:
    return Conversation("anthropic", model="claude-x", stream=True, **fields)


def responses_caller(**fields: Any) -> Conversation:
    return Conversation("openai", model="gpt-x", stream=True, **fields)


# --- the model's Events, compact --------------------------------------------------------

def start(id: str | None = None, model: str | None = None, usage: Usage | None = None) -> Event:
    return Event("start", id=id, model=model, usage=usage)


def block(index: int, **header: Any) -> Event:
    return Event("block", index, block=header)


def delta(index: int, kind: str, text: str) -> Event:
    return Event("delta", index, delta=kind, text=text)


def block_stop(index: int) -> Event:
    return Event("block_stop", index)


def usage(input_tokens: int, output_tokens: int, **details: int) -> Event:
    return Event("usage", usage=Usage(input_tokens, output_tokens, **details))


def stop(reason: str, sequence: str | None = None) -> Event:
    return Event("stop", stop=reason, stop_sequence=sequence)


END_EVENT = Event("end")


def error(kind: str, message: str, **openai: Any) -> Event:
    return Event("error", problem=Problem(kind, message, **openai))


def shape(event: Event) -> tuple:
    """An Event as a tuple of what it says (made-up ids as their prefix)."""
    if event.kind == "start":
        return ("start", event.id, event.model, event.usage)
    if event.kind == "block":
        header = dict(event.block or {})
        if isinstance(header.get("id"), str) and re.fullmatch(r"toolu_[0-9a-f]{24}", header["id"]):
            header["id"] = "toolu_<made up>"
        return ("block", event.index, header)
    if event.kind == "delta":
        return ("delta", event.index, event.delta, event.text)
    if event.kind == "block_stop":
        return ("block_stop", event.index)
    if event.kind == "usage":
        return ("usage", event.usage)
    if event.kind == "stop":
        return ("stop", event.stop, event.stop_sequence)
    if event.kind == "error":
        return ("error", event.problem)
    return (event.kind,)


def decoded(module: Any, conversation: Conversation, events: list[dict | None], notes: Notes | None = None,
            end: bool = True) -> list[tuple]:
    """The Events a Decoder reads from provider events (None: `data: [DONE]`), then its end()."""
    decoder = module.Decoder(conversation, notes)
    out: list[Event] = []
    for data in events:
        raw = b"data: [DONE]\n\n" if data is None else b"data: " + orjson.dumps(data) + b"\n\n"
        name = data.get("type", "").encode() if isinstance(data, dict) and "type" in data else b""
        out.extend(decoder.read(data, name, raw))
    if end:
        out.extend(decoder.end())
    return [shape(event) for event in out]


# --- Decoder rows -------------------------------------------------------------------------

def chunk(delta: dict | None = None, finish: str | None = None, **fields: Any) -> dict:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x-1",
            "choices": choices, **fields}


def call(index: int, arguments: str, id: str | None = None, name: str | None = None) -> dict:
    fragment: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if id is not None or name is not None:
        fragment.update(type="function", **({"id": id} if id else {}))
        fragment["function"]["name"] = name
    return {"tool_calls": [fragment]}


OPENAI_USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
                "prompt_tokens_details": {"cached_tokens": 4, "cache_creation_tokens": 2},
                "completion_tokens_details": {"reasoning_tokens": 3}}
THE_USAGE = Usage(12, 5, cached_tokens=4, reasoning_tokens=3, cache_write_tokens=2)
CUT = ("error", Problem("api_error", "The provider's stream ended before the answer was complete."))

CHAT_DECODER_ROWS = [
    ("the first chunk starts the answer, its role delta adds nothing",
     [chunk({"role": "assistant", "content": "", "refusal": None})], False,
     [("start", "chatcmpl-1", "gpt-x-1", None)]),
    ("reasoning is a thinking block, content after it a text block",
     [chunk({"reasoning_content": "hm"}), chunk({"reasoning": " so"}), chunk({"content": "Hi"}),
      chunk({"content": "!"})], False,
     [("start", "chatcmpl-1", "gpt-x-1", None),
      ("block", 0, {"type": "thinking", "signature": "", "origin": "openai"}), ("delta", 0, "thinking", "hm"),
      ("delta", 0, "thinking", " so"), ("block_stop", 0), ("block", 1, {"type": "text"}), ("delta", 1, "text", "Hi"),
      ("delta", 1, "text", "!")]),
    ("a refusal is text, and the answer stops as REFUSAL",
     [chunk({"refusal": "No."}), chunk({}, "stop"), chunk(usage=OPENAI_USAGE)], False,
     [("start", "chatcmpl-1", "gpt-x-1", None), ("block", 0, {"type": "text"}), ("delta", 0, "text", "No."),
      ("block_stop", 0), ("stop", REFUSAL, None), ("usage", THE_USAGE), ("end",)]),
    ("interleaved calls keep a block each; a shortened name restored, a missing id made up",
     [chunk(call(0, "", "call_a", "f")), chunk(call(1, '{"y"', None, openai_tool_name(LONG_NAME))),
      chunk(call(0, '{"x":1}')), chunk(call(1, ":2}")), chunk({}, "tool_calls"), chunk(usage=OPENAI_USAGE)], False,
     [("start", "chatcmpl-1", "gpt-x-1", None), ("block", 0, {"type": "tool_use", "id": "call_a", "name": "f"}),
      ("block", 1, {"type": "tool_use", "id": "toolu_<made up>", "name": LONG_NAME}), ("delta", 1, "json", '{"y"'),
      ("delta", 0, "json", '{"x":1}'), ("delta", 1, "json", ":2}"), ("block_stop", 0), ("block_stop", 1),
      ("stop", TOOL_USE, None), ("usage", THE_USAGE), ("end",)]),
    ("text after a call is a new block; the call's block stays open",
     [chunk({"content": "a"}), chunk(call(0, "{}", "c", "f")), chunk({"content": "b"}), chunk({}, "length"),
      None], False,
     [("start", "chatcmpl-1", "gpt-x-1", None), ("block", 0, {"type": "text"}), ("delta", 0, "text", "a"),
      ("block_stop", 0), ("block", 1, {"type": "tool_use", "id": "c", "name": "f"}), ("delta", 1, "json", "{}"),
      ("block", 2, {"type": "text"}), ("delta", 2, "text", "b"), ("block_stop", 1), ("block_stop", 2),
      ("stop", LENGTH, None), ("end",)]),
    ("usage on the finish chunk ends the answer there; what follows is nothing",
     [chunk({"content": "a"}, "stop", usage=OPENAI_USAGE), chunk(usage=OPENAI_USAGE), None], False,
     [("start", "chatcmpl-1", "gpt-x-1", None), ("block", 0, {"type": "text"}), ("delta", 0, "text", "a"),
      ("block_stop", 0), ("stop", END, None), ("usage", THE_USAGE), ("end",)]),
    ("an error chunk ends the stream, OpenAI's words kept",
     [chunk({"content": "a"}), {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}},
      chunk({"content": "b"})], True,
     [("start", "chatcmpl-1", "gpt-x-1", None), ("block", 0, {"type": "text"}), ("delta", 0, "text", "a"),
      ("error", Problem("rate_limit_error", "slow down", openai_type="requests", code="rate_limit_exceeded"))]),
    ("a stream of [DONE] alone is an error", [None], True,
     [("error", Problem("api_error", "The provider's stream was empty."))]),
    ("a stream cut before its finish is an error", [chunk({"content": "a"})], True,
     [("start", "chatcmpl-1", "gpt-x-1", None), ("block", 0, {"type": "text"}), ("delta", 0, "text", "a"), CUT]),
    ("a stream missing only its usage chunk ends", [chunk({"content": "a"}, "stop")], True,
     [("start", "chatcmpl-1", "gpt-x-1", None), ("block", 0, {"type": "text"}), ("delta", 0, "text", "a"),
      ("block_stop", 0), ("stop", END, None), ("end",)]),
]


@pytest.mark.parametrize("name,events,end,expected", CHAT_DECODER_ROWS, ids=[row[0] for row in CHAT_DECODER_ROWS])
def test_chat_decoder(name, events, end, expected):
    conversation = messages_caller(tools=[{"name": LONG_NAME, "input_schema": {"type": "object"}}])
    assert decoded(chat_stream, conversation, events, end=end) == expected


def test_chat_decoder_notes_a_missing_usage_chunk():
    notes = Notes()
    decoded(chat_stream, messages_caller(), [chunk({"content": "a"}, "stop"), None], notes)
    assert notes.dropped == ["usage:missing"]
    notes = Notes()
    decoded(chat_stream, messages_caller(), [chunk({"content": "a"}, "stop"), chunk(usage=OPENAI_USAGE), None], notes)
    assert notes.dropped == []


def anthropic(kind: str, **fields: Any) -> dict:
    return {"type": kind, **fields}


MESSAGE_START = anthropic("message_start", message={
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x-1", "content": [],
    "stop_reason": None, "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 1,
                                   "output_tokens": 1}})
STARTED = ("start", "msg_1", "claude-x-1", Usage(16, 1, cached_tokens=5, cache_write_tokens=1))


def content_start(index: int, **block_fields: Any) -> dict:
    return anthropic("content_block_start", index=index, content_block=block_fields)


def content_delta(index: int, **delta_fields: Any) -> dict:
    return anthropic("content_block_delta", index=index, delta=delta_fields)


def message_delta(reason: str, output_tokens: int = 7, sequence: str | None = None) -> dict:
    return anthropic("message_delta", delta={"stop_reason": reason, "stop_sequence": sequence},
                     usage={"output_tokens": output_tokens})


FINAL_USAGE = ("usage", Usage(16, 7, cached_tokens=5, cache_write_tokens=1))

MESSAGES_DECODER_ROWS = [
    ("text, its stop, usage as it grows, the end", messages_caller(),
     [MESSAGE_START, content_start(0, type="text", text=""), anthropic("ping"),
      content_delta(0, type="text_delta", text="Hi"), anthropic("content_block_stop", index=0),
      message_delta("stop_sequence", sequence="##"), anthropic("message_stop")], True,
     [STARTED, ("block", 0, {"type": "text"}), ("delta", 0, "text", "Hi"), ("block_stop", 0),
      ("stop", "stop_sequence", "##"), FINAL_USAGE, ("end",)]),
    ("thinking with its signature, a tool call with its input", messages_caller(),
     [MESSAGE_START, content_start(0, type="thinking", thinking="", signature=""),
      content_delta(0, type="thinking_delta", thinking="hm"), content_delta(0, type="signature_delta", signature="SIG"),
      anthropic("content_block_stop", index=0), content_start(1, type="tool_use", id="toolu_1", name="f", input={}),
      content_delta(1, type="input_json_delta", partial_json='{"a":'), content_delta(1, type="input_json_delta",
                                                                                   partial_json="1}"),
      anthropic("content_block_stop", index=1), message_delta("tool_use")], False,
     [STARTED, ("block", 0, {"type": "thinking", "signature": "", "origin": "anthropic"}),
      ("delta", 0, "thinking", "hm"), ("delta", 0, "signature", "SIG"), ("block_stop", 0),
      ("block", 1, {"type": "tool_use", "id": "toolu_1", "name": "f"}), ("delta", 1, "json", '{"a":'),
      ("delta", 1, "json", "1}"), ("block_stop", 1), ("stop", TOOL_USE, None), FINAL_USAGE]),
    ("the JSON_TOOL call is the answer's text; its tool_use stop is END",
     chat_caller(answer_format=AnswerFormat("json_object")),
     [MESSAGE_START, content_start(0, type="tool_use", id="toolu_1", name="json_tool_call", input={}),
      content_delta(0, type="input_json_delta", partial_json='{"a":1}'), anthropic("content_block_stop", index=0),
      message_delta("tool_use"), anthropic("message_stop")], True,
     [STARTED, ("block", 0, {"type": "text"}), ("delta", 0, "text", '{"a":1}'), ("block_stop", 0), ("stop", END, None),
      FINAL_USAGE, ("end",)]),
    ("a tool named json_tool_call without an answer format is a call",
     chat_caller(answer_format=AnswerFormat("json_object"), tool_choice=ToolChoice("any")),
     [MESSAGE_START, content_start(0, type="tool_use", id="toolu_1", name="json_tool_call", input={"a": 1}),
      message_delta("tool_use")], False,
     [STARTED, ("block", 0, {"type": "tool_use", "id": "toolu_1", "name": "json_tool_call"}),
      ("delta", 0, "json", '{"a":1}'), ("stop", TOOL_USE, None), FINAL_USAGE]),
    ("redacted thinking is a block of its own; a server tool's block and citations are nothing",
     messages_caller(),
     [MESSAGE_START, content_start(0, type="redacted_thinking", data="XYZ"), anthropic("content_block_stop", index=0),
      content_start(1, type="server_tool_use", id="srv", name="web_search", input={}),
      content_delta(1, type="input_json_delta", partial_json="{}"), anthropic("content_block_stop", index=1),
      content_start(2, type="text", text="Hey"), content_delta(2, type="citations_delta", citation={})], False,
     [STARTED, ("block", 0, {"type": "redacted_thinking", "data": "XYZ", "origin": "anthropic"}), ("block_stop", 0),
      ("block", 2, {"type": "text"}), ("delta", 2, "text", "Hey")]),
    ("an error event ends the stream", messages_caller(),
     [MESSAGE_START, anthropic("error", error={"type": "overloaded_error", "message": "Overloaded"}),
      anthropic("message_stop")], True,
     [STARTED, ("error", Problem("overloaded_error", "Overloaded"))]),
    ("a stream cut before its stop is an error", messages_caller(), [MESSAGE_START], True, [STARTED, CUT]),
    ("a stream missing only message_stop ends", messages_caller(), [MESSAGE_START, message_delta("max_tokens")], True,
     [STARTED, ("stop", LENGTH, None), FINAL_USAGE, ("end",)]),
]


@pytest.mark.parametrize("name,conversation,events,end,expected", MESSAGES_DECODER_ROWS,
                         ids=[row[0] for row in MESSAGES_DECODER_ROWS])
def test_messages_decoder(name, conversation, events, end, expected):
    assert decoded(messages_stream, conversation, events, end=end) == expected


def test_messages_decoder_notes_a_server_tools_block():
    notes = Notes()
    decoded(messages_stream, messages_caller(), [MESSAGE_START, content_start(0, type="web_search_tool_result")], notes)
    assert notes.dropped == ["content[].web_search_tool_result"]


def responses(kind: str, **fields: Any) -> dict:
    return {"type": f"response.{kind}", **fields}


CREATED = responses("created", response={"id": "resp_1", "model": "gpt-r", "status": "in_progress"})
RESPONSES_USAGE = {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 2}, "output_tokens": 4,
                   "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 13}
R_USAGE = ("usage", Usage(9, 4, cached_tokens=2, reasoning_tokens=1))


def text_delta(index: int, text: str) -> dict:
    return responses("output_text.delta", output_index=index, content_index=0, delta=text)


def function_call(index: int, name: str, call_id: str = "call_1", arguments: str = "") -> dict:
    return responses("output_item.added", output_index=index,
                     item={"type": "function_call", "id": "fc_1", "call_id": call_id, "name": name,
                           "arguments": arguments})


def completed(status: str = "completed", **fields: Any) -> dict:
    return responses(status, response={"id": "resp_1", "status": status, "usage": RESPONSES_USAGE, **fields})


RESPONSES_DECODER_ROWS = [
    ("reasoning, text and a call, each item a block, stopped when done",
     [CREATED, responses("in_progress"), responses("output_item.added", output_index=0, item={"type": "reasoning"}),
      responses("reasoning_summary_text.delta", output_index=0, summary_index=0, delta="hm"),
      responses("output_item.done", output_index=0, item={"type": "reasoning"}),
      responses("output_item.added", output_index=1, item={"type": "message"}), text_delta(1, "Hi"),
      responses("output_text.done", output_index=1, text="Hi"), responses("output_item.done", output_index=1, item={}),
      function_call(2, openai_tool_name(LONG_NAME)),
      responses("function_call_arguments.delta", output_index=2, delta="{}"),
      responses("output_item.done", output_index=2, item={}), completed()],
     [("start", "resp_1", "gpt-r", None),
      ("block", 0, {"type": "thinking", "signature": "", "origin": "openai-responses"}),
      ("delta", 0, "thinking", "hm"), ("block_stop", 0), ("block", 1, {"type": "text"}), ("delta", 1, "text", "Hi"),
      ("block_stop", 1), ("block", 2, {"type": "tool_use", "id": "call_1", "name": LONG_NAME}),
      ("delta", 2, "json", "{}"), ("block_stop", 2), ("stop", TOOL_USE, None), R_USAGE, ("end",)]),
    ("blocks never said done stop at the end; arguments only in output_item.done are kept",
     [CREATED, text_delta(0, "a"), function_call(1, "f"),
      responses("output_item.done", output_index=1, item={"type": "function_call", "arguments": '{"q":1}'}),
      completed()],
     [("start", "resp_1", "gpt-r", None), ("block", 0, {"type": "text"}), ("delta", 0, "text", "a"),
      ("block", 1, {"type": "tool_use", "id": "call_1", "name": "f"}), ("delta", 1, "json", '{"q":1}'),
      ("block_stop", 1), ("block_stop", 0), ("stop", TOOL_USE, None), R_USAGE, ("end",)]),
    ("a refusal is a refusal block and stops as REFUSAL",
     [CREATED, responses("refusal.delta", output_index=0, content_index=0, delta="No."), completed()],
     [("start", "resp_1", "gpt-r", None), ("block", 0, {"type": "text", "refusal": True}), ("delta", 0, "text", "No."),
      ("block_stop", 0), ("stop", REFUSAL, None), R_USAGE, ("end",)]),
    ("incomplete at max_output_tokens is LENGTH",
     [CREATED, text_delta(0, "a"), completed("incomplete", incomplete_details={"reason": "max_output_tokens"})],
     [("start", "resp_1", "gpt-r", None), ("block", 0, {"type": "text"}), ("delta", 0, "text", "a"),
      ("block_stop", 0), ("stop", LENGTH, None), R_USAGE, ("end",)]),
    ("no response.created: the first event starts it",
     [text_delta(0, "a")], [("start", None, None, None), ("block", 0, {"type": "text"}), ("delta", 0, "text", "a"),
                            CUT]),
    ("response.failed is an error",
     [CREATED, responses("failed", response={"status": "failed", "error": {"code": "server_error",
                                                                            "message": "boom"}}), completed()],
     [("start", "resp_1", "gpt-r", None), ("error", Problem("api_error", "boom"))]),
    ("an error event is an error of its code",
     [CREATED, {"type": "error", "code": "rate_limit_exceeded", "message": "slow", "param": None}],
     [("start", "resp_1", "gpt-r", None), ("error", Problem("rate_limit_error", "slow"))]),
]


@pytest.mark.parametrize("name,events,expected", RESPONSES_DECODER_ROWS, ids=[row[0] for row in RESPONSES_DECODER_ROWS])
def test_responses_decoder(name, events, expected):
    conversation = chat_caller(tools=[{"name": LONG_NAME, "input_schema": {"type": "object"}}])
    assert decoded(responses_stream, conversation, events) == expected


def test_responses_decoder_notes_a_built_in_tools_item():
    notes = Notes()
    decoded(responses_stream, chat_caller(), [CREATED, responses("output_item.added", output_index=0,
                                                                 item={"type": "web_search_call"})], notes)
    assert notes.dropped == ["output[].web_search_call"]


# --- Encoder rows ---------------------------------------------------------------------------

def written(module: Any, conversation: Conversation, events: list[Event], cost_usd: float | None = None,
            notes: Notes | None = None) -> bytes:
    encoder = module.Encoder(conversation, notes)
    encoder.cost_usd = cost_usd
    return b"".join(encoder.write(event) for event in events)


def without_time(out: bytes) -> bytes:
    return re.sub(rb'"created(_at)?":\d+', rb'"created\1":0', out)


HEAD = b'data: {"id":"msg_1","object":"chat.completion.chunk","created":0,"model":"claude-x-1",' \
       b'"system_fingerprint":null,"choices":[{"index":0,"delta":'

CHAT_ENCODER_ROWS = [
    ("text, thinking and a call, written around fixed envelope bytes; usage null on every chunk, then the usage chunk",
     chat_caller(include_usage=True),
     [start("msg_1", "claude-x-1", Usage(10, 1)), block(0, type="thinking", signature="s", origin="anthropic"),
      delta(0, "thinking", "hm"), delta(0, "signature", "s"), block_stop(0), block(1, type="text"),
      delta(1, "text", 'Hi "you"'), block(2, type="tool_use", id="toolu_1", name="f"), delta(2, "json", '{"a":'),
      delta(2, "json", "1}"), stop(TOOL_USE), usage(10, 7, cached_tokens=4), END_EVENT], 0.5,
     HEAD + b'{"role":"assistant","content":"","refusal":null},"finish_reason":null}],"usage":null}\n\n' +
     HEAD + b'{"reasoning_content":"hm"},"finish_reason":null}],"usage":null}\n\n' +
     HEAD + b'{"content":"Hi \\"you\\""},"finish_reason":null}],"usage":null}\n\n' +
     HEAD + b'{"tool_calls":[{"index":0,"id":"toolu_1","type":"function","function":{"name":"f","arguments":""}}]},'
            b'"finish_reason":null}],"usage":null}\n\n' +
     HEAD + b'{"tool_calls":[{"index":0,"function":{"arguments":"{\\"a\\":"}}]},"finish_reason":null}],'
            b'"usage":null}\n\n' +
     HEAD + b'{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]},"finish_reason":null}],"usage":null}\n\n' +
     HEAD + b'{},"finish_reason":"tool_calls"}],"usage":null}\n\n' +
     b'data: {"id":"msg_1","object":"chat.completion.chunk","created":0,"model":"claude-x-1","system_fingerprint":null,'
     b'"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":7,"total_tokens":17,"prompt_tokens_details":'
     b'{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":0},"cost_usd":0.5}}\n\n'
     b"data: [DONE]\n\n"),
    ("without include_usage: no usage anywhere; a tool-use stop with no call is `stop`; the request's model",
     chat_caller(), [start(), block(0, type="text"), delta(0, "text", "{}"), stop(TOOL_USE), END_EVENT], None,
     b'data: {"id":"chatcmpl-gateway","object":"chat.completion.chunk","created":0,"model":"gpt-x",'
     b'"system_fingerprint":null,"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},'
     b'"finish_reason":null}]}\n\n'
     b'data: {"id":"chatcmpl-gateway","object":"chat.completion.chunk","created":0,"model":"gpt-x",'
     b'"system_fingerprint":null,"choices":[{"index":0,"delta":{"content":"{}"},"finish_reason":null}]}\n\n'
     b'data: {"id":"chatcmpl-gateway","object":"chat.completion.chunk","created":0,"model":"gpt-x",'
     b'"system_fingerprint":null,"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
     b"data: [DONE]\n\n"),
    ("an error ends the stream without [DONE], in OpenAI's words for its kind",
     chat_caller(include_usage=True), [start("msg_1", "claude-x-1"), error("overloaded_error", "Overloaded"),
                                       END_EVENT], None,
     HEAD + b'{"role":"assistant","content":"","refusal":null},"finish_reason":null}],"usage":null}\n\n'
     b'data: {"error":{"message":"Overloaded","type":"server_error","param":null,"code":null}}\n\n'),
    ("an error a provider wrote in OpenAI's words keeps them", chat_caller(),
     [error("rate_limit_error", "slow", openai_type="tokens", code="rate_limit_exceeded", param="x")], None,
     b'data: {"error":{"message":"slow","type":"tokens","param":"x","code":"rate_limit_exceeded"}}\n\n'),
]


@pytest.mark.parametrize("name,conversation,events,cost,expected", CHAT_ENCODER_ROWS,
                         ids=[row[0] for row in CHAT_ENCODER_ROWS])
def test_chat_encoder(name, conversation, events, cost, expected):
    assert without_time(written(chat_stream, conversation, events, cost)) == expected


def chat_deltas(out: bytes) -> list[tuple[dict, Any]]:
    chunks = [orjson.loads(event.data) for event in SSEParser().feed(out, final=True) if not event.is_done]
    return [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in chunks if c.get("choices")]


@pytest.mark.parametrize("stop_reason,finish", [(END, "stop"), (LENGTH, "length"), (REFUSAL, "content_filter"),
                                                ("stop_sequence", "stop"), ("pause", "stop"),
                                                ("content_filter", "content_filter")])
def test_chat_encoder_finish_reasons(stop_reason, finish):
    out = written(chat_stream, chat_caller(), [start(), stop(stop_reason), END_EVENT])
    assert chat_deltas(out)[-1] == ({}, finish)


def test_chat_encoder_writes_a_refusal_block_as_the_refusal():
    out = written(chat_stream, chat_caller(), [start(), block(0, type="text", refusal=True), delta(0, "text", "No."),
                                               stop(REFUSAL), END_EVENT])
    assert chat_deltas(out)[1:] == [({"refusal": "No."}, None), ({}, "stop")]


def test_chat_encoder_writes_nothing_after_its_end():
    encoder = chat_stream.Encoder(chat_caller(), None)
    for event in (start(), stop(END), END_EVENT):
        encoder.write(event)
    assert encoder.write(block(0, type="text")) == encoder.write(error("api_error", "late")) == b""


def anthropic_events(out: bytes) -> list[dict]:
    events = SSEParser().feed(out, final=True)
    datas = [orjson.loads(event.data) for event in events]
    assert all(event.name.decode() == data["type"] for event, data in zip(events, datas))
    return datas


def content_block_start(index: int, **content_block: Any) -> dict:
    return {"type": "content_block_start", "index": index, "content_block": content_block}


def content_block_delta(index: int, **delta_fields: Any) -> dict:
    return {"type": "content_block_delta", "index": index, "delta": delta_fields}


def content_block_stop(index: int) -> dict:
    return {"type": "content_block_stop", "index": index}


MESSAGE_STARTED = {"type": "message_start", "message": {
    "id": "chatcmpl-1", "type": "message", "role": "assistant", "model": "gpt-x-1", "content": [],
    "stop_reason": None, "stop_sequence": None,
    "usage": {"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0}}}
MESSAGE_STOP = {"type": "message_stop"}


def message_delta_out(reason: str, sequence: str | None = None, **usage_fields: Any) -> dict:
    return {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": sequence},
            "usage": usage_fields}


MESSAGES_ENCODER_ROWS = [
    ("blocks one after another; usage as Anthropic counts it, with the cost",
     messages_caller(),
     [start("chatcmpl-1", "gpt-x-1"), block(0, type="thinking", signature="", origin="openai"),
      delta(0, "thinking", "hm"), block_stop(0), block(1, type="text"), delta(1, "text", "Hi"),
      block(2, type="tool_use", id="call_1", name="f"), delta(2, "json", '{"a":'), delta(2, "json", "1}"),
      block_stop(1), block_stop(2), stop(TOOL_USE), usage(12, 5, cached_tokens=4, cache_write_tokens=2), END_EVENT],
     [MESSAGE_STARTED, content_block_start(0, type="thinking", thinking="", signature=""),
      content_block_delta(0, type="thinking_delta", thinking="hm"), content_block_stop(0),
      content_block_start(1, type="text", text=""), content_block_delta(1, type="text_delta", text="Hi"),
      content_block_stop(1), content_block_start(2, type="tool_use", id="call_1", name="f", input={}),
      content_block_delta(2, type="input_json_delta", partial_json='{"a":'),
      content_block_delta(2, type="input_json_delta", partial_json="1}"), content_block_stop(2),
      message_delta_out("tool_use", input_tokens=6, cache_creation_input_tokens=2, cache_read_input_tokens=4,
                        output_tokens=5, cost_usd=0.25), MESSAGE_STOP]),
    ("interleaved calls are written contiguously: a call waits until the open one's arguments are whole",
     messages_caller(),
     [start("chatcmpl-1", "gpt-x-1"), block(0, type="tool_use", id="z", name="first"), delta(0, "json", "{}"),
      block(1, type="tool_use", id="a", name="f"), block(2, type="tool_use", id="b", name="g"),
      delta(2, "json", '{"y"'), delta(1, "json", '{"x":'), delta(2, "json", ":2}"), delta(1, "json", "1}"),
      block(3, type="text"), delta(3, "text", "done"), stop(TOOL_USE), END_EVENT],
     [MESSAGE_STARTED, content_block_start(0, type="tool_use", id="z", name="first", input={}),
      content_block_delta(0, type="input_json_delta", partial_json="{}"), content_block_stop(0),
      content_block_start(1, type="tool_use", id="a", name="f", input={}),
      content_block_delta(1, type="input_json_delta", partial_json='{"x":'),
      content_block_delta(1, type="input_json_delta", partial_json="1}"), content_block_stop(1),
      content_block_start(2, type="tool_use", id="b", name="g", input={}),
      content_block_delta(2, type="input_json_delta", partial_json='{"y":2}'), content_block_stop(2),
      content_block_start(3, type="text", text=""), content_block_delta(3, type="text_delta", text="done"),
      content_block_stop(3), message_delta_out("tool_use", output_tokens=0), MESSAGE_STOP]),
    ("what waits is written once the open block stops",
     messages_caller(),
     [start("chatcmpl-1", "gpt-x-1"), block(0, type="tool_use", id="a", name="f"), block(1, type="text"),
      delta(1, "text", "x"), block_stop(1), block(2, type="text"), delta(2, "text", "y"), block_stop(0)],
     [MESSAGE_STARTED, content_block_start(0, type="tool_use", id="a", name="f", input={}), content_block_stop(0),
      content_block_start(1, type="text", text=""), content_block_delta(1, type="text_delta", text="x"),
      content_block_stop(1), content_block_start(2, type="text", text=""),
      content_block_delta(2, type="text_delta", text="y")]),
    ("thinking hidden when the caller asked display omitted; a signature only for Anthropic's thinking",
     messages_caller(reasoning=Reasoning(budget=2048, hidden=True)),
     [start("chatcmpl-1", "gpt-x-1"), block(0, type="thinking", signature="", origin="openai"),
      delta(0, "thinking", "hm"), block_stop(0), block(1, type="text"), delta(1, "text", "Hi"), stop(END), END_EVENT],
     [MESSAGE_STARTED, content_block_start(0, type="text", text=""),
      content_block_delta(0, type="text_delta", text="Hi"),
      content_block_stop(0), message_delta_out("end_turn"), MESSAGE_STOP]),
    ("Anthropic's own thinking keeps its signature, its redacted thinking is kept",
     messages_caller(),
     [start("msg_1", "claude-x-1", Usage(16, 1, cached_tokens=5, cache_write_tokens=1)),
      block(0, type="thinking", signature="", origin="anthropic"), delta(0, "thinking", "hm"),
      delta(0, "signature", "SIG"), block_stop(0), block(1, type="redacted_thinking", data="XYZ", origin="anthropic"),
      block_stop(1), block(2, type="redacted_thinking", data="other", origin="gemini"), block_stop(2),
      stop("stop_sequence", "##"), END_EVENT],
     [{"type": "message_start", "message": {"id": "msg_1", "usage": {
         "input_tokens": 10, "cache_creation_input_tokens": 1, "cache_read_input_tokens": 5, "output_tokens": 1}}},
      content_block_start(0, type="thinking", thinking="", signature=""),
      content_block_delta(0, type="thinking_delta", thinking="hm"),
      content_block_delta(0, type="signature_delta", signature="SIG"), content_block_stop(0),
      content_block_start(1, type="redacted_thinking", data="XYZ"), content_block_stop(1),
      message_delta_out("stop_sequence", "##", input_tokens=10, output_tokens=1), MESSAGE_STOP]),
    ("an error is Anthropic's error event, and the stream ends", messages_caller(),
     [start("chatcmpl-1", "gpt-x-1"), block(0, type="text"), delta(0, "text", "a"),
      error("rate_limit_error", "slow"), END_EVENT],
     [MESSAGE_STARTED, content_block_start(0, type="text", text=""),
      content_block_delta(0, type="text_delta", text="a"),
      {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}]),
    ("stops as Anthropic names them; no start: made up", messages_caller(),
     [stop("content_filter"), END_EVENT],
     [{"type": "message_start", "message": {"model": "claude-x"}}, message_delta_out("refusal"), MESSAGE_STOP]),
]


@pytest.mark.parametrize("name,conversation,events,expected", MESSAGES_ENCODER_ROWS,
                         ids=[row[0] for row in MESSAGES_ENCODER_ROWS])
def test_messages_encoder(name, conversation, events, expected):
    contains(anthropic_events(written(messages_stream, conversation, events, 0.25)), expected)


def test_messages_encoder_notes_arguments_after_their_block():
    notes = Notes()
    out = written(messages_stream, messages_caller(),
                  [start(), block(0, type="tool_use", id="a", name="f"), delta(0, "json", "{}"),
                   block(1, type="text"), delta(1, "text", "x"), delta(0, "json", " ")], notes=notes)
    assert [e["type"] for e in anthropic_events(out)][-1] == "content_block_delta"
    assert notes.dropped == ["tool_calls[].function.arguments:after_its_block"]


def responses_events(out: bytes) -> list[dict]:
    events = SSEParser().feed(out, final=True)
    datas = [orjson.loads(event.data) for event in events]
    assert all(event.name.decode() == data["type"] for event, data in zip(events, datas))
    assert [data["sequence_number"] for data in datas] == list(range(len(datas)))
    return datas


ITEM = re.compile(r"(rs|msg|fc)_[0-9a-f]{32}\d\d")

RESPONSES_ENCODER_ROWS = [
    ("each item added, its deltas, closed whole when the next begins; the completed response with usage and cost",
     responses_caller(echo={"max_output_tokens": 50}),
     [start("msg_1", "claude-x-1", Usage(10, 1)), block(0, type="thinking", signature="", origin="anthropic"),
      delta(0, "thinking", "hm"), delta(0, "signature", "SIG"), block_stop(0), block(1, type="text"),
      delta(1, "text", "Hi"), block_stop(1), block(2, type="tool_use", id="toolu_1", name="f"),
      delta(2, "json", '{"a":1}'), block_stop(2), stop(TOOL_USE), usage(10, 7), END_EVENT],
     [{"type": "response.created", "response": {"status": "in_progress", "model": "claude-x-1", "output": [],
                                                 "max_output_tokens": 50}},
      {"type": "response.in_progress"},
      {"type": "response.output_item.added", "output_index": 0, "item": {"type": "reasoning", "summary": []}},
      {"type": "response.reasoning_summary_part.added", "output_index": 0, "summary_index": 0},
      {"type": "response.reasoning_summary_text.delta", "output_index": 0, "summary_index": 0, "delta": "hm"},
      {"type": "response.reasoning_summary_text.done", "text": "hm"},
      {"type": "response.reasoning_summary_part.done", "part": {"type": "summary_text", "text": "hm"}},
      {"type": "response.output_item.done", "output_index": 0},
      {"type": "response.output_item.added", "output_index": 1,
       "item": {"type": "message", "status": "in_progress", "content": []}},
      {"type": "response.content_part.added", "output_index": 1, "content_index": 0},
      {"type": "response.output_text.delta", "output_index": 1, "content_index": 0, "delta": "Hi", "logprobs": []},
      {"type": "response.output_text.done", "text": "Hi"}, {"type": "response.content_part.done"},
      {"type": "response.output_item.done", "output_index": 1},
      {"type": "response.output_item.added", "output_index": 2,
       "item": {"type": "function_call", "call_id": "toolu_1", "name": "f", "arguments": "", "status": "in_progress"}},
      {"type": "response.function_call_arguments.delta", "output_index": 2, "delta": '{"a":1}'},
      {"type": "response.function_call_arguments.done", "arguments": '{"a":1}'},
      {"type": "response.output_item.done", "output_index": 2,
       "item": {"type": "function_call", "arguments": '{"a":1}', "status": "completed"}},
      {"type": "response.completed", "response": {
          "status": "completed", "incomplete_details": None,
          "output": [{"type": "reasoning", "summary": [{"text": "hm"}]},
                     {"type": "message", "content": [{"text": "Hi"}]}, {"type": "function_call", "call_id": "toolu_1"}],
          "usage": {"input_tokens": 10, "output_tokens": 7, "total_tokens": 17, "cost_usd": 0.5}}}]),
    ("consecutive text blocks are one message item; cut at the cap: incomplete",
     responses_caller(),
     [start("msg_1", "claude-x-1"), block(0, type="text"), delta(0, "text", "a"), block_stop(0), block(1, type="text"),
      delta(1, "text", "b"), stop(LENGTH), END_EVENT],
     [{"type": "response.created"}, {"type": "response.in_progress"}, {"type": "response.output_item.added"},
      {"type": "response.content_part.added"}, {"type": "response.output_text.delta", "delta": "a"},
      {"type": "response.output_text.delta", "delta": "b", "output_index": 0}, {"type": "response.output_text.done"},
      {"type": "response.content_part.done"}, {"type": "response.output_item.done"},
      {"type": "response.incomplete", "response": {
          "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
          "output": [{"type": "message", "content": [{"text": "ab"}]}], "usage": {"cost_usd": 0.5}}}]),
    ("an error is an error event and response.failed; a stream that never started starts first",
     responses_caller(), [error("overloaded_error", "Overloaded"), END_EVENT],
     [{"type": "response.created", "response": {"model": "gpt-x"}}, {"type": "response.in_progress"},
      {"type": "error", "code": "server_error", "message": "Overloaded", "param": None},
      {"type": "response.failed", "response": {"status": "failed", "usage": None,
                                                "error": {"code": "server_error", "message": "Overloaded"}}}]),
    ("an error with OpenAI's code keeps it", responses_caller(),
     [start(), error("rate_limit_error", "slow")],
     [{"type": "response.created"}, {"type": "response.in_progress"},
      {"type": "error", "code": "rate_limit_exceeded", "message": "slow"},
      {"type": "response.failed", "response": {"error": {"code": "rate_limit_exceeded"}, "cost_usd": ABSENT}}]),
    ("a refused request fails with a code of the Responses API's own", responses_caller(),
     [start(), error("invalid_request_error", "too long")],
     [{"type": "response.created"}, {"type": "response.in_progress"},
      {"type": "error", "code": "invalid_request_error", "message": "too long"},
      {"type": "response.failed", "response": {"error": {"code": "invalid_prompt", "message": "too long"}}}]),
]


@pytest.mark.parametrize("name,conversation,events,expected", RESPONSES_ENCODER_ROWS,
                         ids=[row[0] for row in RESPONSES_ENCODER_ROWS])
def test_responses_encoder(name, conversation, events, expected):
    datas = responses_events(written(responses_stream, conversation, events, 0.5))
    contains(datas, expected)
    ids = {data["response"]["id"] for data in datas if "response" in data}
    assert len(ids) == 1 and ids.pop().startswith("resp_")
    item_ids = [data["item_id"] for data in datas if "item_id" in data] + \
        [data["item"]["id"] for data in datas if "item" in data]
    assert all(ITEM.fullmatch(ident) for ident in item_ids)


# --- golden replays: every recorded stream, through every other dialect ---------------------

class Heard(NamedTuple):
    """What a caller hears of an answer."""
    text: str
    thinking: str
    calls: list[tuple[str, str, Any]]
    prompt_tokens: int
    output_tokens: int
    failed: bool


def anthropic_stream_of(message: dict) -> bytes:
    """The events Anthropic streams for a message (text and tool input cut in pieces)."""
    def event(data: dict) -> bytes:
        return b"event: " + data["type"].encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
    first = {**message["usage"], "output_tokens": min(1, message["usage"]["output_tokens"])}
    out = event({"type": "message_start", "message": {**message, "content": [], "stop_reason": None, "usage": first}})
    for i, content in enumerate(message["content"]):
        if content["type"] == "tool_use":
            out += event({"type": "content_block_start", "index": i, "content_block": {**content, "input": {}}})
            text = orjson.dumps(content["input"]).decode()
            pieces = [{"type": "input_json_delta", "partial_json": text[j:j + 7]} for j in range(0, len(text), 7)]
        else:
            out += event({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}})
            text = content["text"]
            pieces = [{"type": "text_delta", "text": text[j:j + 9]} for j in range(0, len(text), 9)]
        out += b"".join(event({"type": "content_block_delta", "index": i, "delta": piece}) for piece in pieces)
        out += event({"type": "content_block_stop", "index": i})
    out += event({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                  "usage": message["usage"]})
    return out + event({"type": "message_stop"})


def chat_stream_of(body: dict, pieces: int = 6) -> bytes:
    """The chunks OpenAI streams for a chat.completion (text and arguments cut in pieces)."""
    envelope = {"id": body["id"], "object": "chat.completion.chunk", "created": body["created"], "model": body["model"]}

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        return b"data: " + orjson.dumps({**envelope, "choices": [{"index": 0, "delta": delta,
                                                                   "finish_reason": finish}]}) + b"\n\n"
    message = body["choices"][0]["message"]
    out = chunk({"role": "assistant", "content": "", "refusal": None})
    text = message.get("content") or ""
    out += b"".join(chunk({"content": text[j:j + pieces]}) for j in range(0, len(text), pieces))
    for i, tool in enumerate(message.get("tool_calls") or ()):
        out += chunk({"tool_calls": [{"index": i, "id": tool["id"], "type": "function",
                                      "function": {"name": tool["function"]["name"], "arguments": ""}}]})
        arguments = tool["function"]["arguments"]
        out += b"".join(chunk({"tool_calls": [{"index": i, "function": {"arguments": arguments[j:j + pieces]}}]})
                        for j in range(0, len(arguments), pieces))
    out += chunk({}, body["choices"][0]["finish_reason"])
    out += b"data: " + orjson.dumps({**envelope, "choices": [], "usage": body["usage"]}) + b"\n\n"
    return out + b"data: [DONE]\n\n"


def recorded(name: str) -> bytes:
    """A recording's stream: its body when it streamed, else its answer streamed."""
    interaction = cassette(name)[0]
    body = interaction["response"]["body"]
    if body.lstrip().startswith(("event:", "data:")):
        return body.encode()
    answer = orjson.loads(body)
    return anthropic_stream_of(answer) if answer.get("type") == "message" else chat_stream_of(answer)


def heard_in_messages(out: bytes) -> Heard:
    """An Anthropic stream, each event checked against the SDK's type, as the SDK accumulates it."""
    snapshot, json_bufs = None, {}
    for data in anthropic_events(out):
        if data["type"] == "error":
            return Heard("", "", [], 0, 0, True)
        if data["type"] == "ping":
            continue
        snapshot = accumulate_event(event=ANTHROPIC_EVENT.validate_python(data), current_snapshot=snapshot,
                                    json_bufs=json_bufs)
    assert blocks_are_contiguous(anthropic_events(out))
    return Heard("".join(b.text for b in snapshot.content if b.type == "text"),
                 "".join(b.thinking for b in snapshot.content if b.type == "thinking"),
                 [(b.id, b.name, b.input) for b in snapshot.content if b.type == "tool_use"],
                 snapshot.usage.input_tokens + (snapshot.usage.cache_read_input_tokens or 0) +
                 (snapshot.usage.cache_creation_input_tokens or 0), snapshot.usage.output_tokens, False)


def blocks_are_contiguous(events: list[dict]) -> bool:
    open_index = None
    for event in events:
        if event["type"] == "content_block_start":
            if open_index is not None:
                return False
            open_index = event["index"]
        elif event["type"] in ("content_block_delta", "content_block_stop") and event["index"] != open_index:
            return False
        if event["type"] == "content_block_stop":
            open_index = None
    return open_index is None


def heard_in_chat(out: bytes) -> Heard:
    """A chat stream, each chunk checked against the SDK's type, as the SDK accumulates it."""
    events = SSEParser().feed(out, final=True)
    chunks = [orjson.loads(event.data) for event in events if not event.is_done]
    if "error" in chunks[-1]:
        assert not events[-1].is_done
        return Heard("", "", [], 0, 0, True)
    assert events[-1].is_done
    state = ChatCompletionStreamState()
    for data in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(data))
    message = state.current_completion_snapshot.choices[0].message    # (an answer cut at its cap is whole too)
    usage = chunks[-1].get("usage") or {"prompt_tokens": 0, "completion_tokens": 0}    # not asked for: none
    return Heard(message.content or "", getattr(message, "reasoning_content", None) or "",
                 [(c.id, c.function.name, orjson.loads(c.function.arguments)) for c in message.tool_calls or ()],
                 usage["prompt_tokens"], usage["completion_tokens"], False)


def heard_in_responses(out: bytes) -> Heard:
    """A Responses stream, each event checked against the SDK's type, as the SDK accumulates it."""
    state = ResponseStreamState(input_tools=omit, text_format=omit)
    final = None
    for data in responses_events(out):
        for event in state.handle_event(RESPONSES_EVENT.validate_python(data)):
            if event.type == "response.failed":
                return Heard("", "", [], 0, 0, True)
            if event.type in ("response.completed", "response.incomplete"):
                final = event.response
    assert final is not None
    return Heard(final.output_text,
                 "".join(s.text for item in final.output if item.type == "reasoning" for s in item.summary),
                 [(item.call_id, item.name, orjson.loads(item.arguments)) for item in final.output
                  if item.type == "function_call"],
                 final.usage.input_tokens, final.usage.output_tokens, False)


CODECS = {"messages": (messages_stream, messages_caller, heard_in_messages),
          "chat": (chat_stream, lambda: chat_caller(include_usage=True), heard_in_chat),
          "responses": (responses_stream, responses_caller, heard_in_responses)}
RECORDINGS = {"messages": ["anthropic-recordings/anthropic-messages-stream.yaml",
                           "anthropic-recordings/anthropic-messages-stream-thinking.yaml",
                           "anthropic-recordings/anthropic-messages-stream-error-overloaded.yaml",
                           "anthropic-recordings/anthropic-messages-tools.yaml",
                           "anthropic-recordings/anthropic-messages.yaml"],
              "chat": ["openai-recordings/chat-streaming.yaml", "openai-recordings/chat-streaming-detailed-usage.yaml",
                       "openai-recordings/chat-tools.yaml", "openai-recordings/chat-basic.yaml",
                       "openai-recordings/azure-chat-basic.yaml"]}


def through(provider: str, caller: str, body: bytes) -> bytes:
    """A provider's stream as the caller reads it: its Decoder, the caller's Encoder."""
    decoder = CODECS[provider][0].Decoder(CODECS[caller][1](), Notes())
    encoder = CODECS[caller][0].Encoder(CODECS[caller][1](), Notes())
    out = b"".join(encoder.write(event) for data in sse_events(body) for event in decoder.read(*data))
    return out + b"".join(encoder.write(event) for event in decoder.end())


REPLAYS = [(name, provider, caller) for provider, names in RECORDINGS.items() for name in names
           for caller in CODECS if caller != provider]


@pytest.mark.parametrize("name,provider,caller", REPLAYS, ids=[f"{r[0].split('/')[1]}->{r[2]}" for r in REPLAYS])
def test_a_recorded_stream_is_heard_whole(name, provider, caller):
    body = recorded(name)
    said = CODECS[provider][2](body)                 # what the provider said, as its own SDK hears it
    assert CODECS[caller][2](through(provider, caller, body)) == said
    if caller != "responses":                        # and from a Responses provider saying the same
        assert CODECS[caller][2](through("responses", caller, through(provider, "responses", body))) == said


def test_the_recordings_say_something():
    """The replays are worth their salt: text, thinking, calls, usage and an error among them."""
    said = [CODECS[provider][2](recorded(name)) for provider, names in RECORDINGS.items() for name in names]
    assert all(h.text or h.calls or h.failed or h.output_tokens for h in said)
    assert any(h.thinking for h in said) and any(h.calls for h in said) and any(h.failed for h in said)
    assert any(h.prompt_tokens and h.text for h in said)


def test_a_json_answer_streams_as_text():
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
               "content": [{"type": "tool_use", "id": "t", "name": "json_tool_call", "input": {"a": [1, 2]}}],
               "stop_reason": "tool_use", "usage": {"input_tokens": 3, "output_tokens": 5}}
    wanted = chat_caller(include_usage=True, answer_format=AnswerFormat("json_schema", {"type": "object"}, "a"))
    for module, heard_in in ((chat_stream, heard_in_chat), (responses_stream, heard_in_responses)):
        decoder, encoder = messages_stream.Decoder(wanted, None), module.Encoder(wanted, None)
        out = b"".join(encoder.write(event) for data in sse_events(anthropic_stream_of(message))
                       for event in decoder.read(*data))
        heard = heard_in(out)
        assert orjson.loads(heard.text) == {"a": [1, 2]} and heard.calls == []
        if module is chat_stream:
            assert chat_deltas(out)[-1] == ({}, "stop")


# --- any answer: what the provider says, every caller hears --------------------------------

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)
names = st.from_regex(r"[a-z_]{1,20}", fullmatch=True)
json_objects = st.dictionaries(names, st.one_of(st.integers(-2**53, 2**53), texts, st.booleans(), st.none()),
                               max_size=4)
counts = st.integers(min_value=0, max_value=10**6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(said=st.lists(texts, max_size=3), calls=st.lists(st.tuples(names, json_objects), max_size=3),
       fresh=counts, read=counts, output=counts)
def test_any_answer_is_heard_whole_by_every_caller(said, calls, fresh, read, output):
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
               "content": [{"type": "text", "text": text} for text in said] +
                          [{"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": arguments}
                           for i, (name, arguments) in enumerate(calls)],
               "stop_reason": "tool_use" if calls else "end_turn",
               "usage": {"input_tokens": fresh, "cache_read_input_tokens": read, "output_tokens": output}}
    completion = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x",
                  "choices": [{"index": 0, "finish_reason": "tool_calls" if calls else "stop", "message": {
                      "role": "assistant", "content": "".join(said) or None,
                      "tool_calls": [{"id": f"toolu_{i}", "type": "function", "function": {
                          "name": name, "arguments": orjson.dumps(arguments).decode()}}
                          for i, (name, arguments) in enumerate(calls)] or None}}],
                  "usage": {"prompt_tokens": fresh + read, "completion_tokens": output,
                            "total_tokens": fresh + read + output, "prompt_tokens_details": {"cached_tokens": read}}}
    heard = Heard("".join(said), "", [(f"toolu_{i}", name, arguments) for i, (name, arguments) in enumerate(calls)],
                  fresh + read, output, False)
    for provider, body in (("messages", anthropic_stream_of(message)), ("chat", chat_stream_of(completion))):
        assert CODECS[provider][2](body) == heard
        for caller in CODECS:
            if caller != provider:
                assert CODECS[caller][2](through(provider, caller, body)) == heard
        for caller in ("chat", "messages"):          # a Responses provider saying the same
            assert CODECS[caller][2](through("responses", caller, through(provider, "responses", body))) == heard
