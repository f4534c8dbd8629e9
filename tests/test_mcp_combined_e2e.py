"""MCP profiles combining several servers, end to end: the official `mcp` SDK's client
through real Envoy and the ext_proc to the service's aggregator (the SDK's low-level
server), which reaches each demo server through Envoy's loopback listener. The
quickstart's `workspace` profile combines `demo` and `ops`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from gateway_stack import GatewayStack, free_port, quickstart_config
from mcp.shared.exceptions import McpError
from test_mcp_e2e import (ACCEPT, ALICE, BOB, INIT, call, post, session_run, tool_names,
                          upstream_requests)

DEMO = {"demo_echo", "demo_get_time", "demo_fetch_note", "demo_lookup_contact", "demo_send_email"}
OPS = {"ops_add", "ops_shout"}


def _config() -> dict:
    config = quickstart_config()
    config["identity"].pop("jwt")           # keys only: no OAuth discovery
    # Results blocked by a guardrail answered as JSON-RPC errors, and a profile exposing
    # some of the servers' tools only.
    config["mcp"]["profiles"]["narrow"] = {
        "servers": ["ops", "demo"], "tools": ["ops_add", "demo_fetch_note"], "access": {"default": "*"},
        "results": {"on_block": "error"}}
    # A profile one of whose servers cannot be reached (nothing listens at its address).
    config["mcp"]["servers"]["gone"] = {"url": f"http://127.0.0.1:{free_port()}/mcp",
                                        "credential": {"value": "gone-token"}}
    config["mcp"]["profiles"]["partly"] = {"servers": ["ops", "gone"], "access": {"default": "*"}}
    return config


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    gateway = GatewayStack(tmp_path_factory.mktemp("mcp-combined"), _config(), workers=2).start()
    yield gateway
    gateway.stop()


def mcp_record(stack, **fields) -> dict:
    return stack.wait_for_record(predicate=lambda r: r.get("kind") == "mcp"
                                 and all(r.get(k) == v for k, v in fields.items()))


def test_each_caller_lists_the_prefixed_tools_of_both_servers_it_may_call(stack):
    assert tool_names(stack, ALICE, "workspace") == DEMO | OPS
    assert tool_names(stack, BOB, "workspace") == {"demo_echo", "ops_add", "ops_shout"}
    assert tool_names(stack, BOB, "narrow") == {"ops_add", "demo_fetch_note"}


def test_a_server_that_cannot_be_reached_leaves_the_others_of_its_profile_serving(stack):
    """Through Envoy: the session opens, lists the tools of the servers that answered, calls
    them; a call naming the missing server's prefix gets an error result saying so."""
    assert tool_names(stack, ALICE, "partly") == OPS

    async def work(session):
        await session.list_tools()
        return await session.call_tool("ops_add", {"a": 1, "b": 2}), await session.call_tool("gone_anything", {})
    added, missing = session_run(stack, ALICE, work, "partly")
    assert not added.isError and added.content[0].text == "3"
    assert missing.isError and "unreachable" in missing.content[0].text, missing
    assert "gone-token" not in stack.log_path.read_text() + stack.stderr_path.read_text()


def test_calls_reach_the_server_their_prefix_names(stack):
    async def work(session):
        await session.list_tools()
        counted = {c: upstream_requests(stack, c) for c in ("mcp_ops", "mcp_demo")}
        result = await session.call_tool("ops_add", {"a": 2, "b": 40})
        return result, {c: upstream_requests(stack, c) - n for c, n in counted.items()}
    result, sent = session_run(stack, BOB, work, "workspace")
    assert not result.isError and result.content[0].text == "42"
    assert sent == {"mcp_ops": 1, "mcp_demo": 0}
    record = mcp_record(stack, key_id="bob", tool="ops_add", profile="workspace")
    assert record["server"] == "ops" and record["outcome"] == "ok"
    assert call(stack, ALICE, "demo_echo", {"text": "hello, both"}, "workspace").content[0].text == "hello, both"
    assert mcp_record(stack, key_id="alice", tool="demo_echo", profile="workspace")["server"] == "demo"


def test_a_tool_outside_the_allowlist_is_refused_by_the_gateway(stack):
    with pytest.raises(McpError) as refused:
        call(stack, BOB, "demo_fetch_note", {"note_id": "welcome"}, "workspace")
    message = refused.value.error.message
    assert "'demo_fetch_note' is not allowed" in message and "mcp profile 'workspace', team support" in message
    record = mcp_record(stack, key_id="bob", tool="demo_fetch_note", profile="workspace")
    assert record["outcome"] == "refused" and record["server"] == "demo"
    # Answered by the service: the aggregator is not asked.
    before = upstream_requests(stack, "mcp_aggregator")
    answer = post(stack, BOB, {"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                               "params": {"name": "demo_fetch_note", "arguments": {}}}, "workspace")
    assert answer.json()["error"]["code"] == -32003 and answer.json()["id"] == 9
    unprefixed = post(stack, ALICE, {"jsonrpc": "2.0", "id": 10, "method": "tools/call",
                                     "params": {"name": "echo", "arguments": {}}}, "workspace")
    assert unprefixed.json()["error"]["code"] == -32602 and "<server>_<tool>" in unprefixed.json()["error"]["message"]
    assert upstream_requests(stack, "mcp_aggregator") == before


def test_guardrails_redact_arguments_and_quarantine_results_of_combined_tools(stack):
    result = call(stack, ALICE, "ops_shout", {"text": "write to jane.doe@example.com"}, "workspace")
    assert result.content[0].text == "WRITE TO [EMAIL]"
    record = mcp_record(stack, key_id="alice", tool="ops_shout")
    assert any(v["verdict"] == "redacted" for v in record["guardrails"]) and "jane" not in json.dumps(record)
    quarantined = call(stack, ALICE, "demo_fetch_note", {"note_id": "welcome"}, "workspace")
    assert quarantined.isError and "[quarantined by the gateway]" in quarantined.content[0].text
    assert "attacker" not in json.dumps(quarantined.model_dump())
    record = mcp_record(stack, key_id="alice", tool="demo_fetch_note", profile="workspace")
    assert record["outcome"] == "quarantined" and record["server"] == "demo"
    with pytest.raises(McpError) as blocked:           # `on_block: error`
        call(stack, BOB, "demo_fetch_note", {"note_id": "welcome"}, "narrow")
    assert "prompt-injection" in blocked.value.error.message


def test_the_aggregator_and_servers_are_reached_only_with_the_gateways_credentials(stack):
    """The callers' keys never reach the servers, which take only their own tokens; the
    aggregator is not on the public listener."""
    for name in ("mcp-demo", "mcp-ops"):
        answer = httpx.post(f"http://127.0.0.1:{stack.mcp_ports[name]}/mcp",
                            headers={**ACCEPT, "authorization": f"Bearer {ALICE}"}, content=json.dumps(INIT))
        assert answer.status_code == 401
    assert post(stack, None, INIT, "workspace").status_code == 401
    # No server-initiated stream (every message passed is an answer the gateway read).
    stream = httpx.get(f"http://127.0.0.1:{stack.port}/mcp/workspace",
                       headers={"authorization": f"Bearer {ALICE}", "accept": "text/event-stream"})
    assert stream.status_code == 405 and stream.headers["allow"] == "POST, DELETE"
    assert call(stack, ALICE, "ops_add", {"a": 1, "b": 1}, "workspace").content[0].text == "2"
    log = stack.log_path.read_text() + stack.stderr_path.read_text()
    assert "mcp-demo-token" not in log and "mcp-ops-token" not in log


def test_only_envoy_may_call_the_aggregator(stack):
    """The aggregator adds the servers' credentials itself: a local process calling it
    directly (no secret, a wrong one) is refused; through Envoy the same call works."""
    direct = f"http://{stack.config['mcp']['aggregator']['address']}/mcp/workspace"
    for headers in ({}, {"x-gateway-aggregator-secret": "guess"}):
        answer = httpx.post(direct, headers={**ACCEPT, **headers}, content=json.dumps(INIT), timeout=10)
        assert answer.status_code == 403, answer.text
    # A caller cannot bring its own value through Envoy either: Envoy replaces it.
    through = post(stack, ALICE, INIT, "workspace", headers={"x-gateway-aggregator-secret": "guess"})
    assert through.status_code == 200


def test_with_keys_only_the_401_has_no_oauth_discovery(stack):
    answer = post(stack, None, INIT, "workspace")
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == 'Bearer realm="llm-gateway"'
    assert post(stack, "sk-nobody", INIT, "workspace").headers["www-authenticate"] == \
        'Bearer realm="llm-gateway", error="invalid_token"'
    metadata = httpx.get(f"http://127.0.0.1:{stack.port}/.well-known/oauth-protected-resource/mcp/workspace")
    assert metadata.status_code == 404


def test_the_aggregator_ends_promptly_with_sessions_open_and_is_restarted(stack):
    """Stopping ends each open session with its servers' sessions, quickly; the service
    starts the aggregator again and combined profiles serve on."""
    answer = post(stack, ALICE, INIT, "workspace")            # a session left open
    assert answer.status_code == 200 and answer.headers["mcp-session-id"]
    [pid] = [p for p in _children(stack) if b"mcp-aggregator" in Path(f"/proc/{p}/cmdline").read_bytes()]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and b"mcp-aggregator" in Path(f"/proc/{pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline, "the aggregator did not stop within 5 s"
        time.sleep(0.05)
    deadline = time.monotonic() + 15
    while True:
        try:
            assert call(stack, BOB, "ops_add", {"a": 3, "b": 4}, "workspace").content[0].text == "7"
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _children(stack) -> list[int]:
    return stack.descendants()
