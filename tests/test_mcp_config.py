"""MCP profiles' config, session binding and event-stream framing, without a gateway."""

from __future__ import annotations

import pytest
import yaml
from gateway_stack import quickstart_config

from extproc.api import jsonrpc
from extproc.config.filter_config import load_config
from extproc.yamltree import ConfigError
from extproc.stages.mcp.gate import unwrap_session, wrap_session


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


def _two_servers(profile: dict) -> dict:
    return {"servers": {"a": {"url": "http://127.0.0.1:1/mcp"}, "b": {"url": "http://127.0.0.1:2/mcp"},
                        "a_b": {"url": "http://127.0.0.1:3/mcp"}},
            "profiles": {"p": profile}}


def test_a_combined_profile_names_each_tool_by_its_server(tmp_path):
    config = load(tmp_path, _two_servers({"servers": ["a", "b"], "access": {"teams": {"support": ["a_x", "b_y"]}}}))
    profile = config.mcp.profiles["p"]
    assert profile.combined and [s.name for s in profile.servers] == ["a", "b"]
    assert (profile.server_of("a_x"), profile.server_of("b_y_z"), profile.server_of("c_x")) == ("a", "b", None)
    assert config.mcp.combined_profiles == (profile,)
    single = load(tmp_path, quickstart_config()["mcp"]).mcp.profiles["demo"]
    assert not single.combined and single.server_of("anything") == "demo"


@pytest.mark.parametrize("profile, problem", [
    ({"servers": ["a", "zz"]}, "unknown MCP server 'zz'"),
    ({"servers": ["a", "a"]}, "server 'a' is named twice"),
    ({"servers": ["a", "a_b"]}, "servers 'a' and 'a_b' cannot be combined"),
    ({"servers": []}, "must name at least one server"),
    ({"server": "a", "servers": ["b"]}, "one of them"),
    ({}, "one of them"),
    ({"servers": ["a", "b"], "tools": ["a_x", "echo"]}, "tool 'echo' names no server of the profile"),
    ({"servers": ["a", "b"], "access": {"teams": {"support": ["c_x"]}}}, "tool 'c_x' names no server"),
])
def test_combined_profile_problems_are_named(tmp_path, profile, problem):
    with pytest.raises(ConfigError) as error:
        load(tmp_path, _two_servers(profile))
    assert any(problem in line for line in error.value.problems), error.value.problems


def test_the_envoy_config_routes_combined_profiles_to_the_aggregator(tmp_path):
    from extproc.config.envoy_gen import generate
    config = load(tmp_path, {**_two_servers({"servers": ["a", "b"]}),
                             "aggregator": {"address": "127.0.0.1:7001", "upstream_address": "127.0.0.1:7002"}})
    envoy = generate(config)
    [listener] = [x for x in envoy["static_resources"]["listeners"] if x["name"] == "mcp_upstream"]
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 7002}
    routes = listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    assert routes[0]["direct_response"]["status"] == 405
    assert {r["match"]["path_separated_prefix"]: r["route"]["cluster"] for r in routes[1:]} == {"/a": "mcp_a", "/b": "mcp_b"}
    assert all(r["route"]["retry_policy"]["num_retries"] == 2 for r in routes[1:])
    clusters = {c["name"]: c for c in envoy["static_resources"]["clusters"]}
    assert "mcp_aggregator" in clusters and "mcp_a_b" in clusters
    text = yaml.safe_dump(envoy)
    assert "/mcp/p" in text
    with pytest.raises(ConfigError) as bad:
        load(tmp_path, {**_two_servers({"servers": ["a", "b"]}), "aggregator": {"address": "nowhere"}})
    assert any("host:port" in line for line in bad.value.problems)
