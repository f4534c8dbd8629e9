"""The request reader (envoy/template.yaml: the Lua filter before ext_proc) in real Envoy:
what it reads from a JSON body into `llm_gateway.request` must be what a JSON parser
reads at the top level (`stream`, `model`, `stream_options.include_usage`), or nothing
at all, never another value. The service relies on it to choose a call's response path
at its headers (stages/one_message.py, stages/pass_through.py) and checks it against
the body it parses: a wrong reading would refuse a sound call; nothing read costs only
the faster path.

Envoy here runs the reader from the generated quickstart config, and a second Lua filter
answers at once with what the reader set."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml
from gateway_stack import envoy_running, free_port
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from property_examples import examples
from extproc.yamltree import safe_load    # libyaml: the Envoy config in a tenth of the time

ROOT = Path(__file__).resolve().parent.parent
# Answers with what the reader set: a line per key, "name=value" (a string's value after
# an "S": its raw bytes).
ECHO = """
function envoy_on_request(handle)
  local read = handle:streamInfo():dynamicMetadata():get("llm_gateway.request") or {}
  local lines = {}
  for name, value in pairs(read) do
    local shown = type(value) == "string" and "S" .. value or tostring(value)
    if type(value) == "number" then shown = string.format("%d", value) end
    lines[#lines + 1] = name .. "=" .. shown
  end
  table.sort(lines)
  handle:respond({[":status"] = "200"}, table.concat(lines, "\\n"))
end
"""


def _reader() -> dict:
    """The Lua filter before ext_proc in the shipped quickstart config."""
    config = safe_load((ROOT / "envoy" / "quickstart.yaml").read_text())
    filters = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "http_filters"]
    at = next(i for i, f in enumerate(filters) if f["name"] == "envoy.filters.http.ext_proc")
    [reader] = [f for f in filters[:at] if f["name"] == "envoy.filters.http.lua"]
    return reader


@pytest.fixture(scope="module")
def envoy_url(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("reader")
    port = free_port()
    route = {"match": {"prefix": "/"}, "direct_response": {"status": 404}}
    echo = {"name": "echo", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                                             "default_source_code": {"inline_string": ECHO}}}
    config = {
        "admin": {"address": {"pipe": {"path": str(workdir / "admin.sock")}}},
        "static_resources": {"listeners": [{
            "name": "reader", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "per_connection_buffer_limit_bytes": 16 * 1024 * 1024,
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
                             ".HttpConnectionManager",
                    "stat_prefix": "reader",
                    "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}]},
                    "http_filters": [_reader(), echo, {
                        "name": "envoy.filters.http.router",
                        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3"
                                                  ".Router"}}]}}]}]}]}}
    path = workdir / "envoy.yaml"
    path.write_text(yaml.safe_dump(config))
    with envoy_running(path, port):
        yield f"http://127.0.0.1:{port}/v1/chat/completions"


def read_by_envoy(url: str, body: bytes) -> dict:
    response = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 200, response.text
    read = {}
    for line in filter(None, response.content.split(b"\n")):
        name, value = line.decode("utf-8", "surrogateescape").split("=", 1)
        read[name] = value[1:] if value.startswith("S") else value
    return read


def _shown(value) -> str:
    return "true" if value else "false"


# The fields that bound a call's output, by their dotted names, as the reader sets them.
NUMBERS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "n",
           "generationConfig.maxOutputTokens", "generationConfig.candidateCount",
           "generation_config.max_output_tokens", "generation_config.candidate_count")


def _plain_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9


def read_by_a_parser(body: bytes) -> dict:
    """What the reader must set: the top-level fields as a JSON parser reads them."""
    document = json.loads(body)
    read = {"stream": _shown(document.get("stream", False))} if isinstance(document.get("stream", False), bool) \
        else {}
    if isinstance(document.get("model"), str):
        read["model"] = document["model"]
    options = document.get("stream_options")
    if isinstance(options, dict) and isinstance(options.get("include_usage"), bool):
        read["include_usage"] = _shown(options["include_usage"])
    for name in NUMBERS:
        outer, _, inner = name.rpartition(".")
        holder = document.get(outer) if outer else document
        if not isinstance(holder, dict) or inner not in holder:
            continue
        if _plain_integer(holder[inner]):
            read[name] = str(holder[inner])
        else:
            read["numbers_unread"] = "true"
    return read


# (what, body, what Envoy must read: None for "as a parser reads it")
CASES = [
    ("a short chat call", b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}', None),
    ("streamed, usage asked", b'{"model":"m","stream":true,"stream_options":{"include_usage":true}}', None),
    ("spaces and new lines everywhere", b' \n{ "model" :\t"m" ,\r\n "stream" : true }\n', None),
    ("the keys nested, not at the top",
     b'{"messages":[{"stream":true,"model":"inner"}],"tools":[{"stream_options":{"include_usage":true}}]}',
     None),
    ("the keys inside strings",
     b'{"model":"m","messages":[{"role":"user","content":"\\"stream\\": true, \\"model\\": \\"x\\""}]}', None),
    ("a string ending in backslashes",
     b'{"messages":[{"content":"C:\\\\dir\\\\"},{"content":"\\\\\\""}],"model":"m","stream":true}', None),
    ("include_usage nested deeper",
     b'{"model":"m","stream":true,"stream_options":{"x":{"include_usage":true}}}', None),
    ("stream_options not an object", b'{"model":"m","stream":true,"stream_options":[{"include_usage":true}]}',
     None),
    ("stream not a boolean", b'{"model":"m","stream":"true"}', None),
    ("model not a string", b'{"model":42,"stream":false}', None),
    ("an empty object", b"{}", None),
    ("the keys after a large history",
     b'{"messages":[' + b",".join([b'{"role":"user","content":"' + b"word " * 800 + b'"}'] * 200)
     + b'],"model":"m","stream":true,"stream_options":{"include_usage":false}}', None),
    # Nothing read: the service reads the body itself (the path with every message).
    ("a key written with an escape", b'{"str\\u0065am":true,"model":"m"}', {}),
    ("a model written with an escape", b'{"model":"gpt\\u002d4o","stream":true}', {"stream": "true"}),
    ("a model not in ASCII", '{"model":"gpt-4o-mé","stream":true}'.encode(), {"stream": "true"}),
    ("a model in bytes that are not UTF-8", b'{"model":"gpt-4o-m\xc0ni","stream":true}', {"stream": "true"}),
    ("a key given twice", b'{"model":"a","stream":false,"model":"b"}', {}),
    ("not an object", b'[{"model":"m"}]', {}),
    ("not closed", b'{"model":"m","stream":true', {}),
    ("an empty body", b"", {}),
    # What bounds the output: plain integers read, anything else said to be unread.
    ("output caps and answers", b'{"model":"m","max_tokens":100,"max_completion_tokens":7,"n":3}', None),
    ("a Responses-style cap", b'{"model":"m","max_output_tokens":0}', None),
    ("Gemini's generation config",
     b'{"contents":[],"generationConfig":{"maxOutputTokens":64,"candidateCount":2,"temperature":0.5}}', None),
    ("Gemini's config in snake case",
     b'{"generation_config":{"max_output_tokens":64,"candidate_count":1}}', None),
    ("caps not plain integers", b'{"model":"m","max_tokens":1e3,"n":null}', None),
    ("a negative or fractional cap", b'{"model":"m","max_tokens":-1,"max_completion_tokens":1.5}', None),
    ("a cap of ten digits", b'{"model":"m","max_tokens":1000000000}', None),
    ("a cap as a string", b'{"model":"m","max_tokens":"100"}', None),
    ("caps nested elsewhere", b'{"model":"m","messages":[{"n":4,"max_tokens":9}],"x":{"generationConfig":'
                              b'{"candidateCount":8}}}', None),
    ("a cap in stream_options", b'{"model":"m","stream_options":{"n":4}}', None),
    ("a cap given twice", b'{"model":"m","n":1,"n":5}', {}),
    ("a config given twice", b'{"generationConfig":{},"generationConfig":{"candidateCount":8}}', {}),
    ("a config key with an escape", b'{"generationConfig":{"candidate\\u0043ount":8}}', {}),
]


@pytest.mark.parametrize("what,body,expected", CASES, ids=[case[0] for case in CASES])
def test_the_reader_reads_what_a_parser_reads_or_nothing(envoy_url, what, body, expected):
    assert read_by_envoy(envoy_url, body) == (read_by_a_parser(body) if expected is None else expected)


_KEYS = st.sampled_from(["stream", "model", "stream_options", "include_usage", "messages", "content", "x",
                         "max_tokens", "n", "generationConfig", "candidateCount", "maxOutputTokens"]) \
    | st.text(max_size=6)
_STRINGS = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(['"', "\\", "{", "}", "[", "]", ":"]),
                   max_size=12)
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | _STRINGS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=20)


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=st.dictionaries(_KEYS, _VALUES, max_size=6), ascii_only=st.booleans(), indent=st.sampled_from(
    [None, 1, "\t"]))
def test_any_object_is_read_as_a_parser_reads_it_or_not_at_all(envoy_url, document, ascii_only, indent):
    """A key or a model with an escape in its JSON text, and a model not in ASCII, are the
    cases read as nothing."""
    body = json.dumps(document, ensure_ascii=ascii_only, indent=indent).encode()
    read = read_by_envoy(envoy_url, body)
    expected = read_by_a_parser(body)
    read_inside = [document.get(name) for name in ("stream_options", "generationConfig", "generation_config")]
    keys = [*document, *(key for inner in read_inside if isinstance(inner, dict) for key in inner)]
    escaped = [key for key in keys if "\\" in json.dumps(key, ensure_ascii=ascii_only)]
    if escaped:
        assert read == {}
        return
    model = document.get("model")
    if isinstance(model, str) and ("\\" in json.dumps(model, ensure_ascii=ascii_only) or not model.isascii()):
        expected.pop("model", None)
    assert read == expected


def test_a_body_too_large_to_buffer_is_refused_not_read(envoy_url):
    body = b'{"model":"m","messages":["' + b"x" * (17 * 1024 * 1024) + b'"]}'
    response = httpx.post(envoy_url, content=body, headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 413
