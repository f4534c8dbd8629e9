"""A stored answer told again: a caller's JSON answer, read back through its codec, as the
Events its stream encoder writes (the response cache replays a hit for a stream request
this way), and what of a request cannot change its answer (left out of the cache's key)."""

from __future__ import annotations

from ..api import provider_json
from .base import Codec
from .conversation import Answer, Event, Notes


def answer_events(answer: Answer) -> list[Event]:
    """The Events a stream of `answer` is made of: its start, each block whole (its header,
    one delta, its end), its stop, its usage and its end."""
    events = [Event("start", id=answer.id, model=answer.model, usage=answer.usage)]
    for index, block in enumerate(answer.content):
        kind = block.get("type")
        if kind == "text":
            header, delta, text = {"type": "text", **({"refusal": True} if block.get("refusal") else {})}, \
                "text", block.get("text") or ""
        elif kind == "thinking":
            header = {"type": "thinking", "signature": "", "origin": block.get("origin", "")}
            delta, text = "thinking", block.get("thinking") or ""
        elif kind == "tool_use":
            header = {"type": "tool_use", "id": block.get("id"), "name": block.get("name")}
            tool_input = block.get("input")
            delta, text = "json", provider_json.dumps(tool_input).decode() if tool_input else "{}"
        elif kind == "redacted_thinking":
            header, delta, text = dict(block), "", ""
        else:
            continue
        events.append(Event("block", index, block=header))
        if text:
            events.append(Event("delta", index, delta=delta, text=text))
        if kind == "thinking" and block.get("signature"):
            events.append(Event("delta", index, delta="signature", text=block["signature"]))
        events.append(Event("block_stop", index))
    events.append(Event("stop", stop=answer.stop, stop_sequence=answer.stop_sequence))
    if answer.usage is not None:
        events.append(Event("usage", usage=answer.usage))
    events.append(Event("end"))
    return events


def replayed_stream(codec: Codec, request: dict, answer: dict, cost_usd: float | None = 0.0) -> bytes:
    """A caller's JSON answer to `request` as the stream the caller's dialect writes
    (`codec.translates` only; raises what its decoders raise on an answer they cannot read)."""
    conversation = codec.decode_request(request, Notes(), whole=False)
    conversation.stream = True
    decoded = codec.decode_answer(answer, conversation, None)
    encoder = codec.stream_encoder(conversation, None)
    encoder.cost_usd = cost_usd
    return b"".join(encoder.write(event) for event in answer_events(decoded))
