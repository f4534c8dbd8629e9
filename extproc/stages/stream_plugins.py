"""Guardrail plugins on streamed responses: the stream is held to its end, then checked.

A plugin answers about whole texts (protos/guardrail_plugin.proto), in one call with a
deadline, so it cannot judge a stream piece by piece the way the built-in detectors do
(stream_guard.py). A stream that a plugin rule reads is therefore held until it ends:
then every text it generated (each answer's content, refusal and reasoning, each tool
call's arguments, each Responses output) goes to the plugin at once, and the client gets
the stream as it was (allowed), with each text replaced where it first appears and
emptied in its later pieces (redacted), or a single SSE error event (blocked). The
client's first token waits for the last: the price of a guardrail that must see it all.
"""

from __future__ import annotations

from typing import Any

from ..api.provider_json import dumps, loads
from ..api.sse import SSEParser
from ..guardrails.config import Guardrail
from ..pipeline.call import Call
from ..pipeline.errors import GatewayError, error_body
from .guard import could_not_run, run_plugin
from .stream_events import whole_text_fields

# Chat delta fields whose strings are generated text.
_DELTA_TEXTS = ("content", "refusal", "reasoning_content", "reasoning")


class StreamPluginHold:
    """What a streamed response's plugins hold back until its end."""

    def __init__(self, call: Call, plugins: list[Guardrail]) -> None:
        self.call = call
        self.plugins = plugins
        self.held = bytearray()

    def add(self, chunk: bytes) -> None:
        self.held += chunk

    async def release(self) -> bytes:
        """The stream the client gets, once every plugin has read its texts."""
        events = SSEParser().feed(bytes(self.held), final=True)
        parsed = [loads(event.data) if event.data and not event.is_done else None for event in events]
        lanes: dict[Any, list[tuple[Any, Any]]] = {}      # a text's key -> its pieces' slots
        for data in parsed:
            if isinstance(data, dict):
                for key, container, field in _pieces(self.call.endpoint.kind, data):
                    lanes.setdefault(key, []).append((container, field))
        texts = ["".join(c[f] for c, f in slots) for slots in lanes.values()]
        whole = list(texts)
        changed = False
        for guardrail in self.plugins:
            try:
                try:
                    changed |= await run_plugin(self.call, guardrail, [(whole, i) for i in range(len(whole))],
                                                "response")
                except GatewayError:
                    raise
                except Exception as error:     # noqa: BLE001 - the fail mode decides (plugin down, bug)
                    could_not_run(self.call, guardrail, "response", type(error).__name__)
            except GatewayError as refusal:
                return self._blocked(refusal)
        if not changed:
            return bytes(self.held)
        return self._rewritten(events, parsed, lanes, dict(zip(texts, whole)), whole)

    def _rewritten(self, events, parsed, lanes, replaced: dict[str, str], whole: list[str]) -> bytes:
        """Each text's replacement in its first piece, its later pieces empty; texts that
        events repeat whole (Responses' `…done`, `response.completed`) replaced as well."""
        for slots, text in zip(lanes.values(), whole):
            first, *rest = slots
            first[0][first[1]] = text
            for container, field in rest:
                container[field] = ""
        out = []
        for event, data in zip(events, parsed):
            if not isinstance(data, dict):
                out.append(event.raw)
                continue
            for container, field in whole_text_fields(data):
                if container[field] in replaced:
                    container[field] = replaced[container[field]]
            name = b"event: " + event.name + b"\n" if event.name else b""
            out.append(name + b"data: " + dumps(data) + b"\n\n")
        return b"".join(out)

    def _blocked(self, refusal: GatewayError) -> bytes:
        self.call.error_code = refusal.code
        return b"data: " + error_body(refusal.message, refusal.type, refusal.code) + b"\n\n"


def _pieces(kind: str, data: dict):
    """(text key, container, field) of each piece of generated text an event carries."""
    if kind == "responses":
        delta, name = data.get("delta"), data.get("type")
        if isinstance(delta, str) and isinstance(name, str) and name.endswith(".delta") \
                and name != "response.audio.delta":
            yield (data.get("output_index"), name, data.get("content_index")), data, "delta"
        return
    for choice in data.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        answer = choice.get("index", 0)
        if kind == "completions":
            if isinstance(choice.get("text"), str):
                yield (answer, "text"), choice, "text"
            continue
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            continue
        for field in _DELTA_TEXTS:
            if isinstance(delta.get(field), str):
                yield (answer, field), delta, field
        for call in delta.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                yield (answer, "tool", call.get("index", 0)), function, "arguments"
