"""Request body: parse it once, resolve the model, check the caller may use it."""

from __future__ import annotations

import orjson

from ..api.dialects import shape_problem
from ..api.repeated_keys import repeated_key
from ..pipeline.call import Call
from ..pipeline.errors import invalid_request, model_not_allowed, model_not_found
from ..pipeline.stage import Stage


class ParseRequest(Stage):
    """The body is parsed here and only here; later stages read `call.body`."""

    name = "parse"

    def request_body(self, call: Call) -> None:
        if not (call.endpoint.generates or call.endpoint.kind == "count_tokens"):
            return                              # a stored response's cancel: the body is the provider's
        try:
            body = orjson.loads(call.raw_body)
        except orjson.JSONDecodeError:
            raise invalid_request("The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise invalid_request("The request body must be a JSON object.")
        repeated = repeated_key(call.raw_body, body)
        if repeated is not None:
            # The provider's parser might keep the other value (repeated_keys.py).
            named = f"the key '{repeated[:100]}'" if repeated else "a key"
            raise invalid_request(f"The request body repeats {named} in one of its objects; "
                                  "send each key once.")
        model = body.get("model")
        if call.endpoint.model_in_path and model != call.resource_id:
            # Azure's form: the deployment in the path is the model, whatever the body says.
            model = body["model"] = call.resource_id
            call.body_changed = True
        if not isinstance(model, str) or not model:
            raise invalid_request("The request body must name a 'model' (a string).")
        problem = shape_problem(call.endpoint.kind, body)
        if problem is not None:          # checked once here: later stages read a body of the right shape
            raise invalid_request(problem)
        call.body = body
        call.model_name = model
        call.stream = body.get("stream") is True
        options = body.get("stream_options")
        call.client_wants_usage = call.endpoint.dialect == "anthropic" or (not call.stream) or (
            isinstance(options, dict) and options.get("include_usage") is True)


class ResolveModel(Stage):
    """Concrete or virtual model → its definition; 404 unknown, 403 not allowed."""

    name = "resolve"

    def request_body(self, call: Call) -> None:
        if call.body is None:
            return
        model = call.config.model(call.model_name)
        if model is None:
            raise model_not_found(call.model_name)
        if not call.key.may_use(model.name):
            raise model_not_allowed(model.name)
        call.model = model
