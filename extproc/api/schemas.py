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


def schema_checker(schema: dict) -> Callable[[dict], str | None]:
    """A function body -> what is wrong with the body's shape, naming the field, or None
    when nothing is: one per endpoint, compiled once, on its first body. Compiling all ten
    costs ~0.14 s of CPU, which every process importing the dialects would otherwise pay at
    start (the supervisor, the MCP aggregator, each CLI command), though only a worker
    checks bodies, and only of the endpoints its clients call (~15 ms once for each)."""
    compiled: list[Callable[[Any], Any]] = []

    def shape_problem(body: dict) -> str | None:
        if not compiled:
            compiled.append(fastjsonschema.compile(schema))
        try:
            compiled[0](body)
        except fastjsonschema.JsonSchemaValueException as error:
            return _explained(error)
        return None
    return shape_problem


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
