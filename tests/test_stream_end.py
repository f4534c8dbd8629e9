"""How a worker ends an ext_proc stream once it has sent the last reply.

Envoy resets the stream then. The worker waits for that in a plain sleep rather than
in a read: grpc-python leaks a read's op array when the read is cancelled in flight
(grpc/grpc#43360, ~120 B per request). The first tests speak gRPC to a running worker
of the quickstart gateway, as Envoy would, and check the two ways the wait could go
wrong: a stream that ends with a half-close instead of a reset must still end, and
no wait may come before a phase that Envoy still has to send. The last ones reset the
stream while a read or write is in flight (below).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import orjson
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc

from extproc.pipeline.protocol import read_message
from extproc.runtime.processor_aio import STREAM_END_WAIT

CHAT = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]})
ANSWER = orjson.dumps({"id": "c1", "object": "chat.completion", "model": "gpt-4o-mini", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9}})
UPSTREAM = (("x-extproc-role", "upstream"),)


def _headers(pairs: dict[str, str], end_of_stream: bool = False) -> ep.HttpHeaders:
    return ep.HttpHeaders(end_of_stream=end_of_stream, headers=base_pb2.HeaderMap(headers=[
        base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs.items()]))


def _request_headers(request_id: str, key: str = "sk-demo-alice") -> ep.ProcessingRequest:
    return ep.ProcessingRequest(request_headers=_headers({
        ":method": "POST", ":path": "/v1/chat/completions", ":authority": "gateway",
        "authorization": f"Bearer {key}", "content-type": "application/json", "x-request-id": request_id}))


def _json_exchange(request_id: str) -> list[ep.ProcessingRequest]:
    return [
        _request_headers(request_id),
        ep.ProcessingRequest(request_body=ep.HttpBody(body=CHAT, end_of_stream=True)),
        ep.ProcessingRequest(response_headers=_headers({":status": "200", "content-type": "application/json"})),
        ep.ProcessingRequest(response_body=ep.HttpBody(body=ANSWER, end_of_stream=True)),
    ]


def _upstream_exchange(request_id: str) -> list[ep.ProcessingRequest]:
    return _json_exchange(request_id)[:2]      # the per-attempt filter gets the request side only


def _worker_address(gateway) -> str:
    """The Unix socket of a live worker process (from its command line)."""
    pid = gateway.worker_pids()[0]
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().replace("\0", " ").split()
    return argv[argv.index("--address") + 1]


async def _exchange(address: str, messages: list, metadata=()) -> tuple[list, list[float], float, grpc.StatusCode]:
    """Sends `messages` one by one, each after the previous reply, then half-closes.
    Returns the replies, each reply's delay, how long the stream took to end after the
    half-close, and its status."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = ep_grpc.ExternalProcessorStub(channel).Process(metadata=metadata)
        replies, delays = [], []
        for message in messages:
            sent = time.perf_counter()
            await call.write(message)
            replies.append(await asyncio.wait_for(call.read(), 5))
            delays.append(time.perf_counter() - sent)
        closed = time.perf_counter()
        await call.done_writing()
        assert await asyncio.wait_for(call.read(), STREAM_END_WAIT + 5) is grpc.aio.EOF
        return replies, delays, time.perf_counter() - closed, await call.code()


CASES = {
    # name: (messages, gRPC metadata, the reply kinds expected)
    "json response": (_json_exchange("end-json"), (),
                      ["request_headers", "request_body", "response_headers", "response_body"]),
    "refused at the headers": ([_request_headers("end-refused", key="sk-not-a-key")], (),
                               ["immediate_response"]),
    "upstream filter": (_upstream_exchange("end-upstream"), UPSTREAM, ["request_headers", "request_body"]),
}


@pytest.mark.parametrize("name", CASES)
def test_a_stream_half_closed_after_its_last_reply_ends_cleanly(gateway, name):
    messages, metadata, kinds = CASES[name]
    replies, delays, ending, status = asyncio.run(_exchange(_worker_address(gateway), messages, metadata))
    assert [r.WhichOneof("response") for r in replies] == kinds
    assert status == grpc.StatusCode.OK
    # The half-close is read once the wait is over (Envoy's reset would have cut it short).
    assert ending < STREAM_END_WAIT + 3
    # Every reply came straight away: the wait never comes before a phase still to come.
    assert max(delays) < STREAM_END_WAIT / 2, delays


def test_the_call_is_recorded_once_whatever_ends_the_stream(gateway):
    asyncio.run(_exchange(_worker_address(gateway), _json_exchange("end-recorded")))
    record = gateway.wait_for_record("end-recorded")
    assert record["outcome"] == "ok" and record["output_tokens"] == 1
    time.sleep(0.2)                            # a second record would be written by now
    assert [r.get("client_request_id") for r in gateway.log_records()].count("end-recorded") == 1


# --- A reset in the middle of a gRPC operation -------------------------------------------
# grpc-python frees a read's or write's batch only in the coroutine that awaits its
# completion; when Envoy resets the stream, grpc cancels the handler, and an operation
# it was awaiting is abandoned with its batch (grpc/grpc#43360). Under memray, before
# this was handled: ~1 abandoned batch per cancelled stream and 3-12% of the last
# writes (80-240 bytes each, pinning heap pages). Where a reset is likely, the worker
# awaits the operation to its end whatever happens to the handler. These tests drive
# the servicer with a scripted context that holds one operation in flight and cancel
# the handler meanwhile, as grpc does on a reset.

SSE_CHUNK = (b'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":'
             b'[{"index":0,"delta":{"content":"hi"}}]}\n\n')


class ScriptedContext:
    """grpc.aio's servicer context as far as the worker uses it: reads come from a list,
    then EOF; operation number `hold` (reads and writes counted together) waits for
    `release`. `abandoned` names the operations that were cancelled in flight."""

    def __init__(self, messages: list, hold: int | None = None) -> None:
        self.messages = list(messages)
        self.hold = hold
        self.operations = 0
        self.in_flight = asyncio.Event()
        self.release = asyncio.Event()
        self.finished: list[str] = []
        self.abandoned: list[str] = []

    def invocation_metadata(self):
        return ()

    async def _operation(self, name: str):
        self.operations += 1
        if self.operations == self.hold:
            self.in_flight.set()
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.abandoned.append(name)
                raise
        self.finished.append(name)

    async def read(self):
        await self._operation("read")
        # (grpc.aio hands over what the worker's deserializer read from the bytes)
        return read_message(self.messages.pop(0).SerializeToString()) if self.messages else grpc.aio.EOF

    async def write(self, reply: bytes):
        await self._operation(f"write {ep.ProcessingResponse.FromString(reply).WhichOneof('response')}")


@pytest.fixture
def processor(tmp_path):
    from gateway_stack import quickstart_config

    from extproc.config.filter_config import load_config
    from extproc.runtime.processor import Processor
    from extproc.runtime.worker import Runtime

    config = quickstart_config()
    config["store"] = {"kind": "sqlite", "path": str(tmp_path / "budgets.sqlite3")}
    path = tmp_path / "gateway.yaml"
    path.write_text(orjson.dumps(config).decode())        # JSON is YAML
    return Processor(Runtime(load_config(str(path))))


def _streamed_exchange(request_id: str) -> list[ep.ProcessingRequest]:
    return [
        _request_headers(request_id),
        ep.ProcessingRequest(request_body=ep.HttpBody(body=orjson.dumps(
            {**orjson.loads(CHAT), "stream": True}), end_of_stream=True)),
        ep.ProcessingRequest(response_headers=_headers({":status": "200", "content-type": "text/event-stream"})),
        ep.ProcessingRequest(response_body=ep.HttpBody(body=SSE_CHUNK)),
    ]


async def _reset_during(processor, context: ScriptedContext) -> tuple[asyncio.Task, float]:
    """Runs the handler until the held operation is in flight, cancels it (Envoy's reset),
    then lets the operation complete. Returns the handler's task and how long it ran."""
    started = time.perf_counter()
    handler = asyncio.get_running_loop().create_task(processor.Process(None, context))
    await asyncio.wait_for(context.in_flight.wait(), 5)
    handler.cancel()
    await asyncio.sleep(0)
    context.release.set()
    await asyncio.wait([handler], timeout=5)
    await asyncio.sleep(0.01)                  # a shielded operation completes on its own
    return handler, time.perf_counter() - started


def test_a_reset_during_the_last_write_leaves_it_to_complete(processor):
    async def scenario():
        context = ScriptedContext(_json_exchange("reset-last-write"), hold=8)   # 4 reads, 4 writes
        handler, _ = await _reset_during(processor, context)
        assert handler.cancelled()             # no status is sent on a reset stream
        assert context.abandoned == []
        assert context.finished[-1] == "write response_body"
    asyncio.run(scenario())


def test_a_client_leaving_mid_stream_leaves_the_pending_read_to_complete(processor):
    async def scenario():
        # Reads and writes alternate: the 9th operation is the read after the first chunk.
        context = ScriptedContext(_streamed_exchange("reset-mid-stream"), hold=9)
        handler, _ = await _reset_during(processor, context)
        assert handler.cancelled()
        assert context.abandoned == []
        assert context.finished[-2:] == ["write response_body", "read"]
    asyncio.run(scenario())


def test_an_end_of_stream_that_heralds_a_reset_sends_no_status(processor):
    async def scenario():
        # The stream ends (EOF) under the read after the first chunk, and the reset follows.
        context = ScriptedContext(_streamed_exchange("eof-then-reset"))
        handler = asyncio.get_running_loop().create_task(processor.Process(None, context))
        while context.operations < 9:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.001)
        handler.cancel()
        await asyncio.wait([handler], timeout=5)
        assert handler.cancelled(), "returned: grpc would send a status on a reset stream"
    asyncio.run(scenario())


def test_a_true_half_close_mid_stream_still_ends_the_handler(processor):
    async def scenario():
        context = ScriptedContext(_streamed_exchange("half-close-mid-stream"))
        started = time.perf_counter()
        await asyncio.wait_for(processor.Process(None, context), 5)
        assert time.perf_counter() - started < 1
        assert context.finished.count("read") == 5 and context.abandoned == []
    asyncio.run(scenario())


def test_a_guarded_operation_starts_at_once_not_a_loop_turn_later():
    # A new task (asyncio.shield) would start the write at the loop's next turn: under
    # load that delayed every last reply, and a soak's clients got ~15% fewer answers.
    from extproc.runtime.processor_aio import _to_its_end

    async def scenario():
        context = ScriptedContext([], hold=1)
        pending = _to_its_end(context.read())
        assert context.in_flight.is_set(), "not started before this task yields"
        context.release.set()
        assert await pending is grpc.aio.EOF
    asyncio.run(scenario())
