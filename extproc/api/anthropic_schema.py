"""The shape of Anthropic's Messages requests, as far as the gateway reads them (see
api/schemas.py and api/openai_schema.py: one check, a 400 naming the field)."""

from __future__ import annotations

from .request_bounds import MAX_ITEMS, MAX_PARTS, MAX_STOPS, MAX_TOOLS, bounded
from .schemas import COUNT, FLAG, OBJECT, STRING, one_of, schema_checker

_BLOCK = {"type": "object", "required": ["type"], "properties": {
    "type": STRING, "text": STRING, "thinking": STRING, "signature": STRING, "id": STRING, "name": STRING,
    "input": OBJECT, "tool_use_id": STRING, "is_error": FLAG,
    "content": bounded({"anyOf": [STRING, {"type": "array"}]}, MAX_PARTS),
    "source": {"type": "object", "properties": {"type": STRING, "media_type": STRING, "data": STRING,
                                                "url": STRING}},
}}
_TOOL_RESULT_CONTENT = bounded({"anyOf": [STRING, {"type": "array", "items": _BLOCK}]}, MAX_PARTS)
_BLOCK_WITH_RESULTS = {**_BLOCK, "properties": {**_BLOCK["properties"], "content": _TOOL_RESULT_CONTENT}}
CONTENT = bounded(one_of("a string or an array of content blocks", STRING,
                         {"type": "array", "items": _BLOCK_WITH_RESULTS}), MAX_PARTS)
_MESSAGE = {"type": "object", "required": ["role", "content"], "properties": {"role": STRING, "content": CONTENT}}
_SYSTEM = bounded(one_of("a string or an array of text blocks", STRING, {"type": "array", "items": _BLOCK}),
                  MAX_PARTS)
_TOOL = {"type": "object", "properties": {"name": STRING, "type": STRING, "description": STRING,
                                          "input_schema": OBJECT}}
_COMMON = {"model": STRING, "messages": bounded({"type": "array", "items": _MESSAGE}, MAX_ITEMS),
           "system": _SYSTEM, "tools": bounded({"type": ["array", "null"], "items": _TOOL}, MAX_TOOLS),
           "tool_choice": {"type": ["object", "null"], "properties": {"type": STRING, "name": STRING}},
           "thinking": {"type": ["object", "null"], "properties": {"type": STRING, "budget_tokens": COUNT}}}

MESSAGES = {"type": "object", "required": ["model", "messages"], "properties": {
    **_COMMON, "max_tokens": COUNT, "stream": FLAG,
    "stop_sequences": bounded({"type": ["array", "null"], "items": STRING}, MAX_STOPS),
    "metadata": {"type": ["object", "null"], "properties": {"user_id": {"type": ["string", "null"]}}},
}}
COUNT_TOKENS = {"type": "object", "required": ["model", "messages"], "properties": _COMMON}

messages_shape_problem = schema_checker(MESSAGES)
count_tokens_shape_problem = schema_checker(COUNT_TOKENS)
