"""Every string a client reads in a JSON response, with its path: one walk per answer.

The request side walks every string the model may read (walk.py); the answer is
walked the same way, so no generated text is missed because nobody listed its field:
chat's content, refusals, reasoning (`reasoning_content`, `reasoning`), tool calls
(their names and arguments), annotations (citations' titles and URLs), audio
transcripts, log-probability tokens (the answer token by token: a conversation read as
one text, guardrails/joined.py, finds a value cut across them); completions' text;
the Responses API's output items whatever their type (messages, reasoning summaries,
function and custom tool calls, MCP calls and their output, web search actions) and
the request fields it echoes; Anthropic's text, tool inputs (keys' values at any
depth), citations, server tool results, the stop sequence.

Left out (`_OPAQUE`): what the provider writes about the answer rather than the answer
(ids, object and type tags, the model's name, roles, finish and stop reasons, status,
fingerprints), signed or encrypted reasoning (Anthropic thinking blocks, their
signatures, `encrypted_content`: the client sends them back and the provider refuses
them changed), and bytes (audio data, generated images, base64 payloads of binary
types). Streams are read event by event (stages/guard/stream.py).
"""

from __future__ import annotations

from typing import Any

from .walk import _ENCODED_KEYS, _string

_OPAQUE = frozenset({
    "id", "object", "model", "role", "type", "finish_reason", "stop_reason", "status",
    "system_fingerprint", "service_tier", "call_id", "tool_call_id", "tool_use_id", "item_id",
    "previous_response_id", "signature", "encrypted_content", "media_type", "mime_type",
    "format", "detail", "created", "created_at", "expires_at", "completed_at", "object_type",
    "reasoning_effort", "truncation", "tool_choice_mode",
})
# Blocks whose every field is signed reasoning or bytes (a thinking block is signed when
# it carries a signature, as Anthropic's do; Mistral's thinking chunks are plain text).
_OPAQUE_BLOCKS = frozenset({"redacted_thinking", "image_generation_call", "input_audio"})
# Fields holding bytes, not text: an audio answer's data, a generated image.
_BYTES = frozenset({("audio", "data"), ("image_generation_call", "result")})
_MAX_DEPTH = 64


def _walk(out: list, node: Any, path: tuple) -> None:
    if len(path) >= _MAX_DEPTH:
        return
    if isinstance(node, dict):
        kind = node.get("type")
        if kind in _OPAQUE_BLOCKS or kind == "thinking" and "signature" in node:
            return
        parent = path[-1] if path else None
        for key, value in node.items():
            if type(value) is str:
                if key in _OPAQUE or (parent, key) in _BYTES:
                    continue
                if key in _ENCODED_KEYS:
                    _string(out, node, key, value, (*path, key))
                else:
                    out.append((node, key, (*path, key)))
            elif isinstance(value, (dict, list)):
                _walk(out, value, (*path, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            if type(item) is str:
                out.append((node, index, (*path, index)))
            elif isinstance(item, (dict, list)):
                _walk(out, item, (*path, index))


def response_texts(kind: str, body: dict) -> list[tuple[Any, Any, tuple]]:
    """(container, key, path) of every string the client reads in a JSON response body,
    in the body's order. `kind` is the endpoint's; every kind is walked alike."""
    out: list = []
    _walk(out, body, ())
    return out


def response_slots(kind: str, body: dict) -> list[tuple[Any, Any]]:
    return [(container, key) for container, key, _path in response_texts(kind, body)]
