"""Response bodies and SSE events of the mock, shaped like Anthropic's Messages API
(see the recordings in mock/recordings/anthropic-recordings): field order, ids, usage objects, the
whitespace Anthropic pads some events' JSON with, and the `{"type": "ping"}` it sends
after the first content block starts."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from ..api.provider_json import dumps

_ID_ALPHABET = string.ascii_letters + string.digits
PING = b'event: ping\ndata: {"type": "ping"}\n\n'          # serialized apart: spaces after colons
STREAM_ERROR_MESSAGES = {"overloaded_error": "Overloaded", "api_error": "Internal server error",
                         "rate_limit_error": "Rate limited", "timeout_error": "Request timed out"}


def new_id(prefix: str, length: int = 22) -> str:
    """An id in Anthropic's form: msg_01…, toolu_01…, req_011C… (24 characters after `_`)."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


@dataclass(frozen=True)
class Platform:
    """Where the Messages API is served, as its answers show it: the prefixes of its ids,
    and whether usage details the cache writes' TTLs, the service tier and the geography
    (with `stop_details` in the message) or holds the four counts alone."""
    message_prefix: str = "msg_01"
    tool_prefix: str = "toolu_01"
    request_prefix: str = "req_011C"
    detailed_usage: bool = True


ANTHROPIC = Platform()
# Claude on Vertex AI (see provider-recordings/vertex-claude-rawpredict.yaml): `vrtx` ids,
# the four usage counts, no stop_details.
VERTEX = Platform("msg_vrtx_01", "toolu_vrtx_01", "req_vrtx_011C", detailed_usage=False)


def request_id(platform: Platform = ANTHROPIC) -> str:
    return new_id(platform.request_prefix, 20)


def signature_for(thinking: str) -> str:
    """A stand-in for the opaque signature of a thinking block: base64, stable per text."""
    return base64.b64encode(b"mock-signature\x00" + hashlib.sha256(thinking.encode()).digest()).decode()


@dataclass(frozen=True)
class ReportedUsage:
    """Usage as Anthropic reports it: `fresh` input tokens leave out the prompt tokens read
    from (`cache_read`) and written to (`cache_write`, all at the 5-minute TTL) the cache."""
    fresh: int
    cache_read: int
    cache_write: int
    output: int

    def full(self, output: int | None = None, detailed: bool = True) -> dict:
        """The usage of a message (and of message_start, with a placeholder `output`);
        without `detailed`, the four counts alone."""
        if not detailed:
            return {**self.cumulative(), "output_tokens": self.output if output is None else output}
        return {"input_tokens": self.fresh, "cache_creation_input_tokens": self.cache_write,
                "cache_read_input_tokens": self.cache_read,
                "cache_creation": {"ephemeral_5m_input_tokens": self.cache_write, "ephemeral_1h_input_tokens": 0},
                "output_tokens": self.output if output is None else output,
                "service_tier": "standard", "inference_geo": "not_available"}

    def cumulative(self) -> dict:
        """message_delta's usage: the totals so far, input fields included."""
        return {"input_tokens": self.fresh, "cache_creation_input_tokens": self.cache_write,
                "cache_read_input_tokens": self.cache_read, "output_tokens": self.output}


@dataclass(frozen=True)
class Answer:
    """What one Messages answer holds: an optional thinking block, then either the text or
    a call of `tool` whose input is {"text": text}."""
    model: str
    text: str
    stop_reason: str
    usage: ReportedUsage
    thinking: str | None = None
    tool: str | None = None
    stop_sequence: str | None = None
    platform: Platform = ANTHROPIC


def tool_input(text: str) -> str:
    """The input of the mock's tool call, as JSON: {"text": <the echo>}."""
    return orjson.dumps({"text": text}).decode()


def _blocks(answer: Answer, tool_id: str) -> list[dict]:
    blocks = []
    if answer.thinking is not None:
        blocks.append({"type": "thinking", "thinking": answer.thinking, "signature": signature_for(answer.thinking)})
    if answer.tool:
        blocks.append({"type": "tool_use", "id": tool_id, "name": answer.tool, "input": {"text": answer.text}})
    else:
        blocks.append({"type": "text", "text": answer.text})
    return blocks


def _message(answer: Answer, content: list[dict], stop_reason: str | None, stop_sequence: str | None,
             usage: dict) -> dict:
    message = {"model": answer.model, "id": new_id(answer.platform.message_prefix), "type": "message",
               "role": "assistant", "content": content, "stop_reason": stop_reason,
               "stop_sequence": stop_sequence, "stop_details": None, "usage": usage}
    if not answer.platform.detailed_usage:
        del message["stop_details"]
    return message


def message_json(answer: Answer) -> bytes:
    """The non-streaming answer."""
    content = _blocks(answer, new_id(answer.platform.tool_prefix))
    return dumps(_message(answer, content, answer.stop_reason, answer.stop_sequence,
                          answer.usage.full(detailed=answer.platform.detailed_usage)))


def _frame(event: dict, pad: int) -> bytes:
    """`event: <type>\\ndata: <json>\\n\\n`, the JSON padded before its closing brace."""
    data = dumps(event)
    return b"event: " + event["type"].encode() + b"\ndata: " + data[:-1] + b" " * pad + b"}\n\n"


def _block_events(index: int, block: dict, pieces: Callable[[str], list[str]]) -> list[dict]:
    """content_block_start, its deltas, content_block_stop: text_delta pieces; thinking_delta
    pieces, an empty one, then one signature_delta; input_json_delta pieces after an empty one
    (the order and the empty deltas are those of recorded streams)."""
    kind = block["type"]
    if kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": p} for p in [*pieces(block["thinking"]), ""]]
        deltas.append({"type": "signature_delta", "signature": block["signature"]})
    elif kind == "tool_use":
        start = {**block, "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": p}
                  for p in ["", *pieces(tool_input(block["input"]["text"]))]]
    else:
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in pieces(block["text"])]
    return [{"type": "content_block_start", "index": index, "content_block": start},
            *({"type": "content_block_delta", "index": index, "delta": d} for d in deltas),
            {"type": "content_block_stop", "index": index}]


def stream_events(answer: Answer, pieces: Callable[[str], list[str]],
                  stream_error: str | None = None) -> list[bytes]:
    """The SSE frames of a streamed answer, in the recorded order: message_start (usage with
    the prompt's tokens and a placeholder output count), each block's events with a ping
    after the first block starts, message_delta (stop reason, cumulative usage),
    message_stop. With `stream_error` (an error type), an `error` event follows the first
    block's first delta and the stream ends there."""
    detailed = answer.platform.detailed_usage
    message = _message(answer, [], None, None,
                       answer.usage.full(output=min(answer.usage.output, 1), detailed=detailed))
    events = [{"type": "message_start", "message": message}]
    for index, block in enumerate(_blocks(answer, new_id(answer.platform.tool_prefix))):
        events.extend(_block_events(index, block, pieces))
    delta = {"stop_reason": answer.stop_reason, "stop_sequence": answer.stop_sequence, "stop_details": None}
    if not detailed:
        del delta["stop_details"]
    events.append({"type": "message_delta", "delta": delta, "usage": answer.usage.cumulative()})
    events.append({"type": "message_stop"})
    # Anthropic pads some events' JSON with up to ~16 spaces before the closing brace; the
    # mock pads too (0-16, varied but reproducible), so whatever reads it must parse JSON.
    frames = [_frame(event, (number * 7) % 17) for number, event in enumerate(events)]
    frames.insert(2, PING)
    if stream_error:
        return [*frames[:4], error_event(stream_error)]
    return frames


def error_event(error_type: str) -> bytes:
    """An in-stream error as Anthropic documents it (see the fixture
    anthropic-messages-stream-error-overloaded.yaml, whose bytes this matches)."""
    message = STREAM_ERROR_MESSAGES.get(error_type, "Mock stream error")
    data = {"type": "error", "error": {"type": error_type, "message": message}}
    return b"event: error\ndata: " + json.dumps(data).encode() + b"\n\n"     # json's ", " and ": "


def count_tokens_json(tokens: int) -> bytes:
    return orjson.dumps({"input_tokens": tokens})


# (id, display name, created), newest first as Anthropic lists them.
MODELS = (("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-01T00:00:00Z"),
          ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"),
          ("claude-opus-4-1-20250805", "Claude Opus 4.1", "2025-08-05T00:00:00Z"))


def models_json(limit: int) -> bytes:
    """GET /v1/models in Anthropic's list shape, newest first, `limit` of them."""
    data = [{"type": "model", "id": id_, "display_name": name, "created_at": created}
            for id_, name, created in MODELS[:limit]]
    return orjson.dumps({"data": data, "first_id": data[0]["id"] if data else None,
                         "last_id": data[-1]["id"] if data else None, "has_more": limit < len(MODELS)})
