"""A key repeated anywhere in a request body is found (extproc/api/repeated_keys.py), and
nothing else is taken for one; checked against the standard library's exact parse."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.api.repeated_keys import repeated_key
from property_examples import examples

CASES = [
    # name, raw body, the key found (None: no repeat)
    ("plain chat", b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}', None),
    ("colons in strings", b'{"model":"a:b","messages":[{"role":"user","content":"x: y:: z"}]}', None),
    ("colons in keys", b'{"a:b":1,"c::":{"d:":"e:"}}', None),
    ("spaces around colons", b'{ "model" :  "m" , "n" :1 }', None),
    ("empty objects and lists", b'{"a":{},"b":[],"c":[{},[]]}', None),
    ("escaped colon, no repeat", b'{"content":"a\\u003ab","k\\u003A":1}', None),
    ("an escaped backslash before u003a", b'{"content":"\\\\u003a","x":"y"}', None),
    ("non-ASCII", '{"content":"héllo: wörld","ключ":"значение:"}'.encode(), None),
    ("model twice", b'{"model":"gpt-4o","model":"gpt-4o-mini","messages":[]}', "model"),
    ("the same value twice", b'{"model":"m","model":"m"}', "model"),
    ("content twice in a message",
     b'{"model":"m","messages":[{"role":"user","content":"ignore: all","content":"hi"}]}', "content"),
    ("role twice", b'{"model":"m","messages":[{"role":"system","role":"user","content":"x"}]}', "role"),
    ("deep in a tool", b'{"tools":[{"function":{"name":"a","name":"b"}}]}', "name"),
    ("in a list of lists", b'{"x":[[{"k":1,"k":{"a:b":"c:d"}}]]}', "k"),
    ("repeat behind an escaped colon", b'{"c":"\\u003a","model":"a","model":"b"}', "model"),
    ("the empty key", b'{"":1,"":2}', ""),
    ("keys that differ by an escape", b'{"a":1,"\\u0061":2}', "a"),
]


@pytest.mark.parametrize("name,raw,expected", CASES, ids=[c[0] for c in CASES])
def test_repeated_keys_are_found(name, raw, expected):
    assert repeated_key(raw, orjson.loads(raw)) == expected


def test_nesting_deeper_than_recursion_allows_is_walked():
    raw = b'{"a":' * 900 + b"1" + b"}" * 900
    assert repeated_key(raw, orjson.loads(raw)) is None
    repeated = b'{"a":' * 900 + b'{"b":1,"b":2}' + b"}" * 900
    assert repeated_key(repeated, orjson.loads(repeated)) == "b"


# Bodies written by hand, so that a key may repeat at any depth, with spacing and
# colons (written plainly or escaped) anywhere a string allows.
_text = st.text(alphabet=st.sampled_from(list('ab:é\\" ')), max_size=6)


def _string(text: str, escape_colons: bool) -> str:
    written = json.dumps(text, ensure_ascii=False)
    return written.replace(":", "\\u003a") if escape_colons else written


class _Object(list):
    """An object as written: its (key, key escaped, value) members, repeats allowed."""


_member_key = st.sampled_from(["a", "b", "a:", ":", ""])
_value = st.recursive(
    st.one_of(st.integers(-5, 5), st.none(), st.booleans(), st.tuples(_text, st.booleans())),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(st.tuples(_member_key, st.booleans(), children), max_size=4).map(_Object)),
    max_leaves=20)


def _dump(node, space: str) -> str:
    if isinstance(node, _Object):
        members = (f"{_string(key, escape)}{space}:{space}{_dump(value, space)}"
                   for key, escape, value in node)
        return "{" + ",".join(members) + "}"
    if isinstance(node, tuple):
        return _string(*node)
    if isinstance(node, list):
        return "[" + ",".join(_dump(child, space) for child in node) + "]"
    return json.dumps(node)


def _oracle(raw: bytes) -> list[str]:
    """Every key that some object repeats."""
    found = []

    def pairs(items):
        keys = [key for key, _ in items]
        found.extend(key for index, key in enumerate(keys) if key in keys[:index])
        return dict(items)
    json.loads(raw, object_pairs_hook=pairs)
    return found


@settings(max_examples=examples(150), deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["model", "content", "m:"]), st.booleans(), _value), max_size=5)
       .map(_Object), st.sampled_from(["", " ", "\n\t"]))
def test_agrees_with_an_exact_parse(body, space):
    raw = _dump(body, space).encode()
    found = repeated_key(raw, orjson.loads(raw))
    repeats = _oracle(raw)
    if repeats:
        assert found in repeats
    else:
        assert found is None
