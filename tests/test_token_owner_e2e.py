"""A token caller is its issuer and subject, through real Envoy: two trusted identity
providers issue tokens naming the same e-mail to two different subjects. They do not
share stored responses, a `scope: key` budget nor `scope: key` cache entries; the e-mail stays the caller's name on
the log line. A token naming no subject is refused."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from gateway_stack import GatewayStack, quickstart_config
from test_identity_tokens_e2e import Jwks

AUDIENCE = "llm-gateway"
EMAIL = "ann@corp.example"
ISSUERS = {"corp": ("https://idp.corp.example", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
           "partner": ("https://idp.partner.example", rsa.generate_private_key(public_exponent=65537, key_size=2048))}
BUDGET = 400        # tokens per key per hour: a few calls of ~100 tokens each


def token(issuer: str, subject: str | None, **claims) -> str:
    url, key = ISSUERS[issuer]
    now = int(time.time())
    payload = {"iss": url, "aud": AUDIENCE, "sub": subject, "email": EMAIL, "team": "research",
               "iat": now, "nbf": now - 5, "exp": now + 600, **claims}
    if subject is None:
        del payload["sub"]
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": f"{issuer}-1"})


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    served = {}
    config = quickstart_config(response_cache=True)
    # A caller's own cache entries, for a model no other test here calls (their repeated calls stay misses).
    config["cache"] = {"rules": [{"models": ["gpt-4o"], "scope": "key", "ttl_s": 600}]}
    providers = config["identity"]["jwt"]["providers"]
    for name, (url, key) in ISSUERS.items():
        served[name] = Jwks()
        served[name].publish(f"{name}-1", key)
        providers[name] = {"issuer": url, "audiences": [AUDIENCE],
                           "jwks_url": f"http://127.0.0.1:{served[name].port}/jwks.json"}
    config["identity"]["jwt"]["claims"] = {"user": ["email", "sub"], "team": "team"}
    config["budgets"].append({"name": "per-caller-tokens", "scope": "key", "unit": "tokens",
                              "limit": BUDGET, "window": "hour"})
    gateway = GatewayStack(tmp_path_factory.mktemp("token-owner"), config).start()
    yield gateway
    gateway.stop()
    for jwks in served.values():
        jwks.server.shutdown()


def _post(stack, bearer: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{stack.base_url}{path}", json=body, timeout=30, headers={"authorization": f"Bearer {bearer}"})


# Made when a test runs (a token made at collection would have expired by then).
def ann() -> str:
    return token("corp", "u-ann")


def impostor() -> str:                          # the same e-mail, another person
    return token("partner", "p-4711")
RESPONSE = {"model": "gpt-4o-mini", "max_output_tokens": 16}


def test_the_same_email_from_another_issuer_does_not_continue_a_stored_response(stack):
    first = _post(stack, ann(), "/responses", {**RESPONSE, "input": "my secret plan"})
    assert first.status_code == 200, first.text
    response_id = first.json()["id"]
    refused = _post(stack, impostor(), "/responses", {**RESPONSE, "input": "what did I say?",
                                                    "previous_response_id": response_id})
    assert refused.status_code == 404, refused.text
    assert refused.json()["error"]["code"] == "response_not_found"
    fetched = httpx.get(f"{stack.base_url}/responses/{response_id}", timeout=30,
                        headers={"authorization": f"Bearer {impostor()}"})
    assert fetched.status_code == 404, fetched.text
    followed = _post(stack, ann(), "/responses", {**RESPONSE, "input": "and then?", "previous_response_id": response_id})
    assert followed.status_code == 200, followed.text


def test_the_callers_name_is_the_email_and_their_ids_differ(stack):
    mine = _post(stack, ann(), "/chat/completions", {"model": "gpt-4o-mini", "max_tokens": 5,
                                                   "messages": [{"role": "user", "content": "hi"}]})
    other = _post(stack, impostor(), "/chat/completions", {"model": "gpt-4o-mini", "max_tokens": 5,
                                                         "messages": [{"role": "user", "content": "hi"}]})
    records = [stack.wait_for_record(answer.headers["x-request-id"]) for answer in (mine, other)]
    assert [r["user"] for r in records] == [EMAIL, EMAIL]
    ids = [r["key_id"] for r in records]
    assert ids[0] != ids[1] and all(i.startswith("token:") and EMAIL not in i for i in ids), ids
    again = _post(stack, token("corp", "u-ann"), "/chat/completions", {
        "model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    assert stack.wait_for_record(again.headers["x-request-id"])["key_id"] == ids[0]     # stable


def test_a_scope_key_budget_is_each_subjects_own(stack):
    prompt = "count these words please " * 12
    body = {"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": prompt}]}
    spender = token("corp", "u-spender")
    for _ in range(30):
        answer = _post(stack, spender, "/chat/completions", body)
        if answer.status_code == 429:
            break
        assert answer.status_code == 200, answer.text
    assert answer.status_code == 429, "the per-key budget never ran out"
    assert answer.json()["error"]["code"] == "budget_exceeded", answer.text
    same_email = _post(stack, token("partner", "p-spender"), "/chat/completions", body)
    assert same_email.status_code == 200, same_email.text


def test_a_token_without_a_subject_is_refused(stack):
    refused = _post(stack, token("corp", None), "/chat/completions", {
        "model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    assert refused.status_code == 401, refused.text
    assert "sub" in refused.json()["error"]["message"]


def test_a_scope_key_cache_entry_is_each_subjects_own(stack):
    body = {"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": f"cached for one {time.time()}"}]}
    first = _post(stack, ann(), "/chat/completions", body)
    assert first.status_code == 200 and first.headers.get("x-gateway-cache") == "miss", first.text
    same_email = _post(stack, impostor(), "/chat/completions", body)
    assert same_email.status_code == 200, same_email.text
    assert same_email.headers.get("x-gateway-cache") == "miss"          # not ann's answer
    again = _post(stack, token("corp", "u-ann"), "/chat/completions", body)
    assert again.headers.get("x-gateway-cache") == "hit"                # ann's own entry, under a new token
