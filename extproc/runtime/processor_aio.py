"""grpc.aio's Process (`server.transport: grpc`): reading and writing around a ProcessStream
(runtime/processor.py), working around grpc-python's leaks on reset streams. Imports
nothing of the service but the stream it drives."""

from __future__ import annotations

import asyncio
import time

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc

# grpc.aio: once a stream's last reply is out, how long to wait for Envoy to end it
# before reading. Envoy resets the stream then; a read pending at that moment leaks
# its gRPC batch (grpc/grpc#43360: ~120 B per request, forever), a cancelled sleep
# leaks nothing.
STREAM_END_WAIT = 1.0
# grpc.aio: how long an end of stream waits for the reset that may be right behind it.
EOF_RESET_WAIT = 0.05


class AioProcess(ep_grpc.ExternalProcessorServicer):
    """The Processor's grpc.aio method."""

    async def Process(self, request_iterator, context):
        """grpc.aio's Process."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._beat()
        stream = self.stream_for(context.invocation_metadata())
        call = stream.call
        try:
            # read/write rather than an async generator: one less coroutine hop per message.
            # A client may leave mid-stream: Envoy then resets the stream under a pending read.
            while (request := await (_to_its_end(context.read()) if call.response_streamed
                                     else context.read())) is not grpc.aio.EOF:
                stream.due_since = time.perf_counter()
                reply = await stream.handle(request)
                if not call.stream_over:
                    await context.write(reply)
                    stream.written()
                    continue
                # Envoy resets the stream as soon as it has the last reply, often before
                # the write's completion reaches this task.
                await _to_its_end(context.write(reply))
                stream.written()
                stream.last_reply_out()
                # The stream stays open until Envoy ends it (ending it here races
                # a draining connection's close against frames Envoy has in flight).
                # Envoy's reset cancels this wait; a half-close is read after it.
                await asyncio.sleep(STREAM_END_WAIT)
            # A reset can reach a pending read as an end of stream just before it reaches
            # this task as a cancellation; returning now would send a status on a reset
            # stream, a failed batch that leaks. A true half-close waits a moment for nothing.
            await asyncio.sleep(EOF_RESET_WAIT)
        finally:
            if not (call.finished or stream.due_since) and self.hung():
                # Envoy ended the stream while the loop was held up: a message of its was
                # waiting unread in gRPC (a reset cancels that read), so a reply was due.
                stream.due_since = time.perf_counter()
            stream.closed()


def _to_its_end(operation) -> asyncio.Future:
    """Start a grpc.aio read or write now and drive it to its end whatever happens to the
    task awaiting the returned future. grpc-python frees a batch only in the coroutine
    that awaits its completion; when Envoy's reset cancels the handler meanwhile, the
    batch leaks (grpc/grpc#43360: 80-240 bytes each, scattered over the heap). Stepping
    the coroutine here, as a task would, rather than in a new task (`asyncio.shield`)
    starts the batch at once: a task's first step waits for the loop's next turn, which
    under load delayed every last reply (a soak's clients, which wait for their
    answers, got ~15% fewer requests/s through).
    Only where a reset is likely: the task awaiting the result wakes one turn later."""
    loop = asyncio.get_running_loop()
    result = loop.create_future()

    def step(_=None) -> None:
        try:
            waiting = operation.send(None)
        except StopIteration as end:
            if not result.done():
                result.set_result(end.value)
        except asyncio.CancelledError:
            result.cancel()
        except Exception as error:
            if not result.done():           # else the handler is gone (Envoy's reset)
                result.set_exception(error)
        else:
            if waiting is None:             # a bare yield: go on at the loop's next turn
                loop.call_soon(step)
            else:                           # grpc's coroutine waits for its batch's future
                waiting._asyncio_future_blocking = False
                waiting.add_done_callback(step)

    step()
    return result
