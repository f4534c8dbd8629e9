"""What the gateway knows of Anthropic's Messages API: endpoints, usage, the text a
request holds, output caps, errors. Pure knowledge, like api/openai.py beside it.

Usage: Anthropic's `input_tokens` leaves out the prompt tokens read from and written to
its cache; the gateway's Usage counts every prompt token in `input_tokens` (api/usage.py),
so cache reads and writes are added here, once, wherever an Anthropic usage is read.
"""

from __future__ import annotations

from typing import Any, Iterator

import orjson

from .usage import Usage

VERSION = "2023-06-01"                 # the one `anthropic-version` there is

# HTTP status -> Anthropic's error type (docs.anthropic.com/en/api/errors).
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
               413: "request_too_large", 415: "invalid_request_error", 429: "rate_limit_error",
               529: "overloaded_error"}      # every other 5xx: api_error


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


def error_body(status: int, message: str, request_id: str | None = None) -> bytes:
    """An error in Anthropic's shape: {"type": "error", "error": {"type", "message"}}."""
    body: dict[str, Any] = {"type": "error", "error": {"type": error_type(status), "message": message}}
    if request_id:
        body["request_id"] = request_id
    return orjson.dumps(body)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from(obj: Any) -> Usage | None:
    """A Messages `usage` object (a response's, message_start's or message_delta's)."""
    if not isinstance(obj, dict) or not ("input_tokens" in obj or "output_tokens" in obj):
        return None
    read, write = _int(obj.get("cache_read_input_tokens")), _int(obj.get("cache_creation_input_tokens"))
    details = obj.get("output_tokens_details")
    thinking = _int(details.get("thinking_tokens")) if isinstance(details, dict) else 0
    return Usage(input_tokens=_int(obj.get("input_tokens")) + read + write, output_tokens=_int(obj.get("output_tokens")),
                 cached_tokens=read, reasoning_tokens=thinking, cache_write_tokens=write)


def usage_from_response(body: Any) -> Usage | None:
    return usage_from(body.get("usage")) if isinstance(body, dict) else None


def usage_from_event(event: dict, so_far: Usage | None) -> Usage | None:
    """The usage after an SSE event: message_start gives the prompt's, message_delta the
    cumulative totals (each field it carries replaces the one before)."""
    event_type = event.get("type")
    if event_type == "message_start":
        message = event.get("message")
        return usage_from(message.get("usage")) if isinstance(message, dict) else so_far
    if event_type == "message_delta" and isinstance(event.get("usage"), dict):
        delta = event["usage"]
        if so_far is None:
            return usage_from(delta)
        read = _int(delta["cache_read_input_tokens"]) if "cache_read_input_tokens" in delta else so_far.cached_tokens
        write = _int(delta["cache_creation_input_tokens"]) if "cache_creation_input_tokens" in delta \
            else so_far.cache_write_tokens
        fresh = _int(delta["input_tokens"]) if "input_tokens" in delta else \
            so_far.input_tokens - so_far.cached_tokens - so_far.cache_write_tokens
        return Usage(input_tokens=fresh + read + write,
                     output_tokens=_int(delta.get("output_tokens")) or so_far.output_tokens,
                     cached_tokens=read, reasoning_tokens=so_far.reasoning_tokens, cache_write_tokens=write)
    return so_far


def generated_texts(event: dict) -> Iterator[str]:
    """The text (answer, thinking, tool input) a response or one streamed event adds."""
    if event.get("type") == "content_block_delta":
        delta = event.get("delta")
        if isinstance(delta, dict):
            for field in ("text", "partial_json", "thinking"):
                if isinstance(delta.get(field), str):
                    yield delta[field]
        return
    for block in event.get("content") or ():          # a whole (JSON) message
        if isinstance(block, dict):
            if isinstance(block.get("text"), str):
                yield block["text"]
            elif isinstance(block.get("thinking"), str):
                yield block["thinking"]
            elif block.get("type") == "tool_use":
                yield orjson.dumps(block.get("input", {})).decode()


# --- what a request holds -------------------------------------------------------------

def _block_texts(content: Any) -> Iterator[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for block in content:
            if isinstance(block, str):
                yield block
            elif isinstance(block, dict):
                block_type = block.get("type")
                if isinstance(block.get("text"), str):
                    yield block["text"]
                elif block_type == "tool_use":
                    yield str(block.get("name", ""))
                    yield orjson.dumps(block.get("input", {})).decode()
                elif block_type == "tool_result":
                    yield from _block_texts(block.get("content"))
                elif block_type == "thinking" and isinstance(block.get("thinking"), str):
                    yield block["thinking"]
                elif block_type == "document" and isinstance(block.get("source"), dict) \
                        and isinstance(block["source"].get("data"), str) and block["source"].get("type") == "text":
                    yield block["source"]["data"]


def prompt_texts(body: dict) -> tuple[list[str], int]:
    """Every text of a Messages request (system, each turn's blocks, tool definitions)
    and its number of turns, for offline counting."""
    texts = list(_block_texts(body.get("system")))
    messages = 0
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            messages += 1
            texts.extend(_block_texts(message.get("content")))
    for tool in body.get("tools") or ():
        if isinstance(tool, dict):
            texts.extend(v for v in (tool.get("name"), tool.get("description")) if isinstance(v, str))
            if isinstance(tool.get("input_schema"), dict):
                texts.append(orjson.dumps(tool["input_schema"]).decode())
    return texts, messages


def max_output_tokens(body: dict) -> int | None:
    value = body.get("max_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
