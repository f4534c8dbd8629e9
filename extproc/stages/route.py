"""Request body: pick the backend(s), point Envoy at them, rewrite for the first.

A concrete model goes to its cluster through the routing header, its body, path and
headers made for its provider here (translated when the provider speaks another API
dialect than the caller, translate/). A virtual model (several backends) goes to the
failover route: Envoy's priority_group cluster specifier takes this request's backend
order from dynamic metadata and moves one step along it on every retry; the upstream
filter (stages/attempt.py) makes each attempt for the backend it lands on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import orjson

from ..config.envoy_contract import (
    FIRST_BYTE_HEADER,
    METADATA_NAMESPACE,
    ROUTE_HEADER,
    ROUTE_METADATA_NAMESPACE,
    ROUTING_HEADER,
    failover_route,
)
from ..api.providers import CREDENTIAL_HEADERS
from ..config.models import Backend, Model
from ..dialects import dialect_named
from ..pipeline.call import BYTES_WRITTEN, Call
from ..pipeline.errors import invalid_request
from ..translate import Notes, Refused, Target, Translation, translation_for
from ..pipeline.stage import ImmediateAnswer, Stage
from .provider_headers import withheld_headers



def backend_order(model: Model, rng: random.Random | None = None) -> list[int]:
    """Indices of the model's backends in the order attempts should try them.

    fallback: as configured. weighted: the first attempt goes to a backend drawn
    by weight, retries to the others in configured order.
    """
    indices = list(range(len(model.backends)))
    if model.strategy == "weighted" and len(indices) > 1:
        choices = rng.choices if rng is not None else random.choices    # the module's own generator
        first = choices(indices, weights=[b.weight for b in model.backends])[0]
        indices.remove(first)
        indices.insert(0, first)
    return indices


def failover_metadata(call: Call, model: Model, order: list[int]) -> dict:
    """What Envoy's priority_group specifier (a PriorityGroupsOverride of the same
    shape) and the upstream filter read (the client's path: each attempt's is made for
    its backend's provider)."""
    return {
        ROUTE_METADATA_NAMESPACE: {"priority_groups": [
            {"name": model.backends[i].name,
             "clusters": [{"cluster_name": model.backends[i].provider.cluster, "weight": 1}]}
            for i in order]},
        METADATA_NAMESPACE: {"model": model.name, "order": order, "path": call.path, "query": call.query,
                             "kind": call.endpoint.kind, "stream": call.stream},
    }


@dataclass(slots=True)
class Attempt:
    """What an attempt to one backend needs: the translation (None: the caller's dialect),
    the headers to set (path, credential, API version) and those to remove."""
    translation: Translation | None
    set_headers: dict[str, str]
    remove: list[str]

    def body(self, call: Call, backend: Backend, body: dict) -> dict:
        """The body for this attempt's provider; raises Refused."""
        provider = backend.provider
        if self.translation is None:
            body = call.codec.for_model(body, backend.model)
        else:
            notes = call.notes
            if notes is None:
                notes = call.notes = Notes()
            body = self.translation.request(body, Target(backend.model, provider.default_max_tokens, call.stream), notes)
        if not provider.wraps_bodies:
            return body
        codec = self.translation.provider_codec if self.translation is not None else call.codec
        return provider.for_platform(backend.model, codec.counts_tokens, body)


def attempt_for(call: Call, backend: Backend) -> Attempt:
    """An attempt made for `backend` (its provider's dialect, paths and headers); raises
    Refused for an endpoint that provider has no match for."""
    provider = backend.provider
    dialect = backend.dialect
    translation = translation_for(call.dialect, dialect, call.endpoint.kind)
    # (Bedrock's: none; Envoy signs the attempt after this filter.)
    set_headers = {provider.auth_header: provider.auth_value()} if provider.auth_header else {}
    remove = [name for name in CREDENTIAL_HEADERS if name != provider.auth_header]
    remove.extend(withheld_headers(call.headers, provider))     # the account's and the network's
    if translation is None:
        path = provider.upstream_path(call.path, call.query, backend.model, call.stream, call.codec.counts_tokens)
    else:
        codec = translation.provider_codec
        path = provider.upstream_path(codec.provider_path or "", "", backend.model, call.stream, codec.counts_tokens)
    if path != call.headers.get(":path"):
        set_headers[":path"] = path
    dialect_set, dialect_removed, dropped = dialect_named(dialect).attempt_headers(call.headers)
    set_headers.update(dialect_set)
    remove.extend(dialect_removed)
    if dropped:
        if call.notes is None:
            call.notes = Notes()
        call.notes.dropped.extend(dropped)
    return Attempt(translation, set_headers, remove)


def attempt_notes(call: Call, backend: Backend) -> Notes:
    """What the attempt to `backend` dropped or filled in. The upstream filter made that
    attempt on a stream of its own, whose notes this call never sees: the log line's are
    made again here (a translation reads its input without changing it, ~25 µs for a
    78 KB agent request)."""
    notes = Notes()
    saved, call.notes = call.notes, notes
    try:
        attempt_for(call, backend).body(call, backend, call.body)
    except Refused:
        pass                                    # that attempt was refused: its error says why
    finally:
        call.notes = saved
    return notes


class Route(Stage):
    name = "route"
    reads = frozenset({"body", "body_bytes", "client_wants_usage", "endpoint", "headers", "model", "path", "query",
                       "stream"})
    writes = frozenset({"backend", "backend_order", "body_changed", "notes"})

    def request_body(self, call: Call) -> None:
        if call.body is None:                   # routed at its headers (stored_responses.py)
            return
        model = call.model
        order = backend_order(model)
        backend: Backend = model.backends[order[0]]
        call.backend = backend
        call.backend_order = order
        if call.codec.counts_tokens and (backend.dialect != call.dialect
                                         or not backend.provider.counts_tokens(backend.model)):
            # count_tokens for a model whose provider counts in another dialect, or not at all:
            # the gateway's own count of the prompt (exact for OpenAI's models, an estimate for others).
            raise ImmediateAnswer(200, call.codec.count_answer(call.prompt_tokens()))
        reply = call.reply
        reply.clear_route_cache = True
        body = call.body
        if call.stream and not call.client_wants_usage and call.codec.takes_usage_option:
            # Ask for usage anyway; the usage stage removes it from what the client sees.
            options = body.get("stream_options")
            body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
            call.body_changed = True
        if model.is_virtual:
            # Each attempt is made for its backend by the upstream filter; "model" first, so
            # that one whose provider speaks the caller's dialect is swapped without parsing.
            reply.set_headers[ROUTE_HEADER] = failover_route(len(model.backends))
            if call.stream:        # the route that gives up on a silent attempt (envoy_contract.py)
                reply.set_headers[FIRST_BYTE_HEADER] = str(model.first_byte_timeout_ms)
            for namespace, fields in failover_metadata(call, model, order).items():
                reply.add_metadata(fields, namespace)
            reply.body = orjson.dumps({"model": body["model"], **body} if call.codec.model_in_body else body)
            reply.set_headers["content-length"] = str(len(reply.body))
            return
        try:
            attempt = attempt_for(call, backend)
            sent = attempt.body(call, backend, body)
        except Refused as refused:
            raise invalid_request(refused.message) from None
        reply.set_headers[ROUTING_HEADER] = backend.provider.cluster
        reply.set_headers.update(attempt.set_headers)
        reply.remove_headers.extend(attempt.remove)
        if sent is not body or call.body_changed:
            reply.body = call.body_bytes if sent is body and call.body_changed is BYTES_WRITTEN else orjson.dumps(sent)
            reply.set_headers["content-length"] = str(len(reply.body))

