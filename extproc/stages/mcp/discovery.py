"""OAuth discovery for MCP clients (the MCP authorization spec, RFC 9728), where the
gateway trusts identity providers (`identity.jwt`).

A caller without a valid credential gets, with its 401, where to learn how to get one:

    WWW-Authenticate: Bearer realm="llm-gateway", resource_metadata="<gateway>/.well-known/oauth-protected-resource/mcp/<profile>"

and that URL answers the profile's protected-resource metadata: the resource (the
profile's URL), the authorization servers (the configured JWT issuers), the scopes
(`mcp.oauth_scopes`, when set) and how bearer tokens are sent. An MCP client then gets a
token from the issuer and presents it; Envoy verifies it (jwt_authn) as on the model API.
`<gateway>` is one of the gateway's public URLs from the config (`mcp.public_urls`): the
one whose host the request's Host names, so the metadata's `resource` is the URL the
client connected to, as clients check. The Host (and `X-Forwarded-Proto`) is never
written into the answer as sent: the metadata is cacheable, and a client that trusted a
forged one would fetch tokens for another resource. Without `public_urls`, only a
loopback Host (localhost, 127.0.0.1, [::1]: a gateway on the caller's machine) is
named; any other Host gets the plain `Bearer` challenge and no metadata (404). A gateway
without JWT identities keeps the plain `Bearer` challenge: keys have no discovery.
"""

from __future__ import annotations

import re

import orjson

from ...pipeline.call import Call
from ...pipeline.stage import ImmediateAnswer

WELL_KNOWN = "/.well-known/oauth-protected-resource"
PREFIX = WELL_KNOWN + "/mcp/"
MAX_AUTHORITY = 256


_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})
_AUTHORITY = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(?::(?P<port>\d{1,5}))?")


def base_url(call: Call) -> str | None:
    """The gateway's public URL this request reached: the configured one its Host names
    (the first configured, for a Host of none of them), or a loopback Host's own URL
    when none is configured; None when the gateway cannot name itself."""
    authority = call.headers.get(":authority", "")[:MAX_AUTHORITY].lower()
    configured = call.config.mcp.public_urls
    if configured:
        for url in configured:
            if url.split("://", 1)[1].lower() == authority or _default_port(url) == authority:
                return url
        return configured[0]
    match = _AUTHORITY.fullmatch(authority)
    if match is None or match["host"] not in _LOOPBACK_HOSTS:
        return None
    scheme = "https" if call.headers.get(":scheme") == "https" else "http"
    return f"{scheme}://{authority}"


def _default_port(url: str) -> str:
    """A configured URL's authority with its scheme's port written out."""
    scheme, _, authority = url.lower().partition("://")
    return f"{authority}:{443 if scheme == 'https' else 80}"


def challenge(call: Call, profile: str, presented: bool) -> str:
    """The WWW-Authenticate value of an MCP 401."""
    parts = ['Bearer realm="llm-gateway"']
    public = base_url(call) if call.config.identity.jwt is not None else None
    if public is not None:
        parts.append(f'resource_metadata="{public}{PREFIX}{profile}"')
        scopes = call.config.mcp.oauth_scopes
        if scopes:
            parts.append(f'scope="{" ".join(scopes)}"')
    if presented:                  # RFC 6750: no error code when no credential was sent
        parts.append('error="invalid_token"')
    return ", ".join(parts)


def metadata_answer(call: Call) -> ImmediateAnswer | None:
    """The protected-resource metadata of the profile the path names (None: not one)."""
    if call.method not in ("GET", "HEAD"):
        return None
    name = call.path.removeprefix(PREFIX).strip("/")
    jwt = call.config.identity.jwt
    public = base_url(call)
    if jwt is None or name not in call.config.mcp.profiles or public is None:
        return None
    document: dict = {
        "resource": f"{public}/mcp/{name}",
        "authorization_servers": list(dict.fromkeys(p.issuer for p in jwt.providers)),
        "bearer_methods_supported": ["header"],
        "resource_name": f"llm-gateway MCP profile {name}",
    }
    if call.config.mcp.oauth_scopes:
        document["scopes_supported"] = list(call.config.mcp.oauth_scopes)
    return ImmediateAnswer(200, orjson.dumps(document), {"content-type": "application/json",
                                                          "cache-control": "max-age=300"})
