"""What binds a call to its owner, and what of the caller reaches a provider (through
real Envoy): stored responses continued by their owner only, provider-account and
network headers withheld from providers, model labels bounded, OAuth discovery naming
the gateway's own URL, tokens without `exp` refused, the state files owner-only."""

from __future__ import annotations

import re
import stat
import time
import uuid

import httpx
import jwt
import openai
import pytest
from gateway_stack import GatewayStack, quickstart_config

from extproc.config import envoy_config

WITHHELD = {"openai-organization": "org-attacker", "openai-project": "proj-attacker",
            "anthropic-workspace-id": "wrkspc-attacker", "x-forwarded-for": "203.0.113.9",
            "forwarded": "for=203.0.113.9", "x-real-ip": "203.0.113.9",
            "x-envoy-original-path": "/internal/admin"}


def _post(stack, path: str, body: dict, key: str = "sk-demo-alice", **headers) -> httpx.Response:
    return httpx.post(f"{stack.base_url}{path}", json=body, timeout=30,
                      headers={"authorization": f"Bearer {key}", **headers})


def _received(stack, response: httpx.Response, listener: str = "mock") -> dict:
    [found] = [r for r in stack.received(listener) if r["headers"].get("x-request-id") == response.headers["x-request-id"]]
    return {name.lower(): value for name, value in found["headers"].items()}


# --- stored responses: previous_response_id ------------------------------------------------

def test_a_stored_response_is_continued_by_its_owner_only(gateway):
    alice = openai.OpenAI(base_url=gateway.base_url, api_key="sk-demo-alice", max_retries=0)
    bob = openai.OpenAI(base_url=gateway.base_url, api_key="sk-demo-bob", max_retries=0)
    first = alice.responses.create(model="gpt-4o-mini", input="my secret plan")
    with pytest.raises(openai.NotFoundError) as refused:
        bob.responses.create(model="gpt-4o-mini", input="what did I say?", previous_response_id=first.id)
    assert refused.value.code == "response_not_found"
    assert refused.value.response.json()["error"]["message"] == \
        f"No response found with id '{first.id}' (previous_response_id)."
    with pytest.raises(openai.NotFoundError):
        alice.responses.create(model="gpt-4o-mini", input="and?", previous_response_id="resp_never_made_here")
    followed = alice.responses.create(model="gpt-4o-mini", input="and then?", previous_response_id=first.id)
    assert followed.output_text == "and then?"


def test_a_conversation_the_gateway_cannot_check_is_refused(gateway):
    response = _post(gateway, "/responses", {"model": "gpt-4o-mini", "input": "hi", "conversation": "conv_123"},
                     key="sk-demo-bob")
    assert response.status_code == 400, response.text
    assert "conversation" in response.json()["error"]["message"]


# --- headers that reach a provider ---------------------------------------------------------

@pytest.mark.parametrize("model,listener", [("gpt-4o-mini", "mock"), ("smart", "mock")],
                         ids=["concrete", "failover"])
def test_provider_account_and_network_headers_never_reach_a_provider(gateway, model, listener):
    """`smart` is made per attempt by the upstream filter: both paths withhold them."""
    response = _post(gateway, "/chat/completions", {"model": model, "messages": [{"role": "user", "content": "hi"}]},
                     **WITHHELD, **{"openai-beta": "assistants=v2"})
    assert response.status_code == 200, response.text
    sent = _received(gateway, response, listener)
    assert not set(WITHHELD) & set(sent), {name: sent[name] for name in set(WITHHELD) & set(sent)}
    assert sent["authorization"] == "Bearer mock-provider-key"


def test_anthropic_api_headers_pass_and_account_headers_do_not(gateway):
    response = _post(gateway, "/messages", {"model": "anthropic/claude-sonnet-4-6", "max_tokens": 5,
                                            "messages": [{"role": "user", "content": "hi"}]},
                     **{"anthropic-version": "2023-06-01", "anthropic-beta": "prompt-caching-2024-07-31",
                        "anthropic-workspace-id": "wrkspc-attacker", "anthropic-organization-id": "org-x"})
    assert response.status_code == 200, response.text
    sent = _received(gateway, response, "mock-anthropic")
    assert sent["anthropic-version"] == "2023-06-01" and sent["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert "anthropic-workspace-id" not in sent and "anthropic-organization-id" not in sent


def test_a_stored_responses_lookup_withholds_them_too(gateway):
    alice = openai.OpenAI(base_url=gateway.base_url, api_key="sk-demo-alice", max_retries=0)
    created = alice.responses.create(model="gpt-4o-mini", input="hello")
    response = httpx.get(f"{gateway.base_url}/responses/{created.id}", timeout=30,
                         headers={"authorization": "Bearer sk-demo-alice", **WITHHELD})
    assert response.status_code == 200, response.text
    sent = _received(gateway, response)
    assert not set(WITHHELD) & set(sent)


# --- metric labels --------------------------------------------------------------------------

def test_model_labels_from_names_callers_choose_are_bounded(gateway):
    """`anthropic` serves any model (`models: "*"`): 150 made-up names make at most
    max_model_values (50) labels per worker, the rest `__overflow__`."""
    run = uuid.uuid4().hex[:6]
    _post(gateway, "/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    with httpx.Client(timeout=30) as client:
        for index in range(150):
            answer = client.post(f"{gateway.base_url}/chat/completions",
                                 headers={"authorization": "Bearer sk-demo-alice"},
                                 json={"model": f"anthropic/claude-x-{run}-{index}", "max_tokens": 5,
                                       "messages": [{"role": "user", "content": "hi"}]})
            assert answer.status_code == 200, answer.text
    time.sleep(0.6)                      # the workers' metric files are written every 0.25 s
    page = gateway.metrics('gen_ai_request_model="__overflow__"')
    labels = set(re.findall(r'gen_ai_request_model="anthropic/claude-x-' + run + r'-(\d+)"', page))
    assert len(labels) <= 50 * gateway.workers, len(labels)
    assert 'gen_ai_request_model="__overflow__"' in page
    assert 'gen_ai_request_model="gpt-4o-mini"' in page          # a configured model keeps its name


# --- OAuth discovery ------------------------------------------------------------------------

def test_a_forged_host_is_not_named_in_oauth_discovery(gateway):
    """The quickstart names no public URL: only a loopback Host is named."""
    forged = {"host": "evil.example", "x-forwarded-proto": "https"}
    metadata = httpx.get(f"http://127.0.0.1:{gateway.port}/.well-known/oauth-protected-resource/mcp/demo",
                         headers=forged)
    assert metadata.status_code == 404 and "evil" not in metadata.text
    challenge = httpx.post(f"http://127.0.0.1:{gateway.port}/mcp/demo", headers=forged,
                           json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert challenge.status_code == 401
    assert "evil" not in challenge.headers["www-authenticate"]
    local = httpx.get(f"http://127.0.0.1:{gateway.port}/.well-known/oauth-protected-resource/mcp/demo")
    assert local.json()["resource"] == f"http://127.0.0.1:{gateway.port}/mcp/demo"


# --- tokens and state files -----------------------------------------------------------------

def _demo_token(**claims) -> str:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from extproc.runtime.token_cli import DEMO_KID
    with open(envoy_config.shipped("config/demo-issuer-key.pem"), encoding="utf-8") as handle:
        pem = "".join(line for line in handle if not line.startswith("#"))
    now = int(time.time())
    payload = {"iss": "https://demo-issuer.llm-gateway.invalid", "aud": "llm-gateway", "sub": "mallory",
               "team": "research", "iat": now, "nbf": now, **claims}
    return jwt.encode(payload, load_pem_private_key(pem.encode(), password=None), algorithm="ES256",
                      headers={"kid": DEMO_KID})


def test_a_token_without_exp_is_refused(gateway):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    forever = _post(gateway, "/chat/completions", body, key=_demo_token())
    assert forever.status_code == 401, forever.text
    assert forever.json()["error"]["code"] == "invalid_api_key" or "exp" in forever.text.lower()
    timed = _post(gateway, "/chat/completions", body, key=_demo_token(exp=int(time.time()) + 600))
    assert timed.status_code == 200, timed.text


def test_the_state_files_are_owner_only(gateway):
    _post(gateway, "/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    state = gateway.state_dir
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    files = list(state.glob("*.sqlite3*"))
    assert files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


# --- what a provider's config passes, the URL the config names --------------------------------

@pytest.fixture(scope="module")
def configured(tmp_path_factory):
    config = quickstart_config()
    config["providers"]["mock"]["pass_headers"] = ["openai-organization"]
    config["mcp"]["public_urls"] = ["https://gateway.example.com", "http://127.0.0.1"]
    config["observability"] = {**(config.get("observability") or {}), "max_model_values": 2}
    config["identity"]["jwt"]["providers"]["demo"]["require_expiration"] = False
    stack = GatewayStack(tmp_path_factory.mktemp("owner-binding"), config).start()
    yield stack
    stack.stop()


def test_a_provider_config_passes_the_headers_it_names(configured):
    response = _post(configured, "/chat/completions",
                     {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}, **WITHHELD)
    assert response.status_code == 200, response.text
    sent = _received(configured, response)
    assert sent["openai-organization"] == "org-attacker"
    assert "openai-project" not in sent and "x-forwarded-for" not in sent


def test_discovery_names_the_configured_url_the_host_matches(configured):
    url = f"http://127.0.0.1:{configured.port}/.well-known/oauth-protected-resource/mcp/demo"
    named = httpx.get(url, headers={"host": "gateway.example.com"}).json()
    assert named["resource"] == "https://gateway.example.com/mcp/demo"
    forged = httpx.get(url, headers={"host": "evil.example", "x-forwarded-proto": "http"}).json()
    assert forged["resource"] == "https://gateway.example.com/mcp/demo"


def test_max_model_values_and_tokens_without_exp_when_configured(configured):
    for index in range(6):
        answer = _post(configured, "/chat/completions", {"model": f"anthropic/claude-y-{index}", "max_tokens": 5,
                                                         "messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 200, answer.text
    time.sleep(0.6)
    page = configured.metrics('gen_ai_request_model="__overflow__"')
    assert len(set(re.findall(r'gen_ai_request_model="anthropic/claude-y-(\d+)"', page))) == 2
    forever = _post(configured, "/chat/completions", {"model": "gpt-4o-mini",
                                                      "messages": [{"role": "user", "content": "hi"}]},
                    key=_demo_token())
    assert forever.status_code == 200, forever.text
