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


class PluginClient:
    def __init__(self, address: str, timeout: float) -> None:
        self.address = address
        self.timeout = timeout
        self._stub = None          # channels are made lazily: after the worker forked

    def _get_stub(self):
        if self._stub is None:
            channel = grpc.aio.insecure_channel(self.address)
            self._stub = pb_grpc.GuardrailPluginStub(channel)
        return self._stub

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
