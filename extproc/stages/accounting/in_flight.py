"""The calls a worker has in flight, in its live journal (store/live_journal.py), so that a
worker killed outright still leaves a log line for each: its identity is put there when
the request goes on to the provider, its usage and cost once its settle and meters have
put them in the counters, and it is cleared once the call's log line has left the worker
(log_lines.py): a worker killed in between leaves a line that charges what the store
holds of the call.
Whoever takes a killed worker's journal (the supervisor, at once) logs them
(runtime/lost_calls.py); what the caller got is noted once the answer is out
(CallAnswered). About 2 µs a call: one small JSON dump and three writes to a
memory-mapped file."""

from __future__ import annotations

from functools import partial

from ...observability.settings import OVERFLOW
from ...pipeline.call import Call
from ...pipeline.stage import Stage
from .cost import charged_cost
from .log_lines import LogLines

MAX_LOGGED_CHARS = 256          # as the log line keeps a text the caller chose (record.py)
MODEL_LABEL = "_model_label"    # (not on the log line: runtime/lost_calls.py takes it out)


class InFlightSlot:
    """Where the call stands in the live journal (-1: not there)."""
    __slots__ = ("slot",)

    def __init__(self) -> None:
        self.slot = -1


class CallsInFlight(Stage):
    name = "calls_in_flight"
    reads = frozenset({"backend", "body_unread", "endpoint", "key", "log_fields", "method", "model", "model_name",
                       "path", "request_id", "stream", "tags", "usage"})
    writes: frozenset[str] = frozenset()

    def __init__(self, store, lines: LogLines) -> None:
        self.store = store
        self.lines = lines          # Record's: the slot goes once the call's line has left

    def request_headers(self, call: Call, end_of_stream: bool) -> None:
        if call.body_unread:            # its body never comes (stages/body_unread.py)
            self.request_body(call)

    def request_body(self, call: Call) -> None:
        live = getattr(self.store, "live", None)
        if live is None:
            return
        key = call.key
        identity = {"request_id": call.request_id, "key_id": key.id if key else None,
                    "user": key.user if key else None, "team": key.team if key else None,
                    "method": call.method, "path": call.path[:MAX_LOGGED_CHARS],
                    "model": call.model_name[:MAX_LOGGED_CHARS] or None,
                    "served_model": call.backend.model if call.backend else None,
                    "backend": call.backend.name if call.backend else None, "stream": call.stream,
                    "api": call.endpoint.dialect if call.endpoint is not None else None,
                    "config_version": call.config.version, **call.log_fields}
        if call.tags:
            identity["tags"] = call.tags
        # Its model as a metric label, bounded as the log line's record does (record.py).
        identity[MODEL_LABEL] = call.model.name if call.model is not None and \
            call.model.name in call.config.models else OVERFLOW
        call.own(InFlightSlot).slot = live.call_started(identity)

    def done(self, call: Call) -> None:
        mark = call.owned(InFlightSlot)
        if mark is None or mark.slot < 0:
            return
        live = getattr(self.store, "live", None)
        if live is not None:
            # After the settle and the meters (their done hooks run before this one).
            live.call_charged(mark.slot, call.usage, charged_cost(call))
            self.lines.after_written(partial(live.call_ended, mark.slot))
        mark.slot = -1


class CallAnswered(Stage):
    """Notes in the live journal what the caller got (status, outcome) once the answer is
    out and final, before the bookkeeping that follows (settle, meters, log line): a worker
    killed meanwhile leaves a line that says so (runtime/lost_calls.py)."""
    name = "call_answered"
    reads = frozenset({"outcome", "status"})
    writes: frozenset[str] = frozenset()

    def __init__(self, store) -> None:
        self.store = store

    def done(self, call: Call) -> None:
        mark = call.owned(InFlightSlot)
        live = getattr(self.store, "live", None)
        if mark is not None and mark.slot >= 0 and live is not None:
            live.call_answered(mark.slot, call.status, call.outcome)
