"""Vertex AI through real Envoy: Gemini and Claude behind one `type: vertex` provider, its
access tokens minted by google-auth from a service account's key (the quickstart's demo
one) at the mock's token endpoint and refreshed before they expire, off the request path.
Callers of every dialect reach both models; Claude's body goes as Vertex takes it
(`anthropic_version: vertex-2023-10-16`, the model in the path only); the platform's own
refusals come in the caller's shape; a virtual model fails over between Vertex and
Anthropic's API either way."""

from __future__ import annotations

import json
import time

import anthropic
import httpx
import pytest
from google import genai
from openai import OpenAI

from gateway_stack import GatewayStack, check_provider_change, quickstart_config

TEXT = "Say ptarmigan"
PREFIX = "/v1/projects/demo-project/locations/us-east5/publishers"
GEMINI_PATH = f"{PREFIX}/google/models/gemini-2.5-flash"
CLAUDE_PATH = f"{PREFIX}/anthropic/models/claude-sonnet-4-6"


@pytest.fixture(scope="module")
def clients(gateway) -> dict:
    root = f"http://127.0.0.1:{gateway.port}"
    return {"openai": OpenAI(base_url=f"{root}/v1", api_key="sk-demo-alice", max_retries=0),
            "anthropic": anthropic.Anthropic(base_url=root, api_key="sk-demo-alice", max_retries=0),
            "google": genai.Client(api_key="sk-demo-alice", http_options={"base_url": root})}


def ask(clients: dict, dialect: str, model: str, stream: bool, text: str = TEXT) -> str:
    """The answer's text, asked in `dialect` with its official SDK."""
    if dialect == "openai":
        if stream:
            chunks = clients["openai"].chat.completions.create(
                model=model, messages=[{"role": "user", "content": text}], stream=True)
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        answer = clients["openai"].chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
        return answer.choices[0].message.content
    if dialect == "anthropic":
        messages = [{"role": "user", "content": text}]
        if stream:
            with clients["anthropic"].messages.stream(model=model, max_tokens=200, messages=messages) as events:
                return events.get_final_text()
        return clients["anthropic"].messages.create(model=model, max_tokens=200, messages=messages).content[0].text
    if stream:
        return "".join(c.text or "" for c in clients["google"].models.generate_content_stream(model=model, contents=text))
    return clients["google"].models.generate_content(model=model, contents=text).text


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("dialect", ["openai", "anthropic", "google"])
@pytest.mark.parametrize("model, path", [("vertex/gemini-2.5-flash", GEMINI_PATH),
                                         ("vertex/claude-sonnet-4-6", CLAUDE_PATH)])
def test_every_dialect_reaches_both_models_on_vertex(gateway, clients, dialect, model, path, stream):
    gateway.clear_received()
    assert ask(clients, dialect, model, stream) == TEXT
    [sent] = [r for r in gateway.received("mock-vertex") if r["path"].startswith(path + ":")]
    method = sent["path"].rpartition(":")[2]
    if path == CLAUDE_PATH:
        assert method == ("streamRawPredict" if stream else "rawPredict")
        body = json.loads(sent["body"])
        assert body["anthropic_version"] == "vertex-2023-10-16" and "model" not in body
    else:
        assert method == ("streamGenerateContent" if stream else "generateContent")
        assert (sent["query"] == {"alt": "sse"}) is stream
    # The worker's minted token, never the caller's key.
    assert sent["headers"]["authorization"].startswith("Bearer ya29.mock-")
    assert "sk-demo-alice" not in json.dumps(sent)
    record = gateway.wait_for_record(predicate=lambda r: r["model"] == model and r["stream"] is stream
                                     and r["path"].endswith(gateway_path(dialect, model, stream)))
    assert record["status"] == 200 and record["backend"] == "vertex" and record["output_tokens"] > 0
    assert record["cost_usd"] > 0                  # priced from the shipped table by the model's name


def gateway_path(dialect: str, model: str, stream: bool) -> str:
    if dialect == "openai":
        return "/v1/chat/completions"
    if dialect == "anthropic":
        return "/v1/messages"
    return f"/models/{model}:{'streamGenerateContent' if stream else 'generateContent'}"   # /v1beta or /v1


def test_claude_counts_its_tokens_at_vertex(gateway, clients):
    gateway.clear_received()
    counted = clients["anthropic"].messages.count_tokens(model="vertex/claude-sonnet-4-6",
                                                         messages=[{"role": "user", "content": TEXT}])
    assert counted.input_tokens > 0
    [sent] = gateway.received("mock-vertex")
    assert sent["path"] == f"{PREFIX}/anthropic/models/count-tokens:rawPredict"
    body = json.loads(sent["body"])
    assert body["model"] == "claude-sonnet-4-6" and body["anthropic_version"] == "vertex-2023-10-16"


@pytest.mark.parametrize("dialect, path, body, headers", [
    ("anthropic", "/v1/messages", {"model": "vertex/claude-sonnet-4-6", "max_tokens": 10,
                                   "messages": [{"role": "user", "content": "x"}]}, {"x-api-key": "sk-demo-alice"}),
    ("openai", "/v1/chat/completions", {"model": "vertex/claude-sonnet-4-6",
                                        "messages": [{"role": "user", "content": "x"}]},
     {"authorization": "Bearer sk-demo-alice"}),
    ("google", "/v1beta/models/vertex/claude-sonnet-4-6:generateContent",
     {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}, {"x-goog-api-key": "sk-demo-alice"}),
])
def test_vertexs_own_refusal_of_claude_comes_in_the_callers_shape(gateway, dialect, path, body, headers):
    """Vertex's quota answers a throttled Claude call in Google's shape: every caller reads
    it in its own (the Anthropic caller too, whose dialect the model speaks)."""
    answer = httpx.post(f"http://127.0.0.1:{gateway.port}{path}", json=body,
                        headers={**headers, "x-mock-status": "429"}, timeout=10)
    assert answer.status_code == 429
    error = answer.json()["error"]
    assert "Quota exceeded" in error["message"]
    if dialect == "anthropic":
        assert answer.json()["type"] == "error" and error["type"] == "rate_limit_error"
    elif dialect == "openai":
        assert set(error) >= {"message", "type", "code"}
    else:
        assert error["status"] == "RESOURCE_EXHAUSTED" and error["code"] == 429


# --- a stack of its own: short-lived tokens, failover to and from Vertex ---------------------

@pytest.fixture(scope="module")
def vertex_stack(tmp_path_factory):
    config = quickstart_config()
    for listener in config["mock_provider"]["listeners"]:
        if listener["name"] == "mock-vertex":
            listener["failure"] = {"token-ttl": 4}        # the mock's tokens live 4 s
    config["models"]["claude-via-vertex-first"] = {"backends": [
        {"provider": "vertex", "model": "claude-sonnet-4-6"},
        {"provider": "anthropic", "model": "claude-sonnet-4-6"}]}
    config["models"]["claude-vertex-as-backup"] = {"backends": [
        {"provider": "anthropic-failing", "model": "claude-sonnet-4-6"},
        {"provider": "vertex", "model": "claude-sonnet-4-6"}]}
    stack = GatewayStack(tmp_path_factory.mktemp("vertex"), config=config, workers=1).start()
    yield stack
    stack.stop()


def model_calls(stack: GatewayStack) -> list[dict]:
    """What mock-vertex received but the token requests: this stack's tokens live 4 s, so
    one may be minted again while a test runs."""
    return [r for r in stack.received("mock-vertex") if r["path"].startswith(PREFIX)]


def issued(stack: GatewayStack) -> int:
    return httpx.get(f"{stack.mock_url('mock-vertex')}/_mock/tokens", timeout=5).json()["issued"]


def test_tokens_are_refreshed_before_they_expire(vertex_stack):
    """Tokens live 4 s: the worker mints the next at 3/4 of that, in the background, so
    calls over 10 s all carry a valid one and none waits for the token endpoint."""
    client = OpenAI(base_url=vertex_stack.base_url, api_key="sk-demo-alice", max_retries=0)
    first = issued(vertex_stack)
    assert first >= 1                               # minted before the worker served
    tokens, slowest = set(), 0.0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        started = time.monotonic()
        answer = client.chat.completions.create(model="vertex/gemini-2.5-flash",
                                                messages=[{"role": "user", "content": TEXT}])
        slowest = max(slowest, time.monotonic() - started)
        assert answer.choices[0].message.content == TEXT
        calls = [r for r in vertex_stack.received("mock-vertex") if r["path"].startswith(PREFIX)]   # not /token
        tokens.add(calls[-1]["headers"]["authorization"])
        time.sleep(0.5)
    assert issued(vertex_stack) - first >= 2 and len(tokens) >= 3
    assert slowest < 1.0


def test_a_throttled_vertex_fails_over_to_anthropic(vertex_stack):
    client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{vertex_stack.port}", api_key="sk-demo-alice",
                                 max_retries=0, default_headers={"x-mock-status": "429",
                                                                 "x-mock-only": "mock-vertex"})
    vertex_stack.clear_received()
    answer = client.messages.create(model="claude-via-vertex-first", max_tokens=100,
                                    messages=[{"role": "user", "content": TEXT}])
    assert answer.content[0].text == TEXT
    assert [r["path"].rpartition(":")[2] for r in model_calls(vertex_stack)] == ["rawPredict"]
    [sent] = vertex_stack.received("mock-anthropic")
    assert sent["path"] == "/v1/messages" and json.loads(sent["body"])["model"] == "claude-sonnet-4-6"
    assert "anthropic_version" not in json.loads(sent["body"])


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_vertex_takes_over_from_a_failing_anthropic(vertex_stack, stream):
    """The upstream filter makes the second attempt for Vertex: its path, its token and
    Claude's body as Vertex takes it, from a request first written for Anthropic's API."""
    client = OpenAI(base_url=vertex_stack.base_url, api_key="sk-demo-alice", max_retries=0)
    vertex_stack.clear_received()
    messages = [{"role": "user", "content": TEXT}]
    if stream:
        chunks = client.chat.completions.create(model="claude-vertex-as-backup", messages=messages, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    else:
        answer = client.chat.completions.create(model="claude-vertex-as-backup", messages=messages)
        assert answer.choices[0].message.content == TEXT
    [sent] = model_calls(vertex_stack)
    assert sent["path"] == f"{CLAUDE_PATH}:{'streamRawPredict' if stream else 'rawPredict'}"
    body = json.loads(sent["body"])
    assert body["anthropic_version"] == "vertex-2023-10-16" and "model" not in body
    assert sent["headers"]["authorization"].startswith("Bearer ya29.mock-")
    assert "x-api-key" not in sent["headers"]          # the failed attempt's credential stays behind


# --- the config ---------------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    ({"project": None}, "project: is required for a vertex provider"),
    ({"location": "Europe West"}, "location: must be a Vertex AI location"),
    ({"service_account": {"value": '{"type": "authorized_user"}'}}, "is not a service account's key"),
    ({"api_key": {"value": "k"}}, "authenticates with `service_account:`"),
])
def test_check_names_what_is_wrong_with_a_vertex_provider(tmp_path, change, message):
    assert message in check_provider_change(tmp_path, "vertex", change)
