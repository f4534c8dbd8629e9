"""Checking a request body's shape against a JSON Schema once, with errors that name the
field and the rule, never the value (api/openai_schema.py, api/anthropic_schema.py).

Compiled by fastjsonschema: docs/decisions/request-shapes.md has the measurements.
"""

from __future__ import annotations

from typing import Any, Callable

import fastjsonschema

STRING = {"type": "string"}
NULLABLE_STRING = {"type": ["string", "null"]}
OBJECT = {"type": "object"}
COUNT = {"type": ["integer", "null"]}         # its range is the provider's to judge
FLAG = {"type": ["boolean", "null"]}


def one_of(expected: str, *options: dict) -> dict:
    """Alternatives, with what the error says when none fits (`x-expected`)."""
    return {"anyOf": list(options), "x-expected": expected}


# Every checker made, each as the call that compiles it: a process that forks workers (the
# fork server, runtime/preloaded.py) compiles them all first, so each worker starts with
# them rather than compiling one in the first call of each endpoint it answers.
_MADE: list[Callable[[], None]] = []


def compile_all() -> None:
    """Compiles every checker made so far."""
    for compile_now in _MADE:
        compile_now()


def schema_checker(schema: dict) -> Callable[..., str | None]:
    """A function (body, unchanged=None) -> what is wrong with the body's shape, naming the
    field, or None when nothing is: one per endpoint, compiled once, on its first body.
    Compiling all ten costs ~0.14 s of CPU, which every process importing the dialects would
    otherwise pay at start (the supervisor, the MCP aggregator, each CLI command), though
    only a worker checks bodies, and only of the endpoints its clients call (~15 ms once
    for each): the fork server compiles them all for the workers (`compile_all`).

    `unchanged`: (key, count) when the first `count` items of the body's array `key` were
    found of the right shape in a body that held them at the same places (an agent's
    history, resent with turns added: api/resent_values.py). Where the schema checks that
    array's items one by one (each against one schema, the array's length bounded), only
    the others are checked, and the length; a problem is then looked for in the whole
    body, so that its message names the item where it lies."""
    compiled: list[Callable[[Any], Any]] = []
    apart = _arrays_checked_by_item(schema)

    def compile_now() -> None:
        if not compiled:
            compiled.append(fastjsonschema.compile(schema))
    _MADE.append(compile_now)

    def shape_problem(body: dict, unchanged: tuple[str, int] | None = None) -> str | None:
        if not compiled:
            compile_now()
        if unchanged is not None:
            key, count = unchanged
            value, bound = body.get(key), apart.get(key, -1)
            if type(value) is list and count <= len(value) <= bound:
                try:
                    compiled[0]({**body, key: value[count:]})
                    return None
                except fastjsonschema.JsonSchemaValueException:
                    pass                        # named below, where it lies
        try:
            compiled[0](body)
        except fastjsonschema.JsonSchemaValueException as error:
            return _explained(error)
        return None
    return shape_problem


def _arrays_checked_by_item(schema: dict) -> dict[str, int]:
    """The top-level members whose value, when an array, is checked item by item against
    one schema, and its length against a bound (`request_bounds.bounded`): for each, the
    bound. An array checked otherwise (several array forms, as a prompt of texts or token
    ids) is not listed: its items are not checked one by one."""
    found = {}
    for key, member in (schema.get("properties") or {}).items():
        parts = member.get("allOf")
        if not (isinstance(parts, list) and len(parts) == 2 and set(parts[0]) == {"maxItems"}):
            continue
        inner = parts[1]
        forms = inner.get("anyOf", [inner])
        arrays = [form for form in forms if "array" in _types(form)]
        if len(arrays) == 1 and set(arrays[0]) <= {"type", "items"} and isinstance(arrays[0].get("items"), dict) \
                and ("anyOf" not in inner or set(inner) <= {"anyOf", "x-expected"}):
            found[key] = parts[0]["maxItems"]
    return found


def _types(schema: dict) -> list:
    kinds = schema.get("type", [])
    return [kinds] if isinstance(kinds, str) else list(kinds)


def _explained(error: fastjsonschema.JsonSchemaValueException) -> str:
    """The validator's finding, as a client would read it. It names the field and the
    rule it breaks, never the value (which may be secret)."""
    field = (error.name or "data").removeprefix("data").lstrip(".")
    where = f"'{field}'" if field else "The request body"
    definition = error.definition if isinstance(error.definition, dict) else {}
    if error.rule == "maxItems":        # api/request_bounds.py
        return f"{where} holds more than {definition.get('maxItems')} items, the gateway's limit."
    if definition.get("x-expected"):
        return f"{where} must be {definition['x-expected']}."
    if error.rule == "type":
        kinds = definition.get("type")
        kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
        return f"{where} must be {' or '.join(_ARTICLES.get(k, k) for k in kinds)}."
    if error.rule == "required":
        present = error.value if isinstance(error.value, dict) else {}
        missing = [name for name in definition.get("required", ()) if name not in present]
        return f"{where} must have {', '.join(repr(name) for name in missing)}."
    if error.rule == "minimum":
        return f"{where} must be at least {definition.get('minimum')}."
    return f"{where} {(error.message or '').removeprefix(error.name or '').strip()}."


_ARTICLES = {"array": "an array", "object": "an object", "string": "a string", "integer": "an integer",
             "number": "a number", "boolean": "true or false", "null": "null"}
