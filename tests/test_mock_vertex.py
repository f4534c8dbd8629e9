"""The mock provider speaks Vertex AI as Google does: google-auth's service-account flow
gets its access tokens from the mock's token endpoint; the `google-genai` SDK (vertexai)
and `anthropic`'s AnthropicVertex call its Gemini and Claude routes with them; tokens it
did not issue, or that expired, get Vertex's 401; answers have the recorded shapes, and
the Vertex recordings replay byte for byte."""

from __future__ import annotations

import base64
import datetime
import json
import subprocess
import time

import anthropic
import google.auth.transport.requests
import httpx
import orjson
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gateway_stack import FIXTURES, free_port, wait_for_port
from warm_start import launch_extproc
from google import genai
from google.genai import errors
from google.oauth2 import credentials as oauth_credentials
from google.oauth2 import service_account

from extproc.api.tokens import count_prompt, count_text

PROJECT, LOCATION = "mock-project", "us-east5"
GEMINI, CLAUDE = "gemini-2.0-flash", "claude-haiku-4-5@20251001"
RECORDINGS = FIXTURES / "provider-recordings"
ECHO = "Hello, Vertex! Ünïcödé and an emoji 😀, then more words."
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
# AnthropicVertex fills in its own API version (this SDK release: a dated one, not Vertex's
# documented "vertex-2023-10-16" that the recording shows); the mock holds Claude bodies to
# the documented one, so the SDK is given it.
VERTEX_VERSION = {"anthropic_version": "vertex-2023-10-16"}


@pytest.fixture(scope="module")
def mock(tmp_path_factory) -> dict[str, str]:
    """`extproc mock-provider` serving `mock` (with an API key, which Vertex's routes do not
    take: they want tokens) and `shortlived`, whose tokens live one second."""
    ports = {"mock": free_port(), "shortlived": free_port()}
    config = tmp_path_factory.mktemp("mock") / "mock.yaml"
    config.write_text(yaml.safe_dump({"mock_provider": {"listeners": [
        {"name": "mock", "port": ports["mock"], "api_key": "a-gemini-key"},
        {"name": "shortlived", "port": ports["shortlived"], "failure": {"token-ttl": 1}}]}}))
    process = launch_extproc(["mock-provider", "--config", str(config),
                              "--fixtures", str(FIXTURES)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for port in ports.values():
            wait_for_port(port, process=process)
        yield {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def service_account_credentials(base: str, private_key: str) -> service_account.Credentials:
    """A throwaway service account whose token_uri is the mock's."""
    info = {"type": "service_account", "project_id": PROJECT, "private_key_id": "mock-key-1",
            "private_key": private_key, "client_email": f"tester@{PROJECT}.iam.gserviceaccount.com",
            "client_id": "1234567890", "token_uri": f"{base}/token"}
    return service_account.Credentials.from_service_account_info(info, scopes=SCOPES)


def fresh_token(base: str, private_key: str) -> str:
    credentials = service_account_credentials(base, private_key)
    credentials.refresh(google.auth.transport.requests.Request())
    return credentials.token


@pytest.fixture(scope="module")
def token(mock, private_key) -> str:
    return fresh_token(mock["mock"], private_key)


def route(publisher: str, model: str, method: str, version: str = "v1") -> str:
    return f"/{version}/projects/{PROJECT}/locations/{LOCATION}/publishers/{publisher}/models/{model}:{method}"


def call(base: str, path: str, body: dict, token: str | None, headers: dict | None = None) -> httpx.Response:
    auth = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(base + path, json=body, headers={**auth, **(headers or {})}, timeout=10)


def issued(base: str) -> int:
    return httpx.get(f"{base}/_mock/tokens").json()["issued"]


def user(text: str) -> dict:
    return {"role": "user", "parts": [{"text": text}]}


def claude_body(text: str = ECHO, **extra) -> dict:
    return {"anthropic_version": "vertex-2023-10-16", "max_tokens": 200,
            "messages": [{"role": "user", "content": text}], **extra}


# --- the token endpoint ------------------------------------------------------------------------

def test_a_service_account_gets_its_token_from_the_mock(mock, private_key):
    before = issued(mock["mock"])
    credentials = service_account_credentials(mock["mock"], private_key)
    credentials.refresh(google.auth.transport.requests.Request())
    assert credentials.token.startswith("ya29.mock-") and issued(mock["mock"]) == before + 1
    lifetime = credentials.expiry - datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    assert 3500 < lifetime.total_seconds() <= 3600
    [entry] = [e for e in httpx.get(f"{mock['mock']}/_mock/requests").json() if e["path"] == "/token"][-1:]
    assert "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer" in entry["body"]


def _jwt(header: dict, claims: dict) -> str:
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
    return f"{part(header)}.{part(claims)}.c2lnbmF0dXJl"        # a signature the mock does not check


def test_the_token_endpoint_checks_the_assertion_is_well_formed(mock):
    now = int(time.time())
    good = {"iss": "tester@example.com", "scope": SCOPES[0], "aud": "https://oauth2.googleapis.com/token",
            "iat": now, "exp": now + 3600}

    def grant(assertion: str, grant_type: str = "urn:ietf:params:oauth:grant-type:jwt-bearer") -> httpx.Response:
        return httpx.post(f"{mock['mock']}/token", data={"grant_type": grant_type, "assertion": assertion})
    accepted = grant(_jwt({"alg": "RS256", "typ": "JWT"}, good)).json()
    assert accepted["access_token"].startswith("ya29.mock-")
    assert (accepted["expires_in"], accepted["token_type"]) == (3600, "Bearer")
    assert grant(_jwt({"alg": "RS256"}, good), "client_credentials").json()["error"] == "unsupported_grant_type"
    for assertion in ("only.two", _jwt({"alg": "HS256"}, good), _jwt({"alg": "RS256"}, {**good, "exp": now - 10}),
                      _jwt({"alg": "RS256"}, {k: v for k, v in good.items() if k != "iss"}),
                      _jwt({"alg": "RS256"}, {k: v for k, v in good.items() if k not in ("aud", "scope")}),
                      "bm90IGpzb24.e30.c2ln"):
        refused = grant(assertion)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant", assertion


# --- Gemini on Vertex ------------------------------------------------------------------------------

def test_gemini_on_vertex_through_the_genai_sdk(mock, private_key):
    client = genai.Client(vertexai=True, project=PROJECT, location=LOCATION,
                          credentials=service_account_credentials(mock["mock"], private_key),
                          http_options={"base_url": mock["mock"]})
    response = client.models.generate_content(model=GEMINI, contents=ECHO)
    assert response.text == ECHO and response.model_version == GEMINI
    assert response.candidates[0].index is None and response.create_time is not None     # Vertex's shape
    prompt = count_prompt([ECHO], 1)
    usage = response.usage_metadata
    assert (usage.prompt_token_count, usage.candidates_token_count, usage.traffic_type) == \
        (prompt, count_text(ECHO), "ON_DEMAND")
    assert "".join(chunk.text for chunk in client.models.generate_content_stream(model=GEMINI, contents=ECHO)) == ECHO
    assert client.models.count_tokens(model=GEMINI, contents=ECHO).total_tokens == prompt
    paths = {e["path"] for e in httpx.get(f"{mock['mock']}/_mock/requests").json()}
    assert paths & {route("google", GEMINI, "generateContent", version) for version in ("v1", "v1beta1")}


def test_gemini_on_vertex_answers_in_vertexs_shape(mock, token):
    body = {"contents": [user(ECHO)], "systemInstruction": {"parts": [{"text": "Be brief."}]}}
    answer = call(mock["mock"], route("google", GEMINI, "generateContent"), body, token).json()
    candidate = answer["candidates"][0]
    assert "index" not in candidate and candidate["avgLogprobs"] < 0 and candidate["finishReason"] == "STOP"
    assert answer["usageMetadata"]["candidatesTokensDetails"] == [{"modality": "TEXT", "tokenCount": count_text(ECHO)}]
    assert datetime.datetime.fromisoformat(answer["createTime"]).tzinfo is not None
    stream = call(mock["mock"], route("google", GEMINI, "streamGenerateContent") + "?alt=sse", body, token)
    assert stream.headers["content-type"] == "text/event-stream" and stream.content.endswith(b"}\r\n\r\n")
    frames = [orjson.loads(f[6:]) for f in stream.content.split(b"\r\n\r\n")[:-1]]
    assert "".join(f["candidates"][0]["content"]["parts"][0]["text"] for f in frames) == ECHO
    counted = call(mock["mock"], route("google", GEMINI, "countTokens"), body, token).json()
    assert counted["totalTokens"] == count_prompt(["Be brief.", ECHO], 1)
    assert counted["totalBillableCharacters"] == len("".join(("Be brief." + ECHO).split()))


# --- Claude on Vertex ------------------------------------------------------------------------------

def test_claude_on_vertex_through_anthropic_vertex(mock, private_key):
    client = anthropic.AnthropicVertex(region=LOCATION, project_id=PROJECT, base_url=f"{mock['mock']}/v1",
                                       credentials=service_account_credentials(mock["mock"], private_key),
                                       max_retries=0)
    raw = client.messages.with_raw_response.create(model=CLAUDE, max_tokens=200, extra_body=VERTEX_VERSION,
                                                   messages=[{"role": "user", "content": ECHO}])
    message = raw.parse()
    assert message.content[0].text == ECHO and message.model == "claude-haiku-4-5-20251001"   # the path's, as Vertex names it
    assert message.id.startswith("msg_vrtx_01") and raw.headers["request-id"].startswith("req_vrtx_011C")
    assert not any(name.startswith("anthropic-ratelimit-") for name in raw.headers)
    assert message.usage.input_tokens == count_prompt([ECHO], 1) and message.usage.output_tokens == count_text(ECHO)
    with client.messages.stream(model=CLAUDE, max_tokens=200, messages=[{"role": "user", "content": ECHO}],
                                extra_body=VERTEX_VERSION) as stream:
        pieces = list(stream.text_stream)
        streamed = stream.get_final_message()
    assert len(pieces) > 3 and "".join(pieces) == ECHO and streamed.id.startswith("msg_vrtx_01")
    counted = client.messages.count_tokens(model=CLAUDE, messages=[{"role": "user", "content": ECHO}],
                                           extra_body=VERTEX_VERSION)
    assert counted.input_tokens == count_prompt([ECHO], 1)
    sent = [e for e in httpx.get(f"{mock['mock']}/_mock/requests").json() if "publishers/anthropic" in e["path"]]
    assert {route("anthropic", CLAUDE, "rawPredict"), route("anthropic", CLAUDE, "streamRawPredict"),
            route("anthropic", "count-tokens", "rawPredict")} <= {e["path"] for e in sent}
    create = orjson.loads(next(e for e in sent if e["path"].endswith(":rawPredict") and "count" not in e["path"])["body"])
    assert create["anthropic_version"] == "vertex-2023-10-16" and "model" not in create


def test_claude_bodies_are_held_to_vertexs_rules(mock, token):
    path = route("anthropic", CLAUDE, "rawPredict")
    for body, message in ((claude_body(model="claude-haiku-4-5"), "model: Extra inputs are not permitted"),
                          ({k: v for k, v in claude_body().items() if k != "anthropic_version"},
                           "anthropic_version: Field required"),
                          (claude_body(anthropic_version="2023-06-01"),
                           "anthropic_version: Input should be 'vertex-2023-10-16'")):
        refused = call(mock["mock"], path, body, token)
        assert refused.status_code == 400
        assert refused.json()["error"] == {"type": "invalid_request_error", "message": message}


# --- tokens refused ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [route("google", GEMINI, "generateContent"), route("anthropic", CLAUDE, "rawPredict")])
def test_a_token_the_mock_did_not_issue_gets_vertexs_401(mock, path):
    body = claude_body() if "anthropic" in path else {"contents": [user("hi")]}
    for token, reason in (("ya29.made-up", "ACCESS_TOKEN_TYPE_UNSUPPORTED"), (None, "CREDENTIALS_MISSING")):
        refused = call(mock["mock"], path, body, token)
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        error = refused.json()["error"]
        assert (error["code"], error["status"]) == (401, "UNAUTHENTICATED")
        assert "Expected OAuth 2 access token" in error["message"] and error["details"][0]["reason"] == reason
    assert call(mock["mock"], path, body, None, {"x-goog-api-key": "a-gemini-key"}).status_code == 401   # no keys here


def test_the_sdk_with_a_made_up_token_gets_unauthenticated(mock):
    client = genai.Client(vertexai=True, project=PROJECT, location=LOCATION,
                          credentials=oauth_credentials.Credentials(token="ya29.made-up"),
                          http_options={"base_url": mock["mock"]})
    with pytest.raises(errors.ClientError) as raised:
        client.models.generate_content(model=GEMINI, contents="hi")
    assert (raised.value.code, raised.value.status) == (401, "UNAUTHENTICATED")


def test_an_expired_token_is_refused_and_a_refresh_gets_a_new_one(mock, private_key):
    base = mock["shortlived"]
    credentials = service_account_credentials(base, private_key)
    credentials.refresh(google.auth.transport.requests.Request())
    path, body = route("google", GEMINI, "generateContent"), {"contents": [user("hi")]}
    assert call(base, path, body, credentials.token).status_code == 200
    time.sleep(1.2)
    expired = call(base, path, body, credentials.token)
    assert expired.status_code == 401 and expired.json()["error"]["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"
    before = issued(base)
    client = anthropic.AnthropicVertex(region=LOCATION, project_id=PROJECT, base_url=f"{base}/v1",
                                       credentials=credentials, max_retries=0)
    for _ in range(2):          # a one-second token is always due for refresh: the SDK refreshes each call
        assert client.messages.create(model=CLAUDE, max_tokens=20, messages=[{"role": "user", "content": "hi"}],
                                      extra_body=VERTEX_VERSION).content[0].text == "hi"
    assert issued(base) == before + 2


# --- failures -------------------------------------------------------------------------------------------

def test_failures_come_in_each_routes_shape(mock, token):
    gemini = call(mock["mock"], route("google", GEMINI, "generateContent"), {"contents": [user("hi")]}, token,
                  {"x-mock-status": "429"}).json()["error"]
    assert gemini["status"] == "RESOURCE_EXHAUSTED" and "error-code-429" in gemini["message"]
    quota = call(mock["mock"], route("anthropic", CLAUDE, "rawPredict"), claude_body(), token,
                 {"x-mock-status": "429", "x-mock-retry-after": "2"})
    assert quota.status_code == 429 and quota.headers["retry-after"] == "2"
    assert quota.json()["error"]["status"] == "RESOURCE_EXHAUSTED"           # Vertex's quota, not Claude
    assert "base model: anthropic-claude-haiku-4-5" in quota.json()["error"]["message"]
    overloaded = call(mock["mock"], route("anthropic", CLAUDE, "rawPredict"), claude_body(), token,
                      {"x-mock-status": "529"})
    assert overloaded.status_code == 529 and overloaded.json()["error"]["type"] == "overloaded_error"
    missing = call(mock["mock"], route("meta", "llama", "rawPredict"), claude_body(), token)
    assert missing.status_code == 404 and missing.json()["error"]["status"] == "NOT_FOUND"


# --- golden: the recordings' shapes, and the recordings replayed -------------------------------------------

def _recorded(name: str) -> tuple[dict, dict]:
    interaction = yaml.safe_load((RECORDINGS / f"{name}.yaml").read_text())["interactions"][0]
    return interaction["request"], interaction["response"]


def test_answers_have_the_recorded_shapes(mock, token):
    request, recorded = _recorded("vertex-gemini-generate-content")
    answer = call(mock["mock"], route("google", GEMINI, "generateContent"), orjson.loads(request["body"]), token).json()
    expected = orjson.loads(recorded["body"])
    assert set(answer) == set(expected)
    assert set(answer["candidates"][0]) == set(expected["candidates"][0])
    assert set(answer["candidates"][0]["content"]["parts"][0]) == set(expected["candidates"][0]["content"]["parts"][0])
    assert set(answer["usageMetadata"]) == set(expected["usageMetadata"])
    request, recorded = _recorded("vertex-claude-rawpredict")
    raw = call(mock["mock"], route("anthropic", CLAUDE, "rawPredict"), orjson.loads(request["body"]), token)
    message, expected = raw.json(), orjson.loads(recorded["body"])
    assert list(message) == list(expected) and list(message["usage"]) == list(expected["usage"])
    assert (len(message["id"]), message["id"][:11]) == (len(expected["id"]), expected["id"][:11])
    recorded_id = recorded["headers"]["request-id"][0]
    assert (len(raw.headers["request-id"]), raw.headers["request-id"][:13]) == (len(recorded_id), recorded_id[:13])


@pytest.mark.parametrize("name, publisher, model", [("vertex-gemini-generate-content", "google", GEMINI),
                                                    ("vertex-claude-rawpredict", "anthropic", CLAUDE)])
def test_each_vertex_recording_replays_byte_for_byte(mock, token, name, publisher, model):
    request, recorded = _recorded(name)
    path = httpx.URL(request["url"]).raw_path.decode()
    response = httpx.post(mock["mock"] + path, content=request["body"].encode(), timeout=10,
                          headers={"authorization": f"Bearer {token}", "x-mock-replay": name})
    assert response.status_code == recorded["code"] and response.content == recorded["body"].encode()
    if publisher == "anthropic":
        assert response.headers["request-id"] == recorded["headers"]["request-id"][0]
