"""The upstream filter: rewrites every attempt for the backend it actually goes to.

Runs as an ext_proc filter inside the cluster (once per attempt, on a new
stream). Envoy replays the router-level body on retries, so without this a
fallback would receive the primary's model name and key.
"""

from __future__ import annotations

import re

import orjson
from google.protobuf.json_format import MessageToDict

from ..config.envoy_contract import METADATA_NAMESPACE
from ..config.models import Backend, Model
from ..pipeline.call import Call
from ..pipeline.errors import gateway_error
from . import Stage

# The router-level filter writes virtual-model bodies with "model" first (route.py).
_MODEL_PREFIX = re.compile(rb'^\{"model":"(?:[^"\\]|\\.)*"')
_ATTRIBUTES_KEY = "envoy.filters.http.ext_proc"


def backend_for(model: Model, order: list[int], cluster: str, attempt: int) -> Backend:
    """The backend of this request's plan that an attempt to `cluster` serves.

    The attempt number breaks ties when two backends of a chain share a cluster.
    """
    by_attempt = model.backends[order[(attempt - 1) % len(order)]]
    if by_attempt.provider.cluster == cluster:
        return by_attempt
    for index in order:
        if model.backends[index].provider.cluster == cluster:
            return model.backends[index]
    raise KeyError(cluster)


class AttemptRewrite(Stage):
    name = "attempt"

    def request_headers(self, call: Call, end_of_stream: bool) -> None:
        plan = read_plan(call.request_metadata)
        if plan is None:
            return                                  # not a virtual model: nothing to change
        try:
            model = call.config.models[plan["model"]]
            order = [int(i) for i in plan["order"]]
            attempt = int(call.headers.get("x-envoy-attempt-count", "1") or 1)
            backend = backend_for(model, order, call.stage_state["cluster"], attempt)
        except (KeyError, IndexError, ValueError, TypeError, ZeroDivisionError):
            raise gateway_error("The gateway lost track of this request's backends.") from None
        call.backend = backend
        provider = backend.provider
        call.reply.set_headers[provider.auth_header] = provider.auth_value()
        other = "api-key" if provider.auth_header == "authorization" else "authorization"
        call.reply.remove_headers.append(other)    # never another backend's credential
        # Envoy replays the first attempt's headers: every attempt states its own path.
        path = plan.get("path")
        if isinstance(path, str):
            call.reply.set_headers[":path"] = provider.upstream_path(
                str(plan.get("kind", "")), path, str(plan.get("query", "")), backend.model)

    def request_body(self, call: Call) -> None:
        if call.backend is None:
            return
        body = call.raw_body
        prefix = _MODEL_PREFIX.match(body)
        if prefix is None:
            raise gateway_error("The request body was not in the shape the gateway wrote it.")
        # Always restate body and length: Envoy may replay an earlier attempt's rewrite.
        call.reply.body = b'{"model":' + orjson.dumps(call.backend.model) + body[prefix.end():]
        call.reply.set_headers["content-length"] = str(len(call.reply.body))


def read_plan(metadata_context) -> dict | None:
    """The router-level filter's plan, forwarded by Envoy as metadata_context."""
    if metadata_context is None:
        return None
    metadata = metadata_context.filter_metadata
    if METADATA_NAMESPACE not in metadata or "model" not in metadata[METADATA_NAMESPACE].fields:
        return None
    return MessageToDict(metadata[METADATA_NAMESPACE])
