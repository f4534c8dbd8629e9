"""Request body: pick the backend(s), point Envoy at them, rewrite for the first.

A concrete model goes to its cluster through the routing header. A virtual
model (several backends) goes to the failover route: Envoy's priority_group
cluster specifier takes this request's backend order from dynamic metadata and
moves one step along it on every retry; the upstream filter (stages/attempt.py)
rewrites each attempt for the backend it lands on.
"""

from __future__ import annotations

import random

import orjson

from ..config.envoy_contract import (
    METADATA_NAMESPACE,
    ROUTE_HEADER,
    ROUTE_METADATA_NAMESPACE,
    ROUTING_HEADER,
    failover_route,
)
from ..config.models import Backend, Model
from ..pipeline.call import Call
from . import Stage

# Endpoints whose streams carry usage only when `stream_options.include_usage` asks.
USAGE_OPTION_KINDS = ("chat", "completions")


def backend_order(model: Model, rng: random.Random = random._inst) -> list[int]:  # type: ignore[attr-defined]
    """Indices of the model's backends in the order attempts should try them.

    fallback: as configured. weighted: the first attempt goes to a backend drawn
    by weight, retries to the others in configured order.
    """
    indices = list(range(len(model.backends)))
    if model.strategy == "weighted" and len(indices) > 1:
        first = rng.choices(indices, weights=[b.weight for b in model.backends])[0]
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
                             "kind": call.endpoint.kind},
    }


class Route(Stage):
    name = "route"

    def request_body(self, call: Call) -> None:
        if call.body is None:                   # routed at its headers (stored_responses.py)
            return
        model = call.model
        order = backend_order(model)
        backend: Backend = model.backends[order[0]]
        call.backend = backend
        call.backend_order = order
        reply = call.reply
        reply.clear_route_cache = True
        reply.set_headers[backend.provider.auth_header] = backend.provider.auth_value()
        if model.is_virtual:
            reply.set_headers[ROUTE_HEADER] = failover_route(len(model.backends))
            reply.metadata = failover_metadata(call, model, order)
        else:
            reply.set_headers[ROUTING_HEADER] = backend.provider.cluster
            path = backend.provider.upstream_path(call.endpoint.kind, call.path, call.query, backend.model)
            if path != call.headers.get(":path"):
                reply.set_headers[":path"] = path

        body = call.body
        changed = call.body_changed or model.is_virtual
        if body["model"] != backend.model:
            body["model"] = backend.model
            changed = True
        if call.stream and not call.client_wants_usage and call.endpoint.kind in USAGE_OPTION_KINDS:
            # Ask for usage anyway; the usage stage removes it from what the client sees.
            options = body.get("stream_options")
            body["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                      "include_usage": True}
            changed = True
        if changed:
            if model.is_virtual:
                # "model" first, so the upstream filter can swap it without parsing.
                body = {"model": body["model"], **body}
            reply.body = orjson.dumps(body)
            reply.set_headers["content-length"] = str(len(reply.body))
