"""Which tool a tool result belongs to, in each dialect (the codecs' `tool_result_names`),
for rules scoped to some tools (`where: [{tool_results: [globs]}]`): by the call's id
where results carry one, by the result's own name where they carry that; "" for any
other string, and for any JSON value where a name or an id should be."""

from __future__ import annotations

import pytest
from gateway_stack import quickstart_config

from extproc.dialects import Chat, Converse, GenerateContent, Messages, Responses
from extproc.guardrails.config import parse_guardrails
from extproc.guardrails.walk import request_texts
from extproc.yamltree import Node, Problems

CHAT = {"model": "m", "messages": [
    {"role": "user", "content": "read two files"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "read_file", "arguments": "{}"}},
        {"id": "b", "type": "function", "function": {"name": "web_fetch", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "a", "content": "text of the file"},
    {"role": "tool", "tool_call_id": "b", "content": "text of the page"},
    {"role": "tool", "tool_call_id": ["not", "an", "id"], "content": "odd id"},
    {"role": "function", "name": "legacy", "content": "legacy result"}]}
RESPONSES = {"model": "m", "input": [
    {"role": "user", "content": "read"},
    {"type": "function_call", "call_id": "a", "name": "read_file", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "a", "output": "text of the file"},
    {"type": "custom_tool_call", "call_id": "b", "name": "web_fetch", "input": "x"},
    {"type": "custom_tool_call_output", "call_id": "b", "output": "text of the page"},
    {"type": "mcp_call", "name": "search", "server_label": "docs", "arguments": "{}", "output": "mcp output"}]}
MESSAGES = {"model": "m", "max_tokens": 5, "messages": [
    {"role": "user", "content": "read"},
    {"role": "assistant", "content": [{"type": "text", "text": "reading"},
                                      {"type": "tool_use", "id": "a", "name": "Read", "input": {}},
                                      {"type": "server_tool_use", "id": "b", "name": "web_fetch", "input": {}}]},
    {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "a", "content": [{"type": "text", "text": "text of the file"}]},
        {"type": "web_fetch_tool_result", "tool_use_id": "b", "content": {"type": "web_fetch_result",
                                                                           "content": "text of the page"}},
        {"type": "tool_result", "tool_use_id": {"odd": 1}, "content": "odd id"},
        {"type": "text", "text": "and a word of mine"}]}]}
GEMINI = {"contents": [
    {"role": "user", "parts": [{"text": "read"}]},
    {"role": "model", "parts": [{"functionCall": {"name": "read_file", "args": {}}}]},
    {"role": "user", "parts": [{"functionResponse": {"name": "read_file", "response": {"text": "text of the file"}}},
                               {"functionResponse": {"name": 7, "response": {"text": "odd name"}}}]}]}
CONVERSE = {"messages": [
    {"role": "user", "content": [{"text": "read"}]},
    {"role": "assistant", "content": [{"toolUse": {"toolUseId": "a", "name": "read_file", "input": {}}}]},
    {"role": "user", "content": [{"toolResult": {"toolUseId": "a", "content": [{"text": "text of the file"}]}},
                                 {"toolResult": {"toolUseId": None, "content": [{"text": "odd id"}]}}]}]}

CASES = [
    (Chat(), CHAT, {"text of the file": "read_file", "text of the page": "web_fetch",
                                    "odd id": "", "legacy result": "legacy", "read two files": ""}),
    (Responses(), RESPONSES, {"text of the file": "read_file", "text of the page": "web_fetch",
                                  "mcp output": "search", "read": ""}),
    (Messages(), MESSAGES, {"text of the file": "Read", "text of the page": "web_fetch", "odd id": "",
                                "and a word of mine": "", "reading": ""}),
    (GenerateContent(), GEMINI, {"text of the file": "read_file", "odd name": ""}),
    (Converse(), CONVERSE, {"text of the file": "read_file", "odd id": ""}),
]


@pytest.mark.parametrize("codec, body, expected", CASES, ids=[case[0].kind for case in CASES])
def test_each_result_is_named_by_its_call(codec, body, expected):
    walked = request_texts(codec.kind, body)
    names = codec.tool_result_names(body, [path_ for _c, _k, path_ in walked])
    found = {container[key]: name for (container, key, _path), name in zip(walked, names)}
    for text, name in expected.items():
        assert found[text] == name, (text, found)


def _rule(where) -> object:
    problems = Problems("test")
    settings = parse_guardrails(Node({"rules": [{"name": "r", "type": "pii", "where": where}]}, "guardrails", problems))
    return problems, settings.default[0] if settings.default else None


def test_a_rule_scoped_to_some_tools_reads_only_their_results():
    problems, rule = _rule(["user", {"tool_results": ["web_*", "mcp__docs__*"]}])
    assert not problems.lines
    assert rule.where == {"user", "tool_results"} and rule.tool_names == ("web_*", "mcp__docs__*")
    assert rule.reads_tool("web_fetch") and rule.reads_tool("mcp__docs__search")
    assert not rule.reads_tool("Read") and not rule.reads_tool("")
    # Named as a whole part too: every tool's results.
    assert _rule([{"tool_results": ["web_*"]}, "tool_results"])[1].tool_names is None
    problems, _ = _rule([{"tool_results": []}])
    assert "must name at least one tool" in " ".join(problems.lines)
    problems, _ = _rule([{"tools": ["x"]}])
    assert problems.lines


def test_the_quickstart_rules_read_every_tools_results():
    settings = parse_guardrails(Node(quickstart_config()["guardrails"], "guardrails", Problems("test")))
    assert all(rule.tool_names is None for rule in settings.default)
