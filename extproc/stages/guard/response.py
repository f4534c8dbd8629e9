"""Guardrails on responses: buffered JSON here (every string the client reads,
guardrails/response_walk.py), SSE through a StreamGuard (stages/guard/stream.py)."""

from __future__ import annotations

from ...api.provider_json import dumps
from ...api.repeated_keys import repeated_key
from ...guardrails.config import Guardrail
from ...guardrails.response_walk import response_slots
from ...pipeline.call import Call
from ...pipeline.errors import GatewayError
from ...transport.eager import task_needed
from ...pipeline.stage import Stage
from .request import check_texts, could_not_run, record_verdict, run_plugin
from .events import ModelEventGuard
from .stream import StreamGuard
from .stream_plugins import StreamPluginHold


def response_policy(call: Call) -> tuple[Guardrail, ...]:
    """The guardrails that read this caller's responses."""
    if call.key is None:
        return ()
    return call.config.guardrails.policy_reading(call.key, "response")


def stream_policy(call: Call) -> tuple[Guardrail, ...]:
    """The guardrails that read this caller's streamed responses (plugins: the whole
    stream, held to its end, stages/guard/stream_plugins.py)."""
    return response_policy(call)


class PluginHold:
    """A stream held until the plugin guardrails have read it all."""
    __slots__ = ("hold",)

    def __init__(self) -> None:
        self.hold: StreamPluginHold | None = None


class GuardResponse(Stage):
    name = "guard_response"
    reads = frozenset({"endpoint", "path", "key", "model_name", "request_id", "response_json", "response_streamed", "status",
                       "stream_translation"})
    writes = frozenset({"error_code", "event_filters", "verdicts"})

    def response_headers(self, call: Call, headers: dict[str, str], end_of_stream: bool) -> None:
        if call.response_streamed and call.status < 400:
            policy = stream_policy(call)
            detectors = [g for g in policy if g.type != "plugin"]
            plugins = [g for g in policy if g.type == "plugin"]
            if detectors:
                # A translated stream is guarded in the model's events, read once.
                guard = ModelEventGuard if call.stream_translation is not None else StreamGuard
                call.event_filters.append(guard(call, detectors, call.config.guardrails.stream_window))
            if plugins:
                call.own(PluginHold).hold = StreamPluginHold(call, plugins)

    async def response_body(self, call: Call, chunk: bytes, end_of_stream: bool) -> bytes | None:
        if call.response_streamed:
            held = call.owned(PluginHold)
            hold = held.hold if held is not None else None
            if hold is None:
                return None
            hold.add(chunk)
            if not end_of_stream:
                return b""                  # nothing leaves before the plugins have read it all
            await task_needed()             # plugin calls (transport/eager.py)
            return await hold.release()
        if call.status >= 400:
            return None
        body = call.response_json
        policy = response_policy(call)
        if not policy or not isinstance(body, dict):
            return None
        slots = list(response_slots(call.endpoint.kind, body))
        changed = False
        for guardrail in policy:
            try:
                if guardrail.type == "tools":
                    forbidden = [n for n in call.codec.called_tools(body)
                                 if n not in guardrail.allow]
                    verdict = "passed" if not forbidden else "flagged" if guardrail.action == "log" \
                        else "blocked"
                    record_verdict(call, guardrail, "response", verdict)
                    if verdict == "blocked":
                        raise _blocked(guardrail)
                elif guardrail.type == "plugin":
                    changed |= await run_plugin(call, guardrail, slots, "response")
                else:
                    changed |= check_texts(call, guardrail, slots, "response")
            except GatewayError:
                raise
            except Exception as error:  # noqa: BLE001 - the fail mode decides
                could_not_run(call, guardrail, "response", type(error).__name__)
        if changed or repeated_key(chunk, body) is not None:
            # The client gets what was checked: a key the provider wrote twice (the
            # guardrails read the last value, a client's parser may keep the first) once.
            return dumps(body)
        return None

    def done(self, call: Call) -> None:
        for stream_guard in call.event_filters:
            if isinstance(stream_guard, StreamGuard):
                stream_guard.record()


def _blocked(guardrail: Guardrail) -> GatewayError:
    return GatewayError(400, "content_blocked",
                        f"The response was blocked by the guardrail '{guardrail.name}'.")
