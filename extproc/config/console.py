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
"""

from __future__ import annotations

from dataclasses import dataclass

from .providers import Secret, _credential
from ..yamltree import Node

# What each role may do, each including the ones before it.
ROLES = ("viewer", "key_manager", "admin")
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
MIN_TOKEN_CHARS = 16
MAX_CALLS_KEPT = 1_000_000


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    listen: str                                   # HOST:PORT
    tokens: tuple[tuple[str, Secret, str], ...]   # (role, token, source: "env:NAME", "file:/p", "inline")
    session_secret: Secret | None                 # None: a new random one at each start
    session_seconds: float
    calls_kept: int                               # recent call records kept in the store (0: none)


def parse_console(node: Node, strict: bool) -> ConsoleSettings | None:
    if node.missing or node.value is None:
        return None
    node.only_keys("listen", "tokens", "session_secret", "session_hours", "calls")
    listen = node.get("listen").str("127.0.0.1:9466")
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
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
    if not tokens and not node.get("tokens").missing:
        node.get("tokens").warn("no token can be read: nobody can sign in to the console")
    if node.get("tokens").missing:
        node.get("tokens").fail("is required: at least one of admin, key_manager, viewer")
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
        calls_kept=min(calls.get("keep").number(10000, integer=True, minimum=0), MAX_CALLS_KEPT))
