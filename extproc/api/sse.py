"""Incremental Server-Sent Events parser that keeps each event's exact bytes.

Chunks from Envoy cut events anywhere. `feed` returns the events completed by a
chunk (each with its raw bytes, so unchanged events pass through byte for byte)
and keeps the incomplete tail for the next chunk. Handles `\\n`, `\\r\\n` and
`\\r` line ends, comments, multi-line data and `[DONE]`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .provider_json import dumps

_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(slots=True)
class Event:
    raw: bytes                   # exactly as received, terminating blank line included
    data: bytes                  # data lines joined with "\n"; b"" when none
    name: bytes = b""            # the `event:` field, if any

    @property
    def is_done(self) -> bool:
        return self.data == b"[DONE]"


_BOM = b"\xef\xbb\xbf"


class SSEParser:
    __slots__ = ("_buffer", "_at_start")
    rewrites = False        # each event's raw bytes are the stream's own

    def __init__(self) -> None:
        self._buffer = b""
        self._at_start = True

    @property
    def pending(self) -> bytes:
        return self._buffer

    def feed(self, chunk: bytes, final: bool = False) -> list[Event]:
        """Events completed by this chunk; `final` marks the end of the stream, where
        a trailing lone \r is a line end rather than half of \r\n, and an event the
        provider did not end with a blank line ends too (see `_ended`)."""
        buffer = self._buffer + chunk if self._buffer else chunk
        events: list[Event] = []
        start = 0          # where the current event's raw bytes begin
        pos = 0
        if self._at_start:
            # A byte order mark before the first field is not part of it (WHATWG, and so
            # browsers and eventsource-parser): read past it, keep it in the raw bytes.
            if _BOM.startswith(buffer) and not final:
                self._buffer = buffer
                return events
            self._at_start = False
            pos = len(_BOM) if buffer.startswith(_BOM) else 0
        data_lines: list[bytes] = []
        name = b""
        for match in _LINE_END.finditer(buffer):
            if match.group() == b"\r" and match.end() == len(buffer) and not final:
                break      # a lone \r at the end may be half of \r\n: wait for more
            line = buffer[pos:match.start()]
            pos = match.end()
            if line:
                field, _, value = line.partition(b":")
                if value.startswith(b" "):
                    value = value[1:]
                if field == b"data":
                    data_lines.append(value)
                elif field == b"event":
                    name = value
                continue   # comments (field == b"") and unknown fields are kept raw only
            events.append(Event(raw=buffer[start:pos], data=b"\n".join(data_lines), name=name))
            start = pos
            data_lines = []
            name = b""
        self._buffer = b"" if final else buffer[start:]
        if final and start < len(buffer):
            events.append(_ended(buffer[start:]))
        return events


def _ended(tail: bytes) -> Event:
    """The stream's last event when no blank line ends it. The WHATWG parser drops it,
    other parsers dispatch it: read as ended, its usage counts and the guardrails read
    its text, and its bytes still pass as they came when nothing changes."""
    event = SSEParser().feed(tail.rstrip(b"\r\n") + b"\n\n")[0]
    return Event(raw=tail, data=event.data, name=event.name)


def written(event: Event, data: dict) -> bytes:
    """An event written again with `data` (redacted, say, or a key the provider wrote twice
    written once: the guardrails read the last value, a client's parser may keep the first)."""
    name = b"event: " + event.name + b"\n" if event.name else b""
    return name + b"data: " + dumps(data) + b"\n\n"
