"""Request body: pick the backend, point Envoy at its cluster, rewrite for it."""

from __future__ import annotations

import random

import orjson

from ..call import Call
from ..config import ROUTING_HEADER, Backend, Model
from . import Stage

_STREAMING_KINDS = ("chat", "completions")


def choose_backend(model: Model, rng: random.Random = random._inst) -> Backend:  # type: ignore[attr-defined]
    """Weighted split picks by weight; a fallback chain starts at its first backend
    (Envoy moves along the chain on retries)."""
    if model.strategy == "weighted" and len(model.backends) > 1:
        return rng.choices(model.backends, weights=[b.weight for b in model.backends])[0]
    return model.primary


class Route(Stage):
    name = "route"

    def request_body(self, call: Call) -> None:
        backend = choose_backend(call.model)
        call.backend = backend
        reply = call.reply
        reply.set_headers[ROUTING_HEADER] = backend.provider.cluster
        reply.set_headers[backend.provider.auth_header] = backend.provider.auth_value()
        reply.clear_route_cache = True

        body = call.body
        changed = call.body_changed
        if body["model"] != backend.model:
            body["model"] = backend.model
            changed = True
        if call.stream and not call.client_wants_usage and call.endpoint.kind in _STREAMING_KINDS:
            # Ask for usage anyway; the usage stage removes it from what the client sees.
            options = body.get("stream_options")
            body["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                      "include_usage": True}
            changed = True
        if changed:
            reply.body = orjson.dumps(body)
            reply.set_headers["content-length"] = str(len(reply.body))
