"""Which calls the service routes at their headers with their body unread
(stages/body_unread.py), in the pipeline itself (no Envoy): the request-headers reply of
each, and that a change of config or key is a new decision. Through real Envoy:
test_body_unread_e2e.py."""

from __future__ import annotations

import asyncio
import copy

import pytest
import yaml
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from ext_proc_messages import handled
from extproc.config.envoy_contract import envoy_features
from extproc.config.filter_config import load_config
from extproc.pipeline.call import Call
from extproc.pipeline.protocol import BODY_UNREAD
from extproc.runtime.worker import Runtime
from gateway_stack import quickstart_config

FEATURES = envoy_features("headers-from-metadata streams-passed-through usage-chunk-stripped "
                          "cut-streams-logged bodies-unread")


def _config(tmp_path, edit=None) -> str:
    config = quickstart_config()
    config.pop("runs")
    config["guardrails"]["policies"] = {"default": [rule["name"] for rule in config["guardrails"]["rules"]],
                                        "keys": {"alice": []}}
    if edit is not None:
        edit(config)
    path = tmp_path / f"gateway-{id(edit)}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMGW_STATE_DIR", str(tmp_path))
    return Runtime(load_config(_config(tmp_path)))


def _headers(path: str, announced: dict | None, key: str = "sk-demo-alice", length: str = "120",
             **extra: str) -> ep.ProcessingRequest:
    request = ep.ProcessingRequest(request_headers=ep.HttpHeaders(headers=base_pb2.HeaderMap(headers=[
        base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in {
            ":method": "POST", ":path": path, "authorization": f"Bearer {key}",
            "content-type": "application/json", "content-length": length, "x-request-id": "r1", **extra}.items()])))
    if announced is not None:
        request.metadata_context.filter_metadata["llm_gateway.request"].update(announced)
    return request


def _decide(runtime, request) -> tuple[Call, ep.ProcessingResponse]:
    call = Call(runtime.config, FEATURES)
    reply = asyncio.run(handled(runtime.pipeline, call, request))
    return call, reply


def _unread(call: Call, reply: ep.ProcessingResponse) -> bool:
    unread = call.body_unread
    assert unread == (reply.HasField("mode_override")
                      and reply.mode_override == reply.mode_override.FromString(BODY_UNREAD))
    return unread


CHAT = "/v1/chat/completions"
CASES = [
    ("JSON chat", CHAT, {"model": "gpt-4o-mini", "stream": False}, {}, True),
    ("a stream whose usage the client asked for", CHAT,
     {"model": "gpt-4o-mini", "stream": True, "include_usage": True}, {}, True),
    ("a stream whose usage it did not ask for", CHAT, {"model": "gpt-4o-mini", "stream": True}, {}, False),
    ("Anthropic's stream (its usage always comes)", "/v1/messages",
     {"model": "claude-sonnet-4-6", "stream": True}, {}, True),
    ("Gemini, the model in the path", "/v1beta/models/gemini-2.5-flash:generateContent", {"stream": False}, {},
     True),
    ("Azure's deployment path (the body's model is made the path's)",
     "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21",
     {"model": "gpt-4o-mini", "stream": False}, {}, False),
    ("a body Envoy's reader left unread", CHAT, None, {}, False),
    ("a virtual model", CHAT, {"model": "smart", "stream": False}, {}, False),
    ("a translated backend", CHAT, {"model": "claude-sonnet-4-6", "stream": False}, {}, False),
    ("Bedrock (bodies wrapped)", "/v1/messages",
     {"model": "bedrock/us.anthropic.claude-haiku-4-5-20251001-v1:0", "stream": False}, {}, False),
    ("the Responses API (stored responses)", "/v1/responses", {"model": "gpt-4o-mini", "stream": False}, {}, False),
    ("a body past the provider's limit", CHAT, {"model": "gpt-4o-mini", "stream": False},
     {"length": str(64 << 20)}, False),
    ("no content-length", CHAT, {"model": "gpt-4o-mini", "stream": False}, {"length": ""}, False),
    ("a key with guardrails and a budget", CHAT, {"model": "gpt-4o-mini", "stream": False},
     {"key": "sk-demo-bob"}, False),
]


@pytest.mark.parametrize("what,path,announced,extra,unread", CASES, ids=[c[0] for c in CASES])
def test_which_calls_go_unread(runtime, what, path, announced, extra, unread):
    call, reply = _decide(runtime, _headers(path, announced, **extra))
    assert _unread(call, reply) is unread
    if unread:
        mutation = reply.request_headers.response.header_mutation
        assert {h.header.key for h in mutation.set_headers} >= {"x-gateway-cluster"}
        assert "authorization" in mutation.remove_headers or any(
            h.header.key in ("authorization", "x-api-key", "x-goog-api-key") for h in mutation.set_headers)
        marks = reply.dynamic_metadata.fields["llm_gateway"].struct_value.fields
        assert marks["stream_end"].string_value == "trailers"


def test_a_config_that_reads_every_body_reads_this_one_too(tmp_path, monkeypatch):
    """Loop stopping reads every call of a run, and a call's run may be named in its body."""
    monkeypatch.setenv("LLMGW_STATE_DIR", str(tmp_path))

    def with_loops(config):
        config["runs"] = copy.deepcopy(quickstart_config()["runs"])

    runtime = Runtime(load_config(_config(tmp_path, with_loops)))
    call, reply = _decide(runtime, _headers(CHAT, {"model": "gpt-4o-mini", "stream": False}))
    assert not _unread(call, reply)


def test_a_new_config_or_key_is_a_new_decision(tmp_path, monkeypatch, runtime):
    """The decision is kept per config, key, endpoint and model: a reload that gives
    alice's team a budget reads her next call's body."""
    call, reply = _decide(runtime, _headers(CHAT, {"model": "gpt-4o-mini", "stream": False}))
    assert _unread(call, reply)

    def budgeted(config):
        config["budgets"].append({"name": "research", "scope": "team", "match": "research", "unit": "tokens",
                                  "limit": 1000, "window": "hour"})

    runtime.config = load_config(_config(tmp_path, budgeted))
    call, reply = _decide(runtime, _headers(CHAT, {"model": "gpt-4o-mini", "stream": False}))
    assert not _unread(call, reply)
