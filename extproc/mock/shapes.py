"""Response bodies of the mock provider, shaped like OpenAI's (see the recordings in mock/recordings/openai-recordings)."""

from __future__ import annotations

import time
import uuid

import orjson

from ..api.provider_json import dumps


def _usage_chat(usage: dict) -> dict:
    return {"prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"],
            "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"],
            "prompt_tokens_details": {"cached_tokens": usage.get("cached_tokens", 0), "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0}}


def _usage_responses(usage: dict) -> dict:
    return {"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"],
            "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"],
            "input_tokens_details": {"cached_tokens": usage.get("cached_tokens", 0)},
            "output_tokens_details": {"reasoning_tokens": 0}}


def _output_item(rid: str, text: str, tool: str | None) -> dict:
    """A Responses output item: the message, or a call of `tool` with `text` as its arguments."""
    if tool:
        return {"type": "function_call", "id": "fc_" + rid[5:], "call_id": "call_" + rid[5:29],
                "name": tool, "arguments": text, "status": "completed"}
    return {"type": "message", "id": "msg_" + rid[5:], "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def _response_object(rid: str, model: str, text: str, usage: dict | None, status: str,
                     tool: str | None = None) -> dict:
    return {"id": rid, "object": "response", "created_at": int(time.time()), "status": status,
            "model": model, "output": [_output_item(rid, text, tool)] if status == "completed" else [],
            "usage": _usage_responses(usage) if usage else None}


def _tool_call(index: int, name: str, arguments: str) -> dict:
    return {"index": index, "id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
            "function": {"name": name, "arguments": arguments}}


def json_reply(kind: str, model: str, text: str, finish: str, usage: dict | None,
               choices: int = 1, tool: str | None = None) -> bytes:
    """The answer; chat and completions give `choices` of them (`n`), each the same text.
    With `tool` (chat, Responses), the answer calls that tool with `text` as its arguments."""
    created = int(time.time())
    if kind == "responses":
        return orjson.dumps(_response_object(f"resp_{uuid.uuid4().hex}", model, text, usage,
                                             "completed", tool))
    if kind == "completions":
        body = {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion",
                "created": created, "model": model,
                "choices": [{"index": index, "text": text, "logprobs": None, "finish_reason": finish}
                            for index in range(choices)]}
    else:
        def message() -> dict:
            if tool:
                call = _tool_call(0, tool, text)
                del call["index"]
                return {"role": "assistant", "content": None, "refusal": None, "annotations": [],
                        "tool_calls": [call]}
            return {"role": "assistant", "content": text, "refusal": None, "annotations": []}
        body = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
                "created": created, "model": model, "system_fingerprint": None,
                "choices": [{"index": index, "message": message(), "logprobs": None,
                             "finish_reason": "tool_calls" if tool else finish}
                            for index in range(choices)]}
    if usage is not None:
        body["usage"] = _usage_chat(usage)
    return orjson.dumps(body)


def _sse(obj: dict, event: str | None = None) -> bytes:
    prefix = f"event: {event}\n".encode() if event else b""
    return prefix + b"data: " + dumps(obj) + b"\n\n"      # (a piece may be half an emoji)


def sse_events(kind: str, model: str, pieces: list[str], finish: str, usage: dict,
               include_usage: bool, no_usage: bool, choices: int = 1,
               tool: str | None = None) -> list[bytes]:
    """The events of a stream. With include_usage, OpenAI adds `"usage":null` to every
    chunk and ends with a `choices: []` chunk that carries usage. With `choices` answers
    (`n`), each piece comes once per answer, one chunk each, as OpenAI interleaves them.
    With `tool` (chat, Responses), the pieces are the arguments of a call of that tool: the
    call's id and name come first, with empty arguments, then the arguments piece by piece."""
    if kind == "responses":
        return _responses_events(model, pieces, None if no_usage else usage, tool)
    cid = f"chatcmpl-{uuid.uuid4().hex[:24]}" if kind == "chat" else f"cmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    base = {"id": cid, "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
            "created": created, "model": model}
    if kind == "chat":
        base["system_fingerprint"] = None
    events = []

    def chunk(choice: dict) -> bytes:
        body = {**base, "choices": [choice]}
        if include_usage:
            body["usage"] = None
        return _sse(body)

    answers = range(choices)
    if kind == "chat" and tool:
        events.extend(chunk({"index": i, "delta": {"role": "assistant", "content": None,
                                                   "tool_calls": [_tool_call(0, tool, "")], "refusal": None},
                             "logprobs": None, "finish_reason": None}) for i in answers)
        for piece in pieces:
            events.extend(chunk({"index": i, "delta": {"tool_calls": [{"index": 0, "function": {
                "arguments": piece}}]}, "logprobs": None, "finish_reason": None}) for i in answers)
        events.extend(chunk({"index": i, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"})
                      for i in answers)
    elif kind == "chat":
        events.extend(chunk({"index": i, "delta": {"role": "assistant", "content": "", "refusal": None},
                             "logprobs": None, "finish_reason": None}) for i in answers)
        for piece in pieces:
            events.extend(chunk({"index": i, "delta": {"content": piece}, "logprobs": None,
                                 "finish_reason": None}) for i in answers)
        events.extend(chunk({"index": i, "delta": {}, "logprobs": None, "finish_reason": finish})
                      for i in answers)
    else:
        for piece in pieces:
            events.extend(chunk({"index": i, "text": piece, "logprobs": None, "finish_reason": None})
                          for i in answers)
        events.extend(chunk({"index": i, "text": "", "logprobs": None, "finish_reason": finish})
                      for i in answers)
    if include_usage:
        events.append(_sse({**base, "choices": [], "usage": _usage_chat(usage)}))
    events.append(b"data: [DONE]\n\n")
    return events


def _responses_events(model: str, pieces: list[str], usage: dict | None, tool: str | None) -> list[bytes]:
    """OpenAI's event sequence: created, in_progress, the item added, its content part added
    (a message) or its arguments (a function call) in deltas, each part and item done with
    its whole text, then completed; every event numbered, each delta naming its item."""
    rid = f"resp_{uuid.uuid4().hex}"
    text = "".join(pieces)
    started = _response_object(rid, model, "", None, "in_progress", tool)
    events: list[dict] = [{"type": "response.created", "response": started},
                          {"type": "response.in_progress", "response": started}]
    item = _output_item(rid, text, tool)
    where = {"item_id": item["id"], "output_index": 0}
    if tool:
        events.append({"type": "response.output_item.added", "output_index": 0,
                       "item": {**item, "arguments": "", "status": "in_progress"}})
        events.extend({"type": "response.function_call_arguments.delta", **where, "delta": piece}
                      for piece in pieces)
        events.append({"type": "response.function_call_arguments.done", **where, "arguments": text})
    else:
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
        events.append({"type": "response.output_item.added", "output_index": 0,
                       "item": {**item, "status": "in_progress", "content": []}})
        events.append({"type": "response.content_part.added", **where, "content_index": 0, "part": part})
        events.extend({"type": "response.output_text.delta", **where, "content_index": 0, "delta": piece,
                       "logprobs": []} for piece in pieces)
        events.append({"type": "response.output_text.done", **where, "content_index": 0, "text": text,
                       "logprobs": []})
        events.append({"type": "response.content_part.done", **where, "content_index": 0,
                       "part": {**part, "text": text}})
    events.append({"type": "response.output_item.done", "output_index": 0, "item": item})
    events.append({"type": "response.completed",
                   "response": _response_object(rid, model, text, usage, "completed", tool)})
    return [_sse({"type": event["type"], "sequence_number": number, **event}, event["type"])
            for number, event in enumerate(events)]
