"""Applications built on the AzureOpenAI SDK call the gateway in Azure's path form
(/openai/deployments/{deployment}/chat/completions?api-version=..., the key in `api-key`):
served as the OpenAI endpoints, the deployment as the model, on every backend."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai import AzureOpenAI


@pytest.fixture(scope="module")
def azure(gateway) -> AzureOpenAI:
    return AzureOpenAI(azure_endpoint=f"http://127.0.0.1:{gateway.port}", api_key="sk-demo-alice",
                       api_version="2024-10-21", max_retries=0)


@pytest.mark.parametrize("model, listener, path", [
    ("gpt-4o-mini", "mock", "/v1/chat/completions"),
    ("claude-sonnet-4-6", "mock-anthropic", "/v1/messages"),       # translated
])
def test_chat_in_azures_form_reaches_each_backend(gateway, azure, model, listener, path):
    gateway.clear_received()
    raw = azure.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": "Say kestrel"}])
    answer = raw.parse()
    assert answer.choices[0].message.content == "Say kestrel" and answer.usage.completion_tokens > 0
    sent = [r for r in gateway.received(listener) if r["path"] == path]
    assert len(sent) == 1 and "api-version" not in sent[0]["query"]
    assert json.loads(sent[0]["body"])["model"] and "sk-demo-alice" not in json.dumps(sent[0]["headers"])
    # This call's own line (the stack's other tests make calls of the same model and key).
    record = gateway.wait_for_record(raw.headers["x-request-id"])
    assert record["status"] == 200 and record["model"] == model and record["user"] == "alice"
    assert record["path"] == "/v1/chat/completions" and not record["stream"]


def test_a_stream_in_azures_form(azure):
    chunks = list(azure.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                messages=[{"role": "user", "content": "Say plover"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Say plover"


def test_embeddings_in_azures_form(azure):
    answer = azure.embeddings.create(model="text-embedding-3-small", input="osprey")
    assert len(answer.data[0].embedding) > 0 and answer.usage.prompt_tokens > 0


def test_the_deployment_in_the_path_is_the_model_whatever_the_body_says(gateway):
    done = httpx.post(f"{gateway.base_url.removesuffix('/v1')}/openai/deployments/gpt-4o/chat/completions",
                      params={"api-version": "2024-10-21"}, headers={"api-key": "sk-demo-bob"},
                      json={"messages": [{"role": "user", "content": "hi"}], "model": "gpt-4o-mini"})
    # bob may use gpt-4o-mini only: the path's deployment, gpt-4o, is what is checked
    assert done.status_code == 403 and done.json()["error"]["code"] == "model_not_allowed"


@pytest.mark.parametrize("named", [None, "ft:gpt-4o-mini:acme:triage:abc123"], ids=["no model", "a model with colons"])
def test_a_body_naming_no_model_or_another_is_served_the_deployment(gateway, named):
    # Azure's own examples name no model in the body; a fine-tuned model's name holds
    # colons. The deployment in the path replaces either (no repeated key is taken for it).
    body = {"messages": [{"role": "user", "content": "Say grebe"}], **({"model": named} if named else {})}
    gateway.clear_received()
    done = httpx.post(f"{gateway.base_url.removesuffix('/v1')}/openai/deployments/gpt-4o-mini/chat/completions",
                      params={"api-version": "2024-10-21"}, headers={"api-key": "sk-demo-alice"}, json=body)
    assert done.status_code == 200, done.text
    assert done.json()["choices"][0]["message"]["content"] == "Say grebe"
    sent = [r for r in gateway.received("mock") if r["path"] == "/v1/chat/completions"]
    assert len(sent) == 1 and json.loads(sent[0]["body"])["model"] == "gpt-4o-mini"


def test_an_unknown_key_in_azures_form_gets_openais_401(azure, gateway):
    bad = AzureOpenAI(azure_endpoint=f"http://127.0.0.1:{gateway.port}", api_key="sk-nobody",
                      api_version="2024-10-21", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def test_the_responses_api_of_the_azure_sdk(gateway, azure):
    """AzureOpenAI's `responses.create` calls /openai/responses?api-version=..., the model in the body."""
    answer = azure.responses.create(model="gpt-4o-mini", input="Say curlew")
    assert answer.output_text == "Say curlew" and answer.usage.output_tokens > 0
    again = azure.responses.retrieve(answer.id)          # /openai/responses/{id}: the same owner's
    assert again.id == answer.id


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet-4-6"])
def test_azures_v1_api_without_an_api_version(gateway, model):
    """Azure's v1 API: an OpenAI client on {endpoint}/openai/v1, no api-version."""
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{gateway.port}/openai/v1", api_key="sk-demo-alice",
                           max_retries=0)
    chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Say dunlin"}])
    assert chat.choices[0].message.content == "Say dunlin"
    raw = client.responses.with_raw_response.create(model=model, input="Say knot")
    assert raw.parse().output_text == "Say knot"
    assert any(m.id == "gpt-4o-mini" for m in client.models.list())
    assert client.embeddings.create(model="text-embedding-3-small", input="sanderling").data[0].embedding
    record = gateway.wait_for_record(raw.headers["x-request-id"])      # this call's own line
    assert record["status"] == 200 and record["model"] == model and record["path"] == "/v1/responses"


def test_a_path_of_azures_v1_api_the_gateway_does_not_serve_is_a_404(gateway):
    missing = httpx.post(f"http://127.0.0.1:{gateway.port}/openai/v1/messages", headers={"api-key": "sk-demo-alice"},
                         json={"model": "gpt-4o-mini"}, timeout=30)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
