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


def _verified(metadata):
    """jwt_authn's Struct (payload and/or failure), or None."""
    if metadata is None:
        return None
    found = metadata.filter_metadata.get(JWT_NAMESPACE)
    return found.fields if found is not None else None


def _value(payload, path: str):
    """A claim's value by path ("email", "realm_access.team"), as sent: None when absent."""
    value = None
    fields = payload
    for part in path.split("."):
        if fields is None:
            return None
        value = fields.get(part)
        if value is None:
            return None
        fields = value.struct_value.fields if value.WhichOneof("kind") == "struct_value" else None
    return None if value is None or value.WhichOneof("kind") == "null_value" else value


def _claim(payload, path: str):
    """A claim by path: str, list of str, or None (absent, or an object)."""
    value = _value(payload, path)
    if value is None:
        return None
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value[:MAX_CLAIM_CHARS]
    if kind == "number_value":
        number = value.number_value
        return str(int(number)) if number.is_integer() else str(number)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "list_value":
        return [item.string_value[:MAX_CLAIM_CHARS] for item in value.list_value.values
                if item.WhichOneof("kind") == "string_value"]
    return None


def token_caller(metadata, identity: IdentitySettings) -> VirtualKey | None:
    """The caller a verified token names, or None when no token was verified."""
    fields = _verified(metadata)
    if fields is None:
        return None
    verified = fields.get(JWT_PAYLOAD_KEY)
    if verified is None or verified.WhichOneof("kind") != "struct_value":
        return None
    payload = verified.struct_value.fields
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


def _name(payload, path: str) -> str | None:
    """A user or team claim: a string (or a number, as written), None when absent or empty;
    a 401 naming the claim when it holds anything else."""
    value = _value(payload, path)
    if value is None:
        return None
    if value.WhichOneof("kind") not in ("string_value", "number_value"):
        kind = value.WhichOneof("kind").removesuffix("_value").replace("struct", "object").replace("bool", "boolean")
        raise GatewayError(401, "invalid_api_key", f"The token's claim '{path}' must be a string, not a {kind}.")
    found = _claim(payload, path)
    return found or None


def _token_digest(payload) -> bytes:
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


def token_refusal(metadata, presented: str, identity: IdentitySettings) -> GatewayError | None:
    """The 401 for a bearer value that is neither a key nor a token Envoy verified. Only a
    credential shaped like a JWT (three dot-separated parts) is refused as a token: any
    other is an unknown key, whatever header brought it (Envoy's "Jwt is missing" for an
    `x-api-key` is no news to its caller)."""
    if not looks_like_a_jwt(presented) or (identity.jwt is not None and presented.startswith(identity.jwt.key_prefix)):
        return None
    fields = _verified(metadata)
    failure = fields.get(JWT_FAILURE_KEY) if fields is not None else None
    if failure is not None and failure.WhichOneof("kind") == "struct_value":
        message = failure.struct_value.fields.get("message")
        why = message.string_value[:200] if message is not None else "invalid token"
        return GatewayError(401, "invalid_api_key", f"The bearer token was refused: {why}.")
    if identity.jwt is not None:
        # Envoy selects the provider by the token's issuer: one it does not trust leaves no failure.
        return GatewayError(401, "invalid_api_key",
                            "The bearer token was refused: no trusted identity provider issued it.")
    return None
