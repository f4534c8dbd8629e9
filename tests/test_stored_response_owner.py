"""A stored response's owner is written before the answer's last message goes back to
Envoy, in the pipeline itself (no Envoy): a client continuing the response the moment it
has it (Codex CLI does) may reach another worker, which must already find the owner."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from test_one_message import ENVOY, QUICKSTART, _response_body
from test_pass_through import _trailers

from ext_proc_messages import handled
from extproc.config.filter_config import load_config
from extproc.pipeline.call import Call
from extproc.runtime.worker import Runtime
from extproc.stages.stored_responses import RECORD_KIND

ASK = {"model": "gpt-4o-mini", "input": "hello"}
ANSWER = {"id": "resp_owned_1", "object": "response", "status": "completed", "model": "gpt-4o-mini",
          "output": [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                      "content": [{"type": "output_text", "text": "hi", "annotations": []}]}],
          "usage": {"input_tokens": 5, "output_tokens": 1, "total_tokens": 6}}


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMGW_STATE_DIR", str(tmp_path))
    return Runtime(load_config(QUICKSTART))


def _request_headers(announced: dict) -> ep.ProcessingRequest:
    request = ep.ProcessingRequest(request_headers=ep.HttpHeaders(headers=base_pb2.HeaderMap(headers=[
        base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in {
            ":method": "POST", ":path": "/v1/responses", "authorization": "Bearer sk-demo-alice",
            "content-type": "application/json", "x-request-id": "r-owned"}.items()])))
    request.metadata_context.filter_metadata["llm_gateway.request"].update(announced)
    return request


def _owner(runtime: Runtime, response_id: str) -> dict | None:
    found = runtime.store.store.get_record(RECORD_KIND, response_id)
    return orjson.loads(found) if found else None


def _ask(runtime: Runtime, body: dict, announced: dict) -> Call:
    call = Call(runtime.config, ENVOY)
    for message in (_request_headers(announced),
                    ep.ProcessingRequest(request_body=ep.HttpBody(body=orjson.dumps(body), end_of_stream=True))):
        asyncio.run(handled(runtime.pipeline, call, message))
    return call


def test_a_json_answer_s_owner_is_written_before_its_reply_leaves(runtime):
    call = _ask(runtime, ASK, {"stream": False, "model": "gpt-4o-mini"})
    assert _owner(runtime, "resp_owned_1") is None
    asyncio.run(handled(runtime.pipeline, call, _response_body(200, orjson.dumps(ANSWER))))
    # The done hooks have not run: only the reply to the last message is out.
    assert call.finished and call.done_due
    assert _owner(runtime, "resp_owned_1") == {"backend": "mock", "model": "gpt-4o-mini", "key": call.key.id}


def test_a_passed_through_stream_s_owner_is_written_at_its_trailers(runtime):
    call = _ask(runtime, {**ASK, "stream": True}, {"stream": True, "model": "gpt-4o-mini"})
    assert call.stream_passed_through
    asyncio.run(handled(runtime.pipeline, call, _trailers({"input_tokens": 5, "output_tokens": 1,
                                                         "response_id": "resp_streamed_1"})))
    assert call.finished and call.response_id == "resp_streamed_1"
    assert _owner(runtime, "resp_streamed_1") == {"backend": "mock", "model": "gpt-4o-mini", "key": call.key.id}


def test_a_provider_error_writes_no_owner(runtime):
    call = _ask(runtime, ASK, {"stream": False, "model": "gpt-4o-mini"})
    asyncio.run(handled(runtime.pipeline, call, _response_body(500, orjson.dumps(
        {**ANSWER, "id": "resp_failed_1"}))))
    asyncio.run(runtime.pipeline.run_done(call))
    assert call.status == 500 and _owner(runtime, "resp_failed_1") is None
