"""One mock provider listener: its settings, the requests it received, and how a request's
`x-mock-*` controls are read (per request, else the listener's `failure:` defaults)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import orjson
from aiohttp import web

# A listener keeps this many requests (and stored responses): a soak must not grow memory.
KEPT = 1000
# ... and the newest of them whose bodies hold this many characters together (always the
# last one): an agent's history runs to hundreds of KB a request, and a thousand of them
# held a gigabyte.
KEPT_BODY_CHARS = 64_000_000


class LargeBodies:
    """The latest large request bodies a listener received, decoded and parsed once each:
    the benches resend one agent history (400 KB of prose) on every call, and decoding
    and parsing it again (~0.6 ms a call) made the mock, not the stack it answers, the
    bound of what they measure. A body is found by its bytes, compared whole, so what the
    mock answers depends on nothing but the body that came. The parsed value is shared:
    the handlers only read a request's body."""

    MIN_BYTES = 32_768
    MAX_BYTES = 4_000_000       # a larger one is parsed each time: four kept stay under ~100 MB
    KEPT = 4

    def __init__(self) -> None:
        self._kept: list[list] = []     # [bytes, text, parsed value or None], newest first

    def _entry(self, raw: bytes) -> list | None:
        if not self.MIN_BYTES <= len(raw) <= self.MAX_BYTES:
            return None
        for entry in self._kept:
            if entry[0] == raw:
                return entry
        entry = [raw, raw.decode("utf-8", "replace"), None]
        self._kept.insert(0, entry)
        del self._kept[self.KEPT:]
        return entry

    def text(self, raw: bytes) -> str:
        """`raw` decoded as UTF-8, errors replaced."""
        entry = self._entry(raw)
        return raw.decode("utf-8", "replace") if entry is None else entry[1]

    def json(self, raw: bytes):
        """`raw` parsed by orjson (raising its error, as orjson.loads does)."""
        entry = self._entry(raw)
        if entry is None:
            return orjson.loads(raw)
        if entry[2] is None:
            entry[2] = orjson.loads(raw)
        return entry[2]


@dataclass
class Listener:
    name: str
    port: int
    host: str = "127.0.0.1"
    api_key: str | None = None          # when set, requests must carry it
    defaults: dict[str, str] = field(default_factory=dict)   # x-mock-* defaults
    fixtures: str | None = None         # the root folder of recordings (x-mock-replay)
    received: list[dict] = field(default_factory=list)
    received_chars: int = 0             # the characters of the kept requests' bodies
    responses: dict = field(default_factory=dict)     # id -> (response, input items): the last 1000
    aws: dict[str, str] = field(default_factory=dict)  # aws_* settings: what Bedrock's routes verify signatures with
    entra: dict[str, str] = field(default_factory=dict)  # entra_client_secret: what its Entra token endpoint takes
    large_bodies: LargeBodies = field(default_factory=LargeBodies)


def listeners_from_config(spec: dict, fixtures: str | None) -> list[Listener]:
    """The listeners of a filter config's `mock_provider:` section."""
    return [Listener(name=item["name"], port=int(item["port"]), host=item.get("host", "127.0.0.1"),
                     api_key=item.get("api_key"), fixtures=fixtures,
                     defaults={k: str(v) for k, v in (item.get("failure") or {}).items()},
                     aws={k: str(v) for k, v in item.items() if k.startswith("aws_")},
                     entra={k[len("entra_"):]: str(v) for k, v in item.items() if k.startswith("entra_")})
            for item in spec.get("listeners", [])]


def option(listener: Listener, request: web.Request, name: str) -> str | None:
    """The value of control `x-mock-<name>` for this request: the request's header, else the
    listener's default. `x-mock-only: <listener>` aims the headers at one listener: on the
    others only their defaults apply (a failover test fails the first backend, not all)."""
    only = request.headers.get("x-mock-only")
    if only and only != listener.name:      # the headers target another listener
        return listener.defaults.get(name)
    return request.headers.get(f"x-mock-{name}") or listener.defaults.get(name)


def int_option(listener: Listener, request: web.Request, name: str) -> int:
    """A numeric control, 0 when absent."""
    return int(option(listener, request, name) or 0)


def headers_of(request: web.Request) -> dict[str, str]:
    return {str(k).lower(): v for k, v in request.headers.items()}


def record(listener: Listener, request: web.Request, raw: bytes) -> dict:
    """Keep what was received (GET /_mock/requests shows it); the entry is returned so the
    handler can add what it reported (`usage`)."""
    entry = {"path": request.path, "query": dict(request.query), "headers": headers_of(request),
             "body": listener.large_bodies.text(raw), "at": time.time()}
    keep(listener, entry)
    return entry


def keep(listener: Listener, entry: dict) -> None:
    """A request kept in the listener's record, the oldest dropped past its bounds."""
    received = listener.received
    if not received:                    # (emptied by a DELETE /_mock/requests)
        listener.received_chars = 0
    received.append(entry)
    listener.received_chars += len(entry.get("body", ""))
    while len(received) > KEPT or (listener.received_chars > KEPT_BODY_CHARS and len(received) > 1):
        listener.received_chars -= len(received.pop(0).get("body", ""))
