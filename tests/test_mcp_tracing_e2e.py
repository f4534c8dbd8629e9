"""MCP tool calls traced through real Envoy: the official `mcp` SDK's client calls the
quickstart's demo MCP server on a profile, and each JSON-RPC call's span (one per call,
made by the service) reaches an OTLP/gRPC receiver with the gen_ai tool attributes and
the gateway's own, typed; the caller's `traceparent` is continued (its sampled flag
obeyed); a refused tool call and a call without a key have their span; the session id
never appears in a span; the audit line names the trace."""

from __future__ import annotations

import secrets

import anyio
import httpx
import pytest
from gateway_stack import GatewayStack
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError
from otlp_receiver import TRACES_URL, Receiver, traced_stack

ALICE, BOB = "sk-demo-alice", "sk-demo-bob"
ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    with traced_stack(tmp_path_factory.mktemp("mcp-traced")) as (stack, receiver, _server):
        yield stack, receiver


def _traceparent(sampled: bool = True) -> tuple[str, str, str]:
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, parent, f"00-{trace_id}-{parent}-{'01' if sampled else '00'}"


def _tool_call(stack: GatewayStack, key: str, tool: str, arguments: dict, traceparent: str):
    """Calls `tool` in an initialized SDK session whose every request carries
    `traceparent`; (the result, the session id the gateway issued)."""
    async def main():
        headers = {"authorization": f"Bearer {key}", "traceparent": traceparent}
        async with httpx.AsyncClient(headers=headers, timeout=30) as http:
            async with streamable_http_client(f"http://127.0.0.1:{stack.port}/mcp/demo",
                                              http_client=http) as (read, write, session_id):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    try:
                        return await session.call_tool(tool, arguments), session_id()
                    except McpError as refused:
                        return refused, session_id()
    return anyio.run(main)


def _span(receiver: Receiver, trace_id: str, name: str) -> dict:
    return receiver.wait_until(lambda s: s["trace_id"] == trace_id and s["name"] == name, what=name)


def _mentions(span: dict, text: str) -> bool:
    values = [str(value) for value in span["attributes"].values()]
    return any(text in value for value in values) or text in span["name"]


def test_a_tool_call_continues_the_callers_trace_with_typed_tool_attributes(traced):
    stack, receiver = traced
    trace_id, parent, traceparent = _traceparent()
    result, session_id = _tool_call(stack, ALICE, "echo", {"text": "trace this tool"}, traceparent)
    assert not result.isError and result.content[0].text == "trace this tool"
    span = _span(receiver, trace_id, "execute_tool echo")
    assert span["parent_span_id"] == parent and len(span["span_id"]) == 16 and span["span_id"] != parent
    assert span["kind"] == 2 and span["status"] == 0 and span["end"] >= span["start"] > 0
    assert span["resource"]["service.name"] == "gw-under-test" and span["scope"] == "llm-gateway"
    attributes = span["attributes"]
    assert attributes["gen_ai.operation.name"] == "execute_tool" and attributes["gen_ai.tool.name"] == "echo"
    assert attributes["mcp.method.name"] == "tools/call"
    assert isinstance(attributes["jsonrpc.request.id"], str) and attributes["jsonrpc.request.id"]
    assert (attributes["gateway.key_id"], attributes["gateway.user"], attributes["gateway.team"]) == \
        ("alice", "alice", "research")
    assert (attributes["gateway.profile"], attributes["gateway.server"]) == ("demo", "demo")
    assert attributes["gateway.policy"] == "team research"
    assert attributes["gateway.outcome"] == "ok" and "error.type" not in attributes
    assert attributes["http.response.status_code"] == 200
    assert type(attributes["gateway.argument_bytes"]) is int and attributes["gateway.argument_bytes"] > 0
    assert isinstance(attributes["gateway.service_ms"], float) and attributes["gateway.service_ms"] > 0
    verdicts = attributes["gateway.guardrails"]
    assert verdicts and all(isinstance(v, str) and v.count(":") == 2 for v in verdicts)
    assert {v.split(":")[1] for v in verdicts} == {"request", "response"}   # arguments and result
    # The session is named, never shown: its id is a bearer-like token.
    assert attributes["gateway.mcp_session"] is True
    assert session_id and not _mentions(span, session_id) and not _mentions(span, session_id.split(".")[0])
    # The handshake in the same trace has its own span, a sibling under the caller's.
    initialize = _span(receiver, trace_id, "initialize")
    assert initialize["parent_span_id"] == parent and initialize["span_id"] != span["span_id"]
    assert initialize["attributes"]["mcp.method.name"] == "initialize"
    assert initialize["attributes"]["gateway.mcp_session"] is False
    assert "gen_ai.operation.name" not in initialize["attributes"]
    # The audit line of the tool call names its trace and links to it.
    audit = stack.wait_for_record(predicate=lambda r: r.get("kind") == "mcp" and r.get("tool") == "echo"
                                  and r.get("trace_id") == trace_id)
    assert audit["trace_url"] == TRACES_URL.replace("{trace_id}", trace_id) and audit["outcome"] == "ok"


def test_refused_calls_have_their_span(traced):
    stack, receiver = traced
    trace_id, parent, traceparent = _traceparent()
    refused, _ = _tool_call(stack, BOB, "fetch_note", {"note_id": "welcome"}, traceparent)
    assert isinstance(refused, McpError) and "not allowed" in refused.error.message
    span = _span(receiver, trace_id, "execute_tool fetch_note")
    assert span["parent_span_id"] == parent and span["status"] == 0      # the caller's refusal, not a failure
    attributes = span["attributes"]
    assert attributes["gen_ai.operation.name"] == "execute_tool" and attributes["gen_ai.tool.name"] == "fetch_note"
    assert (attributes["gateway.user"], attributes["gateway.team"]) == ("bob", "support")
    assert attributes["gateway.outcome"] == "refused" and attributes["error.type"] == "refused"
    assert attributes["http.response.status_code"] == 200 and attributes["gateway.policy"] == "team support"
    # Without a key: refused at the headers, the message unread, the caller unknown.
    trace_id, parent, traceparent = _traceparent()
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "echo", "arguments": {}}}
    answer = httpx.post(f"http://127.0.0.1:{stack.port}/mcp/demo", json=body,
                        headers={**ACCEPT, "traceparent": traceparent}, timeout=30)
    assert answer.status_code == 401
    span = _span(receiver, trace_id, "POST /mcp/demo")
    attributes = span["attributes"]
    assert span["parent_span_id"] == parent
    assert attributes["gateway.outcome"] == "unauthorized" and attributes["error.type"] == "unauthorized"
    assert attributes["http.response.status_code"] == 401 and attributes["gateway.profile"] == "demo"
    assert "gateway.key_id" not in attributes and "gen_ai.tool.name" not in attributes


def test_a_fresh_trace_is_started_and_an_unsampled_caller_is_obeyed(traced):
    stack, receiver = traced
    # Answered by the gateway (a tool bob may not call): identified by its JSON-RPC id.
    def refused_call(rpc_id: str, headers: dict) -> None:
        body = {"jsonrpc": "2.0", "id": rpc_id, "method": "tools/call", "params": {"name": "fetch_note"}}
        answer = httpx.post(f"http://127.0.0.1:{stack.port}/mcp/demo", json=body, timeout=30,
                            headers={**ACCEPT, "authorization": f"Bearer {BOB}", **headers})
        assert answer.status_code == 200 and answer.json()["error"]["code"] == -32003
    unsampled_trace, _, traceparent = _traceparent(sampled=False)
    refused_call("unsampled-" + secrets.token_hex(4), {"traceparent": traceparent})
    fresh = "fresh-" + secrets.token_hex(4)
    refused_call(fresh, {})
    span = receiver.wait_until(lambda s: s["attributes"].get("jsonrpc.request.id") == fresh, what=fresh)
    assert span["parent_span_id"] == "" and int(span["trace_id"], 16) != 0
    assert span["name"] == "execute_tool fetch_note"
    # The one worker's queue is in order: the unsampled call's span would have come first.
    with receiver.lock:
        assert not [s for s in receiver.spans if s["trace_id"] == unsampled_trace]
