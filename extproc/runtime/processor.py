"""Envoy's ext_proc streams: one call through the pipeline per stream.

`ProcessStream` is one stream whatever the transport: its Call, the pipeline and
budget store in force when it opened, the bookkeeping once its last reply is out,
and its settling however it ends. The workers' own HTTP/2 (transport/grpc_h2.py, MESSAGES)
hands it each message in the read that brought it; on grpc.aio (`server.transport:
grpc`), `Process` (processor_aio.py) reads and writes around it. Out of a hang, each
reply notes where Envoy's bytes stood when it left (`horizons`), so an end of stream
Envoy sent before it is told from one sent after.
"""

from __future__ import annotations

import asyncio
import os
import time

from ..config.envoy_contract import ENVOY_FEATURES_METADATA, ROLE_METADATA, envoy_features
from ..pipeline.call import Call
from ..pipeline.outcomes import CANCELLED, GATEWAY_TIMEOUT, Undelivered
from ..pipeline.protocol import Request
from ..transport import eager
from .processor_aio import AioProcess

# With at most this many calls in flight, a worker that has sent a call's last reply gives
# up the CPU before its bookkeeping (settle, log line): Envoy, woken by that reply and
# sharing the core, then forwards the answer first. A burst of 8 calls in step: p50
# 5.0-6.8 -> 3.7-5.9 ms; busier, the yield cost a quarter of the throughput, hence the
# bound (docs/decisions/answer-in-the-read.md).
YIELD_BELOW_CALLS = 8
# The worker's loop notes the time this often; a loop that did not for HUNG_AFTER (the
# process stopped, or a step that blocked it) was hung: the streams Envoy ended meanwhile
# with a reply due ended for the gateway's fault (Envoy's message timeout: 504).
# So do those Envoy ends with a reply due up to HUNG_RECENT after the hang: their timers
# (Envoy's message timeout, 2 s: envoy/template.yaml) ran out while the worker caught up.
# A worker resumed on a busy host may take seconds to read the resets Envoy sent meanwhile.
HEARTBEAT = 0.1
HUNG_AFTER = 1.0
HUNG_RECENT = 5.0
# Out of a hang, a stream's books held until Envoy's bytes sent before its last reply are
# read (ProcessStream.last_reply_out) are looked at this often.
HELD_CHECK = 0.005


class ProcessStream:
    """One ext_proc stream: an HTTP request (or, for the upstream filter, one attempt)."""

    __slots__ = ("processor", "call", "pipeline", "store", "due_since", "reply_turn", "made",
                 "made_generated", "left", "left_generated", "connection", "horizons", "before_hang",
                 "done_held", "context")

    def __init__(self, processor: Processor, metadata, context=None) -> None:
        runtime = processor.runtime             # this request's snapshot, reloads or not
        # The upstream filter (one stream per attempt) says so in its gRPC metadata; the
        # main filter says what Envoy's other filters do for the service.
        role, features = "", ""
        for name, value in metadata or ():
            if name == ROLE_METADATA:
                role = value
            elif name == ENVOY_FEATURES_METADATA:
                features = value
        self.processor = processor
        self.call = Call(runtime.config, envoy_features(features))
        # MCP profiles' routes say so in their per-route ext_proc overrides.
        self.pipeline = runtime.upstream_pipeline if role == "upstream" else \
            runtime.mcp_pipeline if role == "mcp" else runtime.pipeline
        self.store = runtime.store              # kept open until this call has settled
        self.store.call_started()
        processor.in_flight += 1
        # What Envoy has taken of the replies (runtime/processor.py `_replied`): a reply
        # leaves the worker at the end of the loop's turn that made it.
        self.due_since = 0.0                # a message arrived (perf_counter), its reply not made
        self.reply_turn = -1                # the loop's turn that made the last reply
        self.made = self.made_generated = 0         # replies made; len(call.generated) at the last
        self.left = self.left_generated = 0         # ... of those that have left the worker
        # Out of a hang, Envoy's end of a stream may wait in the socket behind the messages
        # it ended: the turns no longer tell what Envoy took. Each reply made then keeps
        # the place in Envoy's bytes it reached Envoy behind (http2.Connection.horizon):
        # an end read before that place was sent before Envoy had the reply.
        self.context = context                      # grpc_h2's MessageCall
        self.connection = None if context is None else context.connection     # transport/http2.py's
        self.horizons: list[tuple[int, int, int]] | None = None    # (place, made, made_generated)
        self.before_hang = (0, 0)                   # (made, made_generated) before the first of them
        self.done_held = False                      # the done hooks wait for Envoy's end or the place

    def handle(self, request: Request):
        """The reply to one message (a coroutine)."""
        return self.pipeline.handle(self.call, request)

    def message(self, request: Request):
        """grpc_h2's MESSAGES hook, run outside any task (transport/eager.py): the reply, which
        leaves when this read of the socket ends; or, when a hook waits (Redis, a
        plugin), a coroutine of it, which grpc_h2 runs in a task."""
        self.due_since = time.perf_counter()
        ended, result = eager.start(self.handle(request))
        if ended:
            return self._replied(result)
        return self._reply_later(result)

    def hand_over(self) -> bool:
        """A streamed answer's chunks (one reply each) need not reach Envoy before the
        read's other messages are handled: every other reply is handed over."""
        return not self.call.response_streamed

    async def _reply_later(self, rest: eager.Rest) -> bytes:
        return self._replied(await rest)

    def _replied(self, reply: bytes) -> bytes:
        processor = self.processor
        placing = self.connection is not None and processor.hung()
        if placing:
            self._note_straddle(hung=True)
            if self.horizons is None:
                self.horizons, self.before_hang = [], (self.made, self.made_generated)
            self.connection.placing = True
            writes = self.connection.flushes        # it leaves with the next write
        if self.reply_turn != processor.turn:       # a turn has ended since: those replies left
            self.left, self.left_generated = self.made, self.made_generated
            self.reply_turn = processor.turn
            processor.turn_ends()
        self.made += 1
        self.made_generated = len(self.call.generated)
        if placing:
            processor.place_after_turn(self, writes)
        self.due_since = 0.0
        if self.call.stream_over:           # the last reply: the bookkeeping at the loop's next turn
            # (the processor's loop: asyncio.get_running_loop() asks the kernel for the pid)
            (processor._loop or asyncio.get_running_loop()).call_soon(self.last_reply_out)
        return reply

    def _note_straddle(self, hung: bool = False) -> None:
        """Out of a hang (`hung`: already known), when its last replies were made in the turn
        the hang stopped: they left when the loop went on, with Envoy's bytes sent meanwhile
        before them (Processor._turn_ended)."""
        processor = self.processor
        if self.connection is None or not (hung or processor.hung()):
            return
        if self.horizons is None and self.reply_turn == processor.straddled_turn >= 0:
            place = processor.resume_places.get(self.connection)
            if place is not None:
                self.horizons = [(place, self.made, self.made_generated)]
                self.before_hang = (self.left, self.left_generated)

    def _placed_last(self) -> bool:
        """Whether its last reply was made out of a hang and has its place."""
        return bool(self.horizons) and self.horizons[-1][1] == self.made

    def _read_past_last(self) -> bool:
        return self._placed_last() and self.connection.position >= self.horizons[-1][0]

    def placed(self, place: int, made: int, generated: int) -> None:
        """Its reply (the `made`th) left the worker when Envoy had sent up to `place`."""
        self.horizons.append((place, made, generated))

    def written(self) -> None:
        """grpc.aio: a reply's write completed, so Envoy has it (what `_replied` and the
        loop's turns tell on grpc_h2)."""
        self.made += 1
        self.made_generated = len(self.call.generated)
        self.due_since = 0.0

    def last_reply_out(self) -> None:
        self._note_straddle()
        if self.horizons is not None and not self._read_past_last():
            # Envoy's bytes sent before it could have the last reply are still unread (or the
            # reply waits to leave): its end of this stream may be among them. The books wait
            # for that end, or for the place.
            self.done_held = True
            self.processor.hold_until_read(self)
            return
        if self.processor.in_flight <= YIELD_BELOW_CALLS:
            os.sched_yield()
        self._run_done()

    def read_past(self) -> bool:
        """Held done hooks: whether Envoy's bytes up to the last reply's place are read (it
        did not end the stream before that reply: the books are run now)."""
        if not self.done_held:
            return True
        if not self._read_past_last():
            return False
        self.done_held = False
        self._run_done()
        return True

    def closed(self) -> None:
        """The stream is over. A call Envoy ended early (client gone, upstream reset, or
        a phase never sent) is settled anyway: never lose the record. One Envoy ended
        while it waited for a reply of ours is marked with what Envoy took of it."""
        self._note_straddle()
        if self._placed_last() and not self.due_since:
            self._ended_at(self.connection.position)
        elif (self.due_since or self.reply_turn == self.processor.turn) and not self._ended_normally():
            self._undelivered()
        if not self.call.finished:
            self.pipeline.end(self.call, CANCELLED)
        self.done_held = False
        self._run_done()
        self.store.call_ended()
        self.processor.in_flight -= 1

    def _ended_normally(self) -> bool:
        """The call's last reply is made and the worker was not held up: Envoy half-closed the
        stream after its last message (as it does when no more phases follow, with the reply
        to that message still on its way out), not because it gave up waiting (its message
        timeout: the worker hung or took HUNG_AFTER over the reply)."""
        waited = time.perf_counter() - self.due_since if self.due_since else 0.0
        return self.call.finished and waited < HUNG_AFTER and not self.processor.hung()

    def _ended_at(self, place: int) -> None:
        """Out of a hang, with no reply due: Envoy took the replies that reached it before its
        end, those whose place lies at or before the end's."""
        if place >= self.horizons[-1][0]:
            return                                  # it had every reply
        if self.context.ended and len(self.horizons) > 1 and place >= self.horizons[-2][0]:
            # A half-close, sent once Envoy had the reply before: Envoy half-closes after its
            # last message, before the answer to it, and waits for that answer.
            return
        taken = self.before_hang
        for reached, made, generated in self.horizons:
            if reached <= place:
                taken = (made, generated)
        self._undelivered(taken)

    def _undelivered(self, taken: tuple[int, int] | None = None) -> None:
        """Envoy ended the stream (a reset, or a half-close: it does that when its message
        timeout runs out) before it had the last reply made (still in the worker when
        the end was read) or before one was made: it answered the caller itself (504,
        or a stream cut where it stood), or the caller left. The call is ended for what
        Envoy took (stages/accounting/delivered.py charges that). A stream that ends normally
        ends after Envoy has its last reply, in a later turn."""
        call, processor = self.call, self.processor
        lost = call.own(Undelivered)
        if taken is not None:
            lost.replies, lost.generated = taken
        elif self.reply_turn == processor.turn:
            lost.replies, lost.generated = self.left, self.left_generated
        else:
            lost.replies, lost.generated = self.made, self.made_generated
        waited = time.perf_counter() - self.due_since if self.due_since else 0.0
        lost.worker_hung = taken is not None or processor.hung() or waited >= HUNG_AFTER
        outcome = GATEWAY_TIMEOUT if lost.worker_hung else CANCELLED
        if call.finished:                   # its last reply was made, never taken
            lost.answered = call.outcome
            call.outcome = outcome
        else:
            self.pipeline.end(call, outcome)

    def _run_done(self) -> None:
        """An ended call's done hooks (settle, record), once, at once; what waits in them
        (a Redis settle) goes on in a task of its own, out of reach of the stream's end."""
        call = self.call
        if not call.done_due:
            return
        call.done_due = False
        ended, rest = eager.start(self.pipeline.run_done(call))
        if not ended:
            self.store.call_started()
            self.processor.in_background(rest, self.store.call_ended)


class Processor(AioProcess):
    def __init__(self, runtime) -> None:
        self.runtime = runtime
        self._background: set[asyncio.Future] = set()
        self.in_flight = 0                      # streams open
        # The loop's turns, counted only while replies are made: a reply made in turn N
        # has left the worker once `turn` is past N (transport/http2.py writes a read's
        # replies at its end, a task's at once).
        self.turn = 0
        self._turn_ending = False
        self._beat_at = 0.0                     # the heartbeat's last note (loop.time())
        self._hang_ended = -HUNG_RECENT         # when the heartbeat last found the loop had hung
        self._loop: asyncio.AbstractEventLoop | None = None
        self._to_place: list[tuple] = []    # replies made out of a hang this turn: (stream, writes, made, generated)
        self._held: list[ProcessStream] = []            # done hooks waiting on Envoy's bytes
        self._placing: set = set()                      # connections noting their writes' places
        self._connections: set = set()                  # grpc_h2's connections streams came on
        self.straddled_turn = -1                        # the last turn a hang stopped midway
        self.resume_places: dict = {}                   # connection -> its horizon as that turn ended

    def open_stream(self, context) -> ProcessStream:
        """grpc_h2's MESSAGES handler for Process."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._beat()
        self._connections.add(context.connection)
        return ProcessStream(self, context.invocation_metadata(), context)

    def stream_for(self, metadata) -> ProcessStream:
        """A stream on grpc.aio (processor_aio.py), which tells nothing of its connection."""
        return ProcessStream(self, metadata)

    def turn_ends(self) -> None:
        """Counts the end of this turn of the loop, once."""
        if not self._turn_ending:
            self._turn_ending = True
            self._loop.call_soon(self._turn_ended)

    def place_after_turn(self, stream: ProcessStream, writes: int) -> None:
        """A reply made out of a hang, to leave with the connection's write after its
        `writes`th: where Envoy's bytes stood at that write is looked up at the turn's end
        (transport/http2.py writes a read's replies at its end, or hands them over sooner)."""
        self._to_place.append((stream, writes, stream.made, stream.made_generated))
        self.turn_ends()

    def hold_until_read(self, stream: ProcessStream) -> None:
        if not self._held:
            self._loop.call_later(HELD_CHECK, self._check_held)
        self._held.append(stream)

    def _check_held(self) -> None:
        self._held = [stream for stream in self._held if not stream.read_past()]
        if self._held:
            self._loop.call_later(HELD_CHECK, self._check_held)

    def _turn_ended(self) -> None:
        self.turn += 1
        self._turn_ending = False
        if self._loop.time() - self._beat_at >= HUNG_AFTER and self._connections:
            # The loop stopped within the turn just ended: its replies left only now, when
            # Envoy had sent up to each connection's horizon (what it sent meanwhile included).
            self.straddled_turn = self.turn - 1
            self._connections = {c for c in self._connections if not c.closed}
            self.resume_places = {connection: connection.horizon() for connection in self._connections}
        if self._to_place:
            self._place()

    def _place(self) -> None:
        """Each reply made out of a hang gets the place of the write it left with; one the
        socket did not take whole (Envoy reads slowly) gets it once the rest has left."""
        placing, self._to_place = self._to_place, []
        waiting = []
        for entry in placing:
            stream, writes, made, generated = entry
            connection = stream.connection
            place = next((at for write, at in connection.flush_places if write > writes), None)
            if place is None or place < 0:
                transport = connection.transport
                if transport is not None and not transport.is_closing() and transport.get_write_buffer_size():
                    waiting.append(entry)
                    continue
                place = connection.horizon()
            stream.placed(place, made, generated)
        for stream, _, _, _ in placing:
            stream.connection.flush_places.clear()
            self._placing.add(stream.connection)
        if waiting:
            if not self._to_place:
                self._loop.call_later(HELD_CHECK, self._place)
            self._to_place = waiting + self._to_place

    def _beat(self) -> None:
        now = self._loop.time()
        if self._beat_at and now - self._beat_at >= HUNG_AFTER:
            self._hang_ended = now
        self._beat_at = now
        if self._placing and not self.hung():        # out of the hang: writes unnoted again
            for connection in self._placing:
                connection.placing = False
                connection.flush_places.clear()
            self._placing.clear()
        self._loop.call_later(HEARTBEAT, self._beat)

    def hung(self) -> bool:
        """Whether the loop is coming out of a hang: it has not run its heartbeat for
        HUNG_AFTER (a read may run before the timers due meanwhile), or did so late within
        HUNG_RECENT (the reads after it bring what Envoy did meanwhile)."""
        if self._loop is None:
            return False
        now = self._loop.time()
        return now - self._beat_at >= HUNG_AFTER or now - self._hang_ended < HUNG_RECENT

    def in_background(self, awaitable, then) -> None:
        task = asyncio.ensure_future(awaitable)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(lambda _: then())
