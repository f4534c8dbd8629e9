"""`extproc token --user U --team T`: a token from the quickstart's demo issuer.

DEMO ONLY. The demo issuer's signing key ships in the repository
(config/demo-issuer-key.pem), so anyone can mint its tokens: the quickstart trusts it to
show calling with a token in a minute; a real config trusts the company's identity
provider instead (docs/identity.md).
"""

from __future__ import annotations

import sys
import time

from ..config import envoy_config

DEMO_ISSUER = "https://demo-issuer.llm-gateway.invalid"
DEMO_AUDIENCE = "llm-gateway"
DEMO_KID = "demo-1"


def add_token_parser(commands) -> None:
    token = commands.add_parser("token", help="a token from the quickstart's demo issuer (demo only)")
    token.add_argument("--user", required=True, help="the token's sub and email claims")
    token.add_argument("--team", required=True)
    token.add_argument("--groups", help="groups claim, comma-separated")
    token.add_argument("--claim", action="append", default=[], metavar="NAME=VALUE",
                       help="another claim (e.g. plan=free), repeatable")
    token.add_argument("--ttl", default="1h", help="how long the token is valid (default 1h)")
    token.add_argument("--state-dir", help="accepted for symmetry with `extproc keys`; the demo key ships with the code")


def demo_token(user: str, team: str, *, groups: list[str] | None = None, extra: dict | None = None,
               ttl_seconds: float = 3600, now: float | None = None) -> str:
    import jwt                                   # PyJWT, with `cryptography` for ES256
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    with open(envoy_config.shipped("config/demo-issuer-key.pem"), encoding="utf-8") as handle:
        pem = "".join(line for line in handle if not line.startswith("#"))
    key = load_pem_private_key(pem.encode(), password=None)
    now = int(now or time.time())
    claims = {"iss": DEMO_ISSUER, "aud": DEMO_AUDIENCE, "sub": user, "email": user, "team": team,
              "iat": now, "nbf": now, "exp": now + int(ttl_seconds), **(extra or {})}
    if groups:
        claims["groups"] = groups
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": DEMO_KID})


def cmd_token(args) -> int:
    from ..store.keys import KeyProblem, parse_duration
    try:
        ttl = parse_duration(args.ttl)
    except KeyProblem as problem:
        print(f"extproc token: {problem}", file=sys.stderr)
        return 2
    extra = {}
    for item in args.claim:
        name, sep, value = item.partition("=")
        if not sep or not name or name in ("iss", "aud", "exp", "nbf", "iat"):
            print(f"extproc token: --claim {item!r} must be NAME=VALUE (not a registered claim)", file=sys.stderr)
            return 2
        extra[name] = value
    groups = [g.strip() for g in args.groups.split(",") if g.strip()] if args.groups else None
    print("DEMO ONLY: signed by the quickstart's demo issuer, whose key ships with the gateway.", file=sys.stderr)
    print(demo_token(args.user, args.team, groups=groups, extra=extra, ttl_seconds=ttl))
    return 0
