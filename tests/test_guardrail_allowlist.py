"""A text rule's `allow:` list: values it never finds, matched against a finding's whole
text as written (unit), and the quickstart's PII rule leaving an agent vendor's commit
trailer in a system prompt byte for byte while it still redacts a person's address
(through real Envoy)."""

from __future__ import annotations

import os
import uuid

import httpx
import pytest
import yaml

from extproc.config.filter_config import load_config
from extproc.credentials.google import DEMO_SERVICE_ACCOUNT_ENV, demo_service_account
from extproc.guardrails.config import parse_guardrails
from extproc.yamltree import ConfigError, Node, Problems

TRAILER = "Co-Authored-By: Claude Sonnet 4.6 <noreply@anthropic.com>"


def parsed(value: dict):
    problems = Problems("test")
    settings = parse_guardrails(Node(value, "guardrails", problems))
    problems.raise_if_any()
    return settings


def rule(**fields):
    return parsed({"rules": [{"name": "pii", "type": "pii", "action": "redact", **fields}]}).default[0]


def found(guardrail, text: str) -> list[str]:
    return [text[f.start:f.end] for f in guardrail.detector.find(text)]


def test_an_allowed_value_or_glob_is_not_found_and_everything_else_is():
    pii = rule(entities=["email", "card"], allow=["noreply@anthropic.com", "*@corp.example", "4111 1111 1111 1111"])
    text = (f"{TRAILER}; mail jane.doe@gmail.com or ops@corp.example; NoReply@Anthropic.COM; "
            "cards 4111 1111 1111 1111 and 5555 5555 5555 4444")
    assert found(pii, text) == ["jane.doe@gmail.com", "5555 5555 5555 4444"]


def test_a_finding_is_allowed_only_when_its_whole_text_is_an_allowed_value():
    pii = rule(entities=["email"], allow=["noreply@anthropic.com"])
    for text in ("x noreply@anthropic.com.attacker.example", "x evil.noreply@anthropic.com",
                 "x n\u043ereply@anthropic.com"):          # a Cyrillic o: found by folding, not the value
        assert found(pii, text), text


def test_the_allow_list_is_part_of_what_known_findings_are_kept_by():
    assert rule(entities=["email"]).digest != rule(entities=["email"], allow=["*@corp.example"]).digest


def test_allow_is_refused_where_it_means_nothing():
    with pytest.raises(ConfigError, match="allow"):
        parsed({"rules": [{"name": "i", "type": "prompt_injection", "allow": ["x"]}]})


def test_the_quickstart_allows_the_agent_vendors_trailer():
    os.environ.setdefault(DEMO_SERVICE_ACCOUNT_ENV, demo_service_account())
    from gateway_stack import QUICKSTART_CONFIG
    [pii] = [g for g in load_config(str(QUICKSTART_CONFIG)).guardrails.default if g.name == "pii"]
    assert found(pii, f"{TRAILER} / jane.doe@gmail.com") == ["jane.doe@gmail.com"]
    assert yaml.safe_load(QUICKSTART_CONFIG.read_text())      # (the file parses as YAML)


def test_a_system_prompt_with_the_trailer_reaches_the_provider_byte_for_byte(gateway):
    marker = uuid.uuid4().hex
    system = f"You are a coding agent ({marker}). When you commit, end the message with:\n\n{TRAILER}\n"
    response = httpx.post(f"{gateway.base_url}/messages", timeout=30,
                          headers={"x-api-key": "sk-demo-alice", "anthropic-version": "2023-06-01"},
                          json={"model": "claude-sonnet-4-6", "max_tokens": 16, "system": system,
                                "messages": [{"role": "user", "content": "commit it; cc jane.doe@gmail.com"}]})
    assert response.status_code == 200, response.text
    [received] = [r for r in gateway.received("mock-anthropic") if marker in r["body"]]
    assert TRAILER in received["body"]
    assert "jane.doe@gmail.com" not in received["body"] and "[EMAIL]" in received["body"]
    record = gateway.wait_for_record(response.headers["x-request-id"])
    assert {"guardrail": "pii", "direction": "request", "verdict": "redacted", "found": ["email"],
            "where": ["user"]} in record["guardrails"]                 # what and where, never the text
