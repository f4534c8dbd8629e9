"""The gateway's own replies to a JSON call's three ext_proc messages, for bench/floor.py's
`--replies gateway`: the do-nothing servicer answers each phase with what the quickstart
pipeline answers the bench's call (bench/pipeline.py's messages, alice's key, a token
budget), so that Envoy does what the gateway's replies ask of it (the request's headers
set and removed, the route cleared, the mode override, the metadata the response's
headers and the access log are made from) while the servicer does nothing: Envoy's share
of a call, apart from the worker's."""

from __future__ import annotations

import asyncio
import struct
import sys
from pathlib import Path

_LENGTH = struct.Struct(">I")


def capture(path: Path) -> None:
    """Runs the quickstart pipeline in process over one JSON call and writes its replies
    to `path` (each serialized, length first)."""
    import pipeline                                     # bench/pipeline.py

    from extproc.pipeline.call import Call
    from extproc.pipeline.protocol import read_message

    async def replies() -> list[bytes]:
        prepared = await pipeline.prepare(True, pipeline.PROMPT)
        call = Call(prepared.runtime.config, prepared.features)
        return [await prepared.runtime.pipeline.handle(call, read_message(message))
                for message in prepared.sequences[0]]
    try:
        made = asyncio.run(replies())
    finally:
        sys.stdout = sys.__stdout__                     # (prepare() sends the log lines to /dev/null)
    path.write_bytes(b"".join(_LENGTH.pack(len(reply)) + reply for reply in made))


def load(path: str) -> dict:
    """The replies `capture` wrote, by the phase each answers."""
    from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
    data, at, found = Path(path).read_bytes(), 0, {}
    while at < len(data):
        (size,) = _LENGTH.unpack_from(data, at)
        reply = ep.ProcessingResponse.FromString(data[at + _LENGTH.size:at + _LENGTH.size + size])
        found[reply.WhichOneof("response")] = reply
        at += _LENGTH.size + size
    return found
