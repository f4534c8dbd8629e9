"""Deny by default: a token caller's team must have an entry in `identity.teams` (or the
config a "*" entry for every other team), else 403 team_not_allowed in the caller's
dialect; a user or team claim of the wrong shape is a 401 naming it. Through real Envoy,
tokens from the quickstart's demo issuer. Keys keep their own allowlists."""

from __future__ import annotations

import anthropic
import openai
import pytest
from gateway_stack import GatewayStack, quickstart_config

from extproc.runtime.token_cli import demo_token

HI = [{"role": "user", "content": "hi"}]


def _openai(stack, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url, api_key=token, max_retries=0)


def _anthropic(stack, token: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"http://127.0.0.1:{stack.port}", auth_token=token, max_retries=0)


def test_a_team_nobody_configured_is_refused_in_each_dialect(gateway):
    token = demo_token("nora", "nosuchteam")
    with pytest.raises(openai.PermissionDeniedError) as refused:
        _openai(gateway, token).chat.completions.create(model="claude-sonnet-4-6", messages=HI)
    assert refused.value.code == "team_not_allowed" and "'nosuchteam'" in refused.value.message
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        _anthropic(gateway, token).messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=HI)
    assert refused.value.body["error"]["type"] == "permission_error"
    assert "'nosuchteam'" in refused.value.body["error"]["message"]


def test_a_token_without_a_team_takes_the_default_team_which_has_no_entry(gateway):
    token = demo_token("nora", "", extra={"team": None})
    with pytest.raises(openai.PermissionDeniedError) as refused:
        _openai(gateway, token).chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert "'default'" in refused.value.message


def test_configured_teams_keep_their_allowlists(gateway):
    assert _openai(gateway, demo_token("rita", "support")).chat.completions.create(
        model="gpt-4o-mini", messages=HI).choices[0].message.content == "hi"
    with pytest.raises(openai.PermissionDeniedError) as refused:
        _openai(gateway, demo_token("rita", "support")).chat.completions.create(model="gpt-4o", messages=HI)
    assert refused.value.code == "model_not_allowed"


@pytest.mark.parametrize("claims, named", [
    ({"team": ["support", "research"]}, "team"),
    ({"team": {"name": "support"}}, "team"),
    ({"team": True}, "team"),
    ({"email": ["a@corp.example"]}, "email"),
])
def test_a_claim_of_the_wrong_shape_is_a_401_naming_it(gateway, claims, named):
    token = demo_token("nora", "support", extra=claims)
    with pytest.raises(openai.AuthenticationError) as refused:
        _openai(gateway, token).chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert f"claim '{named}' must be a string" in refused.value.message


def test_keys_are_unaffected(gateway):
    """A key of a team with no identity.teams entry carries its own allowlist."""
    client = openai.OpenAI(base_url=gateway.base_url, api_key="sk-demo-alice", max_retries=0)
    assert client.chat.completions.create(model="claude-sonnet-4-6", messages=HI).choices[0].message.content


@pytest.fixture(scope="module")
def catch_all(tmp_path_factory):
    config = quickstart_config()
    config["identity"]["teams"]["*"] = {"models": ["gpt-4o-mini"]}
    stack = GatewayStack(tmp_path_factory.mktemp("catch-all"), config).start()
    yield stack
    stack.stop()


def test_a_catch_all_entry_gives_every_other_team_what_it_allows(catch_all):
    client = _openai(catch_all, demo_token("nora", "nosuchteam"))
    assert client.chat.completions.create(model="gpt-4o-mini", messages=HI).choices[0].message.content == "hi"
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model="claude-sonnet-4-6", messages=HI)
    assert refused.value.code == "model_not_allowed"
    record = catch_all.wait_for_record(predicate=lambda r: r["user"] == "nora" and r["status"] == 200)
    assert record["team"] == "nosuchteam"          # its own name: team budgets count it apart
