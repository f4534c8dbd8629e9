"""The Responses API's stored responses: each goes back to the backend that made it.

A response created through the gateway (`POST /v1/responses`) lives at the provider
that answered, which for a virtual model may be any of its backends. The gateway
remembers, in the budget store (shared by every worker and replica), which backend
made each response and for which key; `GET` and `DELETE /v1/responses/{id}`,
`POST .../cancel` and `GET .../input_items` then go to that backend, with its
credential, for that key only: to any other key, or for an id the gateway never saw,
the response does not exist (404).

A new response that continues a stored one (`previous_response_id` in the body of
`POST /v1/responses`) is checked the same way: the provider would read the stored
conversation as context, so another key's response, or one the gateway never saw,
answers 404 as `GET` does. Conversations (`conversation` in the body) are not served
by the gateway, so it cannot know who owns one: a body naming one is refused (400).

The owner is written before the answer's last message goes back to Envoy: a client
that continues a response the moment it has it (Codex CLI does) may reach another
worker, which must already find it.
"""

from __future__ import annotations

import logging
import time

import orjson

from ..config.envoy_contract import ROUTING_HEADER
from ..pipeline.call import Call
from ..pipeline.errors import GatewayError, gateway_error, invalid_request
from ..store import StoreUnavailable, maybe_await
from ..pipeline.stage import Stage
from .provider_headers import withheld_headers

log = logging.getLogger("extproc.stored_responses")

RECORD_KIND = "response"
KEEP_SECONDS = 30 * 86400          # as long as OpenAI keeps a stored response


def response_not_found(response_id: str, field: str | None = None) -> GatewayError:
    named = f" ({field})" if field else ""
    return GatewayError(404, "response_not_found", f"No response found with id '{response_id[:100]}'{named}.",
                        type="invalid_request_error")


class StoredResponses(Stage):
    name = "stored_responses"
    reads = frozenset({"body", "endpoint", "headers", "key", "path", "query", "resource_id"})
    writes = frozenset({"backend", "model", "model_name"})

    def __init__(self, store) -> None:
        self.store = store

    async def request_headers(self, call: Call, end_of_stream: bool) -> None:
        if not call.codec.names_stored_response:
            return
        owner = await _owner_record(self.store, call.resource_id)
        model = call.config.model(owner.get("model", ""))
        backend = next((b for b in model.backends if b.name == owner.get("backend")), None) if model else None
        if owner.get("key") != call.key.id or backend is None:
            raise response_not_found(call.resource_id)
        call.model, call.model_name, call.backend = model, model.name, backend
        provider = backend.provider
        reply = call.reply
        reply.clear_route_cache = True
        reply.set_headers[ROUTING_HEADER] = provider.cluster
        if provider.auth_header:
            reply.set_headers[provider.auth_header] = provider.auth_value()
        reply.remove_headers.extend(withheld_headers(call.headers, provider))
        path = provider.upstream_path(call.path, call.query, backend.model)
        if path != call.headers.get(":path"):
            reply.set_headers[":path"] = path

    async def request_body(self, call: Call) -> None:
        """A new response that continues a stored one: that one must be the caller's."""
        body = call.body
        if body is None or not call.codec.stores_responses:
            return
        if body.get("conversation") is not None:
            raise invalid_request("This gateway does not serve conversations ('conversation'); continue "
                                  "a response of yours with 'previous_response_id' instead.")
        previous = body.get("previous_response_id")
        if previous is None:
            return
        owner = await _owner_record(self.store, previous)
        if owner.get("key") != call.key.id:
            raise response_not_found(previous, "previous_response_id")


class _Remembered:
    """Whether this call's owner record is written (RememberResponse's own state)."""
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False


class RememberResponse(Stage):
    """Writes who made a response the provider stored, when its answer ends: at the last
    body chunk, or at the trailers of a stream Envoy passed through. A call that ends
    otherwise (the client gone mid-stream) is written once it is over."""
    name = "remember_response"
    reads = frozenset({"backend", "endpoint", "key", "model", "response_id", "status"})

    def __init__(self, store) -> None:
        self.store = store

    async def response_body(self, call: Call, chunk: bytes, end_of_stream: bool) -> None:
        if end_of_stream:
            await self._remember(call)

    async def response_trailers(self, call: Call, numbers: dict) -> None:
        await self._remember(call)

    async def done(self, call: Call) -> None:
        await self._remember(call)

    async def _remember(self, call: Call) -> None:
        response_id = call.response_id
        if not response_id or call.endpoint is None or not call.codec.stores_responses \
                or call.status >= 400 or call.backend is None or call.key is None or self.store is None:
            return
        remembered = call.own(_Remembered)
        if remembered.done:
            return
        remembered.done = True
        owner = orjson.dumps({"backend": call.backend.name, "model": call.model.name, "key": call.key.id})
        try:
            await maybe_await(self.store.put_record(RECORD_KIND, str(response_id)[:256], owner.decode(),
                                                    time.time() + KEEP_SECONDS))
        except StoreUnavailable as error:
            log.error("budget store unavailable; response %s will not be found again: %s", response_id, error)


async def _owner_record(store, response_id: str) -> dict:
    """Who made a stored response, and where it lives: {} for an id the gateway never saw."""
    if store is None:
        return {}
    try:
        found = await maybe_await(store.get_record(RECORD_KIND, str(response_id)[:256]))
    except StoreUnavailable as error:
        log.error("budget store unavailable for a stored response's lookup: %s", error)
        raise gateway_error("The gateway's store is unavailable; try again.") from None
    return orjson.loads(found) if found else {}
