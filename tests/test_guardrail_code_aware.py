"""Code-aware PII: in tool results and fenced blocks, an author's address (commit
trailers, git log, license headers, package metadata), an address at a domain reserved for
examples, a test card number and numbers that are identifiers, hashes or versions are not
a person's data; a person's address in code, a real card and every secret still are.
Unit tests on the rule, and one request through real Envoy (the quickstart)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from extproc.guardrails import code_aware
from extproc.guardrails.config import parse_guardrails
from extproc.yamltree import ConfigError, Node, Problems

KEY = "sk-proj-" + "Zq8Wm3Kx7Lp2Nv5Rt9Yb4Hc6Jd1Fg0Ae"


def rule(**fields):
    problems = Problems("test")
    settings = parse_guardrails(Node({"rules": [{"name": "pii", "type": "pii", "action": "redact",
                                                 "entities": ["email", "card", "ssn", "iban", "secret"], **fields}]},
                                     "guardrails", problems))
    problems.raise_if_any()
    return settings.default[0]


PII = rule()


def kept(text: str, all_code: bool = True) -> list[str]:
    return [text[f.start:f.end] for f in code_aware.kept(text, PII.detector.find(text), all_code)]


GIT_LOG = """commit 2b553b2f0c1e9d8a7b6c5d4e3f2a1b0c9d8e7f6a
Author: Jane Maintainer <jane@corp.io>
Commit: Jane Maintainer <jane@corp.io>

    Fix the parser

    Co-Authored-By: Claude Sonnet 4.6 <claude@vendor.io>
    Signed-off-by: Bob Reviewer <bob@corp.io>
"""
READ = """     1→# Copyright (c) 2024 Jane Doe <jane.doe@corp.io>
     2→# SPDX-License-Identifier: MIT
     3→__author__ = "Jane Doe"
     4→__email__ = "jane.doe@corp.io"
     5→BUILD = "build_4532015112830366"
     6→DIGEST = "a4532015112830366f0e"
     7→VERSION = "4532.0151.1283.0366"
     8→TEST_CARD = "4242 4242 4242 4242"
     9→FIXTURE = "someone@example.com"
    10→ROW_ID = 1234567890123452
    11→CUSTOMER = "maria.garcia@gmail.com"
    12→LEAKED_CARD = "4532 0151 1283 0366"
    13→OPENAI_KEY = "%s"
""" % KEY
PACKAGE = """{
  "name": "x", "version": "1.2.3",
  "author": {"name": "Jane", "email": "jane@corp.io"},
  "maintainers": [{"name": "Ann", "email": "ann@corp.io"}, {"name": "Bo", "email": "bo@corp.io"}],
  "customers": [{"email": "maria.garcia@gmail.com"}]
}
[project]
authors = [{name = "Jane", email = "jane@corp.io"}]
author_email = "jane@corp.io"
Maintainer: Debian Team <deb@corp.io>
"""


def test_authors_addresses_in_code_are_not_pii_and_a_persons_address_is():
    assert kept(GIT_LOG) == []
    assert kept(PACKAGE) == ["maria.garcia@gmail.com"]


def test_ids_hashes_versions_and_test_cards_are_not_pii_a_card_and_a_secret_are():
    assert sorted(kept(READ)) == sorted(["maria.garcia@gmail.com", "4532 0151 1283 0366", KEY])


def test_outside_code_every_finding_stays():
    prose = "Signed-off-by: Bob <bob@corp.io>, card 4242 4242 4242 4242, id 1234567890123452"
    assert kept(prose, all_code=False) == ["bob@corp.io", "4242 4242 4242 4242", "1234567890123452"]


def test_a_fenced_block_is_code_in_any_part():
    text = f"Review this:\n```\n{GIT_LOG}```\nand mail Bob at bob@corp.io"
    assert kept(text, all_code=False) == ["bob@corp.io"]


def test_code_aware_is_on_by_default_and_can_be_turned_off():
    assert PII.code_aware and not rule(code_aware=False).code_aware
    with pytest.raises(ConfigError, match="code_aware"):
        parse = Problems("t")
        parse_guardrails(Node({"rules": [{"name": "i", "type": "prompt_injection", "code_aware": True}]},
                              "guardrails", parse))
        parse.raise_if_any()


def test_a_20_kb_code_tool_result_keeps_only_the_person_s_data():
    """A large tool result of this repository's source with many findings: the authors'
    lines are left, the person's address and the real card kept (its cost is measured in
    bench/agent_pii_findings.py, not here)."""
    source = (Path(__file__).resolve().parent.parent / "extproc" / "guardrails" / "pii.py").read_text()
    text = (source * 2)[:20_000] + "\n" + GIT_LOG * 20 + PACKAGE * 10 + READ
    findings = PII.detector.find(text)
    left = [text[f.start:f.end] for f in code_aware.kept(text, findings, True)]
    assert len(findings) > 60, len(findings)
    assert "maria.garcia@gmail.com" in left and "4532 0151 1283 0366" in left, left
    assert not {"jane@corp.io", "bob@corp.io", "claude@vendor.io"} & set(left), left


def test_a_tool_result_reaches_the_provider_with_its_authors_and_the_users_address_redacted(gateway):
    marker = uuid.uuid4().hex
    body = {"model": "claude-sonnet-4-6", "max_tokens": 16, "messages": [
        {"role": "user", "content": f"({marker}) show me the log; mail maria.garcia@gmail.com"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash",
                                           "input": {"command": "git log -n 1"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": GIT_LOG + READ}]}]}
    response = httpx.post(f"{gateway.base_url}/messages", json=body, timeout=30,
                          headers={"x-api-key": "sk-demo-alice", "anthropic-version": "2023-06-01"})
    assert response.status_code == 200, response.text
    [received] = [json.loads(r["body"]) for r in gateway.received("mock-anthropic") if marker in r["body"]]
    result = received["messages"][2]["content"][0]["content"]
    assert result == (GIT_LOG + READ).replace("maria.garcia@gmail.com", "[EMAIL]") \
        .replace("4532 0151 1283 0366", "[CARD]").replace(KEY, "[SECRET]")
    assert received["messages"][0]["content"] == f"({marker}) show me the log; mail [EMAIL]"
