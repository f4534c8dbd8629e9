"""The service ends each ext_proc stream itself once Envoy has nothing more to send.

Why it matters: grpc-python leaks a read's op array when the read is cancelled in
flight (grpc/grpc#43360), which is what waiting for Envoy's reset did on every
request (~120 B each). Why it is safe: the stream stays open while a phase is still
to come, so no response is ever left unprocessed. These tests speak gRPC to a
running worker of the quickstart gateway, as Envoy would, without closing their side.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import orjson
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc

CHAT = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]})
ANSWER = orjson.dumps({"id": "c1", "object": "chat.completion", "model": "gpt-4o-mini", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9}})


def _headers(pairs: dict[str, str], end_of_stream: bool = False) -> ep.HttpHeaders:
    return ep.HttpHeaders(end_of_stream=end_of_stream, headers=base_pb2.HeaderMap(headers=[
        base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs.items()]))


def _request_headers(request_id: str, key: str = "sk-demo-alice") -> ep.ProcessingRequest:
    return ep.ProcessingRequest(request_headers=_headers({
        ":method": "POST", ":path": "/v1/chat/completions", ":authority": "gateway",
        "authorization": f"Bearer {key}", "content-type": "application/json", "x-request-id": request_id}))


def _worker_address(gateway) -> str:
    """The Unix socket of a live worker process (from its command line)."""
    pid = gateway.worker_pids()[0]
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return argv[argv.index("--address") + 1]


async def _exchange(address: str, messages: list, metadata=()) -> tuple[list, bool, grpc.StatusCode | None]:
    """Sends `messages` one by one, each after the previous reply, and never half-closes.
    Returns the replies, whether the service then ended the stream, and its status."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = ep_grpc.ExternalProcessorStub(channel).Process(metadata=metadata)
        replies = []
        for message in messages:
            await call.write(message)
            replies.append(await asyncio.wait_for(call.read(), 5))
        try:
            ended = await asyncio.wait_for(call.read(), 1.0) is grpc.aio.EOF
        except asyncio.TimeoutError:
            call.cancel()
            return replies, False, None
        return replies, ended, await call.code()


def test_the_stream_ends_after_the_last_response_message(gateway):
    replies, ended, status = asyncio.run(_exchange(_worker_address(gateway), [
        _request_headers("end-json"),
        ep.ProcessingRequest(request_body=ep.HttpBody(body=CHAT, end_of_stream=True)),
        ep.ProcessingRequest(response_headers=_headers({":status": "200", "content-type": "application/json"})),
        ep.ProcessingRequest(response_body=ep.HttpBody(body=ANSWER, end_of_stream=True)),
    ]))
    assert [r.WhichOneof("response") for r in replies] == [
        "request_headers", "request_body", "response_headers", "response_body"]
    assert ended and status == grpc.StatusCode.OK
    record = gateway.wait_for_record("end-json")
    assert record["outcome"] == "ok" and record["output_tokens"] == 1


def test_the_stream_ends_after_an_immediate_response(gateway):
    replies, ended, status = asyncio.run(_exchange(_worker_address(gateway), [
        _request_headers("end-refused", key="sk-not-a-key")]))
    assert replies[0].immediate_response.status.code == 401
    assert ended and status == grpc.StatusCode.OK


@pytest.mark.parametrize("sent", [2, 3])
def test_the_stream_stays_open_while_a_response_phase_is_to_come(gateway, sent):
    """After the request side, or response headers alone, Envoy still has messages to send."""
    messages = [
        _request_headers(f"open-{sent}"),
        ep.ProcessingRequest(request_body=ep.HttpBody(body=CHAT, end_of_stream=True)),
        ep.ProcessingRequest(response_headers=_headers({":status": "200", "content-type": "application/json"})),
    ][:sent]
    replies, ended, _ = asyncio.run(_exchange(_worker_address(gateway), messages))
    assert len(replies) == sent and not ended


def test_the_upstream_filter_stream_ends_after_the_request_body(gateway):
    """The per-attempt filter is sent the request phases only."""
    replies, ended, status = asyncio.run(_exchange(_worker_address(gateway), [
        _request_headers("end-upstream"),
        ep.ProcessingRequest(request_body=ep.HttpBody(body=CHAT, end_of_stream=True)),
    ], metadata=(("x-extproc-role", "upstream"),)))
    assert [r.WhichOneof("response") for r in replies] == ["request_headers", "request_body"]
    assert ended and status == grpc.StatusCode.OK
