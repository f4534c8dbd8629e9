"""The MCP aggregator: serves each profile that combines several MCP servers, its tools
named `<server>_<tool>`, built on the official `mcp` SDK (its low-level `Server` facing
the caller, a `ClientSession` per server behind it).

    caller -> Envoy /mcp/<profile> (ext_proc: key, allowlist, guardrails, audit)
           -> aggregator /mcp/<profile>            one front session per caller session
           -> Envoy loopback listener /<server>   (retries, failover, TLS, timeouts)
           -> the server

The gateway governs every message before it gets here and every answer after: the
aggregator only merges `tools/list` and routes `tools/call` by prefix. Each front
session opens its own session with each server (on `initialize`, within the SDK's
per-session lifespan), so no caller shares a server session with another; the SDK ends
idle front sessions after 30 minutes, and their server sessions with them. The server's
credential is sent on the loopback hop, from the same config as the workers'.
`extproc up` and `serve` start it when a profile combines servers (its process:
mcp_aggregator_front.py, `python -m extproc mcp-aggregator --config F`).

It adds the servers' credentials itself, so only Envoy may reach it: it takes a secret
from LLMGW_AGGREGATOR_SECRET, which Envoy's requests to it carry (a credential_injector on
its cluster reads the same variable: config/envoy_mcp.py), and refuses every request
without it with 403 before the MCP SDK sees it (compared in constant time). `extproc up`
generates the secret at start; beside `extproc serve` the operators set it (a Secret
given to both containers), and neither the aggregator nor `serve` starts without it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import ssl
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, AsyncIterator

import anyio
import httpx
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from ..config.envoy_mcp import AGGREGATOR_SECRET_HEADER, aggregator_secret_problem
from ..config.mcp import SEPARATOR, McpProfile, McpServer, McpSettings

log = logging.getLogger("extproc.mcp_aggregator")
UPSTREAM_TIMEOUT = 300.0        # Envoy's route times out first (300 s); this only bounds a hang
# The upstream is Envoy's loopback route (plain HTTP: Envoy speaks TLS to the server). httpx
# would read the ~150 certificate authorities again for every session's client (30-300 ms of
# CPU each); one context serves them all.
_TLS = ssl.create_default_context()


async def _open(stack: AsyncExitStack, server: McpServer, upstream_url: str) -> ClientSession:
    """An initialized session with `server`, through Envoy's loopback route for it."""
    headers = {server.credential_header: server.credential_value()} if server.credential_value() else {}
    http = await stack.enter_async_context(httpx.AsyncClient(headers=headers, timeout=UPSTREAM_TIMEOUT, verify=_TLS))
    read, write, _ = await stack.enter_async_context(
        streamable_http_client(f"{upstream_url}/{server.name}", http_client=http))
    session = await stack.enter_async_context(ClientSession(read, write))
    await session.initialize()
    return session


async def _close(stack: AsyncExitStack) -> BaseException | None:
    """Ends a session with a server when its front session ends (closed, idle or cancelled
    at shutdown). What the closing raises is dropped: the front session is over either
    way, and an exception chained to the cancellation that ended it would send
    contextlib's exit stacks above into an endless loop over a cyclic __context__."""
    try:
        await stack.aclose()
    except BaseException as error:  # noqa: BLE001 (the cancellation itself propagates from the caller)
        log.debug("closing an MCP server session: %s", type(error).__name__)
        return error
    return None


def profile_server(profile: McpProfile, upstream_url: str) -> Server:
    """The MCP server a combined profile's callers talk to (through the gateway)."""

    @asynccontextmanager
    async def connect(_: Server) -> AsyncIterator[dict[str, ClientSession]]:
        # Entered and left in the front session's own task, as the SDK's task groups need.
        opened: list[AsyncExitStack] = []
        sessions: dict[str, ClientSession] = {}
        try:
            for server in profile.servers:
                own = AsyncExitStack()
                opened.append(own)
                try:
                    sessions[server.name] = await _open(own, server, upstream_url)
                except BaseException as error:   # that server's tools are missing from this session
                    # A server that cannot be reached fails in the client's task group, which
                    # cancels this task: leaving its scope at once ends that cancellation here
                    # (the session goes on with the other servers); one from outside goes on.
                    met = await _close(own) or error        # what the client's task group met
                    task = asyncio.current_task()
                    if not isinstance(error, (Exception, asyncio.CancelledError)) or (
                            task is not None and task.cancelling()):
                        raise
                    while isinstance(met, BaseExceptionGroup) and met.exceptions:
                        met = met.exceptions[0]
                    log.warning("MCP server %r unreachable for profile %r: %s", server.name, profile.name,
                                type(met).__name__)
            yield sessions
        finally:
            for own in reversed(opened):
                await _close(own)

    front: Server = Server(f"llm-gateway/{profile.name}", lifespan=connect)

    def sessions() -> dict[str, ClientSession]:
        return front.request_context.lifespan_context

    @front.list_tools()
    async def list_tools() -> list[types.Tool]:
        found: dict[str, list[types.Tool]] = {}

        async def one(name: str, session: ClientSession) -> None:
            tools, cursor = [], None
            while True:
                page = await session.list_tools(cursor=cursor) if cursor else await session.list_tools()
                tools += page.tools
                cursor = page.nextCursor
                if not cursor:
                    break
            found[name] = tools

        async with anyio.create_task_group() as group:
            for name, session in sessions().items():
                group.start_soon(one, name, session)
        return [tool.model_copy(update={"name": f"{name}{SEPARATOR}{tool.name}"})
                for server in profile.servers for name in [server.name] for tool in found.get(name, ())]

    @front.call_tool(validate_input=False)          # the server validates its own arguments
    async def call_tool(name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        server = profile.server_of(name)
        session = sessions().get(server) if server else None
        if session is None:
            return types.CallToolResult(isError=True, content=[types.TextContent(
                type="text", text=f"Unknown tool '{name[:128]}' (or its server is unreachable).")])
        return await session.call_tool(name[len(server) + len(SEPARATOR):], arguments)

    return front


def _refuse(status: int, message: bytes):
    async def answer(send) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body",
                    "body": b'{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"' + message + b'"}}'})
    return answer


def _from_envoy(scope, secret: bytes) -> bool:
    presented = next((value for name, value in scope.get("headers") or ()
                      if name == AGGREGATOR_SECRET_HEADER.encode()), b"")
    return hmac.compare_digest(presented, secret)


def aggregator_app(settings: McpSettings, secret: str):
    """An ASGI app serving every combined profile at /mcp/<profile>, only to requests
    carrying `secret` (Envoy's)."""
    problem = aggregator_secret_problem(secret)
    if problem is not None:
        raise ValueError(problem)
    required = secret.encode()
    forbidden = _refuse(403, b"Only the gateway may call the MCP aggregator")
    managers = {
        f"/mcp/{profile.name}": StreamableHTTPSessionManager(
            app=profile_server(profile, settings.aggregator.upstream_url),
            json_response=True)     # one JSON answer per request: the gateway reads it whole anyway
        for profile in settings.combined_profiles}

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(managers.values(), receive, send)
            return
        if scope["type"] == "http" and not _from_envoy(scope, required):
            await forbidden(send)
            return
        manager = managers.get(scope.get("path", "").rstrip("/"))
        if scope["type"] != "http" or manager is None:
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body",
                        "body": b'{"jsonrpc":"2.0","id":null,"error":{"code":-32601,"message":"No such profile"}}'})
            return
        await manager.handle_request(scope, receive, send)

    return app


async def _lifespan(managers, receive, send) -> None:
    """The session managers run (their task groups) for as long as the server does."""
    async with AsyncExitStack() as stack:
        await receive()                                     # lifespan.startup
        for manager in managers:
            await stack.enter_async_context(manager.run())
        await send({"type": "lifespan.startup.complete"})
        await receive()                                     # lifespan.shutdown
    await send({"type": "lifespan.shutdown.complete"})

