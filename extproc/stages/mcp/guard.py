"""Guardrails over MCP traffic: every string of a tool call's arguments, and of its result.

The same rules as model traffic (extproc/guardrails), applied through the request
guard's helpers so verdicts land on the same metrics and log line. A block is returned
rather than raised: the caller decides what a blocked message becomes (a JSON-RPC
error for arguments; a quarantined result or an error for results, per profile).
"""

from __future__ import annotations

from typing import Any, Iterator

from ...pipeline.call import Call
from ...pipeline.errors import GatewayError
from ..guard import check_texts, could_not_run, run_plugin

MAX_DEPTH = 32


def string_slots(container: Any, key: Any, depth: int = 0) -> Iterator[tuple[Any, Any]]:
    """Every string value under container[key] (nested objects and lists), as slots a
    redaction writes back into."""
    value = container[key]
    if isinstance(value, str):
        yield container, key
    elif depth < MAX_DEPTH and isinstance(value, dict):
        for inner in list(value):
            yield from string_slots(value, inner, depth + 1)
    elif depth < MAX_DEPTH and isinstance(value, list):
        for index in range(len(value)):
            yield from string_slots(value, index, depth + 1)


def result_slots(result: dict) -> list[tuple[Any, Any]]:
    """The text a tool result carries: text blocks, embedded text resources and the
    structured content (images and audio are data, not text)."""
    slots: list[tuple[Any, Any]] = []
    for block in result.get("content") or ():
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            slots.append((block, "text"))
        resource = block.get("resource")
        if isinstance(resource, dict) and isinstance(resource.get("text"), str):
            slots.append((resource, "text"))
    if "structuredContent" in result:
        slots.extend(string_slots(result, "structuredContent"))
    return slots


async def guard_strings(call: Call, rules, slots: list, direction: str) -> tuple[str, bool]:
    """Runs `rules` over `slots`, redacting in place: (the guardrail that blocked, or "";
    whether anything changed)."""
    changed = False
    if not rules or not slots:
        return "", False
    too_large = sum(len(container[key]) for container, key in slots) > call.config.guardrails.max_scan_chars
    for guardrail in rules:
        try:
            if too_large:
                could_not_run(call, guardrail, direction, "input larger than max_scan_chars")
            elif guardrail.type == "plugin":
                changed |= await run_plugin(call, guardrail, slots, direction)
            else:
                changed |= check_texts(call, guardrail, slots, direction)
        except GatewayError:
            return guardrail.name, changed
        except Exception as error:   # noqa: BLE001 - the fail mode decides (plugin down, bug)
            try:
                could_not_run(call, guardrail, direction, type(error).__name__)
            except GatewayError:
                return guardrail.name, changed
    return "", changed
