"""OpenAI's Responses API (`/v1/responses`): what its bodies and events hold, and where
its stream carries generated text. Every `….delta` event carries a piece of generated
text (output text, refusal, function call arguments, reasoning summary, audio
transcript; not audio's base64); `….done` events and `response.completed` repeat whole
texts, which are read (and redacted) in place."""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from ...api.provider_json import dumps
from .. import conversation_start, repeated_answers, tool_turns
from . import responses_answer
from . import responses_request
from . import responses_stream
from .. import request_parts
from ..base import TextPiece, Translating
from .dialect import OpenAI, _OpenAICodec, function_tool_name
from ...api import openai, openai_schema


class ResponsesOnly(OpenAI):
    """A provider that serves OpenAI's Responses API and nothing else (`type: openai-responses`):
    OpenAI's errors and headers; its callers' chat and Messages calls are translated."""
    name = "openai-responses"
    generation_kind = "responses"
    described = "OpenAI's Responses API only"


RESPONSES_ONLY = ResponsesOnly()


class Responses(Translating, _OpenAICodec):
    kind = "responses"
    request_module, answer_module, stream_module = responses_request, responses_answer, responses_stream
    generates = charges_output = answers_in_json = streams = stores_responses = True
    operation = "chat"
    output_cap_field = openai.RESPONSES_OUTPUT_CAP
    provider_path = "/v1/responses"
    prompt_texts = staticmethod(openai.responses_prompt_texts)
    shape_problem = staticmethod(openai_schema.responses_shape_problem)
    generated_texts = staticmethod(openai.responses_generated_texts)
    _usage_from_event = staticmethod(openai.responses_usage_from_event)
    known_fields = frozenset({
        "input", "instructions", "tools", "tool_choice", "text", "metadata", "user", "prompt", "reasoning",
        "previous_response_id", "prompt_cache_key", "safety_identifier", "store", "conversation"})

    def tool_name(self, tool: Any) -> str:
        return function_tool_name(tool, nested=False)

    def request_part(self, body: dict, path: tuple) -> str:
        if path[:1] == ("instructions",):
            return request_parts.SYSTEM
        if path[:1] == ("tools",):
            return request_parts.TOOLS
        item = request_parts.item(body, path, "input")
        return _input_item_part(item) if item else request_parts.USER

    def tool_result_names(self, body: dict, paths: list[tuple]) -> list[str]:
        """An output item's call by its `call_id`; an `mcp_call` names its own tool."""
        items = body.get("input") if isinstance(body.get("input"), list) else []
        called = request_parts.names_by_id([(item.get("call_id"), item.get("name")) for item in items
                                            if isinstance(item, dict) and request_parts.named(item.get("type"))
                                            .endswith("_call")])
        return request_parts.result_names(body, paths, "input", "call_id", called,
                                          lambda item: item.get("type") == "mcp_call")

    def called_tools(self, body: dict) -> list[str]:
        items = body.get("output") or ([body.get("item")] if body.get("item") else [])
        return [item["name"] for item in items if isinstance(item, dict)
                and item.get("type") == "function_call" and isinstance(item.get("name"), str)]

    def last_tool_calls(self, body: dict) -> list[tuple[str, str, int]]:
        return tool_turns.responses_last_tool_calls(body)

    def continued_response(self, body: dict) -> str | None:
        previous = body.get("previous_response_id")
        return previous[:256] if isinstance(previous, str) and previous else None

    def repeated_answer(self, body: dict) -> tuple[str, int]:
        return repeated_answers.responses_repeated_answer(body)

    def conversation_start(self, body: dict) -> tuple[bytes, list] | None:
        return conversation_start.responses_start(body)

    def final_usage(self, event: dict) -> dict | None:
        if event.get("type") != "response.completed":
            return None
        usage = (event.get("response") or {}).get("usage")
        return usage if isinstance(usage, dict) else None

    def response_id(self, answer_or_event: dict, streamed: bool) -> str | None:
        if not streamed:
            return answer_or_event.get("id")
        if answer_or_event.get("type") == "response.created":
            return (answer_or_event.get("response") or {}).get("id")
        return None

    def stream_pieces(self, event: dict) -> list[TextPiece]:
        delta, kind = event.get("delta"), event.get("type")
        if not _generated_delta(delta, kind):
            return []
        part = event.get("content_index", event.get("summary_index"))
        return [TextPiece((event.get("output_index"), kind, part), None, delta, "delta")]

    def ended(self, event: dict, keys: Iterable[tuple]) -> list[tuple]:
        """An output's texts end with its `….done` events; the response's end, or an
        error, ends them all. Another event between deltas (an annotation added, a
        keep-alive) ends nothing: the text may still be arriving."""
        kind = event.get("type")
        if kind in _RESPONSE_ENDS:
            return list(keys)
        if isinstance(kind, str) and kind.endswith(".done"):
            return [key for key in keys if key[0] == event.get("output_index")]
        return []

    def whole_texts(self, event: dict) -> list[tuple[Any, Any]]:
        return list(whole_text_fields(event))

    def event_with(self, template: dict, choice: dict | None, slot: object, text: str) -> bytes:
        return b"data: " + dumps({**template, "delta": text}) + b"\n\n"

    def plugin_pieces(self, event: dict):
        delta, kind = event.get("delta"), event.get("type")
        if isinstance(delta, str) and _generated_delta(delta or "-", kind):
            yield (event.get("output_index"), kind, event.get("content_index")), event, "delta"


_RESPONSE_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed", "response.done", "error"})


def _generated_delta(delta: Any, kind: Any) -> bool:
    return isinstance(delta, str) and bool(delta) and isinstance(kind, str) and kind.endswith(".delta") \
        and kind != "response.audio.delta"


def whole_text_fields(node, depth: int = 0) -> Iterator[tuple[Any, Any]]:
    """Text (and tool call arguments) in an event that repeats it whole."""
    if depth > 8:
        return
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("text", "arguments", "refusal") and isinstance(value, str):
                yield node, key
            elif isinstance(value, (dict, list)):
                yield from whole_text_fields(value, depth + 1)
    elif isinstance(node, list):
        for item in node:
            yield from whole_text_fields(item, depth + 1)


def _input_item_part(item: dict) -> str:
    """An input item's part: a tool's output (`function_call_output`, `mcp_call`...), the
    model's own items (calls, reasoning), or a message by its role."""
    kind, role = item.get("type"), item.get("role")
    if isinstance(kind, str) and (kind.endswith("_output") or kind in ("mcp_call", "mcp_list_tools")):
        return request_parts.TOOL_RESULTS
    if role in ("system", "developer"):
        return request_parts.SYSTEM
    if role == "assistant" or (isinstance(kind, str) and (kind.endswith("_call") or kind == "reasoning")):
        return request_parts.ASSISTANT
    return request_parts.USER
