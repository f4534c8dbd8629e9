"""A text rule's `where:`: the parts of a request it reads. Each dialect places every string
of its requests in a part (system, tools, user, assistant, tool_results; what it cannot
place is the user's), and a rule scoped to the user's turns and the tools' results leaves an
agent's system prompt, tool definitions and earlier turns byte for byte, in the worker's
pipeline as Envoy drives it."""

from __future__ import annotations

import orjson
import pytest
from any_json import JSON, paths, quickstart_runtime, through_pipeline
from hypothesis import given, settings
from hypothesis import strategies as st
from property_examples import examples
from gateway_stack import quickstart_config

from extproc.dialects import CODECS
from extproc.dialects.request_parts import PARTS
from extproc.guardrails.config import parse_guardrails
from extproc.yamltree import ConfigError, Node, Problems

MAIL = {part: f"{part.replace('_', '.')}@people.example" for part in PARTS}

CHAT = {"model": "gpt-4o-mini", "messages": [
    {"role": "system", "content": f"Sign off as {MAIL['system']}"},
    {"role": "user", "content": f"Write to {MAIL['user']}"},
    {"role": "assistant", "content": f"I wrote to {MAIL['assistant']}",
     "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": f"found {MAIL['tool_results']}"}],
    "tools": [{"type": "function", "function": {"name": "lookup", "description": f"asks {MAIL['tools']}",
                                                "parameters": {"type": "object", "properties": {}}}}]}
RESPONSES = {"model": "gpt-4o-mini", "instructions": f"Sign off as {MAIL['system']}", "input": [
    {"role": "user", "content": f"Write to {MAIL['user']}"},
    {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": f'{{"who": "{MAIL["assistant"]}"}}'},
    {"type": "function_call_output", "call_id": "c1", "output": f"found {MAIL['tool_results']}"}],
    "tools": [{"type": "function", "name": "lookup", "description": f"asks {MAIL['tools']}",
               "parameters": {"type": "object", "properties": {}}}]}
MESSAGES = {"model": "claude-sonnet-4-6", "max_tokens": 16, "system": f"Sign off as {MAIL['system']}",
            "messages": [
                {"role": "user", "content": f"Write to {MAIL['user']}"},
                {"role": "assistant", "content": [{"type": "text", "text": f"I wrote to {MAIL['assistant']}"},
                                                  {"type": "tool_use", "id": "t1", "name": "lookup", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                              "content": f"found {MAIL['tool_results']}"}]}],
            "tools": [{"name": "lookup", "description": f"asks {MAIL['tools']}",
                       "input_schema": {"type": "object", "properties": {}}}]}
GEMINI = {"systemInstruction": {"parts": [{"text": f"Sign off as {MAIL['system']}"}]}, "contents": [
    {"role": "user", "parts": [{"text": f"Write to {MAIL['user']}"}]},
    {"role": "model", "parts": [{"text": f"I wrote to {MAIL['assistant']}"},
                                {"functionCall": {"name": "lookup", "args": {}}}]},
    {"role": "user", "parts": [{"functionResponse": {"name": "lookup",
                                                     "response": {"found": MAIL["tool_results"]}}}]}],
    "tools": [{"functionDeclarations": [{"name": "lookup", "description": f"asks {MAIL['tools']}"}]}]}

REQUESTS = [("/v1/chat/completions", CHAT), ("/v1/responses", RESPONSES), ("/v1/messages", MESSAGES),
            ("/v1beta/models/gemini-2.5-flash:generateContent", GEMINI)]


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    config = quickstart_config()
    [pii] = [rule for rule in config["guardrails"]["rules"] if rule["name"] == "pii"]
    pii.update(entities=["email"], where=["user", "tool_results"], code_aware=False)   # (people.example: a reserved domain)
    return quickstart_runtime(tmp_path_factory.mktemp("state"), config)


@pytest.mark.parametrize("path,body", REQUESTS, ids=[p for p, _ in REQUESTS])
def test_a_rule_scoped_to_user_turns_and_tool_results_reads_only_those(runtime, path, body):
    reply = through_pipeline(runtime, path, body, "sk-demo-alice", {"anthropic-version": "2023-06-01"})
    assert not reply.HasField("immediate_response"), reply.immediate_response.body
    sent = reply.request_body.response.body_mutation.body.decode()
    assert MAIL["user"] not in sent and MAIL["tool_results"] not in sent and "[EMAIL]" in sent
    for part in ("system", "tools", "assistant"):           # an agent's own text, as it wrote it
        assert MAIL[part] in sent, part
    assert orjson.loads(sent)          # (still JSON)


def test_a_verdict_names_what_was_found_and_where_never_the_text(runtime):
    from extproc.pipeline.call import Call
    call = Call(runtime.config)
    reply = through_pipeline(runtime, "/v1/chat/completions", CHAT, "sk-demo-alice", call=call)
    assert reply.request_body.response.body_mutation.body
    verdicts = call.verdicts            # the call's log line has them (stages/accounting/record.py: "guardrails")
    [pii] = [v for v in verdicts if v["guardrail"] == "pii"]
    assert pii == {"guardrail": "pii", "direction": "request", "verdict": "redacted",
                   "found": ["email"], "where": ["tool_results", "user"]}
    assert "people.example" not in repr(verdicts)


def parsed(rule: dict):
    problems = Problems("test")
    settings = parse_guardrails(Node({"rules": [rule]}, "guardrails", problems))
    problems.raise_if_any()
    return settings.default[0]


def test_where_names_parts_and_only_on_text_rules():
    assert parsed({"name": "p", "type": "pii", "where": ["user", "tool_results"]}).where == {"user", "tool_results"}
    assert parsed({"name": "p", "type": "pii"}).where is None             # every part
    with pytest.raises(ConfigError, match="where"):
        parsed({"name": "p", "type": "pii", "where": ["system_prompt"]})
    with pytest.raises(ConfigError, match="where"):
        parsed({"name": "c", "type": "caps", "max_tokens": 5, "where": ["user"]})


def test_bedrock_places_its_parts_too():
    from extproc.dialects.bedrock.dialect import Converse
    body = {"system": [{"text": "s"}], "toolConfig": {"tools": [{"toolSpec": {"name": "t"}}]}, "messages": [
        {"role": "user", "content": [{"text": "u"}, {"toolResult": {"toolUseId": "1", "content": [{"text": "r"}]}}]},
        {"role": "assistant", "content": [{"text": "a"}]}]}
    codec = Converse()
    assert [codec.request_part(body, path) for path in [
        ("system", 0, "text"), ("toolConfig", "tools", 0, "toolSpec", "name"), ("messages", 0, "content", 0, "text"),
        ("messages", 0, "content", 1, "toolResult", "content", 0, "text"), ("messages", 1, "content", 0, "text"),
        ("inferenceConfig", "stopSequences", 0)]] == ["system", "tools", "user", "tool_results", "assistant", "user"]


# Bodies shaped like each dialect's conversation, whose roles, blocks and fields take any value.
_ROLES = st.sampled_from(["user", "assistant", "system", "developer", "tool", "function", "model"]) | JSON
_BLOCK = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["text", "tool_result", "tool_use", "web_search_tool_result", "function_call_output",
                             "message"]) | JSON,
    "text": st.text(max_size=6) | JSON, "content": JSON, "toolResult": JSON, "functionResponse": JSON,
    "output": JSON, "role": _ROLES})
_MESSAGE = st.fixed_dictionaries({}, optional={"role": _ROLES, "content": st.text(max_size=6) | st.lists(_BLOCK | JSON, max_size=3) | JSON,
                                               "parts": st.lists(_BLOCK | JSON, max_size=3) | JSON,
                                               "tool_calls": JSON, "type": _ROLES})
_BODY = st.fixed_dictionaries({}, optional={
    field: st.lists(_MESSAGE | JSON, max_size=4) | JSON
    for field in ("messages", "input", "contents", "system", "tools", "functions", "instructions",
                  "systemInstruction", "toolConfig")}).map(lambda body: {"model": "m", **body})


@settings(max_examples=examples(300), deadline=None, derandomize=True)
@given(_BODY)
def test_each_codec_places_every_path_of_any_body_in_a_part(body):
    """Whatever a message's role or a block's type holds (a list, an object, a number),
    every codec names a part for every path of the body, and never fails."""
    every_path = [path for path in paths(body) if path]
    for codec in CODECS.values():
        assert {codec.request_part(body, path) for path in every_path} <= set(PARTS), codec.kind


@settings(max_examples=examples(300), deadline=None, derandomize=True)
@given(_BODY)
def test_each_codec_names_the_parts_of_many_paths_as_of_each_alone(body):
    """request_parts (a chat call's history placed message by message in one pass) names
    each path's part as request_part does for the path alone, in any body."""
    every_path = [path for path in paths(body) if path]
    for codec in CODECS.values():
        assert codec.request_parts(body, every_path) == [codec.request_part(body, path) for path in every_path], \
            codec.kind
