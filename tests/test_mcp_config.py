"""MCP profiles' config, session binding and event-stream framing, without a gateway."""

from __future__ import annotations

import pytest
import yaml
from gateway_stack import quickstart_config

from extproc.api import jsonrpc
from extproc.config.filter_config import load_config
from extproc.config.yamlread import ConfigError
from extproc.stages.mcp_gate import unwrap_session, wrap_session


def load(tmp_path, mcp: dict):
    config = quickstart_config()
    config["mcp"] = mcp
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_config(str(path))


def test_quickstart_profile_allowlists(tmp_path):
    config = load(tmp_path, quickstart_config()["mcp"])
    profile = config.mcp.profiles["demo"]
    keys = {k.id: k for k in config.keys_by_hash.values()}
    assert profile.allowed_tools(keys["alice"]) == (None, "team research")
    assert profile.allowed_tools(keys["bob"]) == (frozenset({"echo", "get_time"}), "team support")
    assert profile.server.credential_value() == "Bearer mcp-demo-token"
    assert profile.server.path == "/mcp" and profile.server.authority == "127.0.0.1:10110"
    assert "mcp-demo-token" not in repr(profile)


def test_a_keys_entry_wins_and_profile_tools_bound_every_allowlist(tmp_path):
    config = load(tmp_path, {
        "servers": {"s": {"url": "http://127.0.0.1:1/mcp"}},
        "profiles": {"p": {"server": "s", "tools": ["a", "b"],
                           "access": {"keys": {"bob": "*"}, "teams": {"support": ["a", "z"]}, "default": ["b"]}}}})
    profile = config.mcp.profiles["p"]
    keys = {k.id: k for k in config.keys_by_hash.values()}
    assert profile.allowed_tools(keys["bob"]) == (frozenset({"a", "b"}), "key bob")
    assert profile.allowed_tools(keys["alice"]) == (frozenset({"b"}), "default")


@pytest.mark.parametrize("mcp, problem", [
    ({"profiles": {"p": {"server": "nope"}}}, "unknown MCP server 'nope'"),
    ({"servers": {"s": {"url": "ftp://x/mcp"}}}, "must be an http:// or https:// URL"),
    ({"servers": {"s": {"url": "http://h/mcp"}}, "profiles": {"a/b": {"server": "s"}}}, "path segment"),
    ({"servers": {"s": {"url": "http://h/mcp"}}, "profiles": {"p": {"server": "s", "results": {"guardrails": ["x"]}}}},
     "unknown guardrail 'x'"),
    ({"servers": {"s": {"url": "http://h/mcp"}}, "profiles": {"p": {"server": "s", "results": {"on_block": "drop"}}}},
     "must be one of: quarantine, error"),
    ({"servers": {"s": {"url": "http://h/mcp", "token": "x"}}}, "unknown key"),
    ({"servers": {"s": {"url": "http://h/mcp", "failover_urls": ["http://g/other"]}}}, "scheme and path"),
    ({"servers": {"s": {"url": "http://h/mcp"}}, "profiles": {"p": {"server": "s", "rate_limit": {"scope": "key"}}}},
     "calls_per_minute: is required"),
])
def test_config_problems_are_named(tmp_path, mcp, problem):
    with pytest.raises(ConfigError) as error:
        load(tmp_path, mcp)
    assert any(problem in line for line in error.value.problems), error.value.problems


def test_a_session_is_bound_to_its_key_and_profile():
    alice, bob = b"a" * 32, b"b" * 32
    wrapped = wrap_session("abc123", alice, "demo")
    assert unwrap_session(wrapped, alice, "demo") == "abc123"
    assert unwrap_session(wrapped, bob, "demo") is None
    assert unwrap_session(wrapped, alice, "other") is None
    assert unwrap_session("abc123", alice, "demo") is None
    assert unwrap_session(wrapped + "x", alice, "demo") is None
    assert unwrap_session("x" * 600, alice, "demo") is None


def test_event_streams_round_trip_and_data_is_replaced():
    body = b'event: message\r\nid: 7\r\ndata: {"a":1}\r\n\r\n: keepalive\n\nevent: message\ndata: {"b":\ndata: 2}\n\n'
    events = jsonrpc.parse_sse(body)
    assert [e.data for e in events] == ['{"a":1}', "", '{"b":\n2}']
    events[0] = events[0].with_data('{"a":2}')
    again = jsonrpc.parse_sse(jsonrpc.render_sse(events))
    assert [e.data for e in again] == ['{"a":2}', "", '{"b":\n2}']
    assert again[0].fields[:2] == [("event", "message"), ("id", "7")]
