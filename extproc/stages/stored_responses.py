"""The Responses API's stored responses: each goes back to the backend that made it.

A response created through the gateway (`POST /v1/responses`) lives at the provider
that answered, which for a virtual model may be any of its backends. The gateway
remembers, in the budget store (shared by every worker and replica), which backend
made each response and for which key; `GET` and `DELETE /v1/responses/{id}`,
`POST .../cancel` and `GET .../input_items` then go to that backend, with its
credential, for that key only: to any other key, or for an id the gateway never saw,
the response does not exist (404).
"""

from __future__ import annotations

import logging
import time

import orjson

from ..api.openai import STORED_RESPONSE_KINDS
from ..config.envoy_contract import ROUTING_HEADER
from ..pipeline.call import Call
from ..pipeline.errors import GatewayError, gateway_error
from ..store import StoreUnavailable, maybe_await
from ..pipeline.stage import Stage

log = logging.getLogger("extproc.stored_responses")

RECORD_KIND = "response"
KEEP_SECONDS = 30 * 86400          # as long as OpenAI keeps a stored response


def response_not_found(response_id: str) -> GatewayError:
    return GatewayError(404, "response_not_found", f"No response found with id '{response_id[:100]}'.",
                        type="invalid_request_error")


class StoredResponses(Stage):
    name = "stored_responses"

    def __init__(self, store) -> None:
        self.store = store

    async def request_headers(self, call: Call, end_of_stream: bool) -> None:
        if call.endpoint.kind not in STORED_RESPONSE_KINDS:
            return
        try:
            found = await maybe_await(self.store.get_record(RECORD_KIND, call.resource_id))
        except StoreUnavailable as error:
            log.error("budget store unavailable for a stored response's lookup: %s", error)
            raise gateway_error("The gateway's store is unavailable; try again.") from None
        owner = orjson.loads(found) if found else {}
        model = call.config.model(owner.get("model", ""))
        backend = next((b for b in model.backends if b.name == owner.get("backend")), None) if model else None
        if owner.get("key") != call.key.id or backend is None:
            raise response_not_found(call.resource_id)
        call.model, call.model_name, call.backend = model, model.name, backend
        provider = backend.provider
        reply = call.reply
        reply.clear_route_cache = True
        reply.set_headers[ROUTING_HEADER] = provider.cluster
        reply.set_headers[provider.auth_header] = provider.auth_value()
        path = provider.upstream_path(call.endpoint.kind, call.path, call.query, backend.model)
        if path != call.headers.get(":path"):
            reply.set_headers[":path"] = path

    async def done(self, call: Call) -> None:
        """Remembers who made a response the provider stored."""
        response_id = call.stage_state.get("response_id")
        if call.endpoint is None or call.endpoint.kind != "responses" or not response_id \
                or call.status >= 400 or call.backend is None or call.key is None:
            return
        owner = orjson.dumps({"backend": call.backend.name, "model": call.model.name, "key": call.key.id})
        try:
            await maybe_await(self.store.put_record(RECORD_KIND, str(response_id)[:256], owner.decode(),
                                                    time.time() + KEEP_SECONDS))
        except StoreUnavailable as error:
            log.error("budget store unavailable; response %s will not be found again: %s", response_id, error)
