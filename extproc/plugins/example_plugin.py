"""An example guardrail plugin: blocks internal project codenames, redacts ticket ids.

    python -m extproc.plugins.example_plugin --address 127.0.0.1:50090 \
        --codename zeus --codename hermes
and in the filter config:
    - {name: codenames, type: plugin, address: 127.0.0.1:50090, timeout_ms: 200, fail_mode: closed}
"""

from __future__ import annotations

import argparse
import asyncio
import re

import grpc

from ..plugin_api import guardrail_plugin_pb2 as pb
from ..plugin_api import guardrail_plugin_pb2_grpc as pb_grpc

_TICKET = re.compile(r"\b[A-Z]{2,6}-\d{2,6}\b")


class CodenamePlugin(pb_grpc.GuardrailPluginServicer):
    def __init__(self, codenames: list[str], delay: float = 0.0) -> None:
        self.codenames = re.compile("|".join(rf"\b{re.escape(c)}\b" for c in codenames), re.I)
        self.delay = delay          # for testing the gateway's deadline

    async def Check(self, request: pb.CheckRequest, context) -> pb.CheckResponse:
        if self.delay:
            await asyncio.sleep(self.delay)
        if any(self.codenames.search(text) for text in request.texts):
            return pb.CheckResponse(verdict=pb.CheckResponse.BLOCK, reason="internal codename")
        redacted = [_TICKET.sub("[TICKET]", text) for text in request.texts]
        if redacted != list(request.texts):
            return pb.CheckResponse(verdict=pb.CheckResponse.REDACT, reason="ticket id", texts=redacted)
        return pb.CheckResponse(verdict=pb.CheckResponse.ALLOW)


async def serve(address: str, codenames: list[str], delay: float = 0.0) -> None:
    server = grpc.aio.server()
    pb_grpc.add_GuardrailPluginServicer_to_server(CodenamePlugin(codenames, delay), server)
    server.add_insecure_port(address)
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", default="127.0.0.1:50090")
    parser.add_argument("--codename", action="append", default=[])
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    asyncio.run(serve(args.address, args.codename or ["zeus"], args.delay))


if __name__ == "__main__":
    main()
