"""A streamed answer the service reads, chunk by chunk: its usage, the text it generates
(for an estimate when the provider gives no usage), and what the caller gets.

Each event Envoy brings is parsed once. It tells the usage in the provider's dialect;
then, when the caller speaks another dialect, the call's stream translation writes the
caller's events for it (translate/), the response guardrails reading the model's events
between decoding and encoding (stages/guard/events.py); an untranslated stream's event filters
(stages/guard/stream.py) read what the caller would get. When the gateway asked an OpenAI
provider for the usage the caller did not ask for, that usage chunk (and the
`"usage":null` it makes the provider add to every chunk) is taken out, so the caller
sees what it asked for.
"""

from __future__ import annotations

from time import perf_counter

from ..api.provider_json import loads
from ..dialects import codec_of
from ..pipeline.call import Call
from .accounting.cost import charged_cost, stream_usage_with_cost

_USAGE_NULL = b',"usage":null'


def stream_chunk(call: Call, chunk: bytes, end_of_stream: bool) -> bytes | None:
    """The bytes the caller gets for this chunk; None when they are the chunk as it came."""
    codec = codec_of(call.provider_kind)
    translation = call.stream_translation
    strip = translation is None and not call.client_wants_usage
    out: list[bytes] = []
    # Bytes held back from earlier chunks (an incomplete event) come out with this one.
    changed = bool(call.sse.pending) or translation is not None or call.sse.rewrites
    for event in call.sse.feed(chunk, final=end_of_stream):
        raw = event.raw
        data = None
        if event.data and not event.is_done:
            data = loads(event.data)
            if isinstance(data, dict):
                if call.first_byte_at is None:
                    call.first_byte_at = perf_counter()
                call.generated.extend(codec.generated_texts(data))
                response_id = codec.response_id(data, streamed=True)
                if response_id is not None:
                    call.response_id = response_id
                usage = codec.usage_from_event(data, call.usage)
                if usage is not call.usage:
                    call.usage = usage
                    if strip and data.get("choices") == []:
                        changed = True
                        continue   # the usage chunk the client did not ask for
                    if translation is None and call.backend is not None:
                        rewritten = stream_usage_with_cost(call, data)     # the caller learns the cost
                        if rewritten is not None:
                            raw = (b"event: " + event.name + b"\n" if event.name else b"") + \
                                b"data: " + rewritten + b"\n\n"
                            changed = True
                    elif translation is not None and call.backend is not None:
                        translation.cost_usd = round(charged_cost(call), 8)    # in the caller's usage
                if strip and _USAGE_NULL in raw:
                    raw = raw.replace(_USAGE_NULL, b"")
                    changed = True
        if translation is not None:       # the guardrails read the model's events (stages/guard/events.py)
            out.append(translation.event(data if isinstance(data, dict) else None, event.name, raw,
                                         call.event_filters))
            continue
        for event_filter in call.event_filters:
            filtered = event_filter(event, data, raw)
            if filtered is not raw:
                raw, changed = filtered, True
        out.append(raw)
    if end_of_stream and translation is not None:
        out.append(translation.end(call.event_filters))
    elif end_of_stream and call.event_filters:
        # A stream cut before its last event (the answer's end, `[DONE]`): what a filter
        # still holds leaves, read as complete, where a whole answer's read would put it.
        for event_filter in call.event_filters:
            tail = event_filter.end()
            if tail:
                out.append(tail)
                changed = True
    if not end_of_stream and call.sse.pending:
        changed = True             # hold an incomplete event back until it completes
    if not changed:
        return None
    return b"".join(out)
