"""Anthropic Messages answers and errors: a provider's `message` read into the model's
Answer, an Answer written as the `message` a caller reads, and Anthropic's error envelope
both ways.

Read from a provider (decode), field by field (C carried, H dropped and named in Notes.dropped):
  text blocks                  C  text blocks (their citations H: no other dialect has them)
  tool_use blocks              C  tool_use blocks; the JSON_TOOL call (messages_request.py: how an
                                  answer format is carried) is a text block, its input as compact
                                  JSON, and a tool_use stop with no other call is END
  thinking blocks              C  thinking blocks, signature kept, origin "anthropic"
  redacted_thinking blocks     C  kept, origin "anthropic"
  blocks of server tools (server_tool_use, web_search_tool_result, ...)  H  content[].<type>
  stop_reason                  C  stop (STOPS); an unknown reason reads as END
  stop_sequence                C
  usage                        C  api.anthropic.usage_from (cache reads and writes counted in input)
  usage.service_tier           C  service_tier in OpenAI's words (standard -> default)
  id, model                    C

Written for a caller (encode):
  thinking blocks              -> thinking blocks first (none when the caller asked thinking.display
                                  "omitted"); a signature only when Anthropic made it, else ""
  redacted thinking            -> kept when Anthropic made it, else none (nothing else reads it)
  text, tool_use blocks        -> text, tool_use blocks, in order
  stop                         -> stop_reason (STOP_REASONS): CONTENT_FILTER is refusal
  usage                        -> vocabulary.anthropic_usage (input_tokens leaves out cache reads and
                                  writes); service_tier default -> standard
  id, model                    -> the answer's, else a new id and the request's model

Errors: a provider's {"type": "error", "error": {type, message}} (an OpenAI-shaped body, or a
list wrapping one, read as well) as a Problem of its type, else of its status; written for a
Messages caller in Anthropic's envelope, its status kept.
"""

from __future__ import annotations

import secrets
from typing import Any

from ...api import anthropic as anthropic_api
from ...api import provider_json
from ...api.usage import Usage
from ..conversation import (
    CONTENT_FILTER,
    END,
    LENGTH,
    PAUSE,
    REFUSAL,
    STOP_SEQUENCE,
    TOOL_USE,
    Answer,
    Block,
    Conversation,
    Notes,
    Problem,
    note,
)
from .messages_request import JSON_TOOL, json_tool_in_use
from ..vocabulary import anthropic_usage

# stop_reason -> the model's stop. A full context window cuts the answer as its cap does.
STOPS = {"end_turn": END, "max_tokens": LENGTH, "tool_use": TOOL_USE, "stop_sequence": STOP_SEQUENCE,
         "refusal": REFUSAL, "pause_turn": PAUSE, "model_context_window_exceeded": LENGTH}

# The model's stop -> stop_reason. Anthropic's refusal is also its word for a filtered answer.
STOP_REASONS = {END: "end_turn", LENGTH: "max_tokens", TOOL_USE: "tool_use", STOP_SEQUENCE: "stop_sequence",
                REFUSAL: "refusal", CONTENT_FILTER: "refusal", PAUSE: "pause_turn"}

# usage.service_tier <-> the model's (OpenAI's words).
SERVICE_TIERS = {"standard": "default", "priority": "priority"}
ANTHROPIC_TIERS = {"default": "standard", "priority": "priority"}


def stop_of(stop_reason: Any) -> str:
    return STOPS.get(stop_reason, END) if isinstance(stop_reason, str) else END


def json_answer(block: Block) -> Block:
    """The JSON_TOOL call as the answer's text: its input as compact JSON."""
    return {"type": "text", "text": provider_json.dumps(block.get("input") or {}).decode()}


# --- a provider's answer -------------------------------------------------------------

def decode_block(block: Any, json_tool: str | None, notes: Notes | None) -> Block | None:
    """One content block of a `message` as the model's (None: not carried, noted)."""
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "text" and isinstance(block.get("text"), str):
        if block.get("citations") and notes is not None:
            note(notes.dropped, "content[].citations")
        return {"type": "text", "text": block["text"]}
    if kind == "tool_use":
        if json_tool is not None and block.get("name") == json_tool:
            return json_answer(block)
        return {"type": "tool_use", "id": block.get("id"), "name": block.get("name"),
                "input": block.get("input") if isinstance(block.get("input"), dict) else {}}
    if kind == "thinking" and isinstance(block.get("thinking"), str):
        signature = block.get("signature")
        return {"type": "thinking", "thinking": block["thinking"],
                "signature": signature if isinstance(signature, str) else "", "origin": "anthropic"}
    if kind == "redacted_thinking" and isinstance(block.get("data"), str):
        return {"type": "redacted_thinking", "data": block["data"], "origin": "anthropic"}
    if notes is not None and isinstance(kind, str):
        note(notes.dropped, f"content[].{kind[:40]}")
    return None


def decode(body: dict, conversation: Conversation, notes: Notes | None) -> Answer:
    """A Messages `message` as the model's Answer."""
    json_tool = JSON_TOOL if json_tool_in_use(conversation) else None
    content: list[Block] = []
    for block in body.get("content") or ():
        decoded = decode_block(block, json_tool, notes)
        if decoded is not None:
            content.append(decoded)
    stop = stop_of(body.get("stop_reason"))
    if stop == TOOL_USE and not any(block["type"] == "tool_use" for block in content):
        stop = END                                         # the only call was the JSON answer
    usage = body.get("usage")
    tier = usage.get("service_tier") if isinstance(usage, dict) else None
    sequence = body.get("stop_sequence")
    return Answer(id=body.get("id") if isinstance(body.get("id"), str) else None,
                  model=body.get("model") if isinstance(body.get("model"), str) else None,
                  content=content, stop=stop, stop_sequence=sequence if isinstance(sequence, str) else None,
                  usage=anthropic_api.usage_from(usage), service_tier=SERVICE_TIERS.get(tier))


# --- the caller's answer -------------------------------------------------------------

def encode_block(block: Block) -> Block | None:
    """One of the model's blocks as a Messages content block (None: nothing the caller reads)."""
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": block.get("text") or ""}
    if kind == "tool_use":
        return {"type": "tool_use", "id": block.get("id"), "name": block.get("name"), "input": block.get("input") or {}}
    ours = block.get("origin") == "anthropic"
    if kind == "thinking" and (ours or block.get("thinking")):
        return {"type": "thinking", "thinking": block.get("thinking") or "",
                "signature": (block.get("signature") or "") if ours else ""}
    if kind == "redacted_thinking" and ours:
        return {"type": "redacted_thinking", "data": block.get("data") or ""}
    return None


def encode(answer: Answer, conversation: Conversation) -> dict:
    """An Answer as the Messages `message` the caller asked for."""
    hidden = conversation.reasoning is not None and conversation.reasoning.hidden
    thinking: list[Block] = []
    rest: list[Block] = []
    for block in answer.content:
        written = encode_block(block)
        if written is None:
            continue
        if written["type"] in ("thinking", "redacted_thinking"):
            if not hidden:
                thinking.append(written)
        else:
            rest.append(written)
    usage = anthropic_usage(answer.usage or Usage())
    tier = ANTHROPIC_TIERS.get(answer.service_tier or "")
    if tier:
        usage["service_tier"] = tier
    return {"id": answer.id or "msg_" + secrets.token_hex(12), "type": "message", "role": "assistant",
            "model": answer.model or conversation.model, "content": thinking + rest,
            "stop_reason": STOP_REASONS.get(answer.stop, "end_turn"), "stop_sequence": answer.stop_sequence,
            "usage": usage}


# --- errors --------------------------------------------------------------------------

def decode_error(status: int, body: Any) -> Problem:
    """An Anthropic error body (also read: an OpenAI-shaped body, a list wrapping one, a bare
    `{"message"}`) as a
    Problem of the type it names; of the status's type when the body names none."""
    if isinstance(body, list) and body:
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        # A cloud platform's own refusal of a call to Claude (Bedrock's `{"message"}`).
        message = body.get("message") if isinstance(body, dict) else None
        if isinstance(message, str) and message:
            return Problem(anthropic_api.error_type(status), message)
        return Problem(anthropic_api.error_type(status), f"The provider answered {status}.")
    kind = error["type"] if isinstance(error.get("type"), str) else anthropic_api.error_type(status)
    message = error.get("message")
    if isinstance(message, str) and message:
        return Problem(kind, message)
    return Problem(kind, f"The provider answered {status} ({kind}).")


def encode_error(status: int, problem: Problem) -> tuple[int, bytes]:
    """A Problem in Anthropic's envelope, the provider's status kept."""
    return status, provider_json.dumps({"type": "error", "error": {"type": problem.kind, "message": problem.message}})
