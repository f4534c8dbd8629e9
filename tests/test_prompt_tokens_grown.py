"""An agent's next turn is counted from the turn before it and its new items alone
(pipeline/prompt_tokens.py): the count must be the one a walk of the whole body gives,
in every dialect whose bodies grow, and the whole body is walked again whenever the
turn before was not simply extended."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.api.resent_values import ResentValues
from extproc.dialects import CODECS
from extproc.pipeline.prompt_tokens import prompt_tokens_of

_PROSE = "The agent read the repository and wrote a plan for the change, step by step. "


def _turn(kind: str, index: int, words: int) -> dict:
    """One item of `kind`'s growing array, as its clients write it."""
    text = f"{index}: " + _PROSE * words
    if kind == "chat":
        return {"role": "user" if index % 2 else "assistant", "content": text} if index % 3 else \
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": f"c{index}", "type": "function", "function": {"name": "read", "arguments": '{"path": "a.py"}'}}]}
    if kind == "messages":
        return {"role": "user" if index % 2 else "assistant", "content": [{"type": "text", "text": text}]}
    if kind == "responses":
        return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]} if index % 2 else \
            {"type": "function_call_output", "call_id": f"c{index}", "output": text}
    return {"role": "user" if index % 2 else "model", "parts": [{"text": text}]}


_ARRAY = {"chat": "messages", "messages": "messages", "responses": "input", "generate_content": "contents"}


def _body(kind: str, turns: list[dict], after: str = "Be brief.") -> bytes:
    """The history, and after it a member the model reads too (a tool's description, the
    instructions), where the dialect has one."""
    head = {"chat": {"model": "gpt-4o-mini"}, "messages": {"model": "claude-sonnet-4-6", "system": "Be brief."},
            "responses": {"model": "gpt-4o-mini"}, "generate_content": {}}[kind]
    tail = {"chat": {"user": after}, "messages": {"tools": [{"name": "read", "description": after}]},
            "responses": {"instructions": after}, "generate_content": {"systemInstruction": {"parts": [{"text": after}]}}}[kind]
    return orjson.dumps({**head, _ARRAY[kind]: turns, **tail})


def _counted(values: ResentValues, kind: str, raw: bytes) -> tuple[int, bool]:
    """The count the gateway makes of `raw` (parsed as the workers parse it), and whether
    it was a grown body's."""
    body, facts, grown = values.parse(raw, "team")
    assert body is not None
    return prompt_tokens_of(CODECS[kind], body, "o200k_base", facts, grown), grown is not None


def _walked(kind: str, raw: bytes) -> int:
    return prompt_tokens_of(CODECS[kind], orjson.loads(raw), "o200k_base", None, None)


@pytest.mark.parametrize("kind", sorted(_ARRAY))
@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.integers(0, 40)), min_size=2, max_size=6))
def test_a_session_counts_each_turn_as_a_walk_of_the_whole_body(kind, steps):
    """Each turn adds 1-3 items to the history before it: counted from the last count, it
    is what walking the whole body counts."""
    values = ResentValues()
    turns = [_turn(kind, i, 300) for i in range(60)]          # a history of ~300 KB
    raw = _body(kind, turns)
    assert _counted(values, kind, raw)[0] == _walked(kind, raw)
    grew = 0
    for added, words in steps:
        turns = turns + [_turn(kind, len(turns) + i, words) for i in range(added)]
        raw = _body(kind, turns)
        count, grown = _counted(values, kind, raw)
        grew += grown
        assert count == _walked(kind, raw)
    assert grew == len(steps)              # every turn took the grown path


@pytest.mark.parametrize("kind", sorted(_ARRAY))
def test_a_turn_that_replaces_the_last_item_or_changes_what_follows_is_walked_whole(kind):
    values = ResentValues()
    turns = [_turn(kind, i, 300) for i in range(60)]
    _counted(values, kind, _body(kind, turns))
    replaced = turns[:-1] + [_turn(kind, 999, 5), _turn(kind, 1000, 7)]     # the last item rewritten
    raw = _body(kind, replaced)
    assert _counted(values, kind, raw)[0] == _walked(kind, raw)
    longer = replaced + [_turn(kind, 1001, 9)]
    raw = _body(kind, longer, after="Read the tests first, then answer in one paragraph of plain prose.")
    assert _counted(values, kind, raw)[0] == _walked(kind, raw)
