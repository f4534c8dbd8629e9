"""Responses API item references, through real Envoy: an input item that stands for a
stored item by its id alone (`item_reference`, or a typeless `{"id": ...}`) would have
the provider read that item into the new response's context. Only the key whose
response made the item may name it; another key's item, or one the gateway cannot
attribute, is 404 naming where it is in `input`."""

from __future__ import annotations

import json

import httpx
import pytest
from gateway_stack import GatewayStack


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """The quickstart, on one worker of its own."""
    stack = GatewayStack(tmp_path_factory.mktemp("item-references")).start()
    yield stack
    stack.stop()


def _responses(stack, key: str, body: dict) -> httpx.Response:
    return httpx.post(f"{stack.base_url}/responses", json={"model": "gpt-4o-mini", **body}, timeout=30,
                      headers={"authorization": f"Bearer {key}"})


@pytest.fixture(scope="module")
def alices_item(gateway) -> str:
    made = _responses(gateway, "sk-demo-alice", {"input": "my secret plan is ready"})
    assert made.status_code == 200, made.text
    ids = [item["id"] for item in made.json()["output"] if item.get("id")]
    assert ids, made.text
    return ids[0]


def _received_count(stack) -> int:
    return len(stack.received("mock"))


@pytest.mark.parametrize("reference", [
    lambda item: {"type": "item_reference", "id": item},
    lambda item: {"id": item},                                  # the API takes a typeless one as a reference
], ids=["item_reference", "typeless"])
def test_another_keys_item_is_not_found(gateway, alices_item, reference):
    before = _received_count(gateway)
    refused = _responses(gateway, "sk-demo-bob", {"input": [
        {"role": "user", "content": "what did she say?"}, reference(alices_item)]})
    assert refused.status_code == 404, refused.text
    error = refused.json()["error"]
    assert error["code"] == "item_not_found" and error["type"] == "invalid_request_error"
    assert f"'{alices_item}'" in error["message"] and "input[1]" in error["message"]
    assert _received_count(gateway) == before                 # the provider was not asked


def test_the_owner_may_reference_its_items(gateway, alices_item):
    followed = _responses(gateway, "sk-demo-alice", {"input": [
        {"type": "item_reference", "id": alices_item}, {"role": "user", "content": "and then?"}]})
    assert followed.status_code == 200, followed.text
    sent = [r for r in gateway.received("mock") if r["headers"].get("x-request-id") == followed.headers["x-request-id"]]
    assert sent and json.loads(sent[-1]["body"])["input"][0] == {"type": "item_reference", "id": alices_item}


def test_an_item_the_gateway_never_saw_is_not_found(gateway):
    refused = _responses(gateway, "sk-demo-alice", {"input": [{"type": "item_reference", "id": "msg_never_made_here"}]})
    assert refused.status_code == 404, refused.text
    assert "msg_never_made_here" in refused.json()["error"]["message"]


def test_a_reference_without_a_string_id_is_a_400(gateway):
    refused = _responses(gateway, "sk-demo-alice", {"input": [{"type": "item_reference", "id": 7}]})
    assert refused.status_code == 400, refused.text
    assert "input[0].id" in refused.json()["error"]["message"]


def test_items_with_their_own_content_are_not_references(gateway):
    """An earlier answer's message sent back whole, with its id, is the caller's own text."""
    sent_back = _responses(gateway, "sk-demo-bob", {"input": [
        {"type": "message", "id": "msg_from_elsewhere", "role": "assistant",
         "content": [{"type": "output_text", "text": "hello"}]},
        {"role": "user", "content": "go on"}]})
    assert sent_back.status_code == 200, sent_back.text
