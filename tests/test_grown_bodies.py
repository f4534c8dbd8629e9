"""An agent's next body read from the body before it (api/grown_bodies.py) is the value
orjson gives the whole body, whatever the change: items added or rewritten at an array's
end, in any array, another member changed, whitespace, broken bytes; and the grown read
is the one taken where a client writes as orjson does and adds to its history."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import fastjsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_resent_values import BODY, ITEM, JSON, changed_everywhere, padded, same

from extproc.api import grown_bodies, openai_schema
from extproc.api.openai import ENDPOINTS
from extproc.api.request_bounds import bounded
from extproc.api.schemas import schema_checker
from extproc.dialects import codec_of
from extproc.api.grown_bodies import common_prefix
from extproc.api.resent_values import HEAD, MIN_BODY_BYTES, ResentValues
from extproc.pipeline.call import Call
from extproc.pipeline.errors import GatewayError
from extproc.stages.resolve import ParseRequest

DEEP = os.environ.get("LLMGW_EXAMPLES") == "deep"
EXAMPLES = 300 if DEEP else 50


@settings(max_examples=EXAMPLES * 4, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=200), st.binary(max_size=70_000).map(lambda b: b[:1] * len(b)))
def test_common_prefix_is_where_two_byte_strings_part(left, right, shared):
    old, new = shared + left, shared + right
    expected = next((i for i, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old), len(new)))
    assert common_prefix(old, new) == expected


def grown_reads(monkeypatch) -> list:
    """The bodies read by growing a kept one."""
    grown, reads = grown_bodies.growth, []

    def counted(record, raw):
        found = grown(record, raw)
        if found is not None:
            reads.append(raw)
        return found
    monkeypatch.setattr("extproc.api.resent_values.growth", counted)
    return reads


WRITERS = {
    "orjson": orjson.dumps,
    "spaced": lambda value: json.dumps(value).encode(),
    "compact ascii": lambda value: json.dumps(value, separators=(",", ":")).encode(),
}


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(BODY, st.sampled_from(sorted(WRITERS)), st.data())
def test_a_session_of_any_changes_parses_as_orjson_parses_each_body(monkeypatch, body, writer, data):
    reads = grown_reads(monkeypatch)
    write = WRITERS[writer]
    values = ResentValues()
    body = padded(body)
    appended, raw, sent = False, b"", set()
    for turn in range(4):
        head, raw = raw[:HEAD], write(body)
        before = len(reads)
        parsed = values.loads(raw, "team")
        if appended and writer == "orjson" and raw.startswith(head) and raw not in sent:
            assert len(reads) == before + 1, "items added to a history are read alone"
        sent.add(raw)                       # (a body sent before is found as it is, not grown)
        if len(raw) < MIN_BODY_BYTES:       # items taken out: parsed whole by the caller
            assert parsed is None
            break
        assert parsed is not None and same(parsed, orjson.loads(raw)), turn
        changed_everywhere(parsed)          # what a stage does to a body never reaches the next
        arrays = [key for key, value in body.items() if type(value) is list]
        change = data.draw(st.sampled_from(["append", "rewrite last", "drop last", "other member", "same"]))
        key = data.draw(st.sampled_from(arrays))
        items = body[key]
        appended = change == "append" and bool(items)
        if change == "append":
            items += data.draw(st.lists(ITEM, min_size=1, max_size=3))
        elif change == "rewrite last" and items:
            items[-data.draw(st.integers(1, len(items))):] = data.draw(st.lists(ITEM, max_size=3))
        elif change == "drop last" and items:
            items.pop()
        elif change == "other member":
            body[data.draw(st.sampled_from(["model", "n", "extra"]))] = data.draw(JSON)


def test_a_history_added_to_is_grown_from_the_body_before(monkeypatch):
    reads = grown_reads(monkeypatch)
    values = ResentValues()
    history = [{"role": "user", "content": f"{index} " + "é" * 600} for index in range(60)]
    tools = [{"name": f"tool{index}", "description": "d" * 300} for index in range(5)]
    for turn in range(6):
        body = {"model": "m", "messages": history, "tools": tools, "stream": True}
        raw = orjson.dumps(body)
        assert same(values.loads(raw, "team"), body)
        # The model's answer and the next question; the last question's cache marker moved.
        history = history[:-1] + [{**history[-1], "cache": None},
                                  {"role": "assistant", "content": f"answer {turn}"},
                                  {"role": "user", "content": f"turn {turn} " + "ü" * 300, "cache": "here"}]
    assert len(reads) == 5                  # every turn after the first


@pytest.mark.parametrize("run", [
    b',{"a":1}]',                           # the array closed early: its `]` is the kept body's
    b',{"a":1},',                           # a trailing comma
    b',',
    b'{"a":1}',                             # no comma before the item
    b',{"a":1}],"x":[2',                    # the array closed, a member added
    b',"\\ud800"',                          # a lone surrogate
    b',"\xff"',                             # not UTF-8
    b',NaN',
    b',1e999',
    b', {"a": 1} ',                         # whitespace: read, but the next body is split
])
def test_a_run_that_is_not_items_of_the_array_is_read_as_orjson_reads_it(run):
    values = ResentValues()
    head = b'{"model":"m","messages":[' + b",".join(
        orjson.dumps({"role": "user", "content": f"{index} " + "x" * 600}) for index in range(60))
    tail = b'],"tools":[{"name":"t"}],"n":1}'
    values.loads(head + tail, "team")
    values.loads(head + tail, "team")       # its layout known
    raw = head + run + tail
    try:
        expected = orjson.loads(raw)
    except orjson.JSONDecodeError:
        assert values.loads(raw, "team") is None
        return
    assert same(values.loads(raw, "team"), expected)


def test_a_history_added_to_while_the_members_after_it_change_is_grown_too(monkeypatch):
    """Codex CLI writes its `client_metadata` (after the history) with its keys in another
    order on every request: the rest of the body is read, the history's old items are not."""
    reads = grown_reads(monkeypatch)
    values = ResentValues()
    history = [{"role": "user", "content": f"{index} " + "é" * 600} for index in range(60)]
    metadata = {f"key{index}": f"value {index}" for index in range(7)}
    for turn in range(5):
        order = sorted(metadata, key=lambda name: hash((turn, name)))
        body = {"model": "m", "input": history, "tools": [{"name": "t"}], "client_metadata": {k: metadata[k] for k in order}}
        raw = orjson.dumps(body)
        assert same(values.loads(raw, "team"), body)
        history = history + [{"role": "assistant", "content": f"answer {turn}"}]
    assert len(reads) == 4


def test_a_rest_with_a_member_named_as_the_rests_own_items_is_read_as_orjson_reads_it():
    values = ResentValues()
    head = b'{"model":"m","messages":[' + b",".join(
        orjson.dumps({"role": "user", "content": f"{index} " + "x" * 600}) for index in range(60))
    values.loads(head + b'],"n":1}', "team")
    values.loads(head + b'],"n":1}', "team")
    for rest in (b',{"a":1}],"":[0,{"b":2}],"n":2}', b',{"a":1}],"":1}'):
        assert same(values.loads(head + rest, "team"), orjson.loads(head + rest))


@pytest.mark.parametrize("rest", [
    b',{"a":1}],"model":"other","n":2}',            # a member before the array again
    b',{"a":1}],"messages":[],"n":2}',              # the array itself again
    b',{"a":1}],"n":2,"n":3}',                      # a member after it twice
    b',{"a":1,"a":2}],"n":2}',                      # a new item's key twice
])
def test_a_rest_that_repeats_a_key_is_refused_as_the_whole_body_is(rest):
    stage = ParseRequest()
    head = b'{"model":"gpt-4o-mini","messages":[' + b",".join(
        orjson.dumps({"role": "user", "content": f"{index} " + "x" * 600}) for index in range(60))
    parsed(head + b'],"n":1}', stage)
    parsed(head + b'],"n":1}', stage)
    with pytest.raises(GatewayError) as refused:
        parsed(head + rest, stage)
    assert "repeats" in refused.value.message


def test_two_arrays_alike_are_told_apart(monkeypatch):
    """The same items in two arrays: a change to the first is read there, not in the second."""
    values = ResentValues()
    items = [{"role": "user", "content": f"{index} " + "x" * 600} for index in range(60)]
    body = {"a": list(items), "messages": list(items)}
    values.loads(orjson.dumps(body), "team")
    body["a"].append({"role": "user", "content": "new"})
    raw = orjson.dumps(body)
    assert same(values.loads(raw, "team"), orjson.loads(raw))
    body["messages"][-1] = {"role": "user", "content": "changed"}
    raw = orjson.dumps(body)
    assert same(values.loads(raw, "team"), orjson.loads(raw))


def test_a_body_never_grows_from_another_scope(monkeypatch):
    reads = grown_reads(monkeypatch)
    values = ResentValues()
    history = [{"role": "user", "content": f"{index} " + "é" * 600} for index in range(60)]
    values.loads(orjson.dumps({"model": "m", "messages": history}), "team-a")
    raw = orjson.dumps({"model": "m", "messages": history + [{"role": "user", "content": "next"}]})
    assert same(values.loads(raw, "team-b"), orjson.loads(raw))
    assert reads == []


# Through the parse stage: a grown body has only its new items checked for their shape
# and repeated keys, and is refused as the whole body would be, naming the same field.

def chat(messages: list) -> bytes:
    return orjson.dumps({"model": "gpt-4o-mini", "messages": messages})


HISTORY = [{"role": "user" if index % 2 else "assistant", "content": f"{index} " + "é" * 600}
           for index in range(60)]


def parsed(raw: bytes, stage: ParseRequest):
    call = Call(None)
    call.raw_body, call.endpoint = raw, ENDPOINTS["/v1/chat/completions"]
    call.key = SimpleNamespace(id="key", team="team")
    stage.request_body(call)
    return call


def checked_items(monkeypatch) -> list:
    """The lengths of the messages arrays the chat shape check validates, from now on."""
    compile_schema, seen = fastjsonschema.compile, []

    def counted(schema):
        validate = compile_schema(schema)
        return lambda body: seen.append(len(body.get("messages") or ())) or validate(body)
    monkeypatch.setattr(fastjsonschema, "compile", counted)
    codec = codec_of(ENDPOINTS["/v1/chat/completions"].kind)
    monkeypatch.setattr(type(codec), "shape_problem", staticmethod(schema_checker(openai_schema.CHAT)))
    return seen


def test_a_grown_body_has_only_its_new_items_checked(monkeypatch):
    seen = checked_items(monkeypatch)
    stage = ParseRequest()
    history = list(HISTORY)
    for turn in range(3):
        call = parsed(chat(history), stage)
        assert call.body == orjson.loads(chat(history))
        history += [{"role": "assistant", "content": f"answer {turn}"}, {"role": "user", "content": f"q {turn}"}]
    assert seen == [60, 2, 2], "the first body whole, then each turn's two new messages"


@pytest.mark.parametrize("added, problem", [
    ({"role": "user", "content": 5}, "'messages[61].content' must be a string, null, or an array of content parts."),
    ({"content": "no role"}, "'messages[61]' must have 'role'."),
])
def test_a_new_item_of_the_wrong_shape_is_named_where_it_lies(added, problem):
    stage = ParseRequest()
    parsed(chat(HISTORY), stage)
    grown = chat(HISTORY + [{"role": "assistant", "content": "fine"}, added])
    with pytest.raises(GatewayError) as refused:
        parsed(grown, stage)
    assert refused.value.status == 400 and refused.value.message == problem
    # As the same body is refused by a pipeline that never saw the one before.
    with pytest.raises(GatewayError) as afresh:
        parsed(grown, ParseRequest())
    assert afresh.value.message == problem


def test_a_new_item_that_repeats_a_key_is_refused():
    stage = ParseRequest()
    parsed(chat(HISTORY), stage)
    grown = chat(HISTORY)[:-2] + b',{"role":"user","content":"a","content":"b"}]}'
    with pytest.raises(GatewayError) as refused:
        parsed(grown, stage)
    assert "repeats the key 'content'" in refused.value.message


def test_a_body_grown_from_one_refused_is_checked_whole():
    stage = ParseRequest()
    broken = HISTORY[:10] + [{"role": "user", "content": 5}] + HISTORY[11:]
    with pytest.raises(GatewayError):
        parsed(chat(broken), stage)
    with pytest.raises(GatewayError) as refused:
        parsed(chat(broken + [{"role": "user", "content": "next"}]), stage)
    assert refused.value.message.startswith("'messages[10].content'")


def test_a_grown_body_past_the_items_bound_is_refused(monkeypatch):
    schema = {**openai_schema.CHAT, "properties": {**openai_schema.CHAT["properties"],
                                                   "messages": bounded({"type": "array", "items": openai_schema._MESSAGE}, 61)}}
    codec = codec_of(ENDPOINTS["/v1/chat/completions"].kind)
    monkeypatch.setattr(type(codec), "shape_problem", staticmethod(schema_checker(schema)))
    stage = ParseRequest()
    parsed(chat(HISTORY), stage)
    parsed(chat(HISTORY + [{"role": "user", "content": "61st"}]), stage)
    with pytest.raises(GatewayError) as refused:
        parsed(chat(HISTORY + [{"role": "user", "content": "61st"}, {"role": "user", "content": "62nd"}]), stage)
    assert "holds more than 61 items" in refused.value.message


@settings(max_examples=EXAMPLES * 4, deadline=None)
@given(BODY, st.data())
def test_items_written_into_the_bytes_as_sent_are_orjson_s_writing_of_the_whole(body, data):
    """A body laid out as orjson writes it (its arrays' spans known), some items of one array
    changed in place: the bytes with those items written again are orjson's writing of the
    whole body, byte for byte."""
    raw = orjson.dumps(body)
    members = tuple((key, None, [len(orjson.dumps(item)) for item in value] if type(value) is list else None)
                    for key, value in body.items())
    spans = grown_bodies.spans_of(members, body, len(raw))
    arrays = [key for key, value in body.items() if type(value) is list and value]
    if not arrays or spans is False:
        return
    key = data.draw(st.sampled_from(arrays))
    items = body[key]
    changed = sorted(data.draw(st.sets(st.integers(0, len(items) - 1), min_size=1)))
    for index in changed:
        items[index] = data.draw(ITEM)
    assert grown_bodies.spliced(raw, spans[key], items, changed) == orjson.dumps(body)
