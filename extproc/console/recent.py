"""The recent calls the Calls, key and Guardrails and MCP pages show, read from the store
the workers write them to (store/calls.py), when the config keeps them."""

from __future__ import annotations

from ..config.filter_config import GatewayConfig
from ..store.calls import MCP, CallFilter, recent_calls


def calls(config: GatewayConfig, wanted: CallFilter, limit: int = 100) -> list[dict]:
    if config.console is None or not config.console.calls_kept:
        return []
    return recent_calls(config.store, wanted, limit)


def findings_and_mcp(config: GatewayConfig, sample: int = 5000) -> dict:
    """The guardrails' blocks, redactions and flags among the newest `sample` calls kept
    (model and MCP calls), counted by rule; the newest of them; the newest MCP calls."""
    if config.console is None or not config.console.calls_kept:
        return {"counts": [], "findings": [], "mcp": [], "sample": 0}
    found = recent_calls(config.store, CallFilter(verdict="any", kind="*"), sample)
    counts: dict[tuple[str, str, str], int] = {}
    for call in found:
        for verdict in call.get("guardrails") or ():
            if isinstance(verdict, dict) and verdict.get("verdict") != "passed":
                key = (str(verdict.get("guardrail")), str(verdict.get("direction")), str(verdict.get("verdict")))
                counts[key] = counts.get(key, 0) + 1
    return {"counts": sorted(((*k, n) for k, n in counts.items()), key=lambda c: -c[3]),
            "findings": found[:100], "mcp": recent_calls(config.store, CallFilter(kind=MCP), 100), "sample": sample}
