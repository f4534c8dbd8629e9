"""OAuth discovery for MCP clients (the MCP authorization spec, RFC 9728), where the
gateway trusts identity providers (`identity.jwt`).

A caller without a valid credential gets, with its 401, where to learn how to get one:

    WWW-Authenticate: Bearer realm="llm-gateway", resource_metadata="<gateway>/.well-known/oauth-protected-resource/mcp/<profile>"

and that URL answers the profile's protected-resource metadata: the resource (the
profile's URL), the authorization servers (the configured JWT issuers), the scopes
(`mcp.oauth_scopes`, when set) and how bearer tokens are sent. An MCP client then gets a
token from the issuer and presents it; Envoy verifies it (jwt_authn) as on the model API.
`<gateway>` is the URL the caller used (its Host, and X-Forwarded-Proto or the scheme), so
the metadata's `resource` is the URL the client connected to, as clients check. A
gateway without JWT identities keeps the plain `Bearer` challenge: keys have no discovery.
"""

from __future__ import annotations

import orjson

from ...pipeline.call import Call
from ...pipeline.stage import ImmediateAnswer

WELL_KNOWN = "/.well-known/oauth-protected-resource"
PREFIX = WELL_KNOWN + "/mcp/"
MAX_AUTHORITY = 256


def base_url(call: Call) -> str:
    """The gateway's URL as this caller reached it."""
    headers = call.headers
    scheme = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower() or headers.get(":scheme", "http")
    if scheme not in ("http", "https"):
        scheme = "http"
    authority = headers.get(":authority", "")[:MAX_AUTHORITY]
    # Only what a host:port is made of: the value is echoed in a header and a document.
    authority = "".join(ch for ch in authority if ch.isalnum() or ch in ".-:[]_") or "localhost"
    return f"{scheme}://{authority}"


def challenge(call: Call, profile: str, presented: bool) -> str:
    """The WWW-Authenticate value of an MCP 401."""
    parts = ['Bearer realm="llm-gateway"']
    if call.config.identity.jwt is not None:
        parts.append(f'resource_metadata="{base_url(call)}{PREFIX}{profile}"')
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
    if jwt is None or name not in call.config.mcp.profiles:
        return None
    document: dict = {
        "resource": f"{base_url(call)}/mcp/{name}",
        "authorization_servers": list(dict.fromkeys(p.issuer for p in jwt.providers)),
        "bearer_methods_supported": ["header"],
        "resource_name": f"llm-gateway MCP profile {name}",
    }
    if call.config.mcp.oauth_scopes:
        document["scopes_supported"] = list(call.config.mcp.oauth_scopes)
    return ImmediateAnswer(200, orjson.dumps(document), {"content-type": "application/json",
                                                          "cache-control": "max-age=300"})
