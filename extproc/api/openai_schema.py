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

from .request_bounds import MAX_ITEMS, MAX_PARTS, MAX_STOPS, MAX_TOOLS, bounded
from .schemas import COUNT, FLAG, NULLABLE_STRING, OBJECT, STRING, schema_checker
from .schemas import one_of as _one_of

_PART = {"type": "object", "properties": {"type": STRING, "text": STRING, "refusal": STRING}}
CONTENT = bounded(_one_of("a string, null, or an array of content parts",
                          NULLABLE_STRING, {"type": "array", "items": {"anyOf": [STRING, _PART]}}), MAX_PARTS)
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
_TEXTS_OR_TOKENS = bounded(_one_of("a string, an array of strings, an array of token ids, or an array of them",
                                   STRING, {"type": "array", "items": STRING}, _TOKENS,
                                   {"type": "array", "items": _TOKENS}), MAX_ITEMS)
_STOP = bounded({}, MAX_STOPS)          # its shape is the provider's to judge; its length is bounded
_MESSAGE = {
    "type": "object", "required": ["role"],
    "properties": {
        "role": STRING, "content": CONTENT, "name": STRING, "tool_call_id": STRING,
        "tool_calls": bounded({"type": ["array", "null"], "items": _TOOL_CALL}, MAX_TOOLS),
        "function_call": {"type": ["object", "null"], "properties": _FUNCTION_CALL["properties"]},
        "refusal": NULLABLE_STRING, "reasoning_content": NULLABLE_STRING,
    },
}
_COMMON = {"model": STRING, "stream": FLAG, "n": COUNT, "max_tokens": COUNT, "user": STRING, "stop": _STOP,
           "stream_options": {"type": ["object", "null"], "properties": {"include_usage": FLAG}}}

CHAT = {"type": "object", "required": ["model", "messages"], "properties": {
    **_COMMON, "messages": bounded({"type": "array", "items": _MESSAGE}, MAX_ITEMS),
    "max_completion_tokens": COUNT,
    "tools": bounded({"type": ["array", "null"], "items": _TOOL}, MAX_TOOLS),
    "functions": bounded({"type": ["array", "null"], "items": _FUNCTION}, MAX_TOOLS),
    "tool_choice": _TOOL_CHOICE, "function_call": _TOOL_CHOICE,
    "prediction": {"type": ["object", "null"], "properties": {"content": CONTENT}},
}}
COMPLETIONS = {"type": "object", "required": ["model", "prompt"], "properties": {
    **_COMMON, "prompt": _TEXTS_OR_TOKENS, "suffix": NULLABLE_STRING, "best_of": COUNT,
}}
EMBEDDINGS = {"type": "object", "required": ["model", "input"], "properties": {
    "model": STRING, "input": _TEXTS_OR_TOKENS, "dimensions": COUNT,
}}
RESPONSES = {"type": "object", "required": ["model"], "properties": {
    "model": STRING, "stream": FLAG, "max_output_tokens": COUNT, "instructions": NULLABLE_STRING,
    "previous_response_id": NULLABLE_STRING,
    "input": bounded(_one_of("a string or an array of input items", STRING, {"type": "array", "items": {
        "type": "object", "properties": {
            "type": STRING, "role": STRING, "content": CONTENT, "arguments": STRING, "call_id": STRING,
            "output": bounded({"anyOf": [STRING, {"type": "array"}]}, MAX_PARTS), "name": STRING}}}), MAX_ITEMS),
    "tools": bounded({"type": ["array", "null"], "items": _TOOL}, MAX_TOOLS),
    "tool_choice": _TOOL_CHOICE,
}}

chat_shape_problem = schema_checker(CHAT)
completions_shape_problem = schema_checker(COMPLETIONS)
embeddings_shape_problem = schema_checker(EMBEDDINGS)
responses_shape_problem = schema_checker(RESPONSES)
