"""Provider types through real Envoy: Azure OpenAI's path form and credentials (api-key,
or an Entra ID token as Bearer), OpenAI-compatible servers under another base path, and
credentials read from files, picked up when the file is rotated (a mounted Secret)."""

from __future__ import annotations

import time

import httpx
import pytest
from gateway_stack import GatewayStack, quickstart_config

ALICE = {"authorization": "Bearer sk-demo-alice"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("providers")
    secret = folder / "rotating-key"
    secret.write_text("not-yet-the-right-key\n")
    config = quickstart_config()
    config["providers"].update({
        "azure": {"type": "azure", "cluster": "mock", "api_version": "2024-10-21",
                  "api_key": {"value": "mock-provider-key"}},
        "azure-entra": {"type": "azure", "cluster": "mock", "api_version": "2024-12-01-preview", "auth": "bearer",
                        "api_key": {"value": "mock-provider-key"}},
        "rotating": {"cluster": "mock", "api_key": {"file": str(secret)}},
    })
    config["models"].update({
        "azure-4o": {"backends": [{"provider": "azure", "model": "gpt-4o-deploy"}],
                     "price": {"input": 2.5, "output": 10}},
        "azure-entra-4o": {"backends": [{"provider": "azure-entra", "model": "gpt-4o-deploy"}],
                           "price": {"input": 2.5, "output": 10}},
        "azure-embed": {"backends": [{"provider": "azure", "model": "embed-deploy"}], "price": {"input": 0.02}},
        "rotating-mini": {"backends": [{"provider": "rotating", "model": "gpt-4o-mini"}]},
    })
    stack = GatewayStack(folder, config).start()
    stack.secret = secret
    yield stack
    stack.stop()


def _last(stack) -> dict:
    return stack.received()[-1]


@pytest.mark.parametrize("model,auth", [
    ("azure-4o", {"api-key": "mock-provider-key"}),
    ("azure-entra-4o", {"authorization": "Bearer mock-provider-key"}),
], ids=["api-key", "entra-id-bearer"])
def test_azure_gets_its_deployment_path_api_version_and_credential(stack, model, auth):
    stack.clear_received()
    response = httpx.post(f"{stack.base_url}/chat/completions", headers=ALICE, timeout=30,
                          json={"model": model, "messages": [{"role": "user", "content": "hi azure"}]})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "hi azure"
    sent = _last(stack)
    assert sent["path"] == "/openai/deployments/gpt-4o-deploy/chat/completions"
    assert set(sent["query"]) == {"api-version"}
    for name, value in auth.items():
        assert sent["headers"][name] == value
    other = "authorization" if "api-key" in auth else "api-key"
    assert other not in sent["headers"]


def test_azure_embeddings_and_a_stream(stack):
    stack.clear_received()
    embedded = httpx.post(f"{stack.base_url}/embeddings", headers=ALICE, timeout=30,
                          json={"model": "azure-embed", "input": ["a", "b"]})
    assert embedded.status_code == 200 and len(embedded.json()["data"]) == 2
    assert _last(stack)["path"] == "/openai/deployments/embed-deploy/embeddings"
    with httpx.stream("POST", f"{stack.base_url}/chat/completions", headers=ALICE, timeout=30,
                      json={"model": "azure-4o", "stream": True,
                            "messages": [{"role": "user", "content": "stream it"}]}) as response:
        body = b"".join(response.iter_raw())
    assert response.status_code == 200 and body.rstrip().endswith(b"data: [DONE]")
    assert _last(stack)["path"] == "/openai/deployments/gpt-4o-deploy/chat/completions"


def test_a_rotated_credential_file_is_used_without_a_config_change(stack):
    """The provider's key lives in a file (a mounted Kubernetes Secret): when it changes,
    the workers read it again within a couple of seconds, as they do the config."""
    body = {"model": "rotating-mini", "messages": [{"role": "user", "content": "rotate"}]}
    before = httpx.post(f"{stack.base_url}/chat/completions", headers=ALICE, json=body, timeout=30)
    assert before.status_code == 401                     # the provider refuses the old key
    stack.secret.write_text("mock-provider-key\n")
    deadline = time.monotonic() + 10
    while True:
        after = httpx.post(f"{stack.base_url}/chat/completions", headers=ALICE, json=body, timeout=30)
        if after.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert after.status_code == 200, after.text
    assert _last(stack)["headers"]["authorization"] == "Bearer mock-provider-key"
    assert "not-yet-the-right-key" not in stack.log_path.read_text()
