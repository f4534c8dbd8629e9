"""Which of a profile's tools an agent run may still see and call: taint across the run,
and tool definitions pinned.

Taint: a tool labelled `reads_private` marks the run that called it as having read
private data; one labelled `untrusted_content`, or any tool whose result the result
guardrails quarantined, marks it as having taken in untrusted content. A run with both
marks gets no `egress` tool: left out of `tools/list` and refused on `tools/call`
(`mcp.taint.egress: hide`), or refused unless the caller names it in the approval header
(`approval`). The marks are in the store (store/run_taint.py), so they hold whichever
worker or replica the run's next call reaches.

Pins: the first `tools/list` of each server is pinned per profile; a tool changed since,
or new, is left out of the list and refused on `tools/call` until an operator approves
it (store/tool_pins.py).

Only a labelled tool or a list costs a store read; every decision is on the call's audit
line (`decisions`).
"""

from __future__ import annotations

import logging

from ...config.mcp_taint import EGRESS, READS_PRIVATE, UNTRUSTED_CONTENT
from ...pipeline.call import Call
from ...store import StoreUnavailable
from ...store.run_taint import RunTaint
from ...store.tool_pins import ToolPins, definition_of

_MARKS = frozenset((READS_PRIVATE, UNTRUSTED_CONTENT))
log = logging.getLogger("extproc.mcp")


def _approved(call: Call, tool: str) -> bool:
    named = call.headers.get(call.config.mcp.taint.approval_header, "")
    return any(part.strip() in ("*", tool) for part in named.split(","))


class RunTools:
    """One per worker's MCP pipeline, shared by its gate and answer stages."""
    __slots__ = ("taint", "pins")

    def __init__(self, store) -> None:
        self.taint = RunTaint(store)
        self.pins = ToolPins(store)

    async def check_call(self, call: Call, state) -> tuple[str, str] | None:
        """(outcome, message) when the tool may not be called now, else None."""
        profile, tool = state.profile, state.tool
        try:
            if profile.pin_tools and await self.pins.is_pending(profile.name, tool):
                state.decisions.append({"decision": "refused", "tool": tool, "reason": "definition_not_approved"})
                return ("pending_approval",
                        f"The tool '{tool}' changed since the gateway pinned this profile's tools (or is new) "
                        f"and waits for an operator's approval (extproc mcp approve {profile.name} {tool}).")
            if EGRESS not in profile.labels_of(tool) or not state.run:
                return None
            flags = await self.taint.flags(state.run)
        except StoreUnavailable as error:
            log.error("store unavailable on an MCP tool check: %s", error)
            if call.config.store.fail_mode == "open":
                return None
            state.decisions.append({"decision": "refused", "tool": tool, "reason": "store_unavailable"})
            return "gateway_error", "The gateway's store is unavailable; the tool call was not forwarded."
        if len(flags) < 2:
            return None
        policy = call.config.mcp.taint
        if policy.egress == "approval" and _approved(call, tool):
            state.decisions.append({"decision": "approved", "tool": tool, "reason": "run_tainted",
                                    "tainted_by": flags})
            return None
        state.decisions.append({"decision": "refused", "tool": tool, "reason": "run_tainted", "tainted_by": flags})
        why = (f"The tool '{tool}' sends data out, and this agent run has read private data "
               f"({flags[READS_PRIVATE]}) and taken in untrusted content ({flags[UNTRUSTED_CONTENT]}): ")
        if policy.egress == "approval":
            return "tainted", why + (f"the gateway calls it only when the user approves: send the header "
                                     f"'{policy.approval_header}: {tool}'.")
        return "tainted", why + "the gateway refuses it for the rest of this run. Tell the user; a new run may call it."

    async def filter_list(self, call: Call, state, result: dict) -> bool:
        """Leaves out of a tools/list answer the tools pending approval and, for a tainted
        run, the egress tools. True if the list changed."""
        tools = result.get("tools")
        if not isinstance(tools, list) or not tools:
            return False
        # What is no tool (the tool-list filter drops it after) is not pinned.
        tools = [t for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)]
        profile = state.profile
        hidden: set[str] = set()
        try:
            if profile.pin_tools:
                seen = [(profile.server_of(t["name"]) or "", t["name"], definition_of(t)) for t in tools]
                for entry in await self.pins.review(profile.name, seen):
                    hidden.add(entry["tool"])
                    state.decisions.append({"decision": "hidden", **entry,
                                            "reason": f"definition_{entry['reason']}"})
            egress = [t["name"] for t in tools if EGRESS in profile.labels_of(t["name"])]
            if egress and state.run and call.config.mcp.taint.egress == "hide":
                flags = await self.taint.flags(state.run)
                if len(flags) == 2:
                    hidden.update(egress)
                    state.decisions.append({"decision": "hidden", "tools": egress, "reason": "run_tainted",
                                            "tainted_by": flags})
        except StoreUnavailable as error:
            log.error("store unavailable on an MCP tool list: %s", error)
            if call.config.store.fail_mode != "open":
                # What this worker has not seen matching its pin, and every egress tool.
                hidden.update(t["name"] for t in tools if EGRESS in profile.labels_of(t["name"]) or
                              (profile.pin_tools and not self.pins.known(profile.name, t)))
                state.decisions.append({"decision": "hidden", "tools": sorted(hidden), "reason": "store_unavailable"})
        if not hidden:
            return False
        result["tools"] = [t for t in tools if t["name"] not in hidden]
        return True

    async def after_call(self, call: Call, state, quarantined: bool) -> None:
        """Marks the run with what the tool's answer brought in."""
        if not state.run:
            return
        marks = state.profile.labels_of(state.tool) & _MARKS
        if quarantined:
            marks |= {UNTRUSTED_CONTENT}
        if not marks:
            return
        try:
            await self.taint.mark(state.run, marks, state.tool, call.config.mcp.taint.ttl_seconds)
        except StoreUnavailable as error:
            log.error("store unavailable marking an agent run's taint: %s", error)
            return
        state.decisions.append({"decision": "run_marked", "marks": sorted(marks), "tool": state.tool,
                                **({"reason": "quarantined"} if quarantined else {})})
