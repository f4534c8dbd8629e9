"""Custom guardrails: a plugin service speaking protos/guardrail_plugin.proto.

One Check call per request (and per buffered response) with every text, a
deadline, and the guardrail's fail mode when the plugin cannot answer.
"""

from __future__ import annotations

import grpc

from ..api.provider_json import as_utf8
from ..plugin_api import guardrail_plugin_pb2 as pb
from ..plugin_api import guardrail_plugin_pb2_grpc as pb_grpc


class PluginUnavailable(Exception):
    pass


# One channel per plugin address in this worker, shared by the configs a reload swaps in
# and out; a reload closes those no config in force names (close_unused_channels).
_channels: dict[str, tuple[grpc.aio.Channel, pb_grpc.GuardrailPluginStub]] = {}


def close_unused_channels(addresses_in_use: set[str]) -> list:
    """Closes the channels of plugins the config in force no longer names; returns the
    closings to await (each lets its calls in flight finish first: grace)."""
    closings = []
    for address in [a for a in _channels if a not in addresses_in_use]:
        closings.append(_channels.pop(address)[0].close(grace=CLOSE_GRACE_S))
    return closings


CLOSE_GRACE_S = 5.0              # longer than any plugin call's deadline needs


class PluginClient:
    def __init__(self, address: str, timeout: float) -> None:
        self.address = address
        self.timeout = timeout

    def _get_stub(self):
        # Made lazily, after the worker forked; a channel closed by a reload is made anew
        # for a call of the config that still names it.
        found = _channels.get(self.address)
        if found is None:
            channel = grpc.aio.insecure_channel(self.address)
            found = _channels[self.address] = (channel, pb_grpc.GuardrailPluginStub(channel))
        return found[1]

    async def check(self, direction: str, texts: list[str], *, model: str, key_id: str,
                    team: str, request_id: str) -> tuple[str, str, list[str]]:
        request = pb.CheckRequest(
            direction=pb.CheckRequest.REQUEST if direction == "request" else pb.CheckRequest.RESPONSE,
            texts=[as_utf8(text) for text in texts],      # (protobuf strings are UTF-8)
            model=model, key_id=key_id, team=team, request_id=request_id)
        try:
            reply = await self._get_stub().Check(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as error:
            raise PluginUnavailable(error.code().name) from None
        verdict = pb.CheckResponse.Verdict.Name(reply.verdict).lower()
        if verdict == "redact" and len(reply.texts) != len(texts):
            raise PluginUnavailable("redaction with the wrong number of texts")
        return ("allow" if verdict == "verdict_unspecified" else verdict), reply.reason, list(reply.texts)
