"""A call's prompt tokens, counted offline once per body.

A body sent again byte for byte finds its count among the facts kept with its bytes
(api/resent_values.py). An agent's next turn, a body grown from one counted before (its
array kept item for item, new items after them, the members after the array the kept
body's), is counted from that body's count and its new items alone: a dialect's prompt
texts are gathered item by item, so the count of a history is the sum of its items'.
Without it, every turn walked and looked up the whole history again (~150 µs a turn of a
400 KB history, growing with it). Imports api/ and dialects/ only.
"""

from __future__ import annotations

from ..api.resent_values import Grown
from ..api.tokens import count_more, count_prompt
from ..dialects import Codec

# The facts a counted body keeps: its count from its texts (token ids apart), its number
# of messages, and the length of each top-level array (which a next turn may grow).
_COUNTED = "prompt_counted"


def prompt_tokens_of(codec: Codec, body: dict, encoding: str, facts: dict | None, grown: Grown | None) -> int:
    """The prompt tokens of `body` (its bytes unchanged when `facts` is given: what the
    stages found of them, and `grown`, what they grew from, or None)."""
    key = (_COUNTED, codec.kind, encoding)
    counted = facts.get(key) if facts is not None else None
    if counted is None:
        counted = _grown(codec, body, encoding, grown, key) if facts is not None and grown is not None else None
        if counted is None:
            texts, messages = codec.prompt_texts(body)
            counted = (count_prompt(texts, messages, encoding), messages, _arrays(body) if facts is not None else None)
        if facts is not None:
            facts[key] = counted
    return counted[0] + codec.prompt_token_ids(body)


def _grown(codec: Codec, body: dict, encoding: str, grown: Grown, key: tuple) -> tuple | None:
    """The count of a body grown from a counted one by new items alone, or None when the
    body before was not counted, the items after its last kept one were replaced, or the
    members after the array are the new body's own."""
    before = grown.facts.get(key)
    if before is None or not grown.after_kept:
        return None
    tokens, messages, lengths = before
    items = body.get(grown.key)
    if lengths.get(grown.key) != grown.kept or type(items) is not list:
        return None
    texts, more = codec.prompt_texts({grown.key: items[grown.kept:]})
    return tokens + count_more(texts, more, messages, encoding), messages + more, _arrays(body)


def _arrays(body: dict) -> dict[str, int]:
    return {name: len(value) for name, value in body.items() if type(value) is list}
