"""A streamed answer to a tainted run's request that calls a tool the request withheld
(stages/runs/model_tools.py): the stream is cut where the call begins, with the caller's
own error event naming the tool and what tainted the run, as a JSON answer is refused.

An event filter (the call's `event_filters`, as the stream guardrails are): on a stream
in the caller's dialect it reads each event's tool calls (`Codec.called_tools`, which
reads a stream's events too); on a translated stream, the conversation model's events
(a tool_use block begins), between decoding and encoding (translate/bridge.py). Nothing
of the call leaves: the tool's name and arguments come after its start. Cost: a few
dict reads per event of a stream whose request withheld a tool; none otherwise."""

from __future__ import annotations

from ...config.mcp_taint import READS_PRIVATE, UNTRUSTED_CONTENT
from ...pipeline.call import Call

_TOOL_BLOCK = "tool_use"        # the conversation model's block of a tool call (dialects/conversation.py)


def withheld_tool_message(tool: str, flags: dict) -> str:
    return (f"The model asked to run '{tool}', which sends data out, and this agent run has read private data "
            f"({flags.get(READS_PRIVATE)}) and taken in untrusted content ({flags.get(UNTRUSTED_CONTENT)}): the "
            "gateway stopped it. Tell the user; a new run may use it.")


class WithheldToolStream:
    __slots__ = ("call", "tools", "flags", "stopped")

    def __init__(self, call: Call, tools: frozenset[str], flags: dict) -> None:
        self.call, self.tools, self.flags = call, tools, flags
        self.stopped = False

    def __call__(self, event, data, raw: bytes) -> bytes:
        """An event of a stream in the caller's own dialect."""
        if self.stopped:
            return b""
        if isinstance(data, dict):
            called = [name for name in self.call.codec.called_tools(data) if name in self.tools]
            if called:
                return self._stop(called)
        return raw

    def end(self) -> bytes:
        """The stream ended: nothing is held here."""
        return b""

    def events(self, events: list, final: bool = False) -> list:
        """The model's events of a translated stream."""
        if self.stopped:
            return []
        out: list = []
        for event in events:
            block = event.block if event.kind == "block" else None
            if block and block.get("type") == _TOOL_BLOCK and block.get("name") in self.tools:
                out.append(self._stop([block["name"]]))
                return out
            out.append(event)
        return out

    def _stop(self, called: list[str]) -> bytes:
        self.stopped = True
        call = self.call
        call.error_code = "content_blocked"
        call.log_fields.setdefault("run_tools", []).append(
            {"decision": "refused", "tools": called, "reason": "run_tainted", "tainted_by": self.flags,
             "streamed": True})
        return call.codec.dialect.error_event(withheld_tool_message(called[0], self.flags), "content_blocked")
