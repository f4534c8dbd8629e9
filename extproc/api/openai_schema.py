"""The shape of each OpenAI endpoint's request body, as far as the gateway reads it.

Checked once, right after the body is parsed (stages/resolve.py), so no stage has to
guard itself against `"messages": 1` or a number where a tool call should be: a body
of the wrong shape is a 400 naming the field, never a 500. Only what the gateway reads
(to route, count, guard and charge) is checked here; other fields are the provider's to
judge, and unknown fields pass.

JSON Schema compiled by fastjsonschema: a typical chat body takes ~2.6 µs, a 101-message
conversation ~70 µs (a hand-written walk: ~0.4 and ~13 µs; docs/decisions/request-shapes.md).
"""

from __future__ import annotations

from typing import Any, Callable

import fastjsonschema

STRING = {"type": "string"}
NULLABLE_STRING = {"type": ["string", "null"]}
OBJECT = {"type": "object"}
COUNT = {"type": ["integer", "null"]}         # its range is the provider's to judge
FLAG = {"type": ["boolean", "null"]}


def _one_of(expected: str, *options: dict) -> dict:
    """Alternatives, with what the error says when none fits (`x-expected`)."""
    return {"anyOf": list(options), "x-expected": expected}


_PART = {"type": "object", "properties": {"type": STRING, "text": STRING, "refusal": STRING}}
CONTENT = _one_of("a string, null, or an array of content parts",
                  NULLABLE_STRING, {"type": "array", "items": {"anyOf": [STRING, _PART]}})
_FUNCTION_CALL = {"type": "object", "properties": {"name": STRING, "arguments": STRING}}
_TOOL_CALL = {"type": "object", "properties": {"id": STRING, "type": STRING, "function": _FUNCTION_CALL}}
_FUNCTION = {"type": "object", "properties": {"name": STRING, "description": STRING, "parameters": OBJECT}}
_TOOL = {"type": "object", "properties": {"type": STRING, "function": _FUNCTION, "custom": _FUNCTION,
                                          "name": STRING, "description": STRING}}
_TOOL_CHOICE = _one_of("a string or an object", STRING, {
    "type": "object", "properties": {"type": STRING, "name": STRING,
                                     "function": {"type": "object", "properties": {"name": STRING}}}})
_TOKENS = {"type": "array", "items": {"type": "integer"}}
# A completions prompt or an embeddings input: text, texts, token ids, or lists of them.
_TEXTS_OR_TOKENS = _one_of("a string, an array of strings, an array of token ids, or an array of them",
                           STRING, {"type": "array", "items": STRING}, _TOKENS, {"type": "array", "items": _TOKENS})
_MESSAGE = {
    "type": "object", "required": ["role"],
    "properties": {
        "role": STRING, "content": CONTENT, "name": STRING, "tool_call_id": STRING,
        "tool_calls": {"type": ["array", "null"], "items": _TOOL_CALL},
        "function_call": {"type": ["object", "null"], "properties": _FUNCTION_CALL["properties"]},
        "refusal": NULLABLE_STRING, "reasoning_content": NULLABLE_STRING,
    },
}
_COMMON = {"model": STRING, "stream": FLAG, "n": COUNT, "max_tokens": COUNT, "user": STRING,
           "stream_options": {"type": ["object", "null"], "properties": {"include_usage": FLAG}}}

SCHEMAS: dict[str, dict] = {
    "chat": {"type": "object", "required": ["model", "messages"], "properties": {
        **_COMMON, "messages": {"type": "array", "items": _MESSAGE}, "max_completion_tokens": COUNT,
        "tools": {"type": ["array", "null"], "items": _TOOL},
        "functions": {"type": ["array", "null"], "items": _FUNCTION},
        "tool_choice": _TOOL_CHOICE, "function_call": _TOOL_CHOICE,
        "prediction": {"type": ["object", "null"], "properties": {"content": CONTENT}},
    }},
    "completions": {"type": "object", "required": ["model", "prompt"], "properties": {
        **_COMMON, "prompt": _TEXTS_OR_TOKENS, "suffix": NULLABLE_STRING, "best_of": COUNT,
    }},
    "embeddings": {"type": "object", "required": ["model", "input"], "properties": {
        "model": STRING, "input": _TEXTS_OR_TOKENS, "dimensions": COUNT,
    }},
    "responses": {"type": "object", "required": ["model"], "properties": {
        "model": STRING, "stream": FLAG, "max_output_tokens": COUNT, "instructions": NULLABLE_STRING,
        "previous_response_id": NULLABLE_STRING,
        "input": _one_of("a string or an array of input items", STRING, {"type": "array", "items": {
            "type": "object", "properties": {
                "type": STRING, "role": STRING, "content": CONTENT, "arguments": STRING, "call_id": STRING,
                "output": {"anyOf": [STRING, {"type": "array"}]}, "name": STRING}}}),
        "tools": {"type": ["array", "null"], "items": _TOOL},
        "tool_choice": _TOOL_CHOICE,
    }},
}

_VALIDATORS: dict[str, Callable[[Any], Any]] = {kind: fastjsonschema.compile(schema)
                                                 for kind, schema in SCHEMAS.items()}


def shape_problem(kind: str, body: dict) -> str | None:
    """What is wrong with the shape of an endpoint's body, naming the field; None when
    nothing is (or the endpoint takes no body)."""
    validate = _VALIDATORS.get(kind)
    if validate is None:
        return None
    try:
        validate(body)
    except fastjsonschema.JsonSchemaValueException as error:
        return _explained(error)
    return None


def _explained(error: fastjsonschema.JsonSchemaValueException) -> str:
    """The validator's finding, as a client would read it. It names the field and the
    rule it breaks, never the value (which may be secret)."""
    field = (error.name or "data").removeprefix("data").lstrip(".")
    where = f"'{field}'" if field else "The request body"
    definition = error.definition if isinstance(error.definition, dict) else {}
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
