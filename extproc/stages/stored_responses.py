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

An input item may also stand for a stored item by its id alone (`{"type":
"item_reference", "id": ...}`, or an item with an `id` and nothing else): the provider
reads that item into the new response's context. The gateway remembers, with a
response's owner, the ids of its output items, when it reads the answer whole (a JSON
answer; a stream the gateway passes through, or reads event by event, leaves them
unnamed). A reference to an item of another key's response, or to one the gateway
cannot attribute (never seen, an input item, a streamed answer's), answers 404 naming
the item and where it is in `input`; the caller sends the item itself instead, or
continues the response with `previous_response_id`.

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
ITEM_RECORD_KIND = "response_item"  # an output item of a stored response: its owner key
KEEP_SECONDS = 30 * 86400          # as long as OpenAI keeps a stored response


def response_not_found(response_id: str, field: str | None = None) -> GatewayError:
    named = f" ({field})" if field else ""
    return GatewayError(404, "response_not_found", f"No response found with id '{response_id[:100]}'{named}.",
                        type="invalid_request_error")


def item_not_found(item_id: str, where: str) -> GatewayError:
    return GatewayError(404, "item_not_found",
                        f"No item found with id '{item_id[:100]}' ({where}). An item reference may name only "
                        "an output item of a response of yours that this gateway answered whole (not streamed); "
                        "send the item itself, or continue that response with 'previous_response_id'.",
                        type="invalid_request_error")


def referenced_items(body: dict) -> list[tuple[str, str]]:
    """The stored items the input names by id alone, with where each is ("input[3]"): an
    `item_reference`, or an item that has an `id` and no content of its own (the API
    takes a typeless `{"id": ...}` as a reference). Raises a 400 for a reference whose
    id is not a string."""
    items = body.get("input")
    if not isinstance(items, list):
        return []
    found = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "item_reference" or (kind is None and "id" in item and "role" not in item
                                        and "content" not in item):
            item_id = item.get("id")
            if not isinstance(item_id, str) or not item_id:
                raise invalid_request(f"input[{index}].id: an item reference names its item by an id (a string).")
            found.append((item_id[:256], f"input[{index}]"))
    return found


def output_item_ids(answer) -> list[str]:
    """The ids of a Responses answer's output items (what an item reference may name)."""
    output = answer.get("output") if isinstance(answer, dict) else None
    return [item["id"][:256] for item in (output if isinstance(output, list) else ())
            if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"]]


class StoredResponses(Stage):
    name = "stored_responses"
    reads = frozenset({"body", "endpoint", "headers", "key", "path", "query", "resource_id"})
    writes = frozenset({"backend", "model", "model_name"})

    def __init__(self, store) -> None:
        self.store = store

    def request_headers(self, call: Call, end_of_stream: bool):
        if not call.codec.names_stored_response:
            return None
        return self._route_to_owner(call)

    async def _route_to_owner(self, call: Call) -> None:
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

    def request_body(self, call: Call):
        """A new response that continues a stored one: that one must be the caller's."""
        if call.body is None or not call.codec.stores_responses:
            return None
        return self._continued(call)

    async def _continued(self, call: Call) -> None:
        body = call.body
        if body.get("conversation") is not None:
            raise invalid_request("This gateway does not serve conversations ('conversation'); continue "
                                  "a response of yours with 'previous_response_id' instead.")
        previous = body.get("previous_response_id")
        if previous is not None:
            owner = await continued_owner(self.store, call, previous)
            if owner.get("key") != call.key.id:
                raise response_not_found(previous, "previous_response_id")
        references = referenced_items(body)
        if references:
            owners = await _item_owners(self.store, [item_id for item_id, _ in references])
            for item_id, where in references:
                if owners.get(item_id) != call.key.id:
                    raise item_not_found(item_id, where)


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
    reads = frozenset({"backend", "endpoint", "key", "model", "response_id", "response_json", "run", "status"})

    def __init__(self, store) -> None:
        self.store = store

    async def response_body(self, call: Call, chunk: bytes, end_of_stream: bool) -> None:
        if end_of_stream:       # a JSON answer's output items: what item references may name
            await self._remember(call, output_item_ids(call.response_json))

    async def response_trailers(self, call: Call, numbers: dict) -> None:
        await self._remember(call, [])

    def done(self, call: Call):
        if not call.response_id:                # (most calls: _remember would return at once)
            return None
        return self._remember(call, [])

    async def _remember(self, call: Call, items: list[str]) -> None:
        response_id = call.response_id
        if not response_id or call.endpoint is None or not call.codec.stores_responses \
                or call.status >= 400 or call.backend is None or call.key is None or self.store is None:
            return
        remembered = call.own(_Remembered)
        if remembered.done:
            return
        remembered.done = True
        made = {"backend": call.backend.name, "model": call.model.name, "key": call.key.id}
        if call.run is not None:        # a call that continues this response joins its run
            made.update(run=call.run.id, run_name=call.run.name)
        owner = orjson.dumps(made)
        try:
            await maybe_await(self.store.put_record(RECORD_KIND, str(response_id)[:256], owner.decode(),
                                                    time.time() + KEEP_SECONDS))
            if items:           # one round trip for them all
                await maybe_await(self.store.put_records(ITEM_RECORD_KIND, [(item, call.key.id) for item in items],
                                                         time.time() + KEEP_SECONDS))
        except StoreUnavailable as error:
            log.error("budget store unavailable; response %s will not be found again: %s", response_id, error)


class _ContinuedOwner:
    """The owner record of the response a request continues, read once per call (the run's
    recognition and the owner check both need it)."""
    __slots__ = ("response_id", "owner")

    def __init__(self) -> None:
        self.response_id: object = None
        self.owner: dict = {}


async def continued_owner(store, call: Call, response_id: str) -> dict:
    """Who made the stored response `response_id` that the call continues ({} if unknown)."""
    found = call.own(_ContinuedOwner)
    if found.response_id != response_id:
        found.owner = await _owner_record(store, response_id)
        found.response_id = response_id
    return found.owner


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


async def _item_owners(store, item_ids: list[str]) -> dict[str, str]:
    """The key that made each stored item the gateway knows of (one store round trip)."""
    if store is None:
        return {}
    try:
        return await maybe_await(store.get_records(ITEM_RECORD_KIND, list(dict.fromkeys(item_ids))))
    except StoreUnavailable as error:
        log.error("budget store unavailable for a stored item's lookup: %s", error)
        raise gateway_error("The gateway's store is unavailable; try again.") from None
