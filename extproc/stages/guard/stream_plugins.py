"""Guardrail plugins on streamed responses: the stream is held to its end, then checked.

A plugin answers about whole texts (protos/guardrail_plugin.proto), in one call with a
deadline, so it cannot judge a stream piece by piece the way the built-in detectors do
(stages/guard/stream.py). A stream that a plugin rule reads is therefore held until it ends:
then every text it generated (each answer's content, refusal and reasoning, each tool
call's arguments, each Responses output) goes to the plugin at once, and the client gets
the stream as it was (allowed), with each text replaced where it first appears and
emptied in its later pieces (redacted), or a single SSE error event (blocked). The
client's first token waits for the last: the price of a guardrail that must see it all.
"""

from __future__ import annotations

from typing import Any

from ...api.provider_json import loads
from ...api.sse import SSEParser, written
from ...guardrails.config import Guardrail
from ...pipeline.call import Call
from ...pipeline.errors import GatewayError
from .request import could_not_run, run_plugin


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
        codec = self.call.codec
        for data in parsed:
            if isinstance(data, dict):
                for key, container, field in codec.plugin_pieces(data):
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
            for container, field in self.call.codec.whole_texts(data):
                if container[field] in replaced:
                    container[field] = replaced[container[field]]
            out.append(written(event, data))
        return b"".join(out)

    def _blocked(self, refusal: GatewayError) -> bytes:
        self.call.error_code = refusal.code
        return self.call.caller.error_event(refusal.message, refusal.code)
