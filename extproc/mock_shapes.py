"""Response bodies of the mock provider, shaped like OpenAI's (see shared fixtures)."""

from __future__ import annotations

import time
import uuid

import orjson


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


def _response_object(rid: str, model: str, text: str, usage: dict | None, status: str) -> dict:
    return {"id": rid, "object": "response", "created_at": int(time.time()), "status": status,
            "model": model, "output": [{
                "type": "message", "id": "msg_" + rid[5:], "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}],
            "usage": _usage_responses(usage) if usage else None}


def json_reply(kind: str, model: str, text: str, finish: str, usage: dict | None,
               choices: int = 1) -> bytes:
    """The answer; chat and completions give `choices` of them (`n`), each the same text."""
    created = int(time.time())
    if kind == "responses":
        return orjson.dumps(_response_object(f"resp_{uuid.uuid4().hex}", model, text, usage,
                                             "completed"))
    if kind == "completions":
        body = {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion",
                "created": created, "model": model,
                "choices": [{"index": index, "text": text, "logprobs": None, "finish_reason": finish}
                            for index in range(choices)]}
    else:
        body = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
                "created": created, "model": model, "system_fingerprint": None,
                "choices": [{"index": index, "message": {"role": "assistant", "content": text,
                                                         "refusal": None, "annotations": []},
                             "logprobs": None, "finish_reason": finish}
                            for index in range(choices)]}
    if usage is not None:
        body["usage"] = _usage_chat(usage)
    return orjson.dumps(body)


def _sse(obj: dict, event: str | None = None) -> bytes:
    prefix = f"event: {event}\n".encode() if event else b""
    return prefix + b"data: " + orjson.dumps(obj) + b"\n\n"


def sse_events(kind: str, model: str, pieces: list[str], finish: str, usage: dict,
               include_usage: bool, no_usage: bool, choices: int = 1) -> list[bytes]:
    """The events of a stream. With include_usage, OpenAI adds `"usage":null` to every
    chunk and ends with a `choices: []` chunk that carries usage. With `choices` answers
    (`n`), each piece comes once per answer, one chunk each, as OpenAI interleaves them."""
    if kind == "responses":
        return _responses_events(model, pieces, None if no_usage else usage)
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
    if kind == "chat":
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


def _responses_events(model: str, pieces: list[str], usage: dict | None) -> list[bytes]:
    rid = f"resp_{uuid.uuid4().hex}"
    text = "".join(pieces)
    events = [_sse({"type": "response.created", "sequence_number": 0,
                    "response": _response_object(rid, model, "", None, "in_progress")},
                   "response.created")]
    for number, piece in enumerate(pieces, start=1):
        events.append(_sse({"type": "response.output_text.delta", "sequence_number": number,
                            "item_id": "msg_" + rid[5:], "output_index": 0, "content_index": 0,
                            "delta": piece}, "response.output_text.delta"))
    events.append(_sse({"type": "response.completed", "sequence_number": len(pieces) + 1,
                        "response": _response_object(rid, model, text, usage, "completed")},
                       "response.completed"))
    return events
