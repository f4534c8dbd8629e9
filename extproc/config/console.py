"""The filter config's `console:` section: the pages for the platform team (off unless present).

    console:
      listen: 127.0.0.1:9466              # loopback unless told otherwise
      tokens:                              # who may sign in, one token per role
        admin: {env: LLMGW_CONSOLE_ADMIN_TOKEN}
        key_manager: {file: /run/secrets/console-key-manager}
        viewer: {env: LLMGW_CONSOLE_VIEWER_TOKEN}
      session_secret: {env: LLMGW_CONSOLE_SESSION_SECRET}   # else a new one at each start
      session_hours: 8
      calls:
        keep: 10000                        # recent calls kept in the store; 0: none
      oidc:                                # sign-in with the company's identity provider
        provider: okta                     # one of identity.jwt.providers: its issuer and keys
        client_id: llm-gateway-console
        redirect_url: https://console.gateway.example.com/login/callback
        role_claim: groups
        roles: {admin: [platform-admins], key_manager: [platform], viewer: [engineering]}
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .identity import IdentitySettings, JwtProvider
from .providers import Secret, _credential
from ..yamltree import Node
from .local_ports import port_offset, shift_address

# What each role may do, each including the ones before it.
ROLES = ("viewer", "key_manager", "admin")
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
MIN_TOKEN_CHARS = 16
MAX_CALLS_KEPT = 1_000_000
_URL = re.compile(r"https?://[^/\s]+(/\S*)?")


@dataclass(frozen=True, slots=True)
class ConsoleOidc:
    """Sign-in with an identity provider: OpenID Connect's authorization code flow with PKCE."""
    provider: JwtProvider                         # its issuer and keys (identity.jwt.providers)
    client_id: str
    client_secret: Secret | None                  # None: a public client (PKCE alone)
    redirect_url: str                             # <the console's URL>/login/callback
    authorization_endpoint: str | None            # None: from the issuer's discovery document
    token_endpoint: str | None
    scopes: tuple[str, ...]
    user_claims: tuple[str, ...]                  # the first present names who signed in
    role_claim: str                               # a claim holding a group (or a list of them)
    roles: tuple[tuple[str, frozenset[str]], ...]  # role -> the claim values that give it


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    listen: str                                   # HOST:PORT
    tokens: tuple[tuple[str, Secret, str], ...]   # (role, token, source: "env:NAME", "file:/p", "inline")
    session_secret: Secret | None                 # None: a new random one at each start
    session_seconds: float
    calls_kept: int                               # recent call records kept in the store (0: none)
    oidc: ConsoleOidc | None = None


def parse_console(node: Node, strict: bool, identity: IdentitySettings | None = None) -> ConsoleSettings | None:
    if node.missing or node.value is None:
        return None
    node.only_keys("listen", "tokens", "session_secret", "session_hours", "calls", "oidc")
    listen = node.get("listen").str(shift_address("127.0.0.1:9466", port_offset()))   # moved by --port-offset
    host, sep, port = listen.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()):
        node.get("listen").fail("must be HOST:PORT")
    elif host not in LOOPBACK:
        node.get("listen").warn(f"the console listens on {host}, beyond this machine: keep it on a network "
                                "only the platform team reaches, behind TLS")
    tokens = []
    for role, token_node in node.get("tokens").items():
        if role not in ROLES:
            token_node.fail(f"unknown role {role!r} (one of {', '.join(ROLES)})")
            continue
        source, token = _credential(token_node, strict)
        if token is None:
            continue                       # unreadable: that role cannot sign in
        if len(token.reveal()) < MIN_TOKEN_CHARS:
            token_node.fail(f"a console token must be at least {MIN_TOKEN_CHARS} characters")
            continue
        tokens.append((role, token, source))
    oidc = _oidc(node.get("oidc"), strict, identity)
    if not tokens and not node.get("tokens").missing and oidc is None:
        node.get("tokens").warn("no token can be read: nobody can sign in to the console")
    if node.get("tokens").missing and node.get("oidc").missing:
        node.get("tokens").fail("is required (at least one of admin, key_manager, viewer), or oidc")
    secret = None
    if not node.get("session_secret").missing:
        _, secret = _credential(node.get("session_secret"), strict)
        if secret is not None and len(secret.reveal()) < 32:
            node.get("session_secret").fail("the session secret must be at least 32 characters")
    calls = node.get("calls")
    calls.only_keys("keep")
    return ConsoleSettings(
        listen=listen, tokens=tuple(tokens), session_secret=secret,
        session_seconds=node.get("session_hours").number(8, minimum=0.01) * 3600,
        calls_kept=min(calls.get("keep").number(10000, integer=True, minimum=0), MAX_CALLS_KEPT), oidc=oidc)


def _oidc(node: Node, strict: bool, identity: IdentitySettings | None) -> ConsoleOidc | None:
    if node.missing or node.value is None:
        return None
    node.only_keys("provider", "client_id", "client_secret", "redirect_url", "authorization_endpoint",
                   "token_endpoint", "scopes", "user_claim", "role_claim", "roles")
    name = node.get("provider").str()
    providers = {p.name: p for p in (identity.jwt.providers if identity and identity.jwt else ())}
    if name not in providers:
        node.get("provider").fail(f"must name one of identity.jwt.providers ({', '.join(providers) or 'none'}): "
                                  "the console trusts the issuer the gateway trusts")
        return None
    urls = {}
    for field in ("redirect_url", "authorization_endpoint", "token_endpoint"):
        value = node.get(field).str(None) if field != "redirect_url" else node.get(field).str()
        if value is not None and not _URL.fullmatch(value):
            node.get(field).fail("must be an http(s) URL")
        urls[field] = value
    if urls["redirect_url"] and not urls["redirect_url"].endswith("/login/callback"):
        node.get("redirect_url").fail("must be the console's own URL ending in /login/callback")
    secret = None
    if not node.get("client_secret").missing:
        _, secret = _credential(node.get("client_secret"), strict)
    roles = []
    for role, values in node.get("roles").items():
        if role not in ROLES:
            values.fail(f"unknown role {role!r} (one of {', '.join(ROLES)})")
            continue
        roles.append((role, frozenset(v.str() for v in values.elements())))
    if not roles:
        node.get("roles").fail("must give at least one role to some value of the role claim")
    user = node.get("user_claim")
    return ConsoleOidc(
        provider=providers[name], client_id=node.get("client_id").str(), client_secret=secret,
        redirect_url=urls["redirect_url"] or "", authorization_endpoint=urls["authorization_endpoint"],
        token_endpoint=urls["token_endpoint"],
        scopes=tuple(e.str() for e in node.get("scopes").elements()) or ("openid", "email", "profile"),
        user_claims=(user.str(),) if isinstance(user.value, str) else
        tuple(e.str() for e in user.elements()) or ("email", "sub"),
        role_claim=node.get("role_claim").str("groups"), roles=tuple(roles))
