"""The mock's OAuth 2.0 token endpoint, called as google-auth's service-account flow calls
Google's `token_uri`: POST /token with the form body
`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`.

The JWT must be well formed: three base64url parts, a header naming RS256, claims with
`iss`, `aud` or `scope`, and an `exp` still to come. Its signature is not checked (the
mock has no service-account keys to check it with). The answer is a `ya29.mock-...`
access token valid for the listener's `token-ttl` seconds (its `failure:` defaults, as
google-auth sends no custom header; x-mock-token-ttl for other clients; 3600 by default).
Each listener remembers the last 1000 tokens it issued with their expiry, for Vertex's
routes to check (vertex.py), and counts them: GET /_mock/tokens answers {"issued": N}.
The endpoint answers no other x-mock-* control: a listener failing every model call
still hands out tokens.

Microsoft Entra ID's token endpoint too, as Azure OpenAI's clients call it: POST
/{tenant}/oauth2/v2.0/token with the client-credentials grant (a client secret, or a
federated token as client assertion); its tokens are taken by the listener's Azure routes
as `Authorization: Bearer`, beside its API key.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time

import orjson
from aiohttp import web

from .listener import KEPT, Listener, option, record

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_TTL = 3600
# A token's reasons to be refused, as Vertex's 401 names them.
EXPIRED, UNKNOWN, MISSING = "ACCESS_TOKEN_EXPIRED", "ACCESS_TOKEN_TYPE_UNSUPPORTED", "CREDENTIALS_MISSING"


def _segment(text: str) -> dict | None:
    """A JWT segment's JSON object; None if it is not base64url of one."""
    try:
        value = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def assertion_problem(assertion: str, now: float) -> str | None:
    """What is wrong with a JWT bearer assertion, in Google's words; None if nothing."""
    parts = assertion.split(".")
    if len(parts) != 3 or not all(parts):
        return "Invalid JWT: the assertion must have three base64url parts."
    header, claims = _segment(parts[0]), _segment(parts[1])
    if header is None or claims is None:
        return "Invalid JWT: its header and claims must be base64url-encoded JSON objects."
    if header.get("alg") != "RS256":
        return "Invalid JWT: the signing algorithm must be RS256."
    if not claims.get("iss") or not (claims.get("aud") or claims.get("scope")):
        return "Invalid JWT: the claims must name the issuer (iss) and an audience (aud) or scope."
    expiry = claims.get("exp")
    if not isinstance(expiry, (int, float)) or isinstance(expiry, bool) or expiry <= now:
        return ("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
                "Check your iat and exp values in the JWT claim.")
    return None


def oauth_error(error: str, description: str) -> web.Response:
    return web.Response(status=400, body=orjson.dumps({"error": error, "error_description": description}),
                        content_type="application/json")


def entra_error(status: int, error: str, code: int, description: str) -> web.Response:
    """An error as Entra ID's token endpoint writes it."""
    return web.Response(status=status, content_type="application/json", body=orjson.dumps(
        {"error": error, "error_description": f"AADSTS{code}: {description}", "error_codes": [code],
         "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
         "trace_id": secrets.token_hex(16), "correlation_id": secrets.token_hex(16)}))


class TokenEndpoint:
    """One listener's token endpoint and the access tokens it issued."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.expiry: dict[str, float] = {}      # token -> when it expires (time.time())
        self.issued = 0

    def add_to(self, app: web.Application) -> None:
        app.router.add_post("/token", self.token)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self.entra_token)
        app.router.add_get("/_mock/tokens", self.counts)

    def _issue(self, request: web.Request, prefix: str) -> tuple[str, int]:
        ttl = option(self.listener, request, "token-ttl") or ""
        lifetime = int(ttl) if ttl.isascii() and ttl.isdigit() else DEFAULT_TTL
        token = prefix + secrets.token_urlsafe(32)
        self.expiry[token] = time.time() + lifetime
        while len(self.expiry) > KEPT:          # the oldest go first (dicts keep their order)
            del self.expiry[next(iter(self.expiry))]
        self.issued += 1
        return token, lifetime

    async def entra_token(self, request: web.Request) -> web.Response:
        """Microsoft Entra ID's v2.0 token endpoint, client-credentials grant: the client
        secret must be the listener's `entra_client_secret` (any, when it has none), or a
        well-formed federated JWT stands in for it; the scope must be a resource's `/.default`."""
        raw = await request.read()
        record(self.listener, request, raw)
        form = await request.post() if request.content_type == "application/x-www-form-urlencoded" else {}
        if str(form.get("grant_type", "")) != "client_credentials":
            return entra_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        if not form.get("client_id"):
            return entra_error(400, "invalid_request", 900144, "The request body must contain: 'client_id'.")
        scope = str(form.get("scope", ""))
        if not scope.endswith("/.default"):
            return entra_error(400, "invalid_scope", 1002012, "The provided value for scope is not valid: "
                                                              "client credentials flows need a resource's /.default.")
        expected = self.listener.entra.get("client_secret")
        if "client_assertion" in form:
            if assertion_problem(str(form["client_assertion"]), time.time()) is not None:
                return entra_error(401, "invalid_client", 50027, "Invalid JWT token: the client assertion is malformed.")
        elif not form.get("client_secret") or (expected and form["client_secret"] != expected):
            return entra_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
        token, lifetime = self._issue(request, "eyJ0eXAiOiJKV1QiLCJtb2NrIjoiZW50cmEifQ.mock-")
        return web.Response(body=orjson.dumps({"token_type": "Bearer", "expires_in": lifetime,
                                               "ext_expires_in": lifetime, "access_token": token}),
                            content_type="application/json")

    def refusal(self, request: web.Request) -> str | None:
        """Why the request's `Authorization: Bearer` token is refused (MISSING, UNKNOWN,
        EXPIRED); None for one this endpoint issued that is still valid."""
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            return MISSING
        expiry = self.expiry.get(auth[7:].strip())
        if expiry is None:
            return UNKNOWN
        return EXPIRED if expiry <= time.time() else None

    async def token(self, request: web.Request) -> web.Response:
        raw = await request.read()
        record(self.listener, request, raw)
        form = await request.post() if request.content_type == "application/x-www-form-urlencoded" else {}
        grant = str(form.get("grant_type", ""))
        if grant != JWT_BEARER:
            return oauth_error("unsupported_grant_type", f"Invalid grant_type: {grant}")
        problem = assertion_problem(str(form.get("assertion", "")), time.time())
        if problem:
            return oauth_error("invalid_grant", problem)
        token, lifetime = self._issue(request, "ya29.mock-")
        return web.Response(body=orjson.dumps({"access_token": token, "expires_in": lifetime,
                                               "token_type": "Bearer"}),
                            content_type="application/json")

    async def counts(self, request: web.Request) -> web.Response:
        return web.json_response({"issued": self.issued})
