"""Callers identified by a token, through real Envoy: jwt_authn verifies it against a real
JWKS (served over HTTP by this test, fetched and cached by Envoy, or the quickstart's local
demo issuer); the claims map to team policies; every bad token is refused with a 401 in
the caller's dialect; keys keep working beside tokens and are never parsed as tokens."""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import httpx
import jwt
import openai
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from gateway_stack import GatewayStack, free_port, quickstart_config
from warm_start import run_extproc
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from extproc.yamltree import safe_load    # libyaml: the Envoy config in a tenth of the time

ISSUER = "https://idp.corp.example"
AUDIENCE = "llm-gateway"
CACHE_SECONDS = 2


class Jwks:
    """A JWKS endpoint, as an identity provider serves it; keys may be added while it runs."""

    def __init__(self) -> None:
        self.keys: list[dict] = []
        self.hits = 0
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                jwks.hits += 1
                body = json.dumps({"keys": jwks.keys}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, kid: str, private_key) -> None:
        if isinstance(private_key, rsa.RSAPrivateKey):
            jwk = json.loads(RSAAlgorithm.to_jwk(private_key.public_key()))
            jwk["alg"] = "RS256"
        else:
            jwk = json.loads(ECAlgorithm.to_jwk(private_key.public_key()))
            jwk["alg"] = "ES256"
        jwk.update({"kid": kid, "use": "sig"})
        self.keys.append(jwk)


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
LATER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
STRANGER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def token(key=RSA_KEY, kid: str = "rsa-1", alg: str = "RS256", **claims) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u-123", "profile": {"email": "ann@corp.example"},
               "team": "research", "iat": now, "nbf": now - 5, "exp": now + 600}
    payload.update(claims)
    for name in [n for n, v in payload.items() if v is None]:
        del payload[name]
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture(scope="module")
def jwks():
    served = Jwks()
    served.publish("rsa-1", RSA_KEY)
    served.publish("ec-1", EC_KEY)
    yield served
    served.server.shutdown()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, jwks):
    config = quickstart_config()
    identity = config["identity"]
    identity["jwt"]["providers"]["corp"] = {
        "issuer": ISSUER, "audiences": [AUDIENCE], "jwks_url": f"http://127.0.0.1:{jwks.port}/jwks.json",
        "cache_seconds": CACHE_SECONDS}
    identity["jwt"]["claims"] = {"user": ["profile.email", "email", "sub"], "team": "team", "groups": "groups"}
    identity["jwt"]["limit_claims"] = ["plan"]
    identity["teams"]["platform"] = {"models": ["gpt-4o"]}
    config["budgets"].append({"name": "support-team-tokens", "scope": "team", "match": "support",
                              "unit": "tokens", "limit": 60, "window": "hour"})
    config["rate_limits"] = [{"name": "free-plan", "scope": "claim:plan", "match": "free", "requests_per_minute": 2}]
    gateway = GatewayStack(tmp_path_factory.mktemp("tokens"), config, workers=2).start()
    yield gateway
    gateway.stop()


def chat(stack, bearer: str, model: str = "gpt-4o-mini", content: str = "hello") -> httpx.Response:
    return httpx.post(f"{stack.base_url}/chat/completions", timeout=30, headers={"authorization": f"Bearer {bearer}"},
                      json={"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": content}]})


def messages(stack, bearer: str) -> httpx.Response:
    return httpx.post(f"{stack.base_url}/messages", timeout=30,
                      headers={"authorization": f"Bearer {bearer}", "anthropic-version": "2023-06-01"},
                      json={"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})


def test_a_demo_token_from_extproc_token_names_its_user_and_team(stack):
    made = run_extproc(["token", "--user", "rita", "--team", "support"],
                       capture_output=True, text=True, timeout=60, check=True)
    demo = made.stdout.strip()
    assert demo.count(".") == 2 and "DEMO ONLY" in made.stderr
    client = openai.OpenAI(base_url=stack.base_url, api_key=demo, max_retries=0)
    reply = client.chat.completions.create(model="gpt-4o-mini", max_tokens=5,
                                           messages=[{"role": "user", "content": "token call"}])
    assert reply.choices[0].message.content == "token call"
    with pytest.raises(openai.PermissionDeniedError) as refused:     # support's allowlist, as bob's key
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert refused.value.code == "model_not_allowed"
    record = stack.wait_for_record(predicate=lambda r: r.get("user") == "rita" and r.get("status") == 200)
    assert record["team"] == "support" and record["key_id"].startswith("token:")    # issuer and subject's digest
    claude = anthropic.Anthropic(base_url=stack.base_url.removesuffix("/v1"), api_key="unused", max_retries=0,
                                 default_headers={"authorization": f"Bearer {demo}"})
    answer = claude.messages.create(model="gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": "hey"}])
    assert answer.content[0].text == "hey"


@pytest.mark.parametrize("key, kid, alg", [(RSA_KEY, "rsa-1", "RS256"), (EC_KEY, "ec-1", "ES256")])
def test_tokens_of_a_remote_jwks_are_verified_and_mapped(stack, key, kid, alg):
    good = token(key, kid, alg)
    answer = chat(stack, good, model="gpt-4o")
    assert answer.status_code == 200, answer.text
    record = stack.wait_for_record(answer.headers["x-request-id"])
    assert (record["user"], record["team"]) == ("ann@corp.example", "research")
    assert good not in stack.log_path.read_text()


def test_groups_pick_the_team_when_no_team_claim(stack):
    member = token(team=None, groups=["everyone", "platform"])
    assert chat(stack, member, model="gpt-4o").status_code == 200
    refused = chat(stack, member, model="gpt-4o-mini")               # platform may use gpt-4o only
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "model_not_allowed"


def _tampered() -> str:
    header, payload, signature = token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["team"] = "platform"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def _alg_none() -> str:
    return jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 600}, None,
                      algorithm="none")


BAD_TOKENS = {
    "expired": lambda: token(exp=int(time.time()) - 600, iat=int(time.time()) - 1200, nbf=int(time.time()) - 1200),
    "not yet valid": lambda: token(nbf=int(time.time()) + 600),
    "wrong audience": lambda: token(aud="another-service"),
    "wrong issuer": lambda: token(iss="https://evil.example"),
    "alg none": _alg_none,
    "tampered payload": _tampered,
    "unknown kid": lambda: token(STRANGER_KEY, "rsa-9"),
    "signed by another key, known kid": lambda: token(STRANGER_KEY, "rsa-1"),
}


UNTRUSTED = "no trusted identity provider issued it"
REFUSED_BECAUSE = {
    "expired": "Jwt is expired", "not yet valid": "Jwt not yet valid",
    "wrong audience": "Audiences in Jwt are not allowed", "wrong issuer": UNTRUSTED, "alg none": UNTRUSTED,
    "tampered payload": "Jwt verification fails", "signed by another key, known kid": "Jwt verification fails",
    "unknown kid": "Jwks doesn't have key to match kid or alg from Jwt",
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_a_bad_token_is_refused_with_the_dialects_401(stack, case):
    bad = BAD_TOKENS[case]()
    refused = chat(stack, bad)
    assert refused.status_code == 401, refused.text
    error = refused.json()["error"]
    assert error["message"] == f"The bearer token was refused: {REFUSED_BECAUSE[case]}."
    assert error["code"] == "invalid_api_key" and error["type"]
    assert bad not in refused.text
    anthropic_refused = messages(stack, bad)
    assert anthropic_refused.status_code == 401
    body = anthropic_refused.json()
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    assert stack.received() == [] or all(bad not in json.dumps(r) for r in stack.received())


NOT_JWTS = ["sk-wrong", "wrong-key-without-the-prefix", "not-a-key-nor.a.token", "a.b", "x"]


@pytest.mark.parametrize("credential", NOT_JWTS)
def test_a_credential_that_is_no_jwt_is_an_unknown_key_in_every_header(stack, credential):
    """Whatever header brings it, a credential that is not a JWT is refused as an unknown
    key in the caller's dialect: never with the identity provider's words ("Jwt is missing")."""
    base = stack.base_url.removesuffix("/v1")
    chat_body = {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    gemini_body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    attempts = [
        ("openai", f"{base}/v1/chat/completions", {"authorization": f"Bearer {credential}"}, chat_body),
        ("anthropic", f"{base}/v1/messages", {"x-api-key": credential, "anthropic-version": "2023-06-01"}, chat_body),
        ("openai", f"{base}/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21",
         {"api-key": credential}, chat_body),
        ("google", f"{base}/v1beta/models/gemini-2.5-flash:generateContent", {"x-goog-api-key": credential},
         gemini_body),
        ("google", f"{base}/v1beta/models/gemini-2.5-flash:generateContent?key={credential}", {}, gemini_body),
    ]
    for dialect, url, headers, body in attempts:
        refused = httpx.post(url, headers=headers, json=body, timeout=30)
        assert refused.status_code == 401, (url, refused.text)
        assert "jwt" not in refused.text.lower(), (url, refused.text)
        message = refused.json()["error"]["message"]          # where each dialect's shape has it
        assert "unknown API key" in message, (url, message)
        if dialect == "anthropic":
            assert refused.json()["error"]["type"] == "authentication_error"
        if dialect == "google":
            assert refused.json()["error"]["status"] == "UNAUTHENTICATED"
        if len(credential) > 3:
            assert credential not in refused.text


def test_a_key_published_later_in_the_jwks_is_picked_up(stack, jwks):
    later = token(LATER_KEY, "rsa-2")
    assert chat(stack, later).status_code == 401                      # not published yet
    jwks.publish("rsa-2", LATER_KEY)
    deadline = time.monotonic() + CACHE_SECONDS + 5
    while chat(stack, later).status_code != 200:
        assert time.monotonic() < deadline, "Envoy did not refetch the JWKS"
        time.sleep(0.2)


def test_team_budget_applies_to_token_callers(stack):
    support = token(team="support", profile={"email": "sam@corp.example"})
    answers = [chat(stack, support, content=f"budget {i}") for i in range(12)]
    statuses = [answer.status_code for answer in answers]
    assert 200 in statuses and 429 in statuses
    last = max(i for i, status in enumerate(statuses) if status == 429)
    # Refused, and refused again: the team's room does not come back within the hour.
    for refused in (answers[last], chat(stack, support, content=f"budget {last}")):
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "budget_exceeded" and "support-team-tokens" in refused.text


def test_a_rate_limit_scoped_by_a_claim(stack):
    free = token(plan="free", profile={"email": "fred@corp.example"})
    pro = token(plan="pro", profile={"email": "pat@corp.example"})
    if time.time() % 60 > 45:          # requests per minute count in the clock's minute: not across its end
        time.sleep(61 - time.time() % 60)
    assert [chat(stack, free).status_code for _ in range(3)] == [200, 200, 429]
    assert chat(stack, free).json()["error"]["code"] == "rate_limited"
    other_free = token(plan="free", profile={"email": "flo@corp.example"})          # the same counter: the plan's
    assert chat(stack, other_free).status_code == 429
    assert [chat(stack, pro).status_code for _ in range(4)] == [200] * 4


def test_keys_work_beside_tokens_and_are_never_handed_to_jwt_authn(stack):
    for _ in range(3):
        assert chat(stack, "sk-demo-alice", model="gpt-4o").status_code == 200
        assert chat(stack, token(), model="gpt-4o").status_code == 200
        refused = chat(stack, "sk-unknown-key-shaped")
        assert refused.status_code == 401 and "Missing or unknown API key" in refused.json()["error"]["message"]
    envoy = safe_load((stack.workdir / "envoy.yaml").read_text())
    hcm = envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    names = [f["name"] for f in hcm["http_filters"]]
    assert names.index("envoy.filters.http.jwt_authn") < names.index("envoy.filters.http.ext_proc")
    rules = next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.jwt_authn")["typed_config"]["rules"]
    # The first rule takes every key-shaped bearer value and requires nothing: jwt_authn never reads it.
    assert "requires" not in rules[0]
    assert rules[0]["match"]["headers"][0]["string_match"]["safe_regex"]["regex"] == r"^Bearer sk\-.*"


MCP_ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
MCP_INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}


def test_a_token_callers_mcp_session_is_theirs_alone(stack):
    """Sessions of token callers are bound to the token's issuer and subject: another
    person's token (same issuer, same team) cannot use them."""
    def post(bearer: str, body: dict, session: str | None = None) -> httpx.Response:
        headers = {**MCP_ACCEPT, "authorization": f"Bearer {bearer}"}
        if session:
            headers["mcp-session-id"] = session
        return httpx.post(f"http://127.0.0.1:{stack.port}/mcp/demo", json=body, headers=headers, timeout=30)

    ann = token(sub="u-ann", profile={"email": "ann@corp.example"})
    ben = token(sub="u-ben", profile={"email": "ben@corp.example"})
    started = post(ann, MCP_INIT)
    assert started.status_code == 200, started.text
    session = started.headers["mcp-session-id"]
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    assert post(ann, listing, session).status_code == 200
    stolen = post(ben, listing, session)
    assert stolen.status_code == 404 and stolen.json()["error"]["code"] == -32004
