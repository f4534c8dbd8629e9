"""Google's dialect through real Envoy: the google-genai SDK calls the gateway as it calls
Google (/v1beta/models/{model}:generateContent, :streamGenerateContent?alt=sse, the key
in `x-goog-api-key` or `?key=`), on a Gemini backend untranslated and on OpenAI and
Anthropic backends translated; callers of the other dialects reach the Gemini backend;
errors come in Google's shape; usage is counted on every path."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from google import genai
from google.genai import errors, types

TEXT = "Say ptarmigan"


@pytest.fixture(scope="module")
def client(gateway) -> genai.Client:
    return genai.Client(api_key="sk-demo-alice",
                        http_options={"base_url": f"http://127.0.0.1:{gateway.port}", "api_version": "v1beta"})


def _tagged(request_id: str) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(http_options={"headers": {"x-request-id": request_id}})


def root(gateway) -> str:
    return f"http://127.0.0.1:{gateway.port}"


@pytest.mark.parametrize("model, listener, path", [
    ("gemini-2.5-flash", "mock-gemini", "/v1beta/models/gemini-2.5-flash:generateContent"),   # untranslated
    ("gpt-4o-mini", "mock", "/v1/chat/completions"),                                          # translated
    ("claude-sonnet-4-6", "mock-anthropic", "/v1/messages"),                                  # translated
])
def test_generate_content_reaches_each_backend(gateway, client, model, listener, path):
    gateway.clear_received()
    rid = f"gemini-{uuid.uuid4()}"           # its record: the session stack logs other files' calls too
    answer = client.models.generate_content(model=model, contents=TEXT, config=_tagged(rid))
    assert answer.text == TEXT
    assert answer.usage_metadata.prompt_token_count > 0 and answer.usage_metadata.candidates_token_count > 0
    sent = [r for r in gateway.received(listener) if r["path"] == path]
    assert len(sent) == 1
    assert "sk-demo-alice" not in json.dumps(sent[0]["headers"]) + json.dumps(sent[0]["query"])
    record = gateway.wait_for_record(rid)
    assert (record["model"], record["stream"]) == (model, False)
    assert record["status"] == 200 and record["output_tokens"] > 0


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "gpt-4o-mini", "claude-sonnet-4-6"])
def test_a_stream_reaches_each_backend(gateway, client, model):
    rid = f"gemini-{uuid.uuid4()}"
    chunks = list(client.models.generate_content_stream(model=model, contents=TEXT, config=_tagged(rid)))
    assert "".join(chunk.text or "" for chunk in chunks) == TEXT
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count > 0
    record = gateway.wait_for_record(rid)
    assert (record["model"], record["stream"]) == (model, True)
    assert record["status"] == 200 and record["output_tokens"] > 0


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "gpt-4o-mini", "claude-sonnet-4-6"])
def test_a_function_call_round_trip(client, model):
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(
        name="lookup", description="Look a word up.",
        parameters=types.Schema(type="OBJECT", properties={"text": types.Schema(type="STRING")}))])
    config = types.GenerateContentConfig(tools=[tool], http_options={"headers": {"x-mock-tool-call": "lookup"}},
                                         automatic_function_calling={"disable": True})
    answer = client.models.generate_content(model=model, contents="find grebe", config=config)
    call = answer.function_calls[0]
    assert call.name == "lookup" and call.args == {"text": "find grebe"}
    history = [types.Content(role="user", parts=[types.Part(text="find grebe")]),
               answer.candidates[0].content,
               types.Content(role="user", parts=[types.Part.from_function_response(
                   name="lookup", response={"result": "a diving bird"})]),
               types.Content(role="user", parts=[types.Part(text="And so?")])]
    again = client.models.generate_content(model=model, contents=history,
                                           config=types.GenerateContentConfig(tools=[tool]))
    assert again.text == "And so?"


def test_the_key_may_come_in_the_query_and_never_reaches_the_provider(gateway):
    gateway.clear_received()
    done = httpx.post(f"{root(gateway)}/v1beta/models/gemini-2.5-flash:generateContent",
                      params={"key": "sk-demo-alice"}, json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    assert done.status_code == 200, done.text
    sent = gateway.received("mock-gemini")[-1]
    assert "key" not in sent["query"] and sent["headers"]["x-goog-api-key"] == "mock-gemini-key"


def test_errors_come_in_googles_shape(gateway, client):
    bad = genai.Client(api_key="sk-nobody", http_options={"base_url": root(gateway), "api_version": "v1beta"})
    with pytest.raises(errors.ClientError) as refused:
        bad.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert refused.value.code == 401 and refused.value.status == "UNAUTHENTICATED"
    with pytest.raises(errors.ClientError) as unknown:
        client.models.generate_content(model="gemini-0-nope", contents="hi")
    assert unknown.value.code == 404 and unknown.value.status == "NOT_FOUND"
    failing = httpx.post(f"{root(gateway)}/v1beta/models/gemini-2.5-flash:generateContent",
                         headers={"x-goog-api-key": "sk-demo-alice", "x-mock-status": "429"},
                         json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    assert failing.status_code == 429 and failing.json()["error"]["status"] == "RESOURCE_EXHAUSTED"


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "vertex/gemini-2.5-flash"])
def test_a_providers_error_said_to_be_a_stream_reaches_each_caller_as_that_error(gateway, model):
    """Google answers a failed stream with its status, `text/event-stream` and a JSON error
    body: every caller gets that status and Google's message, in its own dialect."""
    headers = {"authorization": "Bearer sk-demo-alice", "x-mock-status": "404"}
    chat = httpx.post(f"{root(gateway)}/v1/chat/completions", headers=headers, timeout=30,
                      json={"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 404, chat.text
    assert chat.headers["content-type"].startswith("application/json")
    assert "ended before the answer" not in chat.text and chat.json()["error"]["message"]
    messages = httpx.post(f"{root(gateway)}/v1/messages", headers={**headers, "anthropic-version": "2023-06-01"},
                          json={"model": model, "max_tokens": 20, "stream": True,
                                "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    assert messages.status_code == 404, messages.text
    assert messages.json()["type"] == "error" and messages.json()["error"]["type"] == "not_found_error"


@pytest.mark.parametrize("query", [{}, {"alt": "json"}])
def test_a_stream_asked_as_a_json_array_is_refused_saying_to_ask_for_events(gateway, query):
    """Without alt=sse Google streams one JSON array; the gateway writes events only, and says so."""
    gateway.clear_received()
    refused = httpx.post(f"{root(gateway)}/v1beta/models/gemini-2.5-flash:streamGenerateContent", params=query,
                         headers={"x-goog-api-key": "sk-demo-alice"},
                         json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    assert refused.status_code == 400 and refused.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "alt=sse" in refused.json()["error"]["message"]
    assert gateway.received("mock-gemini") == []


@pytest.mark.parametrize("path, body, headers", [
    ("/v1/chat/completions", {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": TEXT}]},
     {"authorization": "Bearer sk-demo-alice"}),
    ("/v1/messages", {"model": "gemini-2.5-flash", "max_tokens": 100, "messages": [{"role": "user", "content": TEXT}]},
     {"x-api-key": "sk-demo-alice", "anthropic-version": "2023-06-01"}),
    ("/v1/responses", {"model": "gemini-2.5-flash", "input": TEXT}, {"authorization": "Bearer sk-demo-alice"}),
])
def test_every_dialect_reaches_the_gemini_backend(gateway, path, body, headers):
    gateway.clear_received()
    done = httpx.post(f"{root(gateway)}{path}", json=body, headers=headers)
    assert done.status_code == 200, done.text
    assert TEXT in done.text
    sent = [r for r in gateway.received("mock-gemini") if r["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"]
    assert len(sent) == 1 and "contents" in json.loads(sent[0]["body"])


def test_the_sdks_default_path_is_served_too(gateway):
    """Given a base URL and no api_version, google-genai calls /v1/models/{model}:generateContent."""
    plain = genai.Client(api_key="sk-demo-alice", http_options={"base_url": root(gateway)})
    assert plain.models.generate_content(model="claude-sonnet-4-6", contents=TEXT).text == TEXT
    chunks = plain.models.generate_content_stream(model="gemini-2.5-flash", contents=TEXT)
    assert "".join(chunk.text or "" for chunk in chunks) == TEXT
    record = gateway.wait_for_record(predicate=lambda r: r["path"] == "/v1/models/claude-sonnet-4-6:generateContent")
    assert record["status"] == 200 and record["output_tokens"] > 0


def test_the_model_list_in_googles_shape(client):
    names = [model.name for model in client.models.list()]
    assert "models/gemini-2.5-flash" in names and "models/gpt-4o-mini" in names


@pytest.mark.parametrize("model", ["smart", "smart-claude"])
def test_a_virtual_model_fails_over_for_a_gemini_caller(client, model):
    """Each attempt is made for its backend (the upstream filter): the failing one first,
    then the healthy one, in its own dialect; the stream is said by the path, not the body."""
    assert client.models.generate_content(model=model, contents=TEXT).text == TEXT
    chunks = list(client.models.generate_content_stream(model=model, contents=TEXT))
    assert "".join(chunk.text or "" for chunk in chunks) == TEXT


@pytest.mark.parametrize("model, listener, path", [
    ("gemini-2.5-flash", "mock-gemini", "/v1beta/models/gemini-2.5-flash:countTokens"),        # the backend counts
    ("vertex/gemini-2.5-flash", "mock-vertex",
     "/v1/projects/demo-project/locations/us-east5/publishers/google/models/gemini-2.5-flash:countTokens"),
    ("gpt-4o-mini", None, None),                      # another dialect's backend: the gateway counts
    ("vertex/claude-sonnet-4-6", None, None),
])
def test_count_tokens_on_every_backend(gateway, client, model, listener, path):
    gateway.clear_received()
    counted = client.models.count_tokens(model=model, contents="how many tokens are these words")
    assert counted.total_tokens >= 6                  # a token a word at least
    if listener is None:
        assert not [r for r in gateway.received("mock-vertex") + gateway.received("mock")
                    if "count" in r["path"].lower()]
    else:
        [sent] = [r for r in gateway.received(listener) if r["path"] == path]
        assert json.loads(sent["body"])["contents"][0]["parts"][0]["text"] == "how many tokens are these words"
    record = gateway.wait_for_record(predicate=lambda r: r["model"] == model and r["path"].endswith(":countTokens"))
    assert record["status"] == 200 and record["output_tokens"] == 0


@pytest.mark.parametrize("prefix", ["/v1beta/models", "/v1/models"])
def test_envoys_own_errors_come_in_googles_shape_on_both_paths(gateway, prefix):
    """A provider that resets the connection: Envoy answers 503 itself, in Google's shape on
    either path google-genai calls."""
    failing = httpx.post(f"{root(gateway)}{prefix}/gemini-2.5-flash:generateContent",
                         headers={"x-goog-api-key": "sk-demo-alice", "x-mock-reset": "1"},
                         json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}, timeout=20)
    assert failing.status_code == 503
    assert failing.json()["error"]["status"] == "UNAVAILABLE" and failing.json()["error"]["code"] == 503
