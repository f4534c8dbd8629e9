"""Google's model list and embeddings through real Envoy, with the official google-genai
SDK on both API versions it calls (`v1`, its default, and `v1beta`): the model list in
Google's shape on /v1/models too (a Google client is known by its headers), and
:embedContent / :batchEmbedContents translated for an OpenAI-dialect embeddings model or
passed as sent to a Gemini one; the key's allowlist, the usage and the log line apply as
to every call, refusals come in Google's shape."""

from __future__ import annotations

import json

import httpx
import pytest
from google import genai
from google.genai import errors, types

VERSIONS = ["v1", "v1beta"]


def root(gateway) -> str:
    return f"http://127.0.0.1:{gateway.port}"


_CLIENTS: dict = {}


def google(gateway, version: str, key: str = "sk-demo-alice") -> genai.Client:
    """A client kept for the module (one dropped closes its connections under its calls)."""
    found = _CLIENTS.get((gateway.port, version, key))
    if found is None:
        found = _CLIENTS[(gateway.port, version, key)] = genai.Client(
            api_key=key, http_options={"base_url": root(gateway), "api_version": version})
    return found


@pytest.mark.parametrize("version", VERSIONS)
def test_the_model_list_is_googles_on_both_versions(gateway, version):
    names = [model.name for model in google(gateway, version).models.list()]
    assert {"models/gemini-2.5-flash", "models/gpt-4o-mini", "models/text-embedding-3-small"} <= set(names)
    assert [model.name for model in google(gateway, version, "sk-demo-bob").models.list()] == ["models/gpt-4o-mini"]
    assert google(gateway, version).models.get(model="gpt-4o-mini").name == "models/gpt-4o-mini"


def test_the_model_list_stays_openais_for_other_callers(gateway):
    """Only a Google client (its key header, its client header or ?key=) gets Google's shape."""
    openai = httpx.get(f"{root(gateway)}/v1/models", headers={"authorization": "Bearer sk-demo-bob"}).json()
    assert openai == {"object": "list", "data": [openai["data"][0]]} and openai["data"][0]["id"] == "gpt-4o-mini"
    by_query = httpx.get(f"{root(gateway)}/v1/models", params={"key": "sk-demo-bob"}).json()
    assert [model["name"] for model in by_query["models"]] == ["models/gpt-4o-mini"]


@pytest.mark.parametrize("version", VERSIONS)
def test_embed_content_on_an_openai_embeddings_model(gateway, version):
    gateway.clear_received()
    answer = google(gateway, version).models.embed_content(model="text-embedding-3-small", contents=["a", "b"])
    assert [len(embedding.values) for embedding in answer.embeddings] == [1536, 1536]
    assert answer.embeddings[0].values != answer.embeddings[1].values
    [sent] = [r for r in gateway.received("mock") if r["path"] == "/v1/embeddings"]
    assert json.loads(sent["body"])["input"] == ["a", "b"]
    assert "sk-demo-alice" not in json.dumps(sent["headers"])
    record = gateway.wait_for_record(predicate=lambda r: r["path"] == f"/{version}/models/text-embedding-3-small"
                                                                      ":batchEmbedContents")
    assert record["status"] == 200 and record["user"] == "alice" and record["model"] == "text-embedding-3-small"
    assert record["input_tokens"] == 2 and not record["usage_estimated"]     # the provider's count
    assert record["cost_usd"] > 0


def test_output_dimensionality_becomes_dimensions(gateway):
    gateway.clear_received()
    answer = google(gateway, "v1").models.embed_content(
        model="text-embedding-3-small", contents="grebe",
        config=types.EmbedContentConfig(output_dimensionality=256, task_type="RETRIEVAL_DOCUMENT"))
    assert [len(embedding.values) for embedding in answer.embeddings] == [256]
    [sent] = [r for r in gateway.received("mock") if r["path"] == "/v1/embeddings"]
    assert json.loads(sent["body"])["dimensions"] == 256
    record = gateway.wait_for_record(predicate=lambda r: r["path"].endswith(":batchEmbedContents")
                                     and "dropped" in r)
    assert record["status"] == 200 and record["dropped"] == ["taskType"]    # Google's hint, named


def test_embed_content_one_content(gateway):
    """:embedContent, as other Google clients call it: one content, one embedding."""
    answer = httpx.post(f"{root(gateway)}/v1beta/models/text-embedding-3-small:embedContent",
                        headers={"x-goog-api-key": "sk-demo-alice"},
                        json={"content": {"parts": [{"text": "a diving bird"}]}})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["embedding"]["values"]) == 1536


@pytest.mark.parametrize("version", VERSIONS)
def test_a_gemini_embedding_model_gets_the_call_as_sent(gateway, version):
    gateway.clear_received()
    answer = google(gateway, version).models.embed_content(model="gemini/gemini-embedding-001",
                                                           contents=["a", "b"])
    assert [len(embedding.values) for embedding in answer.embeddings] == [3072, 3072]
    [sent] = [r for r in gateway.received("mock-gemini") if r["path"].endswith(":batchEmbedContents")]
    assert sent["path"] == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert [entry["model"] for entry in json.loads(sent["body"])["requests"]] == ["models/gemini-embedding-001"] * 2
    assert "sk-demo-alice" not in json.dumps(sent["headers"]) + json.dumps(sent["query"])
    record = gateway.wait_for_record(predicate=lambda r: r["model"] == "gemini/gemini-embedding-001"
                                     and r["path"].startswith(f"/{version}/"))
    assert record["status"] == 200 and record["input_tokens"] == 2       # counted by the gateway: Google gives none


@pytest.mark.parametrize("version", VERSIONS)
def test_a_key_not_allowed_the_model_gets_googles_403(gateway, version):
    gateway.clear_received()
    with pytest.raises(errors.ClientError) as refused:
        google(gateway, version, "sk-demo-bob").models.embed_content(model="text-embedding-3-small", contents=["a"])
    assert refused.value.code == 403 and refused.value.status == "PERMISSION_DENIED"
    assert not [r for r in gateway.received("mock") if r["path"] == "/v1/embeddings"]
    record = gateway.wait_for_record(predicate=lambda r: r["user"] == "bob" and r["path"].endswith(
        ":batchEmbedContents") and r["status"] == 403)
    assert record["input_tokens"] == 0


def test_what_cannot_be_translated_is_refused_in_googles_shape(gateway):
    inline = {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
    answer = httpx.post(f"{root(gateway)}/v1/models/text-embedding-3-small:embedContent",
                        headers={"x-goog-api-key": "sk-demo-alice"}, json={"content": {"parts": [inline]}})
    assert answer.status_code == 400 and answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    shapeless = httpx.post(f"{root(gateway)}/v1/models/text-embedding-3-small:batchEmbedContents",
                           headers={"x-goog-api-key": "sk-demo-alice"}, json={"requests": []})
    assert shapeless.status_code == 400 and shapeless.json()["error"]["status"] == "INVALID_ARGUMENT"
