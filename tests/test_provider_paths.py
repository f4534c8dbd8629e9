"""Where each provider type takes an endpoint (api/providers.py), and what the routing
table says of each path (api/openai.py): the path and whether the endpoint counts
tokens are all a provider's path needs, no endpoint kind."""

from __future__ import annotations

import pytest

from extproc.api import providers as P
from extproc.api.openai import ANTHROPIC_MODEL, ANTHROPIC_MODELS, anthropic_shaped, client_path, find_endpoint
from extproc.dialects import codec_of


def path(provider_type: str, client: str, query: str = "", model: str = "m", stream: bool = False,
         counts: bool = False, base_path: str = "/v1") -> str:
    return P.upstream_path(provider_type, base_path=base_path, api_version="2024-10-21", path=client, query=query,
                           model=model, stream=stream, counts=counts, project="p", location="us-east5")


@pytest.mark.parametrize("client,expected", [
    ("/v1/chat/completions", "/openai/deployments/m/chat/completions?api-version=2024-10-21&x=1"),
    ("/v1/completions", "/openai/deployments/m/completions?api-version=2024-10-21&x=1"),
    ("/v1/embeddings", "/openai/deployments/m/embeddings?api-version=2024-10-21&x=1"),
    ("/v1/chat/completions/", "/openai/deployments/m/chat/completions/?api-version=2024-10-21&x=1"),
    ("/v1/responses", "/openai/v1/responses?x=1"),                  # Azure's v1 path, not a deployment's
    ("/v1/responses/resp_1", "/openai/v1/responses/resp_1?x=1"),
    ("/v1/responses/resp_1/input_items", "/openai/v1/responses/resp_1/input_items?x=1"),
])
def test_azure_serves_chat_completions_and_embeddings_per_deployment(client, expected):
    assert path(P.AZURE, client, "x=1") == expected


@pytest.mark.parametrize("client,query,expected", [
    ("/v1/messages", "", "/v1/messages"),
    ("/v1/messages/", "beta=true", "/v1/messages?beta=true"),
    ("/v1/messages/count_tokens", "", "/v1/messages/count_tokens"),
    ("/v1/messages/count_tokens/", "", "/v1/messages/count_tokens"),
])
def test_anthropic_takes_its_endpoints_at_their_own_paths(client, query, expected):
    assert path(P.ANTHROPIC, client, query) == expected


def test_a_translated_call_goes_to_the_provider_codecs_path():
    for provider_type, kind, expected in ((P.ANTHROPIC, "messages", "/v1/messages"),
                                          (P.OPENAI, "chat", "/v1/chat/completions"),
                                          (P.OPENAI_RESPONSES, "responses", "/v1/responses")):
        codec = codec_of(kind)
        assert path(provider_type, codec.provider_path, counts=codec.counts_tokens) == expected


def test_gemini_and_vertex_count_at_their_count_methods():
    assert path(P.GEMINI, "", model="gemini-2.5-flash", counts=True, base_path="/v1beta") == \
        "/v1beta/models/gemini-2.5-flash:countTokens"
    assert path(P.GEMINI, "", "alt=json&k=1", model="gemini-2.5-flash", stream=True, base_path="/v1beta") == \
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&k=1"
    where = "/v1/projects/p/locations/us-east5/publishers"
    assert path(P.VERTEX, "", model="gemini-2.5-flash", counts=True) == \
        f"{where}/google/models/gemini-2.5-flash:countTokens"
    assert path(P.VERTEX, "", model="claude-sonnet-4@20250514", counts=True) == \
        f"{where}/anthropic/models/count-tokens:rawPredict"
    assert path(P.VERTEX, "", model="claude-sonnet-4@20250514", stream=True) == \
        f"{where}/anthropic/models/claude-sonnet-4@20250514:streamRawPredict"


def test_claude_on_vertex_keeps_the_model_in_a_counts_body_only():
    body = {"model": "claude-sonnet-4", "messages": []}
    assert P.body_for_platform(P.VERTEX, "claude-sonnet-4", False, body) == \
        {"messages": [], "anthropic_version": P.VERTEX_ANTHROPIC_VERSION}
    assert P.body_for_platform(P.VERTEX, "claude-sonnet-4", True, body) == \
        {**body, "anthropic_version": P.VERTEX_ANTHROPIC_VERSION}
    assert P.body_for_platform(P.OPENAI, "gpt-4o", True, body) is body


@pytest.mark.parametrize("client,generates", [
    ("/v1/chat/completions", True), ("/v1/completions", True), ("/v1/embeddings", True),
    ("/v1/responses", True), ("/v1/messages", True), ("/v1beta/models/gemini-2.5-flash:generateContent", True),
    ("/v1beta/models/gemini-2.5-flash:streamGenerateContent", True),
    ("/openai/deployments/gpt-4o/chat/completions", True), ("/openai/deployments/gpt-4o/responses", True),
    ("/v1/messages/count_tokens", False), ("/v1beta/models/gemini-2.5-flash:countTokens", False),
    ("/v1/models", False), ("/v1/models/gpt-4o", False), ("/v1beta/models", False),
    ("/v1/responses/resp_1", False), ("/v1/responses/resp_1/cancel", False),
])
def test_the_routing_table_says_which_endpoints_generate(client, generates):
    endpoint, _ = find_endpoint(client)
    assert endpoint.generates is generates
    assert codec_of(endpoint.kind).generates is generates


def test_azure_paths_stand_for_the_openai_endpoints():
    endpoint, deployment = find_endpoint("/openai/deployments/my%20gpt/chat/completions")
    assert (endpoint.kind, endpoint.model_in_path, deployment) == ("chat", True, "my gpt")
    assert client_path("/openai/deployments/my%20gpt/chat/completions", "api-version=1&x=2") == \
        ("/v1/chat/completions", "x=2")


@pytest.mark.parametrize("client,expected", [
    ("/v1/models", ANTHROPIC_MODELS), ("/v1beta/models", ANTHROPIC_MODELS),
    ("/v1/models/claude-sonnet-4", ANTHROPIC_MODEL), ("/v1beta/models/gemini-2.5-flash", ANTHROPIC_MODEL),
])
def test_model_lists_asked_with_anthropic_version_answer_in_its_shape(client, expected):
    assert anthropic_shaped(find_endpoint(client)[0]) is expected
