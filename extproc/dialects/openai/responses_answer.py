"""Responses answers and errors: a Responses-only provider's `response` object read into
the model's Answer, an Answer written as the `response` object a caller reads (its items,
ids and echoed settings as OpenAI writes them), and OpenAI's error envelope both ways
(chat_answer.py's: the two endpoints share it).

Read from a provider (decode), field by field (C carried, H dropped and named in Notes.dropped):
  output[] message: output_text parts   C  text blocks
  output[] message: refusal parts       C  text blocks, stop REFUSAL
  output[] function_call                C  tool_use blocks (call_id as the id, a missing one made up,
                                           a shortened name restored, arguments parsed: {} when not a
                                           JSON object, named `output[].arguments:malformed`)
  output[] reasoning                    C  a thinking block of its summary texts (its reasoning_text
                                           when it has no summary), signature its encrypted_content
                                           (or ""), origin "openai-responses"
  output[] of OpenAI's own tools (web_search_call, ...)   H  output[].<type>
  status incomplete                     C  stop LENGTH (max_output_tokens), CONTENT_FILTER (content_filter)
  status completed                      C  stop TOOL_USE when it calls a tool, else END
  usage                                 C  input and output tokens, cached, cache write and reasoning details
  id, model, service_tier               C

Written for a caller (encode):
  thinking blocks   -> a `reasoning` item, their text as a summary
  text blocks       -> a `message` item with one `output_text` part, all of them joined
  tool_use blocks   -> `function_call` items (call_id: the call's id), arguments as compact JSON
  stop LENGTH       -> status incomplete, incomplete_details.reason max_output_tokens
  stop CONTENT_FILTER  -> status incomplete, incomplete_details.reason content_filter
  usage             -> input/output tokens, cached, cache write and reasoning details
  service_tier      -> service_tier (the tier that served the answer)
  the request's own settings (Conversation.echo) are echoed as OpenAI echoes them; the
  response has a new id (`resp_`), each item one derived from it; store false (nothing is kept).

Errors: as chat_answer.py (OpenAI's envelope; 529 is 503).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from ...api import openai as openai_api
from ...api.usage import Usage
from .chat_answer import arguments_of, decode_error, encode_error, new_tool_id, tool_input
from ..conversation import (
    CONTENT_FILTER,
    END,
    LENGTH,
    REFUSAL,
    TOOL_USE,
    Answer,
    Block,
    Conversation,
    Notes,
    note,
)
from ..vocabulary import restored_names

__all__ = ["decode", "encode", "decode_error", "encode_error"]

MALFORMED_ARGUMENTS = "output[].arguments:malformed"

# incomplete_details.reason <-> the model's stop.
INCOMPLETE_STOPS = {"max_output_tokens": LENGTH, "content_filter": CONTENT_FILTER}
INCOMPLETE_REASONS = {LENGTH: "max_output_tokens", CONTENT_FILTER: "content_filter"}


# --- a provider's answer -------------------------------------------------------------

def _texts(parts: Any, kind: str, field: str) -> list[str]:
    return [part[field] for part in parts or () if isinstance(part, dict) and part.get("type") == kind
            and isinstance(part.get(field), str)] if isinstance(parts, list) else []


def decode_item(item: dict, names: dict[str, str], notes: Notes | None) -> tuple[list[Block], bool]:
    """One output item as the model's blocks, and whether it held a refusal."""
    kind = item.get("type")
    if kind == "message":
        blocks: list[Block] = []
        refused = False
        for part in item.get("content") or ():
            if not isinstance(part, dict):
                continue
            if part.get("type") == "output_text" and isinstance(part.get("text"), str):
                blocks.append({"type": "text", "text": part["text"]})
            elif part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
                blocks.append({"type": "text", "text": part["refusal"]})
                refused = True
        return [block for block in blocks if block["text"]], refused
    if kind == "function_call":
        name = item.get("name")
        return [{"type": "tool_use", "id": item.get("call_id") or new_tool_id(), "name": names.get(name, name),
                 "input": tool_input(item.get("arguments"), notes, MALFORMED_ARGUMENTS)}], False
    if kind == "reasoning":
        texts = _texts(item.get("summary"), "summary_text", "text") or \
            _texts(item.get("content"), "reasoning_text", "text")
        signature = item.get("encrypted_content")
        return [{"type": "thinking", "thinking": "".join(texts),
                 "signature": signature if isinstance(signature, str) else "", "origin": "openai-responses"}], False
    if notes is not None:
        note(notes.dropped, f"output[].{str(kind)[:40]}")      # a built-in tool's call: no other dialect holds it
    return [], False


def usage_from(obj: Any) -> Usage | None:
    """A `response` object's usage, with the prompt tokens it wrote to the cache
    (input_tokens_details.cache_write_tokens)."""
    usage = openai_api.usage_from(obj)
    details = obj.get("input_tokens_details") if usage is not None else None
    if isinstance(details, dict):
        written = details.get("cache_write_tokens")
        if isinstance(written, int) and not isinstance(written, bool) and written > 0:
            usage.cache_write_tokens = written
    return usage


def decode(body: dict, conversation: Conversation, notes: Notes | None) -> Answer:
    """A Responses `response` object as the model's Answer."""
    names = restored_names(conversation)
    content: list[Block] = []
    refused = False
    for item in body.get("output") or ():
        if isinstance(item, dict):
            blocks, refusal = decode_item(item, names, notes)
            content.extend(blocks)
            refused = refused or refusal
    if body.get("status") == "incomplete":
        details = body.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        stop = INCOMPLETE_STOPS.get(reason, LENGTH) if isinstance(reason, str) else LENGTH
    elif refused:
        stop = REFUSAL
    else:
        stop = TOOL_USE if any(block["type"] == "tool_use" for block in content) else END
    tier = body.get("service_tier")
    return Answer(id=body.get("id") if isinstance(body.get("id"), str) else None,
                  model=body.get("model") if isinstance(body.get("model"), str) else None,
                  content=content, stop=stop, usage=usage_from(body.get("usage")),
                  service_tier=tier if isinstance(tier, str) else None)


# --- the caller's answer: items, ids, the envelope (responses_stream.py writes the same) ---

def response_id() -> str:
    return f"resp_{uuid.uuid4().hex}"


def item_id(prefix: str, response: str, index: int) -> str:
    """An item's id, derived from its response's (as OpenAI's share a stem)."""
    return f"{prefix}_{response[5:]}{index:02d}"


def usage_of(usage: Usage | None) -> dict[str, Any] | None:
    """Usage as a `response` object writes it (input_tokens counts cache reads)."""
    if usage is None:
        return None
    return {"input_tokens": usage.input_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens,
                                     "cache_write_tokens": usage.cache_write_tokens},
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.input_tokens + usage.output_tokens}


def reasoning_item(ident: str, text: str) -> dict:
    return {"type": "reasoning", "id": ident, "summary": [{"type": "summary_text", "text": text}]}


def message_item(ident: str, text: str, status: str = "completed") -> dict:
    return {"type": "message", "id": ident, "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def call_item(ident: str, call_id: Any, name: Any, arguments: Any, status: str = "completed") -> dict:
    return {"type": "function_call", "id": ident, "call_id": call_id, "name": name,
            "arguments": arguments if isinstance(arguments, str) else "", "status": status}


def status_of(stop: str | None) -> str:
    """A finished answer's status: incomplete when cut (at its cap, or by a filter)."""
    return "incomplete" if stop in INCOMPLETE_REASONS else "completed"


def envelope(ident: str, conversation: Conversation, model: Any, status: str, output: list,
             usage: dict | None, stop: str | None = None) -> dict:
    """The `response` object around `output`, the request's settings echoed."""
    reason = INCOMPLETE_REASONS.get(stop or "") if status == "incomplete" else None
    out: dict[str, Any] = {"id": ident, "object": "response", "created_at": int(time.time()), "status": status,
                           "error": None, "incomplete_details": {"reason": reason} if reason else None,
                           "model": model or conversation.model, "output": output, "usage": usage, "store": False}
    for name, value in conversation.echo.items():
        out.setdefault(name, value)
    # What a `response` object always holds (OpenAI's defaults, which its SDK's types
    # require) when the request did not say it.
    out.setdefault("parallel_tool_calls", True)
    out.setdefault("tool_choice", "auto")
    out.setdefault("tools", [])
    return out


def encode(answer: Answer, conversation: Conversation) -> dict:
    """An Answer as the `response` object the caller asked for."""
    ident = response_id()
    thinking = [block.get("thinking") or "" for block in answer.content if block.get("type") == "thinking"]
    text = "".join(block.get("text") or "" for block in answer.content if block.get("type") == "text")
    output: list[dict] = []
    if any(thinking):
        output.append(reasoning_item(item_id("rs", ident, len(output)), "".join(thinking)))
    if text:
        output.append(message_item(item_id("msg", ident, len(output)), text))
    for block in answer.content:
        if block.get("type") == "tool_use":
            output.append(call_item(item_id("fc", ident, len(output)), block.get("id"), block.get("name"),
                                    arguments_of(block)))
    out = envelope(ident, conversation, answer.model, status_of(answer.stop), output, usage_of(answer.usage),
                   answer.stop)
    if answer.service_tier:
        out["service_tier"] = answer.service_tier         # the tier that served it, not the one asked
    return out
