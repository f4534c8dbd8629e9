"""Request body: parse it once, resolve the model, check the caller may use it."""

from __future__ import annotations

import orjson

from ..api.repeated_keys import repeated_key
from ..api.resent_values import ResentValues
from ..pipeline.call import Call
from ..pipeline.errors import invalid_request, model_not_allowed, model_not_found, request_too_large
from ..pipeline.stage import Stage


# Agents resend their whole history on every turn, and a client resends a body byte for
# byte when it retries. A long body found sound (no repeated key, the endpoint's shape)
# says so in the facts kept with its bytes (api/resent_values.py), so the same bytes
# again skip both checks (~2 ms for 400 KB), and a body grown from it has only its new
# items checked (~0.2 ms of 0.25 saved for a 600 KB history with two turns added).
SOUND = "sound"


class ParseRequest(Stage):
    """The body is parsed here and only here; later stages read `call.body`."""

    name = "parse"
    reads = frozenset({"endpoint", "key", "path", "raw_body", "resource_id"})
    writes = frozenset({"body", "body_changed", "body_facts", "body_grown", "client_wants_usage", "model_name",
                        "stream"})

    def __init__(self) -> None:
        self.resent = ResentValues()            # a long body's values met before (an agent's history)

    def request_body(self, call: Call) -> None:
        if not (call.endpoint.generates or call.codec.counts_tokens):
            return                              # a stored response's cancel: the body is the provider's
        body, facts, grown = self.resent.parse(call.raw_body, call.key.team or call.key.id) \
            if call.key is not None else (None, None, None)
        if body is None:
            try:
                body = orjson.loads(call.raw_body)
            except orjson.JSONDecodeError as error:
                raise invalid_request(not_json(str(error))) from None
        if not isinstance(body, dict):
            raise invalid_request("The request body must be a JSON object.")
        sound = (SOUND, call.endpoint.kind)     # the shape checked is the endpoint's
        unchecked = facts is None or sound not in facts
        # An agent's next turn: the body before it, found sound, with items added to (or
        # rewritten at the end of) one array. What was found of the rest holds of it still.
        unchanged = (grown.key, grown.kept) if unchecked and grown is not None and sound in grown.facts else None
        if unchanged is not None:
            refuse_repeated_keys(grown.listed, body[grown.key][grown.kept:])
        elif unchecked:
            refuse_repeated_keys(call.raw_body, body)  # on the body as sent, before any change
        model = body.get("model")
        if call.endpoint.model_in_path and model != call.resource_id:
            # The path names the model, whatever the body says (or if it says nothing, as
            # Azure's own examples send it): Azure's deployment (its body names the model
            # for the OpenAI-dialect provider), Google's model (its body names none: the
            # provider's path will).
            model = call.resource_id
            if call.codec.model_in_body:
                body["model"] = model
                call.body_changed = True
        # The model is checked every time: whether it comes from the path or the body is
        # the path's (the same bytes, found sound on Azure's path, may name none on /v1).
        if not isinstance(model, str) or not model:
            raise invalid_request("The request body must name a 'model' (a string).")
        if unchecked:
            self._check(call, body, unchanged)
            if facts is not None:
                facts[sound] = True
        call.body = body
        call.body_facts = facts
        call.body_grown = grown
        call.model_name = model
        call.stream = call.endpoint.streams_by_path or body.get("stream") is True
        options = body.get("stream_options")
        call.client_wants_usage = call.caller.reports_stream_usage or (not call.stream) or (
            isinstance(options, dict) and options.get("include_usage") is True)


    @staticmethod
    def _check(call: Call, body: dict, unchanged: tuple[str, int] | None = None) -> None:
        problem = call.codec.shape_problem(body, unchanged)
        if problem is not None:          # checked once here: later stages read a body of the right shape
            raise invalid_request(problem)


def not_json(reason: str) -> str:
    """Why a body is refused as not JSON, from the parser's reason (never the body's bytes):
    bytes that are not UTF-8 and lone surrogates (`"\\ud800"`) are named, as no JSON text
    may hold them and a client may not expect it."""
    if "UTF-8" in reason or "surrogate" in reason:
        return ("The request body is not valid JSON: it must be UTF-8 text, and its strings may not "
                "hold bytes that are not UTF-8 or a lone surrogate escape such as \\ud800.")
    return "The request body is not valid JSON."


def refuse_repeated_keys(raw: bytes, body: dict) -> None:
    """A 400 for a body that repeats a key in one of its objects: the provider's parser
    might keep the other value (repeated_keys.py). `body` is `raw` parsed, unchanged."""
    repeated = repeated_key(raw, body)
    if repeated is not None:
        named = f"the key '{repeated[:100]}'" if repeated else "a key"
        raise invalid_request(f"The request body repeats {named} in one of its objects; "
                              "send each key once.")


class ResolveModel(Stage):
    """Concrete or virtual model → its definition; 404 unknown, 403 not allowed."""

    name = "resolve"
    reads = frozenset({"body", "key", "model_name", "raw_body"})
    writes = frozenset({"model"})

    def request_body(self, call: Call) -> None:
        if call.body is None:
            return
        model = call.config.model(call.model_name)
        if model is None:
            raise model_not_found(call.model_name, (name for name in call.config.models if call.key.may_use(name)))
        if not call.key.may_use(model.name):
            raise model_not_allowed(model.name)
        # Envoy's listener takes the largest body any provider accepts; this model's
        # providers may take less. Refused here, before anything reads it: an attempt
        # Envoy would send could only fail, and the guardrails would read it for nothing.
        largest = model.max_request_bytes
        if len(call.raw_body) > largest:
            raise request_too_large(len(call.raw_body), largest, model.name)
        call.model = model
