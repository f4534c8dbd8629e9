"""Response side: the answer in the caller's dialect.

When the backend that answered speaks another dialect than the caller (a chat caller on
an Anthropic backend: translate/), its status, its JSON answer and its errors are
written in the caller's; a stream's events are, one by one, as they are read
(response_stream.py, with the stream translation made here). Any provider error whose
body the gateway does not know becomes one in the caller's shape. Runs after
ResponseUsage, which reads the usage in the provider's dialect first.
"""

from __future__ import annotations

from ..api.provider_json import dumps
from ..pipeline.call import Call
from ..pipeline.stage import Stage
from ..translate import Notes, translation_for


class ProviderStatus:
    """The provider's own status of an error whose status the caller's dialect changed."""
    __slots__ = ("status",)

    def __init__(self) -> None:
        self.status = 0


def notes_of(call: Call) -> Notes:
    """What translations of this call noted (the log line shows it)."""
    notes = call.notes
    if notes is None:
        notes = call.notes = Notes()
    return notes


class TranslateAnswer(Stage):
    name = "translate_answer"
    reads = frozenset({"backend", "body", "endpoint", "path", "provider_answer", "request_id", "response_streamed",
                       "json_passing_by"})
    writes = frozenset({"error_code", "notes", "provider_kind", "response_id", "response_json", "status",
                        "stream_translation", "translation"})

    def response_headers(self, call: Call, headers: dict[str, str], end_of_stream: bool) -> None:
        """The translation of what the backend that answered says, if it speaks another
        dialect than the caller; an error's status made the caller's (Anthropic's 529)."""
        if call.backend is None or call.body is None or not call.endpoint.generates:
            return
        call.translation = translation_for(call.dialect, call.backend.dialect, call.endpoint.kind)
        if call.translation is None:
            return
        call.provider_kind = call.translation.provider_kind
        if call.status >= 400:
            status, _ = call.translation.error(call.status, None)
            if status != call.status:
                call.own(ProviderStatus).status = call.status
                call.reply.set_headers[":status"] = str(status)
                call.status = status
        elif call.response_streamed:
            call.stream_translation = call.translation.stream(call.body, notes_of(call))
            call.reply.set_headers["content-type"] = "text/event-stream"     # (Bedrock's is binary)

    def response_body(self, call: Call, chunk: bytes, end_of_stream: bool) -> bytes | None:
        if call.response_streamed or call.json_passing_by or not end_of_stream:
            return None                     # a stream: translated event by event as it is read
        parsed = call.provider_answer
        if call.status >= 400:
            return self._error_body(call, parsed)
        if not isinstance(parsed, dict) or not call.endpoint.generates:
            return None
        out = None
        if call.translation is not None:
            parsed = call.translation.response(parsed, call.body, notes_of(call))
            out = dumps(parsed)
        call.response_json = parsed         # guardrails read it, no second parse
        response_id = call.codec.response_id(parsed, streamed=False)
        if response_id is not None:
            call.response_id = response_id
        return out

    @staticmethod
    def _error_body(call: Call, parsed) -> bytes | None:
        if call.translation is not None:
            _, out = call.translation.error(call.own(ProviderStatus).status or call.status, parsed)
            call.reply.set_headers["content-type"] = "application/json"
            return out
        if call.backend is not None and call.backend.provider.wraps_bodies and call.codec.translates:
            # A cloud platform serving another maker's model (Claude on Vertex AI) refuses some
            # calls itself, in its own shape: read either, written in the caller's.
            _, out = call.codec.encode_error(call.status, call.codec.decode_error(call.status, parsed))
            call.reply.set_headers["content-type"] = "application/json"
            return out
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            return None                    # already an error in the caller's dialect: pass it on
        call.error_code = "upstream_error"
        call.reply.set_headers["content-type"] = "application/json"
        message = f"The provider answered HTTP {call.status} without an error body the gateway knows."
        return call.caller.error_body(call.status, message, "api_error", "upstream_error", call.request_id)
