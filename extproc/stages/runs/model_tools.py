"""Taint across the agent run, on model calls: the tools an agent runs for its model
(`Bash`, `WebFetch`, `exec_command`, ...), labelled in `mcp.taint.model_tools`.

  request body  a request that carries back the results of tools labelled
                `reads_private` or `untrusted_content` (the agent ran them) marks its run,
                in the store the MCP profiles use (store/run_taint.py): one taint per run,
                whether its tools came from an MCP profile or the agent itself;
                a request of a run marked both ways has its `egress` tools taken out of
                the tools it offers the model (`mcp.taint.egress: hide`), unless the caller
                names them in the approval header (`approval`): the model of a tainted run
                cannot ask for one, in any dialect, streamed or not.
  response      (RunToolAnswer) a JSON answer to such a request that calls a withheld
                tool anyway is refused, in the caller's dialect, naming the tool and what
                tainted the run: the agent shows it instead of running the tool; a streamed
                one is cut where the call begins, with the caller's error event
                (tool_stream.py).
Each decision is on the call's log line (`run_tools`). A call without a run, or of a
config without model tool labels, costs nothing; a labelled tool costs one store read."""

from __future__ import annotations

import logging

import orjson

from ...config.mcp_taint import EGRESS, READS_PRIVATE, UNTRUSTED_CONTENT
from ...pipeline.call import Call
from ...pipeline.errors import GatewayError
from ...pipeline.stage import Stage
from ...store import StoreUnavailable
from ...store.run_taint import RunTaint
from .tool_stream import WithheldToolStream, withheld_tool_message

_MARKS = frozenset((READS_PRIVATE, UNTRUSTED_CONTENT))
log = logging.getLogger("extproc.runs")


class WithheldTools:
    """The egress tools a tainted run's request was not offered, for its answer's check."""
    __slots__ = ("tools", "flags")

    def __init__(self) -> None:
        self.tools: frozenset[str] = frozenset()
        self.flags: dict[str, str] = {}


class RunToolTaint(Stage):
    name = "run_tool_taint"
    reads = frozenset({"body", "endpoint", "headers", "run"})
    writes = frozenset({"body_changed", "log_fields"})

    def __init__(self, store) -> None:
        self.taint = RunTaint(store)

    async def request_body(self, call: Call) -> None:
        labels = call.config.mcp.taint.model_tools
        run = call.run
        if run is None or not labels or not isinstance(call.body, dict):
            return
        decisions: list[dict] = []
        try:
            await self._mark(call, run.id, labels, decisions)
            offered = [name for name in call.codec.tool_names(call.body) if EGRESS in labels.get(name, ())]
            if offered:
                flags = await self.taint.flags(run.id)
                if len(flags) == 2:
                    self._withhold(call, offered, flags, decisions)
        except StoreUnavailable as error:
            log.error("store unavailable on an agent run's taint: %s", error)
        if decisions:
            call.log_fields["run_tools"] = decisions

    async def _mark(self, call: Call, run: str, labels, decisions: list[dict]) -> None:
        for name, *_ in call.codec.last_tool_calls(call.body):
            marks = labels.get(name, frozenset()) & _MARKS
            if marks:
                await self.taint.mark(run, marks, name, call.config.mcp.taint.ttl_seconds)
                decisions.append({"decision": "run_marked", "marks": sorted(marks), "tool": name})

    @staticmethod
    def _withhold(call: Call, offered: list[str], flags: dict, decisions: list[dict]) -> None:
        policy = call.config.mcp.taint
        approved = {part.strip() for part in call.headers.get(policy.approval_header, "").split(",")}
        if policy.egress == "approval":
            if "*" in approved:
                approved = set(offered)
            for name in offered:
                if name in approved:
                    decisions.append({"decision": "approved", "tool": name, "reason": "run_tainted",
                                      "tainted_by": flags})
            offered = [name for name in offered if name not in approved]
        if not offered:
            return
        call.codec.remove_tools(call.body, offered)
        call.body_changed = True
        held = call.own(WithheldTools)
        held.tools, held.flags = frozenset(offered), flags
        decisions.append({"decision": "withheld", "tools": offered, "reason": "run_tainted", "tainted_by": flags})


class RunToolAnswer(Stage):
    """After the answer is read (TranslateAnswer): a JSON answer calling a tool its request
    withheld is refused; a stream's events are read as they pass (tool_stream.py)."""
    name = "run_tool_answer"
    reads = frozenset({"endpoint", "response_json", "response_streamed", "status"})
    writes = frozenset({"error_code", "event_filters", "log_fields"})

    def response_headers(self, call: Call, headers: dict[str, str], end_of_stream: bool) -> None:
        held = call.owned(WithheldTools)
        if held is not None and held.tools and call.response_streamed and call.status < 400:
            call.event_filters.append(WithheldToolStream(call, held.tools, held.flags))

    def response_body(self, call: Call, chunk: bytes, end_of_stream: bool) -> None:
        held = call.owned(WithheldTools)
        if held is None or not held.tools or call.response_streamed or not end_of_stream or call.status >= 400:
            return
        answer = call.response_json
        if answer is None:
            try:
                answer = orjson.loads(chunk)
            except orjson.JSONDecodeError:
                return
        if not isinstance(answer, dict):
            return
        called = [name for name in call.codec.called_tools(answer) if name in held.tools]
        if not called:
            return
        call.log_fields.setdefault("run_tools", []).append(
            {"decision": "refused", "tools": called, "reason": "run_tainted", "tainted_by": held.flags})
        raise GatewayError(400, "content_blocked", withheld_tool_message(called[0], held.flags))
