"""One ext_proc worker on uvloop answering Envoy's Process streams (and its access log of
cut streams, and Health) over gRPC: on the worker's own HTTP/2 (transport/grpc_h2.py, the default)
or on grpc.aio (`server.transport: grpc`)."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import os
import signal

import grpc
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ..api.tokens import get_encoding
from ..config.filter_config import GatewayConfig, load_config
from ..credentials import start_minting
from ..guardrails.plugin import close_unused_channels
from ..observability import metrics
from ..observability.span_export import close_exporters, close_unused_exporters
from ..pipeline.protocol import read_message
from ..pipeline.request_bodies import TAKEN_FROM, parse_request
from ..stages.pipelines import build_mcp_pipeline, build_pipeline, build_upstream_pipeline
from ..stages.key_ring import KEY_RING
from ..stages.cache.lookup import CacheStoreHandle
from ..store import open_worker_store
from ..store.cache_vectors import open_vectors
from ..store.response_cache import open_cache
from ..store.calls import CallLog
from ..store.cut_streams import WorkerCutStreams
from ..transport import compiled
from ..transport.grpc_h2 import CLIENT_STREAM, MESSAGES, UNARY, GrpcServer, Method
from ..transport.sending import MAX_MESSAGE
from .cut_stream_log import CutStreamLog
from .lost_calls import log_lost_calls
from .processor import Processor
from .reload import watch_config

log = logging.getLogger("extproc.server")

_EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
PROCESS_PATH = f"/{_EXT_PROC_SERVICE}/Process"
ACCESS_LOG_PATH = "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs"
HEALTH_CHECK_PATH = "/grpc.health.v1.Health/Check"

# SSE streams stay open for minutes; never let them starve new requests.
_GRPC_OPTIONS = [
    ("grpc.max_concurrent_streams", 100_000),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.so_reuseport", 0),
]
# A retiring worker (replaced by the supervisor) lets its streams, long SSE ones too, finish.
_RETIRE_GRACE = 600.0
# Python's collector looks for cycles whenever 700 more container objects are alive than
# at its last look (its default). A call in flight holds ~25 (its stream, its Call, its
# replies, its budget's hold...), so 32 calls at once cross 700 by themselves: a loaded
# worker collected every ~50 calls, each time walking the calls in flight (which reference
# counting frees moments later) into older generations, and that promotion set off a full
# pass over everything the worker made since its fork (7-8 ms, the event loop stopped)
# every few seconds: 1.2-3.6% of its CPU under JSON, SSE or agent histories. A call
# leaves no cycle behind (transport/grpc_calls.py lets go of its handler), so the young
# generation is sized above what the calls in flight hold; a real accumulation of cycles
# is still collected, 10,000 objects at a time (a young pass of ~0.2 ms).
# (docs/decisions/collector-young-generation.md)
YOUNG_GENERATION = 10_000
_DAY_MS = 86_400_000


class StoreInUse:
    """A budget store and the calls using it. Runtimes share it across reloads while
    the store settings stay the same; once no runtime in force has it, it is closed
    when its last call has ended (a long stream may settle minutes after a reload)."""

    def __init__(self, store) -> None:
        self.store = store
        self.calls = 0
        self.in_force = True

    def call_started(self) -> None:
        self.calls += 1

    def call_ended(self) -> None:
        self.calls -= 1
        self._close_when_unused()

    def retire(self) -> None:
        self.in_force = False
        self._close_when_unused()

    def _close_when_unused(self) -> None:
        if self.in_force or self.calls or self.store is None:
            return
        store, self.store = self.store, None
        closing = store.close()
        if inspect.isawaitable(closing):          # Redis: its pool closes on the loop
            task = asyncio.get_running_loop().create_task(closing)
            _closing.add(task)
            task.add_done_callback(_closing.discard)


_closing: set[asyncio.Task] = set()


def _count_exchange_failure() -> None:
    metrics.child(metrics.store_errors, "exchange").inc()


def _count_store_reset(before: str, now: str) -> None:
    metrics.store_resets.inc()


class Runtime:
    """The config and pipeline in force; swapped whole on reload."""

    def __init__(self, config: GatewayConfig, store: StoreInUse | None = None,
                 cut_streams: WorkerCutStreams | None = None, cache: CacheStoreHandle | None = None,
                 calls: CallLog | None = None) -> None:
        self.config = config
        self.calls = calls or CallLog()       # the console's recent calls: kept across reloads
        if store is None:     # always open: budgets, stored responses and cut streams use it
            store = StoreInUse(open_worker_store(config.store, _count_exchange_failure, _count_store_reset,
                                                 log_lost_calls))
        self.store = store
        self.cut_streams = cut_streams or WorkerCutStreams(config.store)
        self.cache = cache if cache is not None else _cache_handle(config)
        self.pipeline = build_pipeline(config, store.store, self.cut_streams, self.cache, self.calls)
        self.upstream_pipeline = build_upstream_pipeline(config)
        self.mcp_pipeline = build_mcp_pipeline(config, store.store, self.calls)


def _cache_handle(config: GatewayConfig) -> CacheStoreHandle:
    """The response cache's store (none when no rule caches anything)."""
    if not config.cache.enabled:
        return CacheStoreHandle(None)
    return CacheStoreHandle(open_cache(config.cache, config.store),
                            open_vectors(config.cache, config.store) if config.cache.semantic else None)


async def _close_cache(cache: CacheStoreHandle) -> None:
    stores = (cache.store, cache.vectors, cache.embedder)
    cache.store = cache.vectors = None
    for store in stores:
        if store is None:
            continue
        try:
            closing = store.close()
            if inspect.isawaitable(closing):
                await closing
        except Exception:                     # noqa: BLE001 - shutting down: logged, not raised
            log.exception("closing the response cache's store")


_unused_caches: dict[CacheStoreHandle, asyncio.Task] = {}


def close_cache_later(cache: CacheStoreHandle, after_s: float = _RETIRE_GRACE) -> None:
    """A cache store a reload stopped using (the cache turned off, or its settings
    changed), closed once the calls begun before the reload are done with it, or at once
    when the worker stops (close_unused_caches)."""
    async def close() -> None:
        await asyncio.sleep(after_s)
        _unused_caches.pop(cache, None)
        await _close_cache(cache)
    _unused_caches[cache] = asyncio.get_running_loop().create_task(close())


async def close_unused_caches() -> None:
    for cache, waiting in list(_unused_caches.items()):
        waiting.cancel()
        await _close_cache(cache)
    _unused_caches.clear()


def reloaded(runtime: Runtime, config: GatewayConfig) -> Runtime:
    """A runtime for a new config; the budget store is kept when its settings did not
    change, else the old one is closed once the calls still using it have ended. The
    response cache's store is kept while its settings and the budget store's stay."""
    cache = runtime.cache if (config.cache.enabled and runtime.cache.store is not None
                              and (config.cache.path, config.cache.max_bytes, config.cache.semantic, config.store)
                              == (runtime.config.cache.path, runtime.config.cache.max_bytes,
                                  runtime.config.cache.semantic, runtime.config.store)) else None
    if runtime.store.store is not None and config.store == runtime.config.store:
        return Runtime(config, runtime.store, runtime.cut_streams, cache, runtime.calls)
    runtime.store.retire()
    return Runtime(config, cut_streams=runtime.cut_streams, cache=cache, calls=runtime.calls)


async def serve_worker(config_path: str, address: str, health_address: str | None = None, *,
                       grace: float = 30.0) -> None:
    config = load_config(config_path)
    schedule_worker_threads(config.server.worker_scheduling)     # before gRPC starts its threads
    runtime = Runtime(config)
    await _mint_first_tokens(config, wait=10.0)
    for encoding in {model.encoding for model in config.models.values()}:
        get_encoding(encoding)          # load the BPE ranks now, not on the first request
    processor = Processor(runtime)
    # The keys made at run time: read before serving, then kept fresh (stages/key_ring.py).
    keys = asyncio.get_running_loop().create_task(
        KEY_RING.keep_fresh(lambda: processor.runtime.store.store, lambda: processor.runtime.config))
    # Envoy's access log of streams cut short (cut_stream_log.py), on the same socket.
    cut_log = CutStreamLog(runtime.cut_streams.sent, lambda: processor.runtime.store.store)
    health_servicer = health.aio.HealthServicer()
    probe_server = None
    if health_address:
        # Kubelet's gRPC probe needs TCP. That port serves Health only: the ext_proc
        # service itself stays on the Unix socket, out of the pod network's reach. It listens
        # before that socket does: the supervisor's start waits for the socket, and a started
        # gateway's probe port then answers too.
        probe_server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, probe_server)
        probe_server.add_insecure_port(health_address)
        await probe_server.start()
    if config.server.transport == "h2" and address.startswith("unix:"):    # (a TCP address: grpc.aio)
        server = GrpcServer({
            PROCESS_PATH: Method(processor.open_stream, read_message, MESSAGES,
                                 pieces_from=TAKEN_FROM, deserialize_pieces=parse_request),
            ACCESS_LOG_PATH: Method(cut_log.StreamAccessLogs, als_pb2.StreamAccessLogsMessage.FromString,
                                    CLIENT_STREAM),
            HEALTH_CHECK_PATH: Method(health_servicer.Check, health_pb2.HealthCheckRequest.FromString, UNARY),
        })
        await server.start(address.removeprefix("unix:"))
    else:
        server = _grpc_aio_server(config, address, processor, cut_log, health_servicer)
        await server.start()
    await _set_health(health_servicer, health_pb2.HealthCheckResponse.SERVING)
    log.info("ext_proc worker serving on %s (config %s)", address, config.version)

    def apply(new_config: GatewayConfig) -> None:
        start_minting([p.credential for p in new_config.providers.values()], wait=0)   # a new key's: in the background
        before = processor.runtime
        processor.runtime = reloaded(before, new_config)   # one assignment: atomic
        if processor.runtime.cache is not before.cache:
            close_cache_later(before.cache)
        for closing in [*close_unused_channels(new_config.guardrails.plugin_addresses()),
                        *close_unused_exporters(new_config.observability.tracing)]:
            _closing.add(task := asyncio.get_running_loop().create_task(closing))
            task.add_done_callback(_closing.discard)

    watcher = asyncio.get_running_loop().create_task(watch_config(config_path, apply, config))
    metrics.batch_writes()
    flusher = asyncio.get_running_loop().create_task(_flush_metrics())
    calls = asyncio.get_running_loop().create_task(runtime.calls.keep_flushing(lambda: _calls_kept(processor)))
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)

    def retire() -> None:
        # SIGUSR2 from the supervisor: a successor already serves new connections.
        nonlocal grace
        grace = max(grace, _RETIRE_GRACE)
        stopping.set()

    loop.add_signal_handler(signal.SIGUSR2, retire)
    await stopping.wait()
    # Graceful: stop taking new streams, let the ones in flight (long SSE too) finish,
    # then let their settling and records complete.
    watcher.cancel()
    keys.cancel()
    cut_log.close()
    await _set_health(health_servicer, health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.stop(grace)
    if probe_server is not None:
        await probe_server.stop(0)
    if processor._background:
        await asyncio.wait(list(processor._background), timeout=5)
    processor.runtime.store.retire()
    await _close_cache(processor.runtime.cache)     # the entries still written behind
    await close_unused_caches()
    if _closing:
        await asyncio.wait(list(_closing), timeout=5)
    await close_exporters()             # the spans of the calls just ended
    calls.cancel()
    await processor.runtime.calls.flush(*_calls_kept(processor))     # the last calls' records
    flusher.cancel()
    metrics.flush()


def _calls_kept(processor: Processor):
    config = processor.runtime.config
    return config.store, config.console.calls_kept if config.console is not None else 0


async def _mint_first_tokens(config: GatewayConfig, wait: float) -> None:
    """Start the providers' minted tokens (Vertex AI's) and wait for the first of each, off
    the event loop: a worker serves with them. One not minted in time is logged and keeps
    being tried; that provider's calls fail until it comes."""
    late = await asyncio.to_thread(start_minting, [p.credential for p in config.providers.values()], wait)
    for describe in late:
        log.error("no access token yet for %s; its calls fail until one is minted", describe)


def _grpc_aio_server(config: GatewayConfig, address: str, processor: Processor, cut_log: CutStreamLog,
                     health_servicer) -> grpc.aio.Server:
    """`server.transport: grpc`: the same methods on grpc.aio."""
    # Envoy itself reconnects every worker_connection_age_s (the extproc cluster's
    # max_connection_duration): a client-side drain never refuses a stream. A server
    # GOAWAY at that age did, now and then (REFUSED_STREAM to a stream Envoy had just
    # opened: a 500), so it is only the backstop for an Envoy config without it.
    age_ms = 2 * config.server.worker_connection_age_s * 1000
    server = grpc.aio.server(options=_GRPC_OPTIONS + [("grpc.max_connection_age_ms", age_ms),
                                                      ("grpc.max_connection_age_grace_ms", _DAY_MS)])
    # As ep_grpc.add_ExternalProcessorServicer_to_server, with the gateway's own reading of a
    # message and its replies already bytes (pipeline/protocol.py).
    handlers = {"Process": grpc.stream_stream_rpc_method_handler(processor.Process, request_deserializer=read_message,
                                                                 response_serializer=bytes)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_EXT_PROC_SERVICE, handlers),))
    server.add_registered_method_handlers(_EXT_PROC_SERVICE, handlers)
    als_pb2_grpc.add_AccessLogServiceServicer_to_server(cut_log, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if address.startswith("unix:"):
        path = address[len("unix:"):]
        if os.path.exists(path):
            os.unlink(path)
    server.add_insecure_port(address)
    return server


async def _flush_metrics() -> None:
    while True:
        await asyncio.sleep(metrics.FLUSH_INTERVAL)
        metrics.flush()


async def _set_health(servicer, status) -> None:
    for service in ("", "envoy.service.ext_proc.v3.ExternalProcessor"):
        await servicer.set(service, status)


def schedule_worker_threads(policy: str) -> None:
    """`server.worker_scheduling: batch`: SCHED_BATCH for this thread and the threads it
    starts (they inherit it). Each ext_proc message crosses gRPC's poller thread and the
    event loop's; under load the poller's every wake-up preempts the loop (~8 times per
    request) and the worker's threads switch ~19 times per request, ~7.5 as batch threads
    (which wait for the running thread to block or its slice to end). Interleaved A/B
    runs: worker CPU per request -6 to -19%, requests/s +2 to +17%, latency at half load
    the same or up to 0.5 ms worse; hence not the default (bench/README.md, "Tried, measured, and not kept")."""
    if policy != "batch" or not hasattr(os, "SCHED_BATCH"):
        return
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except OSError as error:            # a sandbox that forbids it: run as before
        log.warning("could not set the SCHED_BATCH policy (%s); running with the default", error)


def run_worker(config_path: str, address: str, health_address: str | None = None) -> None:
    import uvloop
    gc.set_threshold(YOUNG_GENERATION, *gc.get_threshold()[1:])
    logging.basicConfig(level=os.environ.get("EXTPROC_LOG_LEVEL", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if stale := compiled.stale():
        log.warning("%s run compiled from an older source: `pip install -e .` again", ", ".join(stale))
    uvloop.run(serve_worker(config_path, address, health_address))
