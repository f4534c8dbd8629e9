"""What every translation shares: the dialect names, the Translation interface, what a
translation notes or refuses, and how OpenAI and Anthropic write an SSE event."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

# orjson, keeping lone surrogates (text a provider split mid-character)
from ..api import provider_json

OPENAI, ANTHROPIC = "openai", "anthropic"
# A provider that speaks OpenAI's Responses API only (callers never speak it alone).
OPENAI_RESPONSES = "openai-responses"


class Refused(Exception):
    """A request the translation cannot carry without changing the answer."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


@dataclass(slots=True)
class Notes:
    """What a translation did that the caller should know: named on the log line."""
    dropped: list[str] = field(default_factory=list)       # hints the provider has no use for
    defaulted: list[str] = field(default_factory=list)     # fields set for the provider (max_tokens)


@dataclass(frozen=True, slots=True)
class Target:
    """What a translation needs to know of the attempt's backend."""
    model: str                         # the model's name at the provider
    default_max_tokens: int = 4096     # when the provider needs an output cap the caller did not set


class StreamTranslation(Protocol):
    """One streamed answer, event by event (an instance per call: it keeps the stream's state)."""

    # The call's cost so far, USD: the reader (stages/response_stream.py) sets it each time
    # the provider's usage moves; the usage the caller gets at the end carries it.
    cost_usd: float | None

    def event(self, data: dict | None, name: bytes, raw: bytes) -> bytes:
        """The caller's SSE bytes for one provider event (`data`: its JSON, None when it is
        not JSON or `[DONE]`; `name`: its `event:` field; `raw`: its bytes): b"" for none,
        or several events joined."""
        ...

    def end(self) -> bytes:
        """What closes the caller's stream when the provider's ended without its last
        events (cut, or an error): b"" when it closed properly."""
        ...


class Translation(Protocol):
    caller: str                        # OPENAI | ANTHROPIC
    provider: str
    provider_kind: str                 # the endpoint at the provider ("messages", "chat")

    def request(self, body: dict, target: Target, notes: Notes) -> dict:
        """The caller's body as the provider takes it, `target.model` in it; raises Refused."""
        ...

    def response(self, body: dict, request: dict, notes: Notes | None = None) -> dict:
        """The provider's JSON answer as the caller reads it (`request`: the caller's body;
        `notes`, when given, names what the answer could not carry whole)."""
        ...

    def stream(self, request: dict, notes: Notes | None = None) -> StreamTranslation:
        """The translation of one streamed answer (`notes` as for `response`)."""
        ...

    def error(self, status: int, body: Any) -> tuple[int, bytes]:
        """A provider's error (its status and parsed body, None when not JSON) in the
        caller's shape and status."""
        ...


def openai_event(data: dict | bytes) -> bytes:
    """An SSE event as OpenAI writes them."""
    return b"data: " + (data if isinstance(data, bytes) else provider_json.dumps(data)) + b"\n\n"


def anthropic_event(data: dict) -> bytes:
    """An SSE event as Anthropic writes them: its type as the event's name."""
    return b"event: " + data["type"].encode() + b"\ndata: " + provider_json.dumps(data) + b"\n\n"
