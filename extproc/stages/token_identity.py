"""Callers identified by a token from the company's identity provider.

Envoy's jwt_authn filter has verified the token (config/envoy_identity.py) and forwards its
payload as metadata; here the claims become a caller as a key is one: user, team (a team
claim, else the first of the groups claim that has a policy, else the default team), the
team's model allowlist (`identity.teams`, else its "*" entry; a team with neither is
refused, 403 team_not_allowed), and the claims that limits may be scoped by. A user or
team claim that is there but not a string (a list, an object, true) is refused with a 401
naming it: a token's team is one name (several go in the groups claim).
A token Envoy refused leaves its failure instead, which becomes the caller's 401.

Who the caller is, for what is kept per caller (stored responses, `scope: key` budgets,
rate limits and cache entries, MCP sessions), is the token's issuer and subject: an
identity provider never gives one subject to two people, while a user claim (an e-mail,
a name) may be unverified, reassigned, or given by two trusted issuers to two people.
The caller's id is a digest of both (`token:<32 hex digits>`); the user claim is its
display name (`user` on the log line, the console, `extproc usage --by user`, `scope:
user` budgets and MCP `users:` rules). A token without a subject is refused.
"""

from __future__ import annotations

import base64
import hashlib

from ..config.filter_config import VirtualKey
from ..config.identity import CATCH_ALL_TEAM, JWT_FAILURE_KEY, JWT_NAMESPACE, JWT_PAYLOAD_KEY, IdentitySettings
from ..pipeline.errors import GatewayError

MAX_CLAIM_CHARS = 256


def _verified(metadata: dict | None) -> dict | None:
    """jwt_authn's Struct (payload and/or failure) as a dict, or None."""
    return metadata.get(JWT_NAMESPACE) if metadata is not None else None


def _value(payload: dict, path: str):
    """A claim's value by path ("email", "realm_access.team"), as sent (a Struct's value:
    float, str, bool, dict, list): None when absent or null."""
    value = None
    fields: dict | None = payload
    for part in path.split("."):
        if fields is None:
            return None
        value = fields.get(part)
        if value is None:
            return None
        fields = value if type(value) is dict else None
    return value


def _claim(payload: dict, path: str):
    """A claim by path: str, list of str, or None (absent, or an object)."""
    value = _value(payload, path)
    kind = type(value)
    if kind is str:
        return value[:MAX_CLAIM_CHARS]
    if kind is float:
        return str(int(value)) if value.is_integer() else str(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is list:
        return [item[:MAX_CLAIM_CHARS] for item in value if type(item) is str]
    return None


def token_caller(metadata: dict | None, identity: IdentitySettings) -> VirtualKey | None:
    """The caller a verified token names, or None when no token was verified."""
    fields = _verified(metadata)
    if fields is None:
        return None
    payload = fields.get(JWT_PAYLOAD_KEY)
    if type(payload) is not dict:
        return None
    jwt = identity.jwt
    assert jwt is not None
    user = next((found for path in jwt.claims.user if (found := _name(payload, path))), None)
    if user is None:
        raise GatewayError(401, "invalid_api_key", "The token names no user (claim "
                           f"{' or '.join(jwt.claims.user)} is missing).")
    subject = _claim(payload, "sub")
    if not isinstance(subject, str) or not subject:      # who the caller is (_token_digest)
        raise GatewayError(401, "invalid_api_key", "The token names no subject (claim sub is missing).")
    team = _name(payload, jwt.claims.team) if jwt.claims.team else None
    if not team:
        groups = _claim(payload, jwt.claims.groups) if jwt.claims.groups else None
        groups = [groups] if isinstance(groups, str) else groups or []
        team = next((group for group in groups if group in identity.teams), jwt.default_team)
    policy = identity.teams.get(team) or identity.teams.get(CATCH_ALL_TEAM)
    if policy is None:
        raise GatewayError(403, "team_not_allowed",
                           f"The team '{team[:100]}' may not use this gateway: identity.teams has no entry "
                           "for it. Ask the gateway's operators to add one.")
    claims = {}
    for name in jwt.limit_claims:
        value = _claim(payload, name)
        if isinstance(value, str):
            claims[name] = value
    digest = _token_digest(payload)
    return VirtualKey(id=f"token:{digest.hex()[:32]}", sha256=digest, user=user, team=team,
                      models=policy.models, claims=claims)


_KIND_NAMES = {dict: "object", list: "list", bool: "boolean"}


def _name(payload: dict, path: str) -> str | None:
    """A user or team claim: a string (or a number, as written), None when absent or empty;
    a 401 naming the claim when it holds anything else."""
    value = _value(payload, path)
    if value is None:
        return None
    if type(value) is not str and type(value) is not float:
        kind = _KIND_NAMES.get(type(value), type(value).__name__)
        raise GatewayError(401, "invalid_api_key", f"The token's claim '{path}' must be a string, not a {kind}.")
    found = _claim(payload, path)
    return found or None


def _token_digest(payload: dict) -> bytes:
    """Who a token caller is: its issuer and subject, which the identity provider never
    gives two people. Its id is made from it, and its MCP sessions are bound to it (as a
    key's digest is for keys)."""
    parts = [_claim(payload, "iss"), _claim(payload, "sub")]
    text = "\0".join(part if isinstance(part, str) else "" for part in parts)
    return hashlib.sha256(b"token\0" + text.encode()).digest()


def looks_like_a_jwt(credential: str) -> bool:
    """Three dot-separated parts, the first a base64url JSON object (a JWS header); the
    signature may be empty (an unsigned token is a token, refused as one)."""
    parts = credential.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1] or len(parts[0]) > 4096:
        return False
    try:
        header = base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4))
    except ValueError:
        return False
    return header.lstrip()[:1] == b"{"


def token_refusal(metadata: dict | None, presented: str, identity: IdentitySettings) -> GatewayError | None:
    """The 401 for a bearer value that is neither a key nor a token Envoy verified. Only a
    credential shaped like a JWT (three dot-separated parts) is refused as a token: any
    other is an unknown key, whatever header brought it (Envoy's "Jwt is missing" for an
    `x-api-key` is no news to its caller)."""
    if not looks_like_a_jwt(presented) or (identity.jwt is not None and presented.startswith(identity.jwt.key_prefix)):
        return None
    fields = _verified(metadata)
    failure = fields.get(JWT_FAILURE_KEY) if fields is not None else None
    if type(failure) is dict:
        message = failure.get("message")
        why = message[:200] if type(message) is str else "invalid token"
        return GatewayError(401, "invalid_api_key", f"The bearer token was refused: {why}.")
    if identity.jwt is not None:
        # Envoy selects the provider by the token's issuer: one it does not trust leaves no failure.
        return GatewayError(401, "invalid_api_key",
                            "The bearer token was refused: no trusted identity provider issued it.")
    return None
