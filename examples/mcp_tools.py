"""Tools through the gateway with the official MCP SDK (`pip install mcp`, 1.x or 2.x): list
what your key may use, call a tool, and see a poisoned result quarantined.

    GATEWAY_API_KEY=sk-demo-alice python examples/mcp_tools.py     # every tool of `demo`
    GATEWAY_API_KEY=sk-demo-bob python examples/mcp_tools.py       # echo and get_time only
"""

import os

import anyio
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

try:                                    # the SDK 2.x: its HTTP client is httpx2
    import httpx2 as httpx
    from mcp.shared.exceptions import MCPError as McpError
except ImportError:                     # the SDK 1.x
    import httpx
    from mcp.shared.exceptions import McpError

BASE = os.environ.get("GATEWAY_BASE_URL", "http://127.0.0.1:10000/v1").removesuffix("/v1")
KEY = os.environ.get("GATEWAY_API_KEY", "sk-demo-alice")


async def main() -> None:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as http:
        async with streamable_http_client(f"{BASE}/mcp/demo", http_client=http) as streams:
            read, write = streams[0], streams[1]        # (1.x adds a third: the session id's getter)
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = [tool.name for tool in (await session.list_tools()).tools]
                print("tools:", ", ".join(tools))
                echoed = await session.call_tool("echo", {"text": "Mail me at jane@example.com"})
                print("echo:", echoed.content[0].text)          # the server saw [EMAIL]
                try:
                    note = await session.call_tool("fetch_note", {"note_id": "welcome"})
                    print("fetch_note:", note.content[0].text)  # quarantined: names the guardrail
                except McpError as refused:                     # not in this key's allowlist
                    print("fetch_note refused:", refused.error.message)


anyio.run(main)
