"""A stored answer told again: a caller's JSON answer, read back through its codec, as the
Events its stream encoder writes (the response cache replays a hit for a stream request
this way), or as another dialect's JSON answer (a hit for a caller of another dialect
than the one it was kept for); and the other way, a caller's stream assembled into its
JSON answer (the response cache keeps a streamed answer so)."""

from __future__ import annotations

import orjson

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


def answer_for(codec: Codec, request: dict, kept_for: str, answer: bytes) -> bytes:
    """A JSON answer kept for a caller of endpoint `kept_for`, as `codec`'s caller of
    `request` gets it: the same bytes for the same endpoint, else read by the kept
    endpoint's codec and written by the caller's (raises what they raise)."""
    if not kept_for or kept_for == codec.kind:
        return answer
    from . import codec_of                 # the package's table, which imports this module's users
    conversation = codec.decode_request(request, Notes(), whole=False)
    decoded = codec_of(kept_for).decode_answer(orjson.loads(answer), conversation, None)
    return provider_json.dumps(codec.encode_answer(decoded, conversation))


def replayed_stream(codec: Codec, request: dict, answer: dict, cost_usd: float | None = 0.0) -> bytes:
    """A caller's JSON answer to `request` as the stream the caller's dialect writes
    (`codec.translates` only; raises what its decoders raise on an answer they cannot read)."""
    conversation = codec.decode_request(request, Notes(), whole=False)
    conversation.stream = True
    decoded = codec.decode_answer(answer, conversation, None)
    encoder = codec.stream_encoder(conversation, None)
    encoder.cost_usd = cost_usd
    return b"".join(encoder.write(event) for event in answer_events(decoded))


class StreamAnswer:
    """A caller's stream read back into the answer it told (the response cache keeps a
    streamed answer so): events in the caller's dialect, as the caller got them, read by
    that dialect's stream decoder and assembled; `answer()` gives the caller's JSON
    answer, or None when the stream did not end whole."""

    __slots__ = ("_answer", "_blocks", "_codec", "_conversation", "_decoder", "_ended", "_failed")

    def __init__(self, codec: Codec, request: dict) -> None:
        self._codec = codec
        self._conversation = codec.decode_request(request, Notes(), whole=False)
        self._decoder = codec.stream_decoder(self._conversation, None)
        self._answer = Answer()
        self._blocks: dict = {}                  # a block's index -> the block being assembled
        self._ended = self._failed = False

    def read(self, data: dict | None, name: bytes, raw: bytes) -> None:
        if not (self._ended or self._failed):
            self._take(self._decoder.read(data, name, raw))

    def answer(self, usage=None) -> dict | None:
        """`usage`: the call's own (a usage chunk the caller did not ask for never reached it)."""
        if usage is not None:
            self._answer.usage = usage
        if not (self._ended or self._failed):
            self._take(self._decoder.end())
        if not self._ended or self._failed:
            return None
        for block in self._blocks.values():
            arguments = block.pop("_json", None)
            if arguments is not None:
                block["input"] = orjson.loads(arguments) if arguments else {}
            self._answer.content.append(block)
        return self._codec.encode_answer(self._answer, self._conversation)

    def _take(self, events: list[Event]) -> None:
        answer = self._answer
        for event in events:
            kind = event.kind
            if kind == "delta":
                block = self._blocks.get(event.index)
                if block is None:
                    continue
                if event.delta == "json":
                    block["_json"] = block.get("_json", "") + event.text
                else:
                    block[event.delta] = block.get(event.delta, "") + event.text
            elif kind == "block":
                block = dict(event.block or {})
                if block.get("type") == "text":
                    block.setdefault("text", "")
                elif block.get("type") == "thinking":
                    block.setdefault("thinking", "")
                    block.setdefault("signature", "")
                elif block.get("type") == "tool_use":
                    block["_json"] = ""
                self._blocks[event.index] = block
            elif kind == "start":
                answer.id, answer.model = event.id, event.model
                answer.usage = event.usage or answer.usage
            elif kind == "usage":
                answer.usage = event.usage if answer.usage is None or event.usage is not None else answer.usage
            elif kind == "stop":
                answer.stop, answer.stop_sequence = event.stop or answer.stop, event.stop_sequence
            elif kind == "end":
                self._ended = True
            elif kind == "error":
                self._failed = True
