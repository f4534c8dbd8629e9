"""Any JSON at any path of a request: hypothesis strategies and the in-process pipeline run
the property tests share (test_request_shapes.py, test_any_json.py)."""

from __future__ import annotations

import asyncio
import copy

import orjson
import yaml
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from hypothesis import strategies as st

from ext_proc_messages import handled
from extproc.config.filter_config import load_config
from extproc.pipeline.call import Call
from extproc.runtime.worker import Runtime

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
# Mostly values of another type than the field's (a number where a list goes), else any JSON.
WRONG_TYPE = st.one_of(st.integers(1, 9), st.booleans(), st.text(min_size=1, max_size=4), st.none(), JSON)
# Keys a caller may put anywhere: the names the gateway's own walks look at first.
KEYS = st.one_of(st.sampled_from(["type", "role", "content", "text", "model", "properties", "anyOf", "items",
                                  "$ref", "enum", "default", "file_data", "data", "url", "media_type",
                                  "source", "arguments", "input", "tool_calls", "cache_control",
                                  "signature", "thinking", "metadata", "logit_bias"]),
                 st.text(max_size=8))


def quickstart_runtime(folder, config: dict) -> Runtime:
    """The quickstart's pipeline in process, plus carol: every model, a token budget and no
    guardrail (alice: guardrails, every model; bob: guardrails, a budget and one model).
    `config`: the quickstart's filter config, as a dict."""
    config["keys"].append({"id": "carol", "key": "sk-test-carol", "team": "t", "models": "*"})
    config["guardrails"]["policies"] = {"default": ["pii", "secrets", "prompt-injection"], "keys": {"carol": []}}
    config["budgets"].append({"name": "carol", "scope": "key", "match": "carol", "unit": "tokens",
                              "limit": 10**12, "window": "day"})
    config["store"] = {"path": str(folder / "budgets.sqlite3")}
    path = folder / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return Runtime(load_config(str(path)))


def paths(node, path=()):
    """Every path of a JSON value: each key and index on the way to each value."""
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from paths(value, (*path, index))


def _step(node, step):
    """The value `step` leads to in `node`; KeyError where an earlier change made the node
    another kind (an index into an object, a name into a list): the place is gone."""
    if isinstance(node, dict) != isinstance(step, str):
        raise KeyError(step)
    return node[step]


def replaced(template, path, value):
    """`template` with the value at `path` replaced (the whole body when `path` is empty)."""
    if not path:
        return value
    body = copy.deepcopy(template)
    node = body
    for step in path[:-1]:
        node = _step(node, step)
    _step(node, path[-1])
    node[path[-1]] = value
    return body


def inserted(template, path, key, value):
    """`template` with `key: value` added to the object at `path` (the body when empty)."""
    body = copy.deepcopy(template)
    node = body
    for step in path:
        node = _step(node, step)
    if not isinstance(node, dict):
        raise TypeError("not an object")
    node[key] = value
    return body


def through_pipeline(runtime, path: str, body, key: str, extra: dict[str, str] | None = None,
                     call: Call | None = None) -> ep.ProcessingResponse:
    """The request's headers and body through the runtime's pipeline, as Envoy sends them:
    the reply to its body (or the headers' reply, when that answered already). `call`: the
    call to run it as, for a test that reads what the stages left on it."""
    call = call or Call(runtime.config)
    headers = {":method": "POST", ":path": path, "authorization": f"Bearer {key}",
               "content-type": "application/json", **(extra or {})}
    first = asyncio.run(handled(runtime.pipeline, call, ep.ProcessingRequest(request_headers=ep.HttpHeaders(
        headers=base_pb2.HeaderMap(headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode())
                                            for k, v in headers.items()])))))
    if first.HasField("immediate_response"):
        return first
    return asyncio.run(handled(runtime.pipeline, call, ep.ProcessingRequest(
        request_body=ep.HttpBody(body=orjson.dumps(body), end_of_stream=True))))


def error_of(dialect: str, status: int, body: bytes) -> dict:
    """The error in the dialect's shape (OpenAI's, Anthropic's or Google's), checked: its
    message and code."""
    error = orjson.loads(body)
    if dialect == "google":
        assert error["error"]["code"] == status and error["error"]["status"] and error["error"]["message"], error
        return error["error"]
    if dialect == "anthropic":
        assert error["type"] == "error", error
        assert error["error"]["type"] and error["error"]["message"], error
        return error["error"]
    # `code` is a string or null (the contract's shape): a provider's 400 crossing from
    # another dialect, or a virtual model's attempt refused, carries OpenAI's null.
    assert error["error"]["message"] and error["error"]["type"], error
    assert isinstance(error["error"]["code"], str) or error["error"]["code"] is None, error
    return error["error"]
