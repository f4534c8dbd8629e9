"""Envoy's gRPC access logs of calls that ended early, served by every worker.

Envoy keeps one stream of each log open to one worker. `cut_streams` sends an entry for
each stream passed through that ended without its trailers (a filter in
envoy/quickstart.yaml keeps the others out), under its `cut_id`; `ended_early` one for
each call the provider failed mid-answer or the client left (Envoy's response flags),
under its x-request-id (`ended_early_id`). The entry goes to the call's worker through
store/cut_streams.py, and says whether the provider failed (UPSTREAM_FAILED among its
numbers) and the status the caller got.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import orjson
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc

from ..config.envoy_contract import METADATA_NAMESPACE, STREAM_USAGE_NAMESPACE
from ..store import CutEntry
from ..pipeline.outcomes import UPSTREAM_FAILED, ended_early_id
from ..store.base import UPSTREAM_COMPLETE
from ..store.cut_streams import SentBytes

ENDED_EARLY_LOG = "ended_early"
# Envoy's response flags that say the provider failed the call (UF, UO, UR, UC, UPE, UT,
# URX, UMSDR; SI: nothing moved on the call for the idle timeout once it went to the
# provider, a provider that stalled mid-answer), rather than the client leaving it (DC, DPE).
_PROVIDER_FLAGS = ("upstream_connection_failure", "upstream_overflow", "upstream_remote_reset",
                   "upstream_connection_termination", "upstream_protocol_error", "upstream_request_timeout",
                   "upstream_retry_limit_exceeded", "upstream_max_stream_duration_reached",
                   "stream_idle_timeout")


class CutStreamLog(als_pb2_grpc.AccessLogServiceServicer):
    """Envoy's gRPC access log of cut streams (a filter there keeps the others out)."""

    def __init__(self, sent: SentBytes, store: Callable[[], object]) -> None:
        self.sent = sent
        self.store = store                 # the store in force now (reloads swap it)
        self._closing = asyncio.Event()

    def close(self) -> None:
        """A retiring worker ends Envoy's log streams (they never end on their own);
        Envoy opens a new one to another worker for its next entries."""
        self._closing.set()

    async def StreamAccessLogs(self, request_iterator, context):
        closing = asyncio.ensure_future(self._closing.wait())
        log_name = ""
        try:
            while True:
                read = asyncio.ensure_future(context.read())
                await asyncio.wait((read, closing), return_when=asyncio.FIRST_COMPLETED)
                if not read.done():
                    # Leaks the read's gRPC batch (grpc/grpc#43360): once per log
                    # stream, when the worker retires.
                    read.cancel()
                    break
                message = read.result()
                if message is grpc.aio.EOF:
                    break
                if message.HasField("identifier"):        # (the stream's first message)
                    log_name = message.identifier.log_name
                for logged in message.http_logs.log_entry:
                    cut_id, entry = _ended_early(logged) if log_name == ENDED_EARLY_LOG else _cut_entry(logged)
                    if cut_id:
                        await self.sent.arrived(cut_id, entry, self.store())
        finally:
            closing.cancel()
        return als_pb2.StreamAccessLogsResponse()


def _cut_entry(logged) -> tuple[str, CutEntry | None]:
    """The cut_id the service set and what Envoy says of the stream (HTTPAccessLogEntry)."""
    metadata = logged.common_properties.metadata.filter_metadata
    marks = metadata.get(METADATA_NAMESPACE)
    cut_id = marks.fields["cut_id"].string_value if marks is not None and "cut_id" in marks.fields else ""
    if not cut_id:
        return "", None
    stream = metadata.get(STREAM_USAGE_NAMESPACE)
    numbers = {} if stream is None else {key: value.number_value for key, value in stream.fields.items()
                                         if value.WhichOneof("kind") == "number_value"}
    first = numbers.pop("first_event_at_us", 0)
    if numbers and logged.common_properties.HasField("time_to_last_upstream_rx_byte"):
        numbers[UPSTREAM_COMPLETE] = 1          # Envoy received the provider's last byte
    if _provider_failed(logged):
        numbers[UPSTREAM_FAILED] = 1
    return cut_id, CutEntry(logged.response.response_code.value, logged.response.response_body_bytes, int(first),
                            orjson.dumps(numbers).decode() if numbers else "")


def _ended_early(logged) -> tuple[str, CutEntry | None]:
    """A call the provider failed or the client left, by its x-request-id; a stream passed
    through (it has a cut_id) comes with the cut_streams log instead."""
    marks = logged.common_properties.metadata.filter_metadata.get(METADATA_NAMESPACE)
    if marks is not None and marks.fields.get("cut_id") is not None and marks.fields["cut_id"].string_value:
        return "", None
    request_id = logged.request.request_headers.get("x-request-id", "")
    if not request_id:
        return "", None
    numbers = {UPSTREAM_FAILED: 1} if _provider_failed(logged) else {}
    return ended_early_id(request_id), CutEntry(logged.response.response_code.value,
                                                 logged.response.response_body_bytes, 0,
                                                 orjson.dumps(numbers).decode() if numbers else "")


def _provider_failed(logged) -> bool:
    flags = logged.common_properties.response_flags
    return any(getattr(flags, name) for name in _PROVIDER_FLAGS)
