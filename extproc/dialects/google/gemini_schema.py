"""The shape of Google's generateContent and countTokens requests, as far as the gateway
reads them (see api/schemas.py: one check, right after the body is parsed, a 400 in
Google's shape naming the field, never the value).

Only the containers and values the gateway walks (to guard, count, translate and charge)
are checked: `contents` and their parts, `systemInstruction`, `tools` and their function
declarations, `toolConfig`, the stop sequences. Numbers are the provider's to judge (its
JSON takes an int32 as a string too), and unknown fields pass.
"""

from __future__ import annotations

from ...api.request_bounds import MAX_ITEMS, MAX_PARTS, MAX_STOPS, MAX_TOOLS, bounded
from ...api.schemas import FLAG, OBJECT, STRING, one_of, schema_checker

_PART = {"type": "object", "properties": {
    "text": STRING, "thought": FLAG, "thoughtSignature": STRING,
    "functionCall": {"type": "object", "properties": {"name": STRING, "id": STRING, "args": OBJECT}},
    "functionResponse": {"type": "object", "properties": {"name": STRING, "id": STRING}},
    "inlineData": {"type": "object", "properties": {"mimeType": STRING, "data": STRING}},
    "fileData": {"type": "object", "properties": {"mimeType": STRING, "fileUri": STRING}},
}}
_CONTENT = {"type": "object", "properties": {"role": STRING, "parts": bounded(
    {"type": "array", "items": _PART}, MAX_PARTS)}}
_DECLARATION = {"type": "object", "properties": {"name": STRING, "description": STRING, "parameters": OBJECT,
                                                 "parametersJsonSchema": OBJECT}}
_TOOL = {"type": "object", "properties": {"functionDeclarations": bounded(
    {"type": ["array", "null"], "items": _DECLARATION}, MAX_TOOLS)}}
_TOOL_CONFIG = {"type": ["object", "null"], "properties": {"functionCallingConfig": {
    "type": ["object", "null"], "properties": {"mode": STRING,
                                               "allowedFunctionNames": {"type": ["array", "null"], "items": STRING}}}}}
_GENERATION_CONFIG = {"type": ["object", "null"], "properties": {
    "stopSequences": bounded({"type": ["array", "null"], "items": STRING}, MAX_STOPS),
    "thinkingConfig": {"type": ["object", "null"]},
}}

_CONTENTS = bounded({"type": ["array", "null"], "items": _CONTENT}, MAX_ITEMS)
GENERATE_CONTENT = {"type": "object", "properties": {
    "contents": _CONTENTS,
    "systemInstruction": one_of("an object of text parts or a string", STRING, _CONTENT, {"type": "null"}),
    "tools": bounded({"type": ["array", "null"], "items": _TOOL}, MAX_TOOLS),
    "toolConfig": _TOOL_CONFIG,
    "generationConfig": _GENERATION_CONFIG,
}}
COUNT_TOKENS = {"type": "object", "properties": {
    "contents": _CONTENTS,
    "generateContentRequest": GENERATE_CONTENT,
}}

generate_content_shape_problem = schema_checker(GENERATE_CONTENT)
count_tokens_shape_problem = schema_checker(COUNT_TOKENS)
