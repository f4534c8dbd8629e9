"""Budgets and rate limits on calls whose body is unread (stages/budget/unread.py), in the
pipeline itself (no Envoy): what is reserved at the request headers, and which calls take
the path that reads the body instead. Through real Envoy: test_body_unread_e2e.py."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import yaml
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from google.protobuf import struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from ext_proc_messages import handled
from extproc.config.envoy_contract import OUTPUT_FIELDS_READ, envoy_features
from extproc.config.filter_config import load_config
from extproc.dialects import codec_of
from extproc.pipeline.call import Call
from extproc.pipeline.protocol import read_message
from extproc.runtime.worker import Runtime
from extproc.stages.announced import announced_fields
from extproc.stages.budget.limits import BudgetHold
from gateway_stack import quickstart_config
from property_examples import examples
from test_body_unread import CHAT, _headers, _unread

FEATURES = envoy_features("headers-from-metadata streams-passed-through usage-chunk-stripped "
                          "cut-streams-logged bodies-unread output-caps-read")
GEMINI = "/v1beta/models/gemini-2.5-flash:generateContent"
LENGTH = 120          # the body's bytes (content-length)


def _runtime(tmp_path, monkeypatch, *budgets: dict, models: dict | None = None, store: dict | None = None) -> Runtime:
    monkeypatch.setenv("LLMGW_STATE_DIR", str(tmp_path))
    config = quickstart_config()
    config.pop("runs")
    config["guardrails"]["policies"] = {"default": [rule["name"] for rule in config["guardrails"]["rules"]],
                                        "keys": {"alice": []}}
    config["budgets"] = [*config["budgets"], *budgets]
    config["models"].update(models or {})
    if store is not None:
        config["store"] = store
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return Runtime(load_config(str(path)))


TOKENS = {"name": "alice-tokens", "scope": "key", "match": "alice", "unit": "tokens", "limit": 10**9,
          "window": "month"}


def _decide(runtime, path: str, announced: dict | None, features=FEATURES, length: int = LENGTH):
    return asyncio.run(_decided(runtime, path, announced, features, length))


async def _decided(runtime, path: str, announced: dict | None, features=FEATURES, length: int = LENGTH):
    call = Call(runtime.config, features)
    reply = await handled(runtime.pipeline, call, _headers(path, announced, length=str(length)))
    return call, reply


def _reserved(call: Call) -> float | None:
    hold = call.owned(BudgetHold)
    if hold is None or hold.held is None:
        return None
    [charge] = [c for c in hold.held[1] if c.limit.name == "alice-tokens"]
    return charge.reserve


def test_a_budgeted_call_is_reserved_at_its_headers(tmp_path, monkeypatch):
    runtime = _runtime(tmp_path, monkeypatch, TOKENS)
    call, reply = _decide(runtime, CHAT, {"model": "gpt-4o-mini", "stream": False, "max_completion_tokens": 50,
                                          "n": 3})
    assert _unread(call, reply)
    assert _reserved(call) == LENGTH + 50 * 3          # the body's bytes, each answer's cap
    headers = reply.dynamic_metadata.fields["llm_gateway"].struct_value.fields["headers"].struct_value.fields
    assert headers["x-ratelimit-limit-tokens"].string_value == str(10**9)
    assert int(headers["x-ratelimit-remaining-tokens"].string_value) == 10**9 - LENGTH - 150
    assert not call.output_reserved                    # the request set its cap


def test_a_call_without_a_cap_is_reserved_its_models_maximum(tmp_path, monkeypatch):
    runtime = _runtime(tmp_path, monkeypatch, TOKENS)
    call, reply = _decide(runtime, CHAT, {"model": "gpt-4o-mini", "stream": False})
    assert _unread(call, reply)
    ceiling, known = call.model.output_ceiling(call.dialect)
    assert known and _reserved(call) == LENGTH + ceiling
    assert call.output_reserved == ceiling


def test_gemini_reads_its_generation_config_in_either_spelling(tmp_path, monkeypatch):
    runtime = _runtime(tmp_path, monkeypatch, TOKENS)
    call, reply = _decide(runtime, GEMINI, {"stream": False, "generationConfig.maxOutputTokens": 40,
                                            "generation_config.candidate_count": 2})
    assert _unread(call, reply)
    assert _reserved(call) == LENGTH + 40 * 2


@pytest.mark.parametrize("what,announced,features,length", [
    ("Envoy does not read the output caps", {"model": "gpt-4o-mini", "stream": False},
     envoy_features("headers-from-metadata streams-passed-through cut-streams-logged bodies-unread"), LENGTH),
    ("a cap Envoy could not read plainly", {"model": "gpt-4o-mini", "stream": False, "numbers_unread": True},
     FEATURES, LENGTH),
], ids=lambda value: value if isinstance(value, str) else "")
def test_a_call_that_cannot_be_bounded_reads_its_body(tmp_path, monkeypatch, what, announced, features, length):
    runtime = _runtime(tmp_path, monkeypatch, TOKENS)
    call, reply = _decide(runtime, CHAT, announced, features, length)
    assert not _unread(call, reply)
    assert _reserved(call) is None and call.notes is None and not call.stream


def test_a_call_the_bound_does_not_fit_reads_its_body(tmp_path, monkeypatch):
    """Its exact count may fit where the bound does not: that path decides, and the
    bound tried is not held."""
    runtime = _runtime(tmp_path, monkeypatch, {**TOKENS, "limit": 16_000})
    announced = {"model": "gpt-4o-mini", "stream": False, "max_completion_tokens": 100}
    for _ in range(16):                                  # 16 bounds of 1,000 tokens held: all of it
        call, reply = _decide(runtime, CHAT, announced, length=900)
        assert _unread(call, reply) and _reserved(call) == 1000
    call, reply = _decide(runtime, CHAT, announced, length=900)
    assert not _unread(call, reply) and _reserved(call) is None and call.notes is None and not call.stream


def test_a_bound_large_for_its_limit_reads_the_body(tmp_path, monkeypatch):
    """A bound over 1/16 of a limit is not tried: a few such calls in flight would hold the
    whole limit, and refuse calls their exact counts leave room for."""
    runtime = _runtime(tmp_path, monkeypatch, {**TOKENS, "limit": 15_999})
    announced = {"model": "gpt-4o-mini", "stream": False, "max_completion_tokens": 100}
    call, reply = _decide(runtime, CHAT, announced, length=900)
    assert not _unread(call, reply) and _reserved(call) is None


def test_on_redis_the_bound_is_held_until_settled(tmp_path, monkeypatch, redis_url):
    """Replicas share their budgets in Redis: the bounds calls hold there leave no room for
    the next call's, which reads its body; once one settles, the room is back."""
    name = f"unread-{uuid.uuid4().hex[:8]}"         # this test's own counter in the shared Redis
    runtime = _runtime(tmp_path, monkeypatch, {**TOKENS, "name": name, "limit": 16_000},
                       store={"kind": "redis", "url": redis_url})
    announced = {"model": "gpt-4o-mini", "stream": False, "max_completion_tokens": 100}

    async def scenario():
        held = []
        for _ in range(16):
            call, reply = await _decided(runtime, CHAT, announced, length=900)
            assert _unread(call, reply)
            [charge] = [c for c in call.owned(BudgetHold).held[1] if c.limit.name == name]
            assert charge.reserve == 1000
            held.append(call)
        over, reply = await _decided(runtime, CHAT, announced, length=900)
        assert not _unread(over, reply) and over.owned(BudgetHold) is None
        await handled(runtime.pipeline, held[0], _trailers(input_tokens=40, output_tokens=10))
        await runtime.pipeline.run_done(held[0])          # settled: 50 tokens spent, 950 back
        again, reply = await _decided(runtime, CHAT, announced, length=850)     # a bound of 950
        assert _unread(again, reply)
    asyncio.run(scenario())


def _trailers(input_tokens: int, output_tokens: int):
    """The trailers message that ends a call whose body is unread: the status, and the usage
    Envoy read from its answer."""
    message = ep.ProcessingRequest(response_trailers=ep.HttpTrailers(trailers=base_pb2.HeaderMap()))
    message.attributes["envoy.filters.http.ext_proc"].update({"response.code": 200, "response.size": 300})
    message.metadata_context.filter_metadata["llm_gateway.stream"].update(
        {"input_tokens": input_tokens, "output_tokens": output_tokens})
    return message


def test_gemini_whose_body_envoy_left_unread_reads_it(tmp_path, monkeypatch):
    """Its model is in the path, but what bounds its output is in the body."""
    runtime = _runtime(tmp_path, monkeypatch, TOKENS)
    call, reply = _decide(runtime, GEMINI, None)
    assert not _unread(call, reply) and _reserved(call) is None


def test_a_usd_budget_on_a_model_without_prices_reads_the_body(tmp_path, monkeypatch):
    """That path refuses the call, naming the budget (a call at $0 would never be charged)."""
    usd = {"name": "alice-usd", "scope": "key", "match": "alice", "unit": "usd", "limit": 100, "window": "month"}
    unpriced = {"free-mini": {"backends": [{"provider": "mock"}]}}
    runtime = _runtime(tmp_path, monkeypatch, usd, models=unpriced)
    call, reply = _decide(runtime, CHAT, {"model": "free-mini", "stream": False, "max_completion_tokens": 5})
    assert not runtime.config.model("free-mini").fully_priced
    assert not _unread(call, reply)


def test_a_caller_found_exhausted_reads_the_body(tmp_path, monkeypatch):
    """A refusal Budget remembers sends the caller's next calls to that path at once (no
    reservation tried), which refuses them in the caller's dialect."""
    runtime = _runtime(tmp_path, monkeypatch, TOKENS)
    call, reply = _decide(runtime, CHAT, {"model": "gpt-4o-mini", "stream": False, "max_completion_tokens": 5})
    assert _unread(call, reply)
    [stage] = [stage for stage in runtime.pipeline.stages if stage.name == "body_unread"]
    exhausted = stage.reservation.exhausted
    [counter] = [c.counter for c in call.owned(BudgetHold).held[1] if c.limit.name == "alice-tokens"]
    exhausted[counter] = (float("inf"), None)
    call, reply = _decide(runtime, CHAT, {"model": "gpt-4o-mini", "stream": False, "max_completion_tokens": 5})
    assert not _unread(call, reply) and _reserved(call) is None


# --- the dialects' own readers, on what Envoy read ---------------------------------------

def _as_envoy_reads(body: dict, names) -> dict:
    """What Envoy's reader sets for these fields (test_request_reader_e2e.py checks the
    reader against a parser in real Envoy): plain integers as numbers, else numbers_unread;
    as the worker reads it from Envoy's message."""
    read = struct_pb2.Struct()
    for name in names:
        outer, _, inner = name.rpartition(".")
        holder = body.get(outer) if outer else body
        if isinstance(holder, dict) and inner in holder:
            value = holder[inner]
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9:
                read[name] = value
            else:
                read["numbers_unread"] = True
    message = ep.ProcessingRequest()
    message.metadata_context.filter_metadata["llm_gateway.request"].CopyFrom(read)
    return read_message(message.SerializeToString()).metadata["llm_gateway.request"]


_VALUE = st.none() | st.booleans() | st.integers(-5, 2 * 10**9) | st.floats(allow_nan=False) | st.text(max_size=3)


@settings(max_examples=examples(200), deadline=None)
@given(kind=st.sampled_from(["chat", "messages", "generate_content"]),
       top=st.dictionaries(st.sampled_from(["max_tokens", "max_completion_tokens", "max_output_tokens", "n"]),
                           _VALUE),
       camel=st.dictionaries(st.sampled_from(["maxOutputTokens", "candidateCount"]), _VALUE),
       snake=st.dictionaries(st.sampled_from(["max_output_tokens", "candidate_count"]), _VALUE))
def test_what_envoy_read_bounds_the_output_as_the_body_does(kind, top, camel, snake):
    """Whatever the body says, the output its dialect reads from Envoy's reading is the
    output it reads from the body itself, or Envoy's reading is refused (numbers_unread)."""
    codec = codec_of(kind)
    assert codec.body_may_go_unread and OUTPUT_FIELDS_READ.issuperset(codec.output_fields)
    body = json.loads(json.dumps({**top, "generationConfig": camel, "generation_config": snake}))
    asked = announced_fields(_as_envoy_reads(body, codec.output_fields), codec.output_fields)
    if asked is None:
        return
    assert codec.max_output_tokens(asked) == codec.max_output_tokens(body)
    assert codec.answers_per_request(asked) == codec.answers_per_request(body)
