"""How the mock's answers go on the wire, with the `x-mock-*` faults that act on bytes and
connections rather than on content: resets, delays, streams written slowly, cut, in odd
pieces, unended or stalled, truncated bodies, and replayed recordings."""

from __future__ import annotations

import asyncio
import functools
import re
import socket
import struct
from pathlib import Path

import yaml
from aiohttp import web

from .listener import Listener, int_option, option

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)    # libyaml: recordings read ten times faster
SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
_RECORDING_NAME = re.compile(r"[a-z0-9-]+")
# What ends an SSE event: a blank line, in whichever line endings the provider writes
# (Google's streams are CRLF-framed).
_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
# x-mock-stall-after: how long a stalled stream holds its connection, sending nothing, at
# most (the gateway's idle timeout ends it first; the mock lets go once it is gone).
STALL_HOLD_S = 600.0


def reset_connection(request: web.Request) -> None:
    """Close with RST, as a crashing provider or a load balancer would."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport else None
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if transport:
        transport.abort()


# x-mock-reset-times: the attempts seen of each request (by x-request-id), the last few hundred.
_ATTEMPTS: dict[tuple[str, str], int] = {}
_ATTEMPTS_KEPT = 512


def resets_this_attempt(listener: Listener, request: web.Request) -> bool:
    """Whether to reset the connection before answering: x-mock-reset, every time;
    x-mock-reset-times: N, the first N attempts of a request (the same x-request-id, as
    Envoy's retries carry it), as a provider that drops a connection and serves the retry."""
    if option(listener, request, "reset"):
        return True
    times = int_option(listener, request, "reset-times")
    if not times:
        return False
    seen = (listener.name, request.headers.get("x-request-id", ""))
    _ATTEMPTS[seen] = attempt = _ATTEMPTS.get(seen, 0) + 1
    if len(_ATTEMPTS) > _ATTEMPTS_KEPT:
        del _ATTEMPTS[next(iter(_ATTEMPTS))]
    return attempt <= times


async def delay_first_byte(listener: Listener, request: web.Request) -> None:
    """x-mock-delay-ms: a provider slow to answer."""
    delay = option(listener, request, "delay-ms")
    if delay:
        await asyncio.sleep(int(delay) / 1000)


def unended(listener: Listener, request: web.Request, events: list[bytes]) -> list[bytes]:
    """x-mock-unended: the last event loses the blank line that ends it (LF or CRLF)."""
    if option(listener, request, "unended") and events:
        events = [*events[:-1], events[-1].rstrip(b"\r\n")]
    return events


async def write_stream(listener: Listener, request: web.Request, events: list[bytes],
                       headers: dict[str, str] | None = None) -> web.StreamResponse:
    """An SSE answer, event by event: x-mock-chunk-delay-ms between events, x-mock-cut-after
    resets the connection after N of them, x-mock-stall-after sends nothing more after N of
    them (the connection held open, as a provider that hangs mid-answer),
    x-mock-write-bytes writes N bytes at a time (events cut anywhere; the cut, stall and
    delay then count those writes)."""
    chunk_delay = int_option(listener, request, "chunk-delay-ms") / 1000
    cut_after = option(listener, request, "cut-after")
    stall_after = option(listener, request, "stall-after")
    response = web.StreamResponse(headers={**SSE_HEADERS, **(headers or {})})
    await response.prepare(request)
    size = int_option(listener, request, "write-bytes")
    if size:
        stream = b"".join(events)
        events = [stream[i:i + size] for i in range(0, len(stream), size)]
    try:
        for index, event in enumerate(events):
            if index and chunk_delay:       # (a cut comes as late after its last event)
                await asyncio.sleep(chunk_delay)
            if cut_after is not None and index >= int(cut_after):
                reset_connection(request)
                return response
            if stall_after is not None and index >= int(stall_after):
                await _stall(request)
                return response
            await response.write(event)
        end_delay = int_option(listener, request, "end-delay-ms")
        if end_delay:                   # the last event sent, the stream's end comes later
            await asyncio.sleep(end_delay / 1000)
        await response.write_eof()
    except ConnectionResetError:
        pass              # the client left mid-stream (Envoy closes upstream): a provider stops
    return response


async def _stall(request: web.Request) -> None:
    """Sends nothing while the client stays (STALL_HOLD_S at most)."""
    deadline = asyncio.get_running_loop().time() + STALL_HOLD_S
    while asyncio.get_running_loop().time() < deadline:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(0.05)


async def write_truncated(request: web.Request, body: bytes, size: int) -> web.StreamResponse:
    """x-mock-truncate: promise the whole JSON body, send its first `size` bytes, then drop
    the connection."""
    response = web.StreamResponse(headers={"content-type": "application/json",
                                           "content-length": str(len(body))})
    await response.prepare(request)
    await response.write(body[:size])
    reset_connection(request)
    return response


# --- replay -----------------------------------------------------------------------------

# Recorded provider traffic shipped with the mock (sources and licenses: its README.md).
RECORDINGS = Path(__file__).resolve().parent / "recordings"


def find_recording(fixtures: str | None, name: str) -> Path | None:
    """The recording `<name>.yaml` in the fixtures folder (the shipped recordings when none is
    given) or any folder directly below it (openai-recordings/, anthropic-recordings/,
    provider-recordings/); None for a name that is not a plain one."""
    if not _RECORDING_NAME.fullmatch(name):
        return None
    root = Path(fixtures) if fixtures else RECORDINGS
    for candidate in [root / f"{name}.yaml", *sorted(root.glob(f"*/{name}.yaml"))]:
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def _recorded_response(path: Path) -> dict:
    """A cassette's first response, read once (recordings do not change while served)."""
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_LOADER)["interactions"][0]["response"]  # noqa: S506


def _header(headers: dict, name: str) -> str | None:
    """A recorded header's first value (recorders spell names in either case)."""
    for key, values in headers.items():
        if key.lower() == name:
            return values[0] if isinstance(values, list) else str(values)
    return None


def _carried_headers(headers: dict, carried: tuple[str, ...]) -> dict[str, str]:
    """The recorded headers whose (lowercased) names start with one of `carried`."""
    return {key.lower(): values[0] if isinstance(values, list) else str(values)
            for key, values in headers.items() if key.lower().startswith(carried)}


def sse_events_of(body: bytes) -> list[bytes]:
    """A recorded SSE body cut into its events, each with the bytes that end it, so that the
    events joined are the body byte for byte (a last event without its blank line too)."""
    events, start = [], 0
    for end in _EVENT_END.finditer(body):
        events.append(body[start:end.end()])
        start = end.end()
    if body[start:]:
        events.append(body[start:])
    return events


async def replay(listener: Listener, request: web.Request, path: Path,
                 carried: tuple[str, ...] = ()) -> web.StreamResponse:
    """The first recorded response of a cassette, its body byte for byte (an SSE body through
    write_stream, so the stream faults apply), with the recorded headers whose names start
    with one of `carried` (e.g. "request-id", "anthropic-ratelimit-")."""
    recorded = _recorded_response(path)
    headers = recorded.get("headers") or {}
    content_type = _header(headers, "content-type") or "application/json"
    extra = _carried_headers(headers, carried)
    body = recorded["body"].encode()
    if content_type.startswith("text/event-stream"):
        return await write_stream(listener, request, sse_events_of(body), extra)
    return web.Response(status=recorded.get("code", 200), body=body,
                        headers={**extra, "content-type": content_type})
