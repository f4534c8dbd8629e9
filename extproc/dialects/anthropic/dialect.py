"""Anthropic's dialect: its errors and model list, the headers its providers take, and its
endpoints: Messages and count_tokens. What their bodies hold is read by api/anthropic.py.
A stream's generated text is a content block's text or tool input, complete at the
block's `content_block_stop` (every block's at the message's end); thinking is signed by
the provider, and is never changed."""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable

import orjson

from ...api import anthropic, anthropic_schema
from ...api.provider_json import dumps
from ...api.usage import Usage
from .. import conversation_start, repeated_answers, tool_turns
from . import messages_answer
from . import messages_request
from . import messages_stream
from .. import request_parts
from ..base import Codec, Dialect, TextPiece, Translating


class Anthropic(Dialect):
    name = "anthropic"
    generation_kind = "messages"
    described = "Anthropic's Messages API"
    key_hint = "'x-api-key: <key>' or 'Authorization: Bearer <key>'"
    reports_stream_usage = True
    needs_output_cap = True          # `max_tokens` is required
    # The account's and workspace's headers are `anthropic-*`; these two tune the API.
    account_header_prefixes = ("anthropic-",)
    api_headers = frozenset({"anthropic-version", "anthropic-beta"})

    def error_body(self, status: int, message: str, type: str, code: str | None,
                   request_id: str | None = None) -> bytes:
        return anthropic.error_body(status, message, request_id)

    def error_event(self, message: str, code: str) -> bytes:
        return event({"type": "error", "error": {"type": "invalid_request_error", "message": message}})

    def model_entry(self, name: str, created: int) -> dict:
        return {"type": "model", "id": name, "display_name": name,
                "created_at": dt.datetime.fromtimestamp(created, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}

    def model_list(self, entries: list[dict]) -> bytes:
        return orjson.dumps({"data": entries, "has_more": False, "first_id": entries[0]["id"] if entries else None,
                             "last_id": entries[-1]["id"] if entries else None})

    def serves(self, model: str) -> bool:
        return model.startswith("claude-")

    def attempt_headers(self, caller_headers: dict[str, str]) -> tuple[dict[str, str], list[str], list[str]]:
        return {"anthropic-version": caller_headers.get("anthropic-version") or anthropic.VERSION}, [], []


ANTHROPIC = Anthropic()


def event(data: dict) -> bytes:
    """An SSE event as Anthropic writes one: named by its type."""
    return b"event: " + str(data.get("type", "")).encode() + b"\ndata: " + dumps(data) + b"\n\n"


# Content blocks that carry a tool's result back to the model.
_RESULT_BLOCKS = frozenset({"tool_result", "mcp_tool_result", "web_search_tool_result", "web_fetch_tool_result",
                            "code_execution_tool_result", "bash_code_execution_tool_result"})


class Messages(Translating, Codec):
    kind = "messages"
    request_module, answer_module, stream_module = messages_request, messages_answer, messages_stream
    dialect = ANTHROPIC
    generates = charges_output = answers_in_json = streams = True
    operation = "chat"
    body_may_go_unread = True
    output_cap_field = "max_tokens"
    output_fields = ("max_tokens",)        # (one answer a request)
    provider_path = "/v1/messages"
    known_fields = frozenset({"system", "messages", "tools", "tool_choice", "metadata", "stop_sequences",
                              "mcp_servers", "container", "thinking"})

    # Its readers in api/anthropic.py, as functions of the body or event (count_tokens's too).
    prompt_texts = staticmethod(anthropic.prompt_texts)
    max_output_tokens = staticmethod(anthropic.max_output_tokens)
    shape_problem = staticmethod(anthropic_schema.messages_shape_problem)
    usage_from_event = staticmethod(anthropic.usage_from_event)
    generated_texts = staticmethod(anthropic.generated_texts)

    def count_answer(self, tokens: int) -> bytes:
        return orjson.dumps({"input_tokens": tokens})

    def request_part(self, body: dict, path: tuple) -> str:
        if path[:1] == ("system",):
            return request_parts.SYSTEM
        if path[:1] == ("tools",):
            return request_parts.TOOLS
        message = request_parts.item(body, path, "messages")
        if not message:
            return request_parts.USER
        if message.get("role") == "assistant":
            return request_parts.ASSISTANT
        block = request_parts.block(message, path, "content")
        kind = block.get("type") if isinstance(block, dict) else None
        return request_parts.TOOL_RESULTS if isinstance(kind, str) and kind in _RESULT_BLOCKS else request_parts.USER

    def tool_result_names(self, body: dict, paths: list[tuple]) -> list[str]:
        """A result block's call (`tool_use`, `server_tool_use`, `mcp_tool_use`) by its `tool_use_id`."""
        messages = body.get("messages") if isinstance(body.get("messages"), list) else []
        called = request_parts.names_by_id(
            [(block.get("id"), block.get("name")) for message in messages
             if isinstance(message, dict) and message.get("role") == "assistant" and isinstance(message.get("content"), list)
             for block in message["content"] if isinstance(block, dict)])
        names = []
        for path in paths:
            message = request_parts.item(body, path, "messages") or {}
            block = request_parts.block(message, path, "content") if message else None
            call_id = block.get("tool_use_id") if isinstance(block, dict) else None
            names.append(called.get(call_id, "") if isinstance(call_id, str) else "")
        return names

    def tool_name(self, tool: Any) -> str:
        """Anthropic's own tools (no type, or "custom") by name; a server tool by its type."""
        if not isinstance(tool, dict):
            return ""
        tool_type = tool.get("type")
        if tool_type in (None, "custom", "function"):
            name = tool.get("name")
            return name if isinstance(name, str) else ""
        return tool_type if isinstance(tool_type, str) else ""

    usage_from_response = staticmethod(anthropic.usage_from_response)

    def stream_usage_is_final(self, numbers: dict) -> bool:
        """Output tokens come in the stream's one message_delta, its last usage (message_start's
        running count is under `message`, read into other keys)."""
        return "output_tokens" in numbers

    def usage_from_stream_metadata(self, numbers: dict) -> Usage | None:
        """Anthropic's input_tokens leave cache reads and writes out (the last
        message_delta's totals win, as Envoy keeps the last value of each key)."""
        if "anthropic_input_tokens" not in numbers:
            return None
        read, write = int(numbers.get("anthropic_cache_read", 0)), int(numbers.get("anthropic_cache_write", 0))
        return Usage(int(numbers["anthropic_input_tokens"]) + read + write, int(numbers.get("output_tokens", 0)),
                     cached_tokens=read, cache_write_tokens=write)

    def called_tools(self, body: dict) -> list[str]:
        blocks = body.get("content") if body.get("type") == "message" else [body.get("content_block")]
        return [block["name"] for block in blocks or () if isinstance(block, dict)
                and block.get("type") == "tool_use" and isinstance(block.get("name"), str)]

    def last_tool_calls(self, body: dict) -> list[tuple[str, str, int]]:
        return tool_turns.messages_last_tool_calls(body)

    def repeated_answer(self, body: dict) -> tuple[str, int]:
        return repeated_answers.messages_repeated_answer(body)

    def conversation_start(self, body: dict) -> tuple[bytes, list] | None:
        return conversation_start.messages_start(body)

    def final_usage(self, event: dict) -> dict | None:
        usage = event.get("usage") if event.get("type") == "message_delta" else None
        return usage if isinstance(usage, dict) else None

    def stream_pieces(self, event: dict) -> list[TextPiece]:
        delta = event.get("delta") if event.get("type") == "content_block_delta" else None
        if isinstance(delta, dict):
            for field in ("text", "partial_json"):
                if isinstance(delta.get(field), str) and delta[field]:
                    return [TextPiece((event.get("index"), field), None, delta[field], field)]
        return []

    def ended(self, event: dict, keys: Iterable[tuple]) -> list[tuple]:
        kind = event.get("type")
        if kind == "content_block_stop":
            return [key for key in keys if key[0] == event.get("index")]
        if kind in ("message_delta", "message_stop", "error"):
            return list(keys)
        return []

    def event_with(self, template: dict, choice: dict | None, slot: object, text: str) -> bytes:
        return event({**template, "delta": {**template["delta"], slot: text}})

    def plugin_pieces(self, event: dict):
        delta = event.get("delta") if event.get("type") == "content_block_delta" else None
        if isinstance(delta, dict):
            for field in ("text", "partial_json"):
                if isinstance(delta.get(field), str):
                    yield (event.get("index"), field), delta, field


class CountTokens(Messages):
    kind = "count_tokens"
    generates = charges_output = answers_in_json = streams = False
    counts_tokens = True
    operation = ""
    output_cap_field = None
    provider_path = None
    known_fields = None              # a count's unknown fields reach no model
    shape_problem = staticmethod(anthropic_schema.count_tokens_shape_problem)
