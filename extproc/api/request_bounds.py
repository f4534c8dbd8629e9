"""How many items a request's arrays may hold: checked with its shape, once, right after
the body is parsed (api/openai_schema.py, api/anthropic_schema.py,
dialects/google/gemini_schema.py), so no request makes a worker walk, guard, count or translate
100,000 messages past Envoy's message timeout (a 400 naming the limit instead).

Each limit is well above what the providers take or what real conversations hold
(docs/api-dialects.md#request-limits): OpenAI takes up to 2,048 embedding inputs, 128
tools and 4 stop sequences, Google 5 stop sequences; agents' conversations hold hundreds
of turns (a long session is compacted before its context fills).
"""

from __future__ import annotations

MAX_ITEMS = 10_000      # messages, contents, input items; texts or token lists of a prompt or an input
MAX_PARTS = 2_000       # content parts or blocks of one message (a tool result's too)
MAX_TOOLS = 1_000       # tools, functions, function declarations, tool calls of one message
MAX_STOPS = 1_000       # stop sequences


def bounded(schema: dict, limit: int) -> dict:
    """A schema whose value, when an array, holds at most `limit` items (its error names
    the limit: api/schemas.py). The count is checked first: the validator would otherwise
    check each of 100,000 items against the alternatives of an `anyOf` before it."""
    return {"allOf": [{"maxItems": limit}, schema]}
