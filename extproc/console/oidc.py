"""Sign-in to the console with the company's identity provider: OpenID Connect's
authorization code flow with PKCE (S256), against an issuer of `identity.jwt.providers`
(the one the gateway already trusts for callers' tokens: its issuer and its keys).

  /login/oidc      a state, a nonce and a code verifier, sealed in a short-lived cookie
                   (SameSite=Lax: it must come back with the provider's redirect); then
                   off to the provider's authorization endpoint
  /login/callback  the state checked, the code exchanged (with the verifier) at the token
                   endpoint, the ID token verified (signature by the issuer's keys, issuer,
                   audience = the client id, expiry, nonce), the role read from a claim

The endpoints come from the config, else from the issuer's discovery document
(`<issuer>/.well-known/openid-configuration`), read once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import jwt

from ..config.console import ROLES, ConsoleOidc
from .auth import Sessions

STATE_COOKIE = "llmgw_console_oidc"
STATE_SECONDS = 600
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
TIMEOUT = 10.0


class SignInProblem(Exception):
    """Why a sign-in through the identity provider did not happen, for the person signing in."""


class OidcSignIn:
    def __init__(self, settings: ConsoleOidc, sessions: Sessions) -> None:
        self.settings = settings
        self._sessions = sessions
        self._endpoints: dict | None = None
        self._jwks_client = (jwt.PyJWKClient(settings.provider.jwks_url, lifespan=settings.provider.cache_seconds)
                             if settings.provider.jwks_url else None)
        self._lock = threading.Lock()

    def start(self) -> tuple[str, str]:
        """Where to send the browser, and the sealed state cookie's value."""
        state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        challenge = _b64(hashlib.sha256(verifier.encode()).digest())
        query = {"response_type": "code", "client_id": self.settings.client_id,
                 "redirect_uri": self.settings.redirect_url, "scope": " ".join(self.settings.scopes),
                 "state": state, "nonce": nonce, "code_challenge": challenge, "code_challenge_method": "S256"}
        sealed = self._sessions.seal("oidc", {"s": state, "n": nonce, "v": verifier, "e": time.time() + STATE_SECONDS})
        endpoint = self._endpoint("authorization_endpoint")
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urllib.parse.urlencode(query)}", sealed

    def finish(self, query: dict[str, list[str]], sealed: str | None) -> tuple[str, str]:
        """(who, role) of a sign-in the provider sent back, or SignInProblem."""
        kept = self._sessions.unseal("oidc", sealed)
        if kept is None or kept.get("e", 0) < time.time():
            raise SignInProblem("The sign-in took too long or did not start here; sign in again.")
        if (query.get("error") or [""])[0]:
            raise SignInProblem(f"The identity provider refused the sign-in ({(query['error'][0])[:64]}).")
        state, code = (query.get("state") or [""])[0], (query.get("code") or [""])[0]
        if not code or not secrets.compare_digest(state.encode(), str(kept.get("s", "")).encode()):
            raise SignInProblem("The sign-in's state does not match; sign in again.")
        claims = self._verified(self._id_token(code, str(kept["v"])), str(kept["n"]))
        who = next((str(value) for path in self.settings.user_claims
                    if (value := _claim(claims, path)) not in (None, "")), "")
        role = self._role(claims)
        if role is None:
            raise SignInProblem(f"{who or 'This account'} has no console role (claim {self.settings.role_claim!r}).")
        return who or "unknown", role

    # --- the provider ---------------------------------------------------------------

    def _endpoint(self, name: str) -> str:
        configured = getattr(self.settings, name)
        if configured:
            return configured
        with self._lock:
            if self._endpoints is None:
                url = self.settings.provider.issuer.rstrip("/") + "/.well-known/openid-configuration"
                try:
                    with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:
                        self._endpoints = json.loads(answer.read())
                except (OSError, ValueError) as error:
                    raise SignInProblem(f"The identity provider's discovery document could not be read "
                                        f"({type(error).__name__}).") from None
        found = self._endpoints.get(name)
        if not isinstance(found, str) or not found.startswith(("https://", "http://")):
            raise SignInProblem(f"The identity provider names no {name}.")
        return found

    def _id_token(self, code: str, verifier: str) -> str:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.settings.redirect_url,
                "client_id": self.settings.client_id, "code_verifier": verifier}
        if self.settings.client_secret is not None:
            form["client_secret"] = self.settings.client_secret.reveal()
        request = urllib.request.Request(self._endpoint("token_endpoint"), data=urllib.parse.urlencode(form).encode(),
                                         headers={"content-type": "application/x-www-form-urlencoded",
                                                  "accept": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
                token = json.loads(answer.read()).get("id_token")
        except urllib.error.HTTPError as error:
            raise SignInProblem(f"The identity provider refused the code ({error.code}).") from None
        except (OSError, ValueError, AttributeError) as error:
            raise SignInProblem(f"The identity provider's token endpoint failed ({type(error).__name__}).") from None
        if not isinstance(token, str):
            raise SignInProblem("The identity provider sent no ID token.")
        return token

    def _verified(self, token: str, nonce: str) -> dict:
        provider = self.settings.provider
        try:
            if self._jwks_client is not None:
                key = self._jwks_client.get_signing_key_from_jwt(token).key
            else:
                with open(provider.jwks_file, encoding="utf-8") as handle:
                    keys = jwt.PyJWKSet.from_json(handle.read())
                kid = jwt.get_unverified_header(token).get("kid")
                key = next((k.key for k in keys.keys if kid is None or k.key_id == kid), None)
                if key is None:
                    raise SignInProblem("The ID token is signed by a key the issuer does not publish.")
            claims = jwt.decode(token, key, algorithms=ALGORITHMS, audience=self.settings.client_id,
                                issuer=provider.issuer, leeway=provider.clock_skew_seconds,
                                options={"require": ["exp", "iat", "iss", "aud"]})
        except SignInProblem:
            raise
        except (jwt.PyJWTError, OSError, ValueError) as error:
            raise SignInProblem(f"The ID token was not accepted ({type(error).__name__}).") from None
        if not secrets.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
            raise SignInProblem("The ID token is not the one this sign-in asked for (nonce).")
        return claims

    def _role(self, claims: dict) -> str | None:
        value = _claim(claims, self.settings.role_claim)
        held = {str(v) for v in value} if isinstance(value, list) else {str(value)} if value is not None else set()
        granted = dict(self.settings.roles)
        for role in reversed(ROLES):                 # the highest role any value gives
            if held & granted.get(role, frozenset()):
                return role
        return None


def _claim(claims: dict, path: str):
    value = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
