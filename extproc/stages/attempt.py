"""The upstream filter: makes every attempt for the backend it actually goes to.

Runs as an ext_proc filter inside the cluster (once per attempt, on a new stream).
Envoy replays the router-level request on retries, so without this a fallback would
receive the primary's model name, path and key, in the primary's dialect. Each attempt
gets its backend's: the model name swapped in place when its provider speaks the
caller's dialect, the body translated when it speaks another (translate/).
"""

from __future__ import annotations

import re

import orjson

from ..api.openai import ENDPOINTS, GEMINI_METHODS
from ..config.envoy_contract import METADATA_NAMESPACE
from ..config.models import Backend, Model
from ..pipeline.call import Call
from ..pipeline.errors import gateway_error, invalid_request
from ..translate import Refused
from ..pipeline.stage import Stage
from .route import attempt_for

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


class AttemptMade:
    """The attempt the request headers made, for its body."""
    __slots__ = ("made",)

    def __init__(self) -> None:
        self.made = None


class AttemptRewrite(Stage):
    name = "attempt"
    reads = frozenset({"envoy_attributes", "headers", "raw_body", "request_metadata"})
    writes = frozenset({"backend", "endpoint", "notes", "path", "query", "stream"})

    def request_headers(self, call: Call, end_of_stream: bool) -> None:
        plan = read_plan(call.request_metadata)
        if plan is None:
            return                                  # not a virtual model: nothing to change
        try:
            model = call.config.model(plan["model"])
            order = [int(i) for i in plan["order"]]
            attempt = int(call.headers.get("x-envoy-attempt-count", "1") or 1)
            backend = backend_for(model, order, call.envoy_attributes["cluster"], attempt)
            call.endpoint = ENDPOINTS_BY_KIND[plan["kind"]]
            call.stream = plan.get("stream") is True
        except (KeyError, IndexError, ValueError, TypeError, ZeroDivisionError, AttributeError):
            raise gateway_error("The gateway lost track of this request's backends.") from None
        call.backend = backend
        call.path, call.query = str(plan.get("path", "")), str(plan.get("query", ""))
        # Envoy replays the first attempt's headers: every attempt states its own.
        try:
            made = attempt_for(call, backend)
        except Refused as refused:
            raise invalid_request(refused.message) from None
        call.own(AttemptMade).made = made
        call.reply.set_headers.update(made.set_headers)
        call.reply.remove_headers.extend(made.remove)    # never another backend's credential

    def request_body(self, call: Call) -> None:
        held = call.owned(AttemptMade)
        made = held.made if held is not None else None
        if made is None:
            return
        body = call.raw_body
        if made.translation is not None or call.backend.provider.wraps_bodies or call.codec.model_in_entries:
            try:
                call.reply.body = orjson.dumps(made.body(call, call.backend, orjson.loads(body)))
            except Refused as refused:
                raise invalid_request(refused.message) from None
        elif not call.codec.model_in_body:
            call.reply.body = body                  # the model is in the attempt's path (Gemini's)
        else:
            prefix = _MODEL_PREFIX.match(body)
            if prefix is None:
                raise gateway_error("The request body was not in the shape the gateway wrote it.")
            call.reply.body = b'{"model":' + orjson.dumps(call.backend.model) + body[prefix.end():]
        # Always restate body and length: Envoy may replay an earlier attempt's rewrite.
        call.reply.set_headers["content-length"] = str(len(call.reply.body))


# The endpoint of each kind a plan names.
ENDPOINTS_BY_KIND = {endpoint.kind: endpoint for endpoint in (*ENDPOINTS.values(), GEMINI_METHODS["generateContent"],
                                                               GEMINI_METHODS["countTokens"],
                                                               GEMINI_METHODS["embedContent"],
                                                               GEMINI_METHODS["batchEmbedContents"])}


def read_plan(metadata: dict | None) -> dict | None:
    """The router-level filter's plan, forwarded by Envoy as metadata_context."""
    plan = metadata.get(METADATA_NAMESPACE) if metadata is not None else None
    return plan if plan is not None and "model" in plan else None
