"""Headers that choose a provider account never reach a provider (through real Envoy):
for every kind of provider the quickstart has (OpenAI's API, Azure OpenAI, Anthropic's,
Google's Gemini API, Vertex AI serving Gemini and Claude, Bedrock's Converse and its
InvokeModel for Claude, a Responses-only server, a virtual model's attempts), a caller's
`x-goog-user-project`, `openai-organization`, `anthropic-*` account headers, `x-amz-*`
and the like are withheld, unless the provider's `pass_headers` names one. What each
mock listener received is read back by the request's id."""

from __future__ import annotations

import httpx
import pytest
from gateway_stack import GatewayStack, quickstart_config

# One of each dialect's account-choosing headers (and a second of some), as a caller could send them.
ACCOUNT_HEADERS = {
    "x-goog-user-project": "attacker-billing-project",          # Google: the project billed, whose quota
    "x-goog-request-params": "project=attacker-project",
    "x-goog-iam-authorization-token": "ya29.attacker",
    "openai-organization": "org-attacker", "openai-project": "proj-attacker",      # OpenAI (and Azure's)
    "ocp-apim-subscription-key": "attacker-subscription",                            # Azure API Management
    "anthropic-workspace-id": "wrkspc-attacker",                                     # Anthropic
    "x-amz-security-token": "attacker-session-token",                                # AWS
    "x-amzn-bedrock-guardrailidentifier": "attacker-guardrail",
}

CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}

# (model, the mock listener that plays its provider)
PROVIDERS = [
    ("gpt-4o-mini", "mock"),                                        # OpenAI's API
    ("azure/gpt-4o-mini", "mock-azure"),                            # Azure OpenAI
    ("anthropic/claude-sonnet-4-6", "mock-anthropic"),              # Anthropic's API
    ("gemini-2.5-flash", "mock-gemini"),                            # Google's Gemini API
    ("vertex/gemini-2.5-flash", "mock-vertex"),                     # Vertex AI, Google's model
    ("vertex/claude-sonnet-4-6", "mock-vertex"),                    # Vertex AI, Anthropic's model
    ("bedrock/amazon.nova-micro-v1:0", "mock-bedrock"),             # Bedrock's Converse
    ("bedrock/us.anthropic.claude-haiku-4-5-20251001-v1:0", "mock-bedrock"),   # Bedrock's InvokeModel
    ("gpt-4o-mini-responses", "mock"),                              # a Responses-only server
    ("smart", "mock"),                                              # a virtual model: per attempt
]


def _chat(stack, model: str, **headers) -> httpx.Response:
    return httpx.post(f"{stack.base_url}/chat/completions", json={"model": model, **CHAT}, timeout=30,
                      headers={"authorization": "Bearer sk-demo-alice", **headers})


def _received(stack, response: httpx.Response, listener: str) -> dict:
    found = [r for r in stack.received(listener) if r["headers"].get("x-request-id") == response.headers["x-request-id"]]
    assert found, f"{listener} received no request {response.headers['x-request-id']}"
    return {name.lower(): value for name, value in found[-1]["headers"].items()}


@pytest.mark.parametrize("model,listener", PROVIDERS, ids=[model for model, _ in PROVIDERS])
def test_no_account_header_reaches_any_kind_of_provider(gateway, model, listener):
    response = _chat(gateway, model, **ACCOUNT_HEADERS)
    assert response.status_code == 200, response.text
    sent = _received(gateway, response, listener)
    leaked = {name: sent[name] for name in ACCOUNT_HEADERS if name in sent}
    assert not leaked, leaked
    assert "attacker" not in str(sent)


@pytest.mark.parametrize("model,listener", PROVIDERS, ids=[model for model, _ in PROVIDERS])
def test_the_callers_key_reaches_no_provider_in_any_header(gateway, model, listener):
    """Every header admission reads a caller's key from is the gateway's, never passed on
    (the key in the query too, though the mock records no query): a provider gets only
    the credential its config gives it."""
    every = {"authorization": "Bearer sk-demo-alice", "x-api-key": "sk-demo-alice", "api-key": "sk-demo-alice",
             "x-goog-api-key": "sk-demo-alice"}
    response = httpx.post(f"{gateway.base_url}/chat/completions?key=sk-demo-alice", json={"model": model, **CHAT},
                          headers=every, timeout=30)
    assert response.status_code == 200, response.text
    found = [r for r in gateway.received(listener) if r["headers"].get("x-request-id") == response.headers["x-request-id"]]
    assert found and "sk-demo-alice" not in str(found[-1]), found[-1:]


def test_the_api_headers_still_reach_the_provider_they_tune(gateway):
    """anthropic-version and anthropic-beta are Anthropic's API, not its account; Gemini's
    own credential header is the gateway's, set for the provider."""
    response = httpx.post(f"{gateway.base_url}/messages", timeout=30, json={
        "model": "anthropic/claude-sonnet-4-6", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": "sk-demo-alice", "anthropic-version": "2023-06-01",
                 "anthropic-beta": "prompt-caching-2024-07-31", **ACCOUNT_HEADERS})
    assert response.status_code == 200, response.text
    sent = _received(gateway, response, "mock-anthropic")
    assert sent["anthropic-version"] == "2023-06-01" and sent["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert "anthropic-workspace-id" not in sent
    google = _chat(gateway, "gemini-2.5-flash", **ACCOUNT_HEADERS)
    assert _received(gateway, google, "mock-gemini")["x-goog-api-key"] == "mock-gemini-key"


def test_a_stored_responses_lookup_at_a_provider_withholds_them(gateway):
    created = httpx.post(f"{gateway.base_url}/responses", timeout=30, json={"model": "gpt-4o-mini", "input": "hi"},
                         headers={"authorization": "Bearer sk-demo-alice"})
    assert created.status_code == 200, created.text
    fetched = httpx.get(f"{gateway.base_url}/responses/{created.json()['id']}", timeout=30,
                        headers={"authorization": "Bearer sk-demo-alice", **ACCOUNT_HEADERS})
    assert fetched.status_code == 200, fetched.text
    sent = _received(gateway, fetched, "mock")
    assert not set(ACCOUNT_HEADERS) & set(sent)


# --- what a provider's config passes -----------------------------------------------------------

@pytest.fixture(scope="module")
def passing(tmp_path_factory):
    config = quickstart_config()
    config["providers"]["vertex"]["pass_headers"] = ["x-goog-user-project"]
    stack = GatewayStack(tmp_path_factory.mktemp("account-headers"), config).start()
    yield stack
    stack.stop()


def test_a_provider_config_passes_only_the_headers_it_names(passing):
    vertex = _chat(passing, "vertex/gemini-2.5-flash", **ACCOUNT_HEADERS)
    assert vertex.status_code == 200, vertex.text
    sent = _received(passing, vertex, "mock-vertex")
    assert sent["x-goog-user-project"] == "attacker-billing-project"
    assert "x-goog-request-params" not in sent and "openai-project" not in sent
    gemini = _chat(passing, "gemini-2.5-flash", **ACCOUNT_HEADERS)     # another provider: not passed
    assert "x-goog-user-project" not in _received(passing, gemini, "mock-gemini")
