"""The MCP aggregator's process (mcp_aggregator.py): its port listens from the start, and
the MCP SDK is loaded and the profiles' servers built at the first request.

Loading the SDK costs ~1 s of CPU, paid at every `extproc up` whose config combines MCP
servers (the quickstart's does), though many gateways serve no MCP call for a long time,
or never (a test's). What the aggregator does once loaded is unchanged: the app of
mcp_aggregator.py answers every request, its secret check first; its lifespan (the
session managers' task groups) runs in a task of its own from the first request until
shutdown, and is told startup and shutdown as uvicorn would tell it.
"""

from __future__ import annotations

import asyncio
import os

from ..config.envoy_mcp import AGGREGATOR_SECRET_ENV, aggregator_secret_problem
from ..config.mcp import McpSettings


class _LoadedAtFirstRequest:
    def __init__(self, settings: McpSettings, secret: str) -> None:
        self.settings, self.secret = settings, secret
        self.app = None
        self.lock = asyncio.Lock()
        self.to_app: asyncio.Queue = asyncio.Queue()
        self.from_app: asyncio.Queue = asyncio.Queue()
        self.lifespan: asyncio.Task | None = None

    async def loaded(self):
        async with self.lock:
            if self.app is None:
                from .mcp_aggregator import aggregator_app
                app = aggregator_app(self.settings, self.secret)
                self.lifespan = asyncio.get_running_loop().create_task(
                    app({"type": "lifespan"}, self.to_app.get, self.from_app.put))
                await self._told("lifespan.startup", "lifespan.startup.complete")
                self.app = app
        return self.app

    async def _told(self, message: str, answer: str) -> None:
        await self.to_app.put({"type": message})
        replied = asyncio.ensure_future(self.from_app.get())
        await asyncio.wait([replied, self.lifespan], return_when=asyncio.FIRST_COMPLETED)
        if not replied.done():
            replied.cancel()
            self.lifespan.result()          # what ended the lifespan, raised here
            raise RuntimeError(f"the MCP aggregator's lifespan ended before {answer}")
        if replied.result()["type"] != answer:
            raise RuntimeError(f"the MCP aggregator's lifespan answered {replied.result()['type']}")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "lifespan":
            await (await self.loaded())(scope, receive, send)
            return
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        async with self.lock:
            if self.lifespan is not None:
                await self._told("lifespan.shutdown", "lifespan.shutdown.complete")
        await send({"type": "lifespan.shutdown.complete"})


def serve(settings: McpSettings) -> None:
    import uvicorn
    import uvloop

    secret = os.environ.get(AGGREGATOR_SECRET_ENV, "")
    problem = aggregator_secret_problem(secret)
    if problem is not None:                 # checked before listening, as when loaded at start
        raise ValueError(problem)
    host, _, port = settings.aggregator.address.rpartition(":")

    async def run() -> None:
        app = _LoadedAtFirstRequest(settings, secret)
        config = uvicorn.Config(app, host=host, port=int(port), log_level="warning", access_log=False,
                                lifespan="on")
        await uvicorn.Server(config).serve()
    uvloop.run(run())
