"""Azure OpenAI with Microsoft Entra ID, through real Envoy: the quickstart's `azure`
provider has no key, only an app registration; the worker mints its tokens from the
mock's Entra token endpoint (client-credentials grant, Azure OpenAI's scope) off the
request path, and each attempt carries one as Bearer to the deployment's path. The mint
itself, with a client secret or a federated token file, and its refusals, are tested
against the same endpoint."""

from __future__ import annotations

import json
import urllib.parse

import anthropic
import httpx
import pytest
from openai import OpenAI

from extproc.credentials.entra import EntraError, _mint
from gateway_stack import check_provider_change

AZURE = "azure/gpt-4o-mini"


def token_url(gateway) -> str:
    return f"{gateway.mock_url('mock-azure')}/demo-tenant/oauth2/v2.0/token"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_call_reaches_azure_with_an_entra_token(gateway, stream):
    client = OpenAI(base_url=gateway.base_url, api_key="sk-demo-alice", max_retries=0)
    gateway.clear_received()
    messages = [{"role": "user", "content": "Say grebe"}]
    if stream:
        chunks = client.chat.completions.create(model=AZURE, messages=messages, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = client.chat.completions.create(model=AZURE, messages=messages).choices[0].message.content
    assert text == "Say grebe"
    [sent] = [r for r in gateway.received("mock-azure") if r["path"].startswith("/openai/deployments/")]
    assert sent["path"] == "/openai/deployments/gpt-4o-mini/chat/completions"
    assert sent["headers"]["authorization"].startswith("Bearer eyJ0eXAiOiJKV1Qi")
    assert "api-key" not in sent["headers"] and "sk-demo-alice" not in json.dumps(sent)
    record = gateway.wait_for_record(predicate=lambda r: r["model"] == AZURE and r["stream"] is stream)
    assert record["status"] == 200 and record["backend"] == "azure" and record["output_tokens"] > 0


def test_tokens_are_minted_off_the_request_path(gateway):
    client = OpenAI(base_url=gateway.base_url, api_key="sk-demo-alice", max_retries=0)
    issued = lambda: httpx.get(f"{gateway.mock_url('mock-azure')}/_mock/tokens").json()["issued"]   # noqa: E731
    before = issued()
    assert before >= 1                            # each worker minted before it served
    for text in ("one", "two", "three"):
        client.chat.completions.create(model=AZURE, messages=[{"role": "user", "content": text}])
    assert issued() == before


def test_an_anthropic_caller_reaches_azure_translated(gateway):
    client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{gateway.port}", api_key="sk-demo-alice", max_retries=0)
    answer = client.messages.create(model=AZURE, max_tokens=50, messages=[{"role": "user", "content": "Say teal"}])
    assert answer.content[0].text == "Say teal"


def test_a_client_secret_mints_a_token_the_azure_routes_take(gateway):
    gateway.clear_received()
    token, lifetime = _mint(token_url(gateway), "demo-gateway-app", lambda: "mock-entra-demo-secret", "")
    assert token.startswith("eyJ0eXAiOiJKV1Qi") and lifetime > 60
    [sent] = gateway.received("mock-azure")
    form = urllib.parse.parse_qs(sent["body"])
    assert form["grant_type"] == ["client_credentials"] and form["client_id"] == ["demo-gateway-app"]
    assert form["scope"] == ["https://cognitiveservices.azure.com/.default"]
    answer = httpx.post(f"{gateway.mock_url('mock-azure')}/openai/deployments/gpt-4o-mini/chat/completions",
                        params={"api-version": "2024-10-21"}, headers={"authorization": f"Bearer {token}"},
                        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 200
    refused = httpx.post(f"{gateway.mock_url('mock-azure')}/openai/deployments/gpt-4o-mini/chat/completions",
                         params={"api-version": "2024-10-21"}, headers={"authorization": "Bearer made-up"},
                         json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert refused.status_code == 401


def test_a_federated_token_file_is_read_at_each_mint(gateway, tmp_path):
    path = tmp_path / "azure-identity-token"
    path.write_text("not-a-jwt")
    with pytest.raises(EntraError, match=r"401 \(invalid_client AADSTS50027\)"):
        _mint(token_url(gateway), "demo-gateway-app", None, str(path))
    header, claims = ('{"alg":"RS256","typ":"JWT"}', '{"iss":"https://oidc.example","aud":"api://AzureADTokenExchange",'
                                                     '"sub":"system:serviceaccount:gw:gw","exp":4102444800}')
    b64 = lambda text: __import__("base64").urlsafe_b64encode(text.encode()).decode().rstrip("=")   # noqa: E731
    path.write_text(f"{b64(header)}.{b64(claims)}.c2lnbmF0dXJl\n")          # rotated by the kubelet
    token, _ = _mint(token_url(gateway), "demo-gateway-app", None, str(path))
    assert token.startswith("eyJ0eXAiOiJKV1Qi")


def test_a_wrong_secret_is_named_by_entra_s_code_never_quoted(gateway):
    with pytest.raises(EntraError) as raised:
        _mint(token_url(gateway), "demo-gateway-app", lambda: "wrong-secret-value", "")
    assert "AADSTS7000215" in str(raised.value) and "wrong-secret-value" not in str(raised.value)


@pytest.mark.parametrize("change, message", [
    ({"auth": {"entra": {"client_id": "app", "client_secret": {"value": "s"}}}}, "tenant_id: is required"),
    ({"auth": {"entra": {"tenant_id": "t", "client_id": "app"}}}, "names one of `client_secret`"),
    ({"auth": {"entra": {"tenant_id": "t", "client_id": "app", "client_secret": {"value": "s"},
                         "federated_token_file": "/var/run/token"}}}, "names one of `client_secret`"),
    ({"api_key": {"value": "k"}}, "has no API key"),
])
def test_check_names_what_is_wrong_with_an_entra_provider(tmp_path, change, message):
    assert message in check_provider_change(tmp_path, "azure", change)
