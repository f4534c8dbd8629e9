"""A streamed answer kept by the response cache (a rule's `streams: true`): the stream as
the caller gets it (after the response guardrails' filters), read back into the caller's
JSON answer (dialects/replay.py) for stages/cache/store.py to keep. A stream passed through
Envoy unseen cannot be read: such a rule's streams are not passed through
(pass_through.py). A translated stream is not kept (its last events are written after
the filters run), nor one a plugin guardrail holds (it may change what was read)."""

from __future__ import annotations

from ...api.provider_json import loads
from ...api.sse import SSEParser
from ...dialects.replay import StreamAnswer
from ...pipeline.call import Call
from ..guard.response import stream_policy


class StreamCapture:
    """The caller's stream, read as it leaves (an event filter, last of the call's)."""
    __slots__ = ("reader", "parser")

    def __init__(self) -> None:
        self.reader: StreamAnswer | None = None
        self.parser: SSEParser | None = None

    def __call__(self, event, data, raw: bytes) -> bytes:
        if raw is event.raw:                    # as it came: its JSON is read already
            self.reader.read(data if isinstance(data, dict) else None, event.name, raw)
            return raw
        if self.parser is None:                 # an earlier filter changed it: read what it wrote
            self.parser = SSEParser()
        for written in self.parser.feed(raw):
            parsed = loads(written.data) if written.data and not written.is_done else None
            self.reader.read(parsed if isinstance(parsed, dict) else None, written.name, written.raw)
        return raw


    def end(self) -> bytes:
        """The stream ended. What an earlier filter releases now (a cut stream's held text)
        is not read: a stream cut before its answer's end is not kept."""
        return b""


def capture_stream(call: Call) -> None:
    """At the response headers of a stream a rule keeps: its events read as they leave."""
    if call.stream_translation is not None or any(g.type == "plugin" for g in stream_policy(call)):
        return
    capture = call.own(StreamCapture)
    capture.reader = StreamAnswer(call.codec, call.body)
    call.event_filters.append(capture)


def captured_answer(call: Call) -> dict | None:
    """The caller's JSON answer of a stream read whole, else None."""
    capture = call.owned(StreamCapture)
    if capture is None or capture.reader is None:
        return None
    return capture.reader.answer(call.usage)
