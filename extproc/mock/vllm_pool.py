"""Simulated vLLM pools: the mock provider's `vllm_pools:` entries, each a set of replicas
that answer as vLLM's OpenAI-compatible server does, over the engine of vllm_sim.py.

    mock_provider:
      vllm_pools:
      - {name: mock-vllm, port: 10120, replicas: 4, models: [llama-3.1-8b-instruct],
         adapters: {sql-lora: [0, 1]}, kv_blocks: 2048, block_tokens: 16, max_batch: 32,
         time_scale: 1.0}

Replica i (0-based) listens on host:(port + i) (host 127.0.0.1 unless given), named
`<pool>-<i>`; every answer carries `x-mock-replica: <pool>-<i>`. The other keys and their
defaults are EngineSpec's (vllm_sim.py). `adapters` names which replicas have each LoRA
adapter (on the pool's first model).

Each replica serves POST /v1/chat/completions and /v1/completions (JSON, and SSE with
`stream: true`, usage last with stream_options.include_usage; usage's
prompt_tokens_details.cached_tokens is what its prefix cache served), GET /v1/models
(its base models and its adapters, as vLLM lists them), GET /health, GET /metrics
(vllm_metrics.py), and POST /v1/load_lora_adapter and /v1/unload_lora_adapter
({"lora_name", "lora_path"}: an adapter given to or taken from this replica at run time). A model it does not serve is vLLM's 404:
    {"error": {"message": "The model `x` does not exist.", "type": "NotFoundError",
               "param": null, "code": 404}}
Controls, on each replica's port:
    GET / DELETE /_mock/requests     the requests received (each with `replica` and the
                                     `usage` it reported), or clear them
    POST /_mock/replica {"metrics": "ok" | "garbage" | "slow" | "hang" | "error"}
        /metrics answers normally, random bytes, after 2 s (or "slow_s": seconds, 0-60),
        never, or 500
    POST /_mock/replica {"down": true}   a killed pod: the port refuses connections, every
        connection open is reset (requests in flight end mid-answer); {"down": false}
        brings it back with an empty KV cache and zeroed counters. A replica that is down
        cannot be reached on its port: send it to a sibling with "replica": i, e.g.
        POST (any replica of the pool) /_mock/replica {"replica": 2, "down": false},
        or have it come back by itself: {"down": true, "up_after_s": 1.5} (real seconds)
    POST /_mock/replica {"reset": true}  empties the KV cache (what no request holds) and
        the counters
    Every answer of /_mock/replica names the replica, whether it is down, its metrics mode
    and `evicted_blocks`, `refilled_blocks`: the cached blocks its KV cache evicted, and
    the blocks it computed again after evicting them, since it started or was reset (vLLM
    does not publish these; benchmarks read them to tell a miss by eviction from one by
    placement)
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import orjson
from aiohttp import web

from ..api.openai import max_output_tokens
from ..api.tokens import get_encoding, token_ids
from .listener import Listener, record
from .shapes import json_reply, sse_events
from .vllm_metrics import CONTENT_TYPE, garbage, render
from .vllm_prompt import answer_pieces, prompt_token_ids
from .vllm_sim import Engine, Sequence, block_hashes
from .vllm_spec import PoolSpec
from .wire import SSE_HEADERS

METRICS_MODES = ("ok", "garbage", "slow", "hang", "error")
SLOW_METRICS_S = 2.0            # "slow": /metrics answers after this long (real seconds)
HANG_HOLD_S = 600.0             # "hang": held open at most this long
PROGRESS_WAIT_S = 0.25          # how often a request with no progress looks whether its client left
MAX_BODY = 64 * 1024 * 1024
# The requests a replica keeps for GET /_mock/requests: fewer than a listener's, as a pool
# under a benchmark receives many long prompts on many replicas.
RECORDED_KEPT = 200


def pools_from_config(spec: dict) -> list["VllmPool"]:
    """The pools of a filter config's `mock_provider:` section (ValueError: which entry is
    wrong, and how)."""
    pools = []
    for index, item in enumerate(spec.get("vllm_pools") or ()):
        try:
            pools.append(VllmPool(PoolSpec.from_config(item)))
        except ValueError as error:
            raise ValueError(f"mock_provider.vllm_pools[{index}]: {error}") from None
    return pools


def vllm_error(status: int, message: str, type_: str) -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": status}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _reset(transport) -> None:
    """Close with RST, as a killed pod's kernel does."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


class Replica:
    """One replica: its engine, its listener record, its faults, its HTTP server."""

    def __init__(self, pool: "VllmPool", index: int) -> None:
        spec = pool.spec
        self.pool, self.index = pool, index
        self.name = f"{spec.name}-{index}"
        self.listener = Listener(name=self.name, port=spec.port + index, host=spec.host)
        self.models = spec.models
        self.adapters = [name for name, where in spec.adapters.items() if index in where]
        self.engine = Engine(spec.engine)
        self.metrics_mode = "ok"
        self.slow_s = SLOW_METRICS_S
        self.down = False
        self.runner: web.AppRunner | None = None
        self.server: asyncio.AbstractServer | None = None
        self._scrapes = 0

    # --- life -----------------------------------------------------------------------

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app(), access_log=None)
        await self.runner.setup()
        await self._listen()
        self.engine.start()

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self.runner.server, self.listener.host, self.listener.port,
                                               reuse_address=True)

    async def stop(self) -> None:
        await self.engine.stop()
        if self.server is not None:
            self.server.close()
        if self.runner is not None:
            await self.runner.cleanup()

    async def set_down(self, down: bool, spare=None) -> None:
        """Down: the port closed, every open connection but `spare` reset, the engine's
        requests failed and its state gone. Up: listening again, an empty engine."""
        if down and not self.down:
            self.down = True
            if self.server is not None:
                self.server.close()
                self.server = None
            for handler in list(self.runner.server.connections):
                if handler.transport is not None and handler.transport is not spare:
                    _reset(handler.transport)
            self.engine.crash()
        elif not down and self.down:
            self.engine.start()
            await self._listen()
            self.down = False

    # --- HTTP -----------------------------------------------------------------------

    def app(self) -> web.Application:
        name = self.name

        @web.middleware
        async def tag(request: web.Request, handler):
            response = await handler(request)
            if not response.prepared:
                response.headers["x-mock-replica"] = name
            return response

        app = web.Application(client_max_size=MAX_BODY, middlewares=[tag])
        async def chat(request: web.Request) -> web.StreamResponse:
            return await self.generate("chat", request)

        async def completions(request: web.Request) -> web.StreamResponse:
            return await self.generate("completions", request)

        async def health(request: web.Request) -> web.Response:
            return web.Response(status=200)

        app.router.add_post("/v1/chat/completions", chat)
        app.router.add_post("/v1/completions", completions)
        app.router.add_get("/v1/models", self.list_models)
        app.router.add_post("/v1/load_lora_adapter", self.load_adapter)
        app.router.add_post("/v1/unload_lora_adapter", self.unload_adapter)
        app.router.add_get("/health", health)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/_mock/requests", self.recorded)
        app.router.add_delete("/_mock/requests", self.clear)
        app.router.add_post("/_mock/replica", self.control)
        return app

    async def recorded(self, request: web.Request) -> web.Response:
        return web.json_response(self.listener.received, dumps=lambda o: orjson.dumps(o).decode())

    async def clear(self, request: web.Request) -> web.Response:
        self.listener.received.clear()
        return web.Response(status=204)

    async def load_adapter(self, request: web.Request) -> web.Response:
        """vLLM's runtime LoRA loading (VLLM_ALLOW_RUNTIME_LORA_UPDATING): the adapter is
        this replica's from now on."""
        name = await self._adapter_named(request)
        if name is None:
            return vllm_error(400, "Both 'lora_name' and 'lora_path' must be provided.", "BadRequestError")
        if name in self.adapters or name in self.models:
            return vllm_error(400, f"The lora adapter '{name}' has already been loaded.", "BadRequestError")
        self.adapters.append(name)
        return web.Response(text=f"Success: LoRA adapter '{name}' added successfully.")

    async def unload_adapter(self, request: web.Request) -> web.Response:
        name = await self._adapter_named(request, path=False)
        if name not in self.adapters:
            return vllm_error(404, f"The lora adapter '{name}' cannot be found.", "NotFoundError")
        self.adapters.remove(name)
        self.engine.loras.pop(name, None)
        return web.Response(text=f"Success: LoRA adapter '{name}' removed successfully.")

    @staticmethod
    async def _adapter_named(request: web.Request, path: bool = True) -> str | None:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("lora_name"), str) or not body["lora_name"]:
            return None
        if path and not isinstance(body.get("lora_path"), str):
            return None
        return body["lora_name"]

    async def list_models(self, request: web.Request) -> web.Response:
        created = int(time.time())
        limit = self.engine.spec.context_limit
        data = [{"id": m, "object": "model", "created": created, "owned_by": "vllm", "root": m, "parent": None,
                 "max_model_len": limit, "permission": []} for m in self.models]
        data += [{"id": a, "object": "model", "created": created, "owned_by": "vllm", "root": f"/adapters/{a}",
                  "parent": self.models[0], "max_model_len": None, "permission": []} for a in self.adapters]
        return web.json_response({"object": "list", "data": data})

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        mode = self.metrics_mode
        if mode == "error":
            return web.Response(status=500, text="Internal Server Error")
        if mode == "garbage":
            self._scrapes += 1
            return web.Response(body=garbage(self.index * 1_000_003 + self._scrapes), content_type="text/plain")
        if mode == "hang":
            deadline = time.monotonic() + HANG_HOLD_S
            while time.monotonic() < deadline and request.transport is not None \
                    and not request.transport.is_closing() and self.metrics_mode == "hang":
                await asyncio.sleep(0.05)
        elif mode == "slow":
            await asyncio.sleep(self.slow_s)
        return web.Response(body=render(self.engine, self.models[0]), headers={"content-type": CONTENT_TYPE})

    async def control(self, request: web.Request) -> web.Response:
        try:
            order = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            order = None
        if not isinstance(order, dict) or set(order) - {"metrics", "slow_s", "down", "reset", "replica", "up_after_s"}:
            return web.json_response({"error": "expected {metrics[, slow_s]|down|reset[, replica, up_after_s]}"},
                                     status=400)
        slow_s = order.get("slow_s", SLOW_METRICS_S)
        if type(slow_s) not in (int, float) or not 0 <= slow_s <= 60:
            return web.json_response({"error": "slow_s must be seconds, 0 to 60"}, status=400)
        up_after = order.get("up_after_s")
        if up_after is not None and (type(up_after) not in (int, float) or not 0 <= up_after <= 3600):
            return web.json_response({"error": "up_after_s must be seconds, 0 to 3600"}, status=400)
        target = self
        if "replica" in order:
            index = order["replica"]
            if type(index) is not int or not 0 <= index < len(self.pool.replicas):
                return web.json_response({"error": "no such replica"}, status=400)
            target = self.pool.replicas[index]
        if "metrics" in order:
            if order["metrics"] not in METRICS_MODES:
                return web.json_response({"error": f"metrics must be one of {METRICS_MODES}"}, status=400)
            target.metrics_mode, target.slow_s = order["metrics"], slow_s
        if order.get("reset") is True:
            target.engine.reset()
        answer = web.json_response({"replica": target.name, "down": target.down, "metrics": target.metrics_mode,
                                    "evicted_blocks": target.engine.cache.evicted,
                                    "refilled_blocks": target.engine.cache.refilled})
        if "down" in order:
            await target.set_down(order["down"] is True, spare=request.transport)
            if target.down and up_after is not None:
                asyncio.get_running_loop().call_later(up_after, lambda: asyncio.ensure_future(target.set_down(False)))
            answer = web.json_response({"replica": target.name, "down": target.down,
                                        "metrics": target.metrics_mode})
            if target is self and target.down:
                answer.force_close()            # this connection too, once answered
        return answer

    async def generate(self, kind: str, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        entry = record(self.listener, request, raw)
        entry["replica"] = self.name
        del self.listener.received[:-RECORDED_KEPT]
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return vllm_error(400, "Invalid JSON body.", "BadRequestError")
        if not isinstance(body, dict):
            return vllm_error(400, "The request body must be a JSON object.", "BadRequestError")
        model = body.get("model") if body.get("model") is not None else self.models[0]
        if not isinstance(model, str) or (model not in self.models and model not in self.adapters):
            return vllm_error(404, f"The model `{model}` does not exist.", "NotFoundError")
        adapter = None if model in self.models else model
        ids = prompt_token_ids(kind, body)
        if ids is None:
            return vllm_error(400, "The request has no prompt.", "BadRequestError")
        spec = self.engine.spec
        asked = max_output_tokens(body)
        out = asked or spec.default_max_tokens
        if len(ids) + out > spec.context_limit:
            return vllm_error(400, f"This model's maximum context length is {spec.context_limit} tokens. "
                              f"However, you requested {len(ids) + out} tokens ({len(ids)} in the messages, "
                              f"{out} in the completion). Please reduce the length of the messages or "
                              "completion.", "BadRequestError")
        out = min(out, spec.max_output_tokens)
        hashes = block_hashes(ids, spec.block_tokens, adapter)
        seq = Sequence(len(ids), hashes, out, adapter, "length" if asked else "stop")
        pieces = answer_pieces(kind, body, out)
        # The answer's blocks, cached once it ends: the chain carried on over its tokens.
        seq.generated_hashes = block_hashes(ids[len(hashes) * spec.block_tokens:] + token_ids("".join(pieces)),
                                            spec.block_tokens, adapter, hashes[-1] if hashes else None)
        engine = self.engine
        engine.submit(seq)
        if body.get("stream") is True:
            return await self._stream(kind, model, body, request, seq, engine, pieces, entry)
        while not (seq.finished or seq.failed):
            if not await self._progressed(seq, request):
                engine.abort(seq)                   # the client left: vLLM aborts the request
                return web.Response(status=499)     # (no one reads it)
        if seq.failed:
            return web.Response(status=500)     # (its connection is gone already)
        entry["usage"] = usage = self._usage(seq)
        return web.Response(body=json_reply(kind, model, "".join(pieces), seq.reason, usage),
                            content_type="application/json")

    @staticmethod
    async def _progressed(seq: Sequence, request: web.Request) -> bool:
        """Until the engine advanced `seq`; False when its client has gone meanwhile (looked
        at every PROGRESS_WAIT_S, as a queued request gets no progress for a while)."""
        if seq.generated >= 1:                      # decoding: progress every step, no timer needed
            await seq.progress.wait()
            seq.progress.clear()
            transport = request.transport
            return transport is not None and not transport.is_closing()
        while True:
            try:
                await asyncio.wait_for(seq.progress.wait(), PROGRESS_WAIT_S)
                seq.progress.clear()
                return True
            except asyncio.TimeoutError:
                transport = request.transport
                if transport is None or transport.is_closing():
                    return False

    @staticmethod
    def _usage(seq: Sequence) -> dict:
        return {"prompt_tokens": seq.prompt_tokens, "completion_tokens": seq.max_tokens,
                "cached_tokens": seq.cached_tokens}

    async def _stream(self, kind: str, model: str, body: dict, request: web.Request, seq: Sequence,
                      engine: Engine, pieces: list[str], entry: dict) -> web.StreamResponse:
        """One SSE chunk per token, written as the engine steps (the tokens of the steps a
        slow reader missed go together)."""
        response = web.StreamResponse(headers={**SSE_HEADERS, "x-mock-replica": self.name})
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        lead = 1 if kind == "chat" else 0           # chat's first chunk names the role
        try:
            await response.prepare(request)         # vLLM sends its headers at once
            while seq.generated < 1 and not (seq.finished or seq.failed):
                if not await self._progressed(seq, request):
                    raise ConnectionResetError      # left while its request waited
            if seq.failed:
                return response
            entry["usage"] = usage = self._usage(seq)
            events = sse_events(kind, model, pieces, seq.reason, usage, include_usage, False)
            await response.write(b"".join(events[:lead]))
            sent = 0
            while True:
                upto = seq.max_tokens if seq.finished else seq.generated
                if upto > sent:
                    await response.write(b"".join(events[lead + sent:lead + upto]))
                    sent = upto
                if seq.finished:
                    await response.write(b"".join(events[lead + sent:]))
                    await response.write_eof()
                    return response
                if seq.failed:
                    return response
                if not await self._progressed(seq, request):
                    raise ConnectionResetError
        except (ConnectionResetError, ConnectionError):
            engine.abort(seq)                       # the client left: vLLM aborts the request
            return response


class VllmPool:
    """A pool's replicas, started and stopped together."""

    def __init__(self, spec: PoolSpec) -> None:
        self.spec = spec
        self.replicas = [Replica(self, i) for i in range(spec.replicas)]

    async def start(self) -> None:
        get_encoding("o200k_base")      # loaded now (~0.8 s), not by the first request, on the loop
        for replica in self.replicas:
            await replica.start()

    async def stop(self) -> None:
        for replica in self.replicas:
            await replica.stop()
