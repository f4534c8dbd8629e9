"""Calls whose policy reads nothing of their body: routed at their headers, the body unseen.

Much of a call's cost in the service is its body: the request-body message, its parse,
and the answer's message. A call none of whose policy reads the body needs none of them.
Envoy's request reader (a Lua filter ahead of ext_proc, announced.py) has read the body's
`model`, `stream` and `stream_options.include_usage` by the time the service sees the
headers, which is all routing needs when the body goes to the provider as the client
wrote it. Such a call:

- goes to an endpoint whose codec lets its body go unread (`body_may_go_unread`: the
  model named in the body, or in the path for Google's Gemini API; nothing in it that
  names state the gateway keeps, such as a stored response), answered in JSON, or
  streamed when the stream brings its usage as the client asked (Anthropic's and
  Gemini's always do; OpenAI's when `stream_options.include_usage` is true: the service
  cannot ask for it in a body it does not read);
- names a concrete model the key may use, whose one backend speaks the caller's dialect
  under the same model name, at a provider that neither wraps bodies (Bedrock, Vertex)
  nor picks a pool replica from the prompt;
- has no guardrail (the caller's policy is empty), no response cache rule, no spend caps,
  and, unless its team's calls are not agent runs (`runs.teams`), no run limits or loop
  stopping and no tool labels of MCP taint in the config: everything that would read the
  body;
- fits its budgets and rate limits, if any apply to its key, at an upper bound reserved
  from what Envoy's reader read of what bounds its output, and from the body's size
  (budget/unread.py); a call that does not fit takes the path with every message, which
  counts it exactly.

The request-headers reply routes it (cluster, credential, path: route.py's attempt_for)
and overrides the processing mode: no request body message, no response headers or body
messages, trailers at the answer's end (BODY_UNREAD). Envoy adds the gateway's response
headers from metadata (one_message.py: here only the backend's name), its
json_to_metadata filter reads a JSON answer's usage into the keys sse_to_metadata fills
from a stream, and the trailers message brings the status and that usage
(accounting/usage.py), as for a stream passed through (pass_through.py; a stream cut
short is charged what Envoy sent, accounting/cut_stream.py): a call is 2 messages, not 3.

What the service does not see it does not check: a body that is not JSON, or not the
endpoint's shape, is the provider's to refuse (in the caller's dialect: it is the
provider's own), and Envoy's reader sets no `model` for a body it cannot read plainly
(one repeating a key, say), which then takes the path with every message. Such a call
joins an agent run only by its headers (runs/). Its `x-gateway-cost-usd` is its cost as
charged for a JSON answer (Envoy holds the headers until the trailers' reply), and an
upper bound for a stream (accounting/cost.py).
"""

from __future__ import annotations

from ..config.envoy_contract import BODIES_UNREAD, ROUTING_HEADER, STREAMS_PASSED_THROUGH
from ..config.filter_config import GatewayConfig
from ..config.models import Backend, Model
from ..pipeline.call import Call
from ..pipeline.protocol import BODY_UNREAD
from ..pipeline.stage import Stage
from ..translate import Refused
from .accounting.cost import unread_stream_cost
from .announced import announced, announced_bool, announced_string
from .budget.limits import applying_limits
from .budget.unread import UnreadReservation
from .route import attempt_for


def reads_every_body(config: GatewayConfig, key) -> bool:
    """Whether a part of the config reads every body of `key`'s calls: spend caps, and for
    the teams whose calls are agent runs (`runs.teams`) run limits, loop stopping and MCP
    taint's labels of the agent's own tools."""
    return bool(config.caps.per_call or config.caps.session) or (
        bool(config.runs.enforced or config.mcp.taint.model_tools) and config.runs.governs(key))


def unread_backend(call: Call, model: Model | None, model_name: str) -> Backend | None:
    """The backend a call to `model` goes to with its body unread, or None when something
    would read it (see the module's docstring)."""
    key, config = call.key, call.config
    if model is None or model.is_virtual or model.name != model_name or not key.may_use(model.name):
        return None                 # (unknown or not allowed: the path with every message says so)
    backend = model.primary
    provider = backend.provider
    if backend.model != model_name or backend.dialect != call.dialect or provider.wraps_bodies \
            or provider.pool is not None:
        return None
    if config.guardrails.policy_for(key) \
            or (config.cache.enabled and config.cache.rule_for(model.name, call.team) is not None):
        return None
    return backend


# The decisions kept per stage: a key, model and endpoint decide alike until the config
# (or the key, made again at run time) changes.
MAX_DECISIONS = 4096


class BodyUnread(Stage):
    name = "body_unread"
    reads = frozenset({"endpoint", "envoy_features", "headers", "key", "path", "query", "request_metadata",
                       "resource_id"})
    writes = frozenset({"backend", "backend_order", "body", "body_unread", "client_wants_usage", "log_fields",
                        "model", "model_name", "notes", "output_reserved", "ratelimit_headers", "stream",
                        "stream_passed_through"})

    def __init__(self, reservation: UnreadReservation | None = None) -> None:
        # (config, key, endpoint ids, model name)
        #   -> (config, key, endpoint, model, backend or None, whether a limit applies)
        self._decided: dict[tuple, tuple] = {}
        self.reservation = reservation      # the budgets' (None: the config has none)

    def request_headers(self, call: Call, end_of_stream: bool):
        if end_of_stream or BODIES_UNREAD not in call.envoy_features or call.key is None \
                or not call.codec.body_may_go_unread or reads_every_body(call.config, call.key):
            return None                     # (a policy reads its body: no coroutine for it)
        return self._route_unread(call)

    async def _route_unread(self, call: Call) -> None:
        endpoint = call.endpoint
        if endpoint.model_in_path:
            if call.codec.model_in_body:
                return              # Azure's deployment: the body's model is made the path's (a change)
            model_name, stream = call.resource_id, endpoint.streams_by_path      # Google's: the path says
            fields = announced(call)          # (what bounds the output, for a budget)
        else:
            fields = announced(call)
            stream = announced_bool(fields, "stream") if fields is not None else None
            model_name = announced_string(fields, "model") if fields is not None else ""
        if stream is None or not model_name or (stream and not self._usage_streamed(call, fields)):
            return
        config, key = call.config, call.key
        found = self._decided.get((id(config), id(key), id(endpoint), model_name))
        if found is None or found[0] is not config or found[1] is not key or found[2] is not endpoint:
            model = config.model(model_name)
            found = (config, key, endpoint, model, unread_backend(call, model, model_name), applying_limits(call))
            if len(self._decided) >= MAX_DECISIONS:
                self._decided.clear()
            self._decided[(id(config), id(key), id(endpoint), model_name)] = found
        model, backend, limited = found[3], found[4], found[5]
        size = call.headers.get("content-length", "")
        if backend is None or not size.isdigit() or int(size) > backend.provider.max_request_bytes \
                or (stream and not backend.provider.streams_in_sse):
            return                  # (too large: the path with every message answers 413)
        reservation = self.reservation
        if limited and (reservation is None or not reservation.may_reserve(call)):
            return
        call.stream = stream        # (the provider's path may say it: attempt_for)
        notes = call.notes
        noted = len(notes.dropped) if notes is not None else 0
        try:
            attempt = attempt_for(call, backend)
        except Refused:
            call.stream = False
            return                  # (the path with every message refuses it, naming why)
        limit_headers = None
        if limited:                 # the last step: what is reserved is the call's
            reserved = await reservation.reserve(call, model, backend, int(size), fields)
            if reserved is None:
                call.stream = False     # the path with every message, as if never here:
                if notes is None:       # what the attempt noted, it notes again
                    call.notes = None
                else:
                    del notes.dropped[noted:]
                return
            limit_headers = call.ratelimit_headers = reserved.headers
            if reserved.output:
                call.output_reserved = reserved.output
        call.body_unread = call.log_fields["body_unread"] = True
        call.stream_passed_through = stream
        # What the service knows of the body: what Envoy's reader (or the path) said of it.
        call.body = {"model": model_name, "stream": stream} if call.codec.model_in_body else {}
        call.model_name, call.model, call.backend, call.backend_order = model_name, model, backend, [0]
        call.client_wants_usage = True
        reply = call.reply
        reply.clear_route_cache = True
        reply.set_headers[ROUTING_HEADER] = backend.provider.cluster
        reply.set_headers.update(attempt.set_headers)
        reply.remove_headers.extend(attempt.remove)
        reply.mode_override = BODY_UNREAD
        # Envoy adds (empty) trailers at the answer's end, which ext_proc sends, and the
        # gateway's response headers (the backend's name, the budgets' x-ratelimit-*, and
        # a stream's cost basis; a JSON answer's cost comes with the trailers' reply).
        headers = {"x-gateway-backend": backend.name, **(limit_headers or {}),
                   **(unread_stream_cost(call, int(size)) if stream else {})}
        reply.add_metadata({"stream_end": "trailers", "headers": headers})

    @staticmethod
    def _usage_streamed(call: Call, fields) -> bool:
        """Whether a stream will bring its usage as the client sent it: the service cannot
        ask the provider for it (`stream_options.include_usage`) in a body it does not
        read, nor take out a usage chunk the client did not ask for."""
        features = call.envoy_features
        return call.codec.streams and STREAMS_PASSED_THROUGH in features and (
            not call.codec.takes_usage_option
            or (fields is not None and announced_bool(fields, "include_usage") is True))
