"""The cost of a call, told to its caller: `x-gateway-cost-usd`.

What the header says depends on when the gateway knows it:
- a JSON answer: the call's cost as charged (its usage at the price of the backend that
  answered), known when the body is read. When the service holds the headers (two
  response messages) it sets the header itself; when they are skipped (one message,
  one_message.py) the cost goes into metadata `llm_gateway.cost_usd` with the body's
  reply and Envoy's header_mutation filter, which sees the headers only once
  json_to_metadata has released them at the body's end, writes it (envoy/template.yaml);
- a stream: its headers leave before its usage exists, so the header carries the
  reservation's price basis (prompt tokens counted offline plus the output cap, at the
  model's dearest backend: what a budget reserved). A stream the service reads gets the
  final cost added to the usage it reports (`usage.cost_usd` in OpenAI's usage chunk or
  Responses' `response.completed`, in Anthropic's `message_delta`; a stream translated
  from the other dialect gets it in the usage the translation writes); a stream passed
  through unseen (pass_through.py) cannot be changed: its final cost is on the log line.
  A stream whose body the service never read (body_unread.py) has no offline count: its
  body's length stands for its prompt (a text token is at least a byte) and its model's
  maximum output for its output. A JSON answer whose body it never read gets its cost as
  charged, from the trailers' reply, as a one-message answer does (Envoy's
  json_to_metadata holds its headers until then).
"""

from __future__ import annotations

from ...api.provider_json import dumps
from ...api.usage import Usage
from ...dialects import codec_of
from ...pipeline.call import Call
from ...pipeline.stage import Stage

COST_HEADER = "x-gateway-cost-usd"
COST_METADATA_KEY = "cost_usd"        # llm_gateway.cost_usd: the final cost, for Envoy's header_mutation


def usd(value: float) -> str:
    """A header's USD amount: fixed point, never an exponent (1e-05 parses badly)."""
    return f"{value:.8f}"


class ChargedCost:
    """The charge worked out for a usage and backend (a call asks ~5 times: its cost
    metadata, the budget's settle, the meters, the log line): a stage that changes the
    usage replaces the object (stages/accounting/usage.py), so it is known by identity."""
    __slots__ = ("usage", "backend", "usd")

    def __init__(self) -> None:
        self.usage = self.backend = None
        self.usd = 0.0


def charged_cost(call: Call) -> float:
    """What the call is charged: its usage at the price of the backend that answered."""
    usage, model = call.usage, call.model
    if usage is None or model is None:
        return 0.0
    held = call.own(ChargedCost)
    if held.usage is not usage or held.backend is not call.backend:
        held.usage, held.backend = usage, call.backend
        held.usd = model.cost(call.backend, usage)
    return held.usd


class ReservationBasis:
    """The reservation's price, worked out once per call."""
    __slots__ = ("usd",)

    def __init__(self) -> None:
        self.usd: float | None = None


def reservation_basis(call: Call) -> float:
    """The reservation's price: the prompt counted offline and the output cap, at the
    dearest backend (what a budget reserves; stages/budget/limits.py)."""
    held = call.own(ReservationBasis)
    if held.usd is not None:
        return held.usd
    basis = 0.0
    if call.model is not None and call.body is not None and call.endpoint is not None \
            and call.endpoint.generates:
        estimate = Usage(call.prompt_tokens(), call.output_cap())
        basis = max(call.model.cost(backend, estimate) for backend in call.model.backends)
    held.usd = basis
    return basis


def stream_usage_with_cost(call: Call, data: dict) -> bytes | None:
    """An event carrying the stream's final usage, rewritten with the call's cost in it;
    None for any other event. Called once `call.usage` is updated from `data`."""
    usage = codec_of(call.provider_kind).final_usage(data)
    if usage is None:
        return None
    usage[COST_METADATA_KEY] = round(charged_cost(call), 8)
    return dumps(data)


class CallCost(Stage):
    """Sets `x-gateway-cost-usd` (see the module's docstring). After ResponseUsage, whose
    hooks make the usage final before this stage's run."""

    name = "cost"
    reads = frozenset({"backend", "body", "endpoint", "json_passing_by", "model", "output_reserved",
                       "response_in_body", "response_streamed", "usage"})
    writes = frozenset()

    @staticmethod
    def response_headers(call: Call, headers: dict[str, str], end_of_stream: bool) -> None:
        if call.backend is None or call.body is None:
            return
        if end_of_stream:
            call.reply.set_headers[COST_HEADER] = usd(charged_cost(call))
        elif call.response_streamed or call.json_passing_by:
            # Its headers leave now, before its usage exists.
            call.reply.set_headers[COST_HEADER] = usd(reservation_basis(call))

    @staticmethod
    def response_body(call: Call, chunk: bytes, end_of_stream: bool) -> None:
        if not end_of_stream or call.backend is None or call.body is None:
            return None
        cost = usd(charged_cost(call))
        call.reply.add_metadata({COST_METADATA_KEY: cost})     # Envoy's access log, header_mutation
        if not (call.response_streamed or call.response_in_body or call.json_passing_by):
            call.reply.set_headers[COST_HEADER] = cost         # the service holds the headers
        return None

    @staticmethod
    def response_trailers(call: Call, numbers: dict) -> None:
        if call.backend is not None and call.body is not None:
            call.reply.add_metadata({COST_METADATA_KEY: usd(charged_cost(call))})


def unread_stream_cost(call: Call, body_bytes: int) -> dict[str, str]:
    """The cost header Envoy adds to a stream whose body the service never read: its
    body's length in tokens standing for its prompt, and its model's maximum output for
    one answer (the body's own cap is unread), at the model's dearest backend."""
    model = call.model
    estimate = Usage(body_bytes, model.output_ceiling(call.dialect)[0])
    return {COST_HEADER: usd(max(model.cost(backend, estimate) for backend in model.backends))}


def envoy_added_cost(call: Call) -> dict[str, str]:
    """The cost header Envoy adds from metadata for a stream whose headers the service
    does not see (pass_through.py): the reservation's price basis."""
    return {COST_HEADER: usd(reservation_basis(call))} if call.stream else {}
