"""A translation: the caller's codec and the provider's, joined by the conversation model.

The request is decoded by the caller's codec and encoded by the provider's; the answer,
each stream event and each error go the other way. Neither codec knows the other: a
dialect added to dialects/ reaches every other through this one class.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from ..dialects.base import Codec, StreamDecoder, StreamEncoder
from ..dialects.conversation import Conversation, Event, Notes, Target


class Bridge:
    """A caller's endpoint (`caller_codec`) served by a provider's (`provider_codec`)."""
    __slots__ = ("caller", "caller_codec", "provider", "provider_codec", "provider_kind")

    def __init__(self, caller: str, caller_codec: Codec, provider: str, provider_codec: Codec) -> None:
        self.caller, self.caller_codec = caller, caller_codec
        self.provider, self.provider_codec = provider, provider_codec
        self.provider_kind = provider_codec.kind       # the endpoint at the provider ("messages", "chat")

    def request(self, body: dict, target: Target, notes: Notes) -> dict:
        """The caller's body as the provider takes it, `target.model` in it; raises Refused."""
        conversation = self.caller_codec.decode_request(body, notes)
        conversation.stream = conversation.stream or target.stream
        return self.provider_codec.encode_request(conversation, target, notes)

    def response(self, body: dict, request: dict, notes: Notes | None = None) -> dict:
        """The provider's JSON answer as the caller reads it (`request`: the caller's body)."""
        conversation = self._head(request)
        return self.caller_codec.encode_answer(self.provider_codec.decode_answer(body, conversation, notes),
                                               conversation)

    def stream(self, request: dict, notes: Notes | None = None) -> "BridgedStream":
        """The translation of one streamed answer."""
        conversation = self._head(request)
        return BridgedStream(self.provider_codec.stream_decoder(conversation, notes),
                             self.caller_codec.stream_encoder(conversation, notes))

    def error(self, status: int, body: Any) -> tuple[int, bytes]:
        """A provider's error (its status and parsed body, None when not JSON) in the
        caller's shape and status."""
        return self.caller_codec.encode_error(status, self.provider_codec.decode_error(status, body))

    def _head(self, request: dict) -> Conversation:
        """What reading the answer back needs of the caller's request: all but its turns
        (an answer costs nothing per turn of the history)."""
        return self.caller_codec.decode_request(request, Notes(), whole=False)


class BridgedStream:
    """One streamed answer: each provider event decoded into the model's Events, each
    written in the caller's dialect."""
    __slots__ = ("_decoder", "_encoder")

    def __init__(self, decoder: StreamDecoder, encoder: StreamEncoder) -> None:
        self._decoder = decoder
        self._encoder = encoder

    @property
    def cost_usd(self) -> float | None:
        return self._encoder.cost_usd

    @cost_usd.setter
    def cost_usd(self, value: float | None) -> None:
        self._encoder.cost_usd = value             # the usage the caller gets at the end carries it

    def event(self, data: dict | None, name: bytes, raw: bytes, filters: Sequence[EventFilter] = ()) -> bytes:
        """The caller's bytes for one provider event: b"" for none, or several joined.
        `filters` read and change the model's events between the two codecs (a stream's
        guardrails: stages/guard/events.py)."""
        events = self._decoder.read(data, name, raw)
        for events_filter in filters:
            events = events_filter.events(events)
        if not events:
            return b""
        write = self._encoder.write
        if len(events) == 1 and not filters:
            return write(events[0])
        return b"".join([event if isinstance(event, bytes) else write(event) for event in events])

    def end(self, filters: Sequence[EventFilter] = ()) -> bytes:
        """What closes the caller's stream when the provider's ended without its last
        events (cut, or an error): b"" when it closed properly; the filters give up what
        they still hold."""
        events = self._decoder.end()
        for events_filter in filters:
            events = events_filter.events(events, final=True)
        write = self._encoder.write
        return b"".join([event if isinstance(event, bytes) else write(event) for event in events])


class EventFilter(Protocol):
    """Reads a stream's events between decoding and encoding: returns what leaves now
    (Events to encode, or bytes already in the caller's dialect)."""

    def events(self, events: list[Event], final: bool = False) -> list[Event | bytes]: ...
