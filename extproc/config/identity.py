"""The filter config's `identity:` section: who may call, besides the config file's keys.

  admin_api   the HTTP API that manages keys at run time (off unless present)
  jwt         identity providers whose tokens Envoy's jwt_authn filter verifies
              (envoy_gen.py writes that filter from this), and how claims map to
              user, team and groups
  teams       per-team policy for callers identified by a token (a key carries its own)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Mapping

from .providers import Secret, _credential
from ..yamltree import Node

# jwt_authn's dynamic metadata namespace, and the key its verified payload is put under.
JWT_NAMESPACE = "envoy.filters.http.jwt_authn"
JWT_PAYLOAD_KEY = "jwt_payload"
JWT_FAILURE_KEY = "jwt_failure"
_CLAIM_PATH = re.compile(r"[A-Za-z0-9_:/.-]+")


@dataclass(frozen=True, slots=True)
class AdminApiSettings:
    listen: str                    # HOST:PORT; 127.0.0.1 unless told otherwise
    token: Secret | None           # None: configured but unreadable (every call refused)
    token_source: str              # "env:NAME" / "file:/path" (never the token)


@dataclass(frozen=True, slots=True)
class JwtProvider:
    name: str
    issuer: str
    audiences: tuple[str, ...]
    jwks_file: str | None          # a local JWKS file Envoy reads, or
    jwks_url: str | None           # the provider's JWKS, fetched by Envoy through a cluster
    cache_seconds: int             # how long Envoy keeps (and when it refetches) the remote JWKS
    clock_skew_seconds: int
    require_expiration: bool = True   # a token without `exp` is refused (Envoy's jwt_authn)


@dataclass(frozen=True, slots=True)
class ClaimMapping:
    user: tuple[str, ...] = ("sub",)         # claim paths, first present wins ("email", "a.b")
    team: str | None = None
    groups: str | None = None


@dataclass(frozen=True, slots=True)
class JwtSettings:
    providers: tuple[JwtProvider, ...]
    claims: ClaimMapping
    key_prefix: str                # bearer values starting with this are keys, never sent to jwt_authn
    default_team: str
    limit_claims: tuple[str, ...] = ()       # claims budgets may be scoped by (scope: claim:<name>)


# The `identity.teams` entry for every team that has none of its own: without it, such a
# team's token callers are refused (403 team_not_allowed).
CATCH_ALL_TEAM = "*"


@dataclass(frozen=True, slots=True)
class TeamPolicy:
    models: frozenset[str] | None            # None: every model


@dataclass(frozen=True, slots=True)
class IdentitySettings:
    admin_api: AdminApiSettings | None = None
    jwt: JwtSettings | None = None
    teams: Mapping[str, TeamPolicy] = field(default_factory=dict)


def parse_identity(node: Node, strict: bool, allowed_models, base_dir: str) -> IdentitySettings:
    """`allowed_models(node)`: the config's own check of a model allowlist; relative file
    paths are relative to `base_dir`, the config file's folder."""
    if node.missing or node.value is None:
        return IdentitySettings()
    node.only_keys("admin_api", "jwt", "teams")
    teams = {}
    for name, item in node.get("teams").items():
        item.only_keys("models")
        teams[name] = TeamPolicy(models=allowed_models(item.get("models")))
    return IdentitySettings(admin_api=_admin_api(node.get("admin_api"), strict),
                            jwt=_jwt(node.get("jwt"), base_dir), teams=teams)


def _admin_api(node: Node, strict: bool) -> AdminApiSettings | None:
    if node.missing or node.value is None:
        return None
    node.only_keys("listen", "token")
    listen = node.get("listen").str("127.0.0.1:9465")
    host, sep, port = listen.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()):
        node.get("listen").fail("must be HOST:PORT")
    elif host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
        node.get("listen").warn(f"the admin API listens on {host}, beyond this machine: keep it on a "
                                "network only administrators reach")
    token_node = node.get("token")
    if not token_node.missing and not token_node.get("value").missing:
        token_node.fail("must be {env: VAR} or {file: /path}: the admin token is never written in the config")
        return AdminApiSettings(listen, None, "inline")
    source, token = _credential(token_node, strict)
    if token is not None and len(token.reveal()) < 16:
        token_node.fail("the admin token must be at least 16 characters")
    return AdminApiSettings(listen, token, source)


def _jwt(node: Node, base_dir: str) -> JwtSettings | None:
    if node.missing or node.value is None:
        return None
    node.only_keys("providers", "claims", "key_prefix", "default_team", "limit_claims")
    providers = []
    for name, item in node.get("providers").items():
        item.only_keys("issuer", "audiences", "jwks_file", "jwks_url", "cache_seconds", "clock_skew_seconds",
                     "require_expiration")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", name):
            item.fail("a provider's name is 1 to 40 letters, digits, '_' or '-'")
        jwks_file, jwks_url = item.get("jwks_file").str(None), item.get("jwks_url").str(None)
        if (jwks_file is None) == (jwks_url is None):
            item.fail("needs exactly one of jwks_file (a local JWKS) or jwks_url (the provider's JWKS)")
        if jwks_url is not None and not re.fullmatch(r"https?://[^/\s]+(/\S*)?", jwks_url):
            item.get("jwks_url").fail("must be an http(s) URL")
        if jwks_file is not None:
            jwks_file = os.path.normpath(os.path.join(base_dir, jwks_file))
            if not os.path.isfile(jwks_file):
                item.get("jwks_file").fail(f"no such file: {jwks_file}")
        audiences = tuple(a.str() for a in item.get("audiences").elements())
        providers.append(JwtProvider(
            name=name, issuer=item.get("issuer").str(), audiences=audiences, jwks_file=jwks_file,
            jwks_url=jwks_url, cache_seconds=item.get("cache_seconds").number(300, integer=True, minimum=1),
            clock_skew_seconds=item.get("clock_skew_seconds").number(60, integer=True, minimum=0),
            require_expiration=item.get("require_expiration").bool(True)))
    if not providers:
        node.get("providers").fail("must name at least one identity provider")
    issuers = [p.issuer for p in providers]
    if len(set(issuers)) != len(issuers):
        node.get("providers").fail("two providers have the same issuer")
    claims = node.get("claims")
    claims.only_keys("user", "team", "groups")
    user = claims.get("user")
    user_paths = (user.str(),) if isinstance(user.value, str) else tuple(e.str() for e in user.elements()) \
        if not user.missing else ("sub",)
    mapping = ClaimMapping(user=user_paths or ("sub",), team=claims.get("team").str(None),
                           groups=claims.get("groups").str(None))
    for path in (*mapping.user, mapping.team, mapping.groups):
        if path is not None and not _CLAIM_PATH.fullmatch(path):
            claims.fail(f"claim path {path!r}: letters, digits and _:/-, nested with '.'")
    limit_claims = tuple(e.str() for e in node.get("limit_claims").elements())
    return JwtSettings(providers=tuple(providers), claims=mapping,
                       key_prefix=node.get("key_prefix").str("sk-"),
                       default_team=node.get("default_team").str("default"), limit_claims=limit_claims)
