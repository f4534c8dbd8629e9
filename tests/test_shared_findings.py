"""A worker new to a long session takes the findings another worker published in the
store (here the workers' shared SQLite file) instead of reading the history again; the
store holds digests and spans, never the text."""

from __future__ import annotations

import asyncio
import copy
import sqlite3

import orjson
import pytest
from any_json import quickstart_runtime
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from ext_proc_messages import handled
from extproc.api.resent_values import ResentValues
from extproc.guardrails.known import KNOWN, decode_findings, encode_findings
from extproc.guardrails import Finding
from extproc.pipeline.call import Call
from extproc.stages.guard.shared_findings import FINDINGS_KIND

from gateway_stack import quickstart_config

SECRET = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"


def session(turns: int) -> dict:
    messages = [{"role": "system", "content": "You are a coding agent."}]
    for n in range(1, turns + 1):
        line = f"turn {n}: src/module_{n}.py passes its tests, nothing else to report here\n"
        messages += [{"role": "user", "content": f"Turn {n}." + (f" My key is {SECRET}." if n == 2 else "")},
                     {"role": "tool", "tool_call_id": f"c{n}", "content": (line * 4000)[:260_000]}]
    return {"model": "gpt-4o-mini", "max_tokens": 8, "messages": messages}


def call_through(runtime, body: dict) -> tuple[ep.ProcessingResponse, Call]:
    """Headers and body as Envoy sends them, then the done hooks (the store is written there)."""
    call = Call(runtime.config)
    headers = {":method": "POST", ":path": "/v1/chat/completions", "authorization": "Bearer sk-demo-alice",
               "content-type": "application/json"}

    async def run():
        await handled(runtime.pipeline, call, ep.ProcessingRequest(request_headers=ep.HttpHeaders(
            headers=base_pb2.HeaderMap(headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode())
                                                for k, v in headers.items()]))))
        reply = await handled(runtime.pipeline, call, ep.ProcessingRequest(
            request_body=ep.HttpBody(body=orjson.dumps(body), end_of_stream=True)))
        runtime.pipeline.end(call)
        await runtime.pipeline.run_done(call)
        return reply
    return asyncio.run(run()), call


def sent_body(reply: ep.ProcessingResponse) -> bytes:
    assert not reply.HasField("immediate_response"), reply.immediate_response.body[:300]
    return reply.request_body.response.body_mutation.body


@pytest.fixture
def runtime(tmp_path):
    KNOWN.clear()
    yield quickstart_runtime(tmp_path, quickstart_config())
    KNOWN.clear()


def another_worker(runtime) -> None:
    """What a worker that never saw the session holds: no findings, no bodies (nor what
    was read of them)."""
    KNOWN.clear()
    runtime.pipeline.stages[[s.name for s in runtime.pipeline.stages].index("parse")].resent = ResentValues()


def test_a_worker_new_to_the_session_takes_the_published_findings(runtime, tmp_path):
    for turns in range(1, 6):                               # to 1.3 MB, a turn at a time: read, published
        reply, _ = call_through(runtime, session(turns))
        assert SECRET.encode() not in sent_body(reply)
    another_worker(runtime)                                 # nothing in memory
    reply, _ = call_through(runtime, session(6))            # 1.56 MB, over max_scan_chars
    body = sent_body(reply)
    assert SECRET.encode() not in body and b"[SECRET]" in body
    rows = sqlite3.connect(tmp_path / "budgets.sqlite3").execute(
        "SELECT name, value FROM records WHERE kind = ?", (FINDINGS_KIND,)).fetchall()
    assert rows and all(b"turn" not in value.encode() and "sk-proj" not in value for _, value in rows)


def test_without_the_store_s_findings_the_same_turn_is_too_large_to_check(runtime):
    for turns in range(1, 6):
        call_through(runtime, session(turns))
    another_worker(runtime)
    runtime.pipeline.stages[[s.name for s in runtime.pipeline.stages].index("guard_request")].shared.store = None
    reply, _ = call_through(runtime, session(6))
    assert reply.HasField("immediate_response") and reply.immediate_response.status.code == 400
    assert b"max_scan_chars" in reply.immediate_response.body


def test_findings_go_to_the_store_as_spans_and_labels():
    findings = (Finding(3, 40, "SECRET"), Finding(50, 60, "EMAIL"))
    assert decode_findings(encode_findings(findings)) == findings
    assert decode_findings("not json") is None and decode_findings('[["a"]]') is None
    assert copy.copy(decode_findings("[]")) == ()
