"""An OpenAI-compatible mock upstream for the quickstart, the tests and the benchmarks.

Faithful where the gateway cares: chat (JSON and SSE, `"usage":null` on chunks
and a final usage chunk when `stream_options.include_usage`), completions,
embeddings (float or base64), responses (JSON and SSE), models, OpenAI error
envelopes. The chat reply echoes the last user message exactly as received,
cut to `max_tokens` (`n` answers of it, each billed), with usage from the gateway's own tokenizer.

Failure modes come from the listener's config or, per request, from headers:
  x-mock-status: 503          answer with this status (OpenAI error body)
  x-mock-retry-after: 2       with this retry-after header
  x-mock-reset: 1             reset the connection before answering
  x-mock-delay-ms: 500        wait before the first byte
  x-mock-chunk-delay-ms: 50   wait between SSE chunks
  x-mock-cut-after: 3         reset the connection after N SSE chunks
  x-mock-tool-call: lookup    answer (chat, Responses) with a call of this tool whose
                              arguments are {"text": <the echo>}, streamed piece by piece
  x-mock-chunk-chars: 7       stream the reply in pieces of N characters (default: words,
                              each with the space before it, as OpenAI tokens come: " the")
  x-mock-chunk-units: 7       ... of N UTF-16 code units, as a JavaScript server slicing its
                              strings does: an emoji's two halves may go in two events, each
                              a lone surrogate escape ("\ud83d")
  x-mock-write-bytes: 5       write the stream's bytes N at a time (events cut anywhere)
  x-mock-unended: 1           end the stream without the blank line that ends its last event
  x-mock-content-parts: text  chat content as a list of parts, as Mistral's reasoning models
                              answer: [{"type": "text", ...}] (or `thinking`: a thinking chunk
                              nesting a text part)
  x-mock-no-usage: 1          omit usage (as some providers do)
  x-mock-cached-tokens: 5     report this many of the prompt's tokens as read from the
                              provider's prompt cache (at most all of them)
  x-mock-garbage: 1           stream events that are not JSON (a broken provider)
  x-mock-shadow: content=hi   write each "content" key of the reply twice, "hi" first (a
                              provider whose JSON repeats a key: parsers keep one or the other)
  x-mock-truncate: 20         send only the first N bytes of a JSON body, then reset
  x-mock-replay: chat-basic   answer with a recorded response from the fixtures
  x-mock-only: mock-failing   apply the x-mock-* headers on this listener only
Every request is recorded per listener: GET /_mock/requests, DELETE to clear.
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import struct
import time
import uuid
from dataclasses import dataclass, field

import orjson
import yaml
from aiohttp import web

from ..api.openai import max_output_tokens, prompt_texts, prompt_token_ids
from ..api.tokens import count_prompt, count_text, encoding_for_model, get_encoding, token_ids
from .shapes import json_reply, sse_events

_WORD = re.compile(r"\s*\S+|\s+")


@dataclass
class Listener:
    name: str
    port: int
    host: str = "127.0.0.1"
    api_key: str | None = None          # when set, requests must carry it
    defaults: dict[str, str] = field(default_factory=dict)   # x-mock-* defaults
    fixtures: str | None = None
    received: list[dict] = field(default_factory=list)
    responses: dict = field(default_factory=dict)     # id -> (response, input items): the last 1000


def _error(status: int, message: str, code: str | None, type_: str = "invalid_request_error",
           headers: dict | None = None) -> web.Response:
    body = orjson.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def _reset(request: web.Request) -> None:
    """Close with RST, as a crashing provider or a load balancer would."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport else None
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if transport:
        transport.abort()


def _option(listener: Listener, request: web.Request, name: str) -> str | None:
    only = request.headers.get("x-mock-only")
    if only and only != listener.name:      # the headers target another listener
        return listener.defaults.get(name)
    return request.headers.get(f"x-mock-{name}") or listener.defaults.get(name)


def _shadowed(payload: bytes, shadow: str | None) -> bytes:
    """`"key":` becomes `"key":"text","key":` (x-mock-shadow: key=text). A `"key":` can only
    be a key: inside a JSON string its quotes are escaped."""
    key, _, text = (shadow or "").partition("=")
    if not key:
        return payload
    name = orjson.dumps(key) + b":"
    return payload.replace(name, name + orjson.dumps(text) + b"," + name)


_CONTENT_STRING = re.compile(rb'"content":("(?:[^"\\]|\\.)*")')
_PARTS = {"text": rb'"content":[{"type":"text","text":\1}]',
          "thinking": rb'"content":[{"type":"thinking","thinking":[{"type":"text","text":\1}]}]'}


def _as_parts(payload: bytes, parts: str | None) -> bytes:
    """Each string "content" as a list of parts (x-mock-content-parts: text or thinking)."""
    return _CONTENT_STRING.sub(_PARTS[parts], payload) if parts in _PARTS else payload


def _utf16_pieces(text: str, units: int) -> list[str]:
    utf16 = text.encode("utf-16-le", "surrogatepass")
    return [utf16[i:i + 2 * units].decode("utf-16-le", "surrogatepass") for i in range(0, len(utf16), 2 * units)]


def _words(text: str) -> list[str]:
    return _WORD.findall(text) or [""]


def _truncate(text: str, limit: int | None, encoding: str) -> tuple[str, str]:
    if limit is None:
        return text, "stop"
    tokens = token_ids(text, encoding)
    if len(tokens) <= limit:
        return text, "stop"
    return get_encoding(encoding).decode(tokens[:limit]), "length"


def _answers(kind: str, body: dict) -> tuple[int, int]:
    """(answers returned, answers generated and billed) as OpenAI counts them: chat's
    `n`; completions' `n` returned and `max(n, best_of)` generated for each prompt of a
    batch. Each answer here is the same echo."""
    def count(name: str) -> int:
        value = body.get(name)
        return value if type(value) is int and value > 0 else 1
    if kind == "chat":
        return count("n"), count("n")
    if kind != "completions":
        return 1, 1
    prompt = body.get("prompt")
    prompts = len(prompt) if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int) else 1
    return count("n") * prompts, max(count("n"), count("best_of")) * prompts


def _last_user_text(kind: str, body: dict) -> str:
    if kind == "chat":
        for message in reversed(body.get("messages") or []):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, list):
                    return "".join(p.get("text", "") for p in content if isinstance(p, dict))
                return content if isinstance(content, str) else ""
        return ""
    if kind == "responses":
        items = body.get("input")
        if isinstance(items, str):
            return items
        for item in reversed(items or []):
            if isinstance(item, dict) and item.get("role", "user") == "user":
                content = item.get("content")
                if isinstance(content, list):
                    return "".join(p.get("text", "") for p in content if isinstance(p, dict))
                return content if isinstance(content, str) else ""
        return ""
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) else " ".join(p for p in prompt or [] if isinstance(p, str))


class MockProvider:
    def __init__(self, listener: Listener) -> None:
        self.listener = listener

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/_mock/requests", self.recorded)
        app.router.add_delete("/_mock/requests", self.clear)
        app.router.add_get("/v1/models", self.models)
        for kind, suffix in (("chat", "/chat/completions"), ("completions", "/completions"),
                             ("embeddings", "/embeddings")):
            app.router.add_post("/v1" + suffix, self._handler(kind))
            # Azure OpenAI: the deployment's path, with its api-version.
            app.router.add_post("/openai/deployments/{deployment}" + suffix, self._handler(kind, azure=True))
        for prefix in ("/v1", "/openai/v1"):            # (Azure serves the Responses API on /openai/v1)
            app.router.add_post(prefix + "/responses", self._handler("responses"))
            app.router.add_get(prefix + "/responses/{id}", self.stored_response)
            app.router.add_delete(prefix + "/responses/{id}", self.stored_response)
            app.router.add_post(prefix + "/responses/{id}/cancel", self.stored_response)
            app.router.add_get(prefix + "/responses/{id}/input_items", self.stored_response)
        return app

    async def recorded(self, request: web.Request) -> web.Response:
        return web.json_response(self.listener.received, dumps=lambda o: orjson.dumps(o).decode())

    async def clear(self, request: web.Request) -> web.Response:
        self.listener.received.clear()
        return web.Response(status=204)

    async def models(self, request: web.Request) -> web.Response:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "mock"}
                for m in ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")]
        return web.json_response({"object": "list", "data": data})

    def _handler(self, kind: str, azure: bool = False):
        async def handle(request: web.Request) -> web.StreamResponse:
            if azure and not request.query.get("api-version"):
                return _error(404, "Resource not found", "404")       # what Azure answers without one
            return await self.handle(kind, request)
        return handle

    async def stored_response(self, request: web.Request) -> web.Response:
        """A response this listener made: retrieved, deleted, cancelled, or its input items."""
        listener = self.listener
        listener.received.append({"path": request.path, "method": request.method, "at": time.time(),
                                   "headers": {str(k).lower(): v for k, v in request.headers.items()},
                                   "body": (await request.read()).decode("utf-8", "replace")})
        if listener.api_key and _presented_key(request) != listener.api_key:
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        stored = listener.responses.get(request.match_info["id"])
        if stored is None:
            return _error(404, f"No response found with id '{request.match_info['id']}'.", None)
        answer, inputs = stored
        if request.method == "DELETE":
            del listener.responses[answer["id"]]
            return web.json_response({"id": answer["id"], "object": "response", "deleted": True})
        if request.path.endswith("/input_items"):
            return web.json_response({"object": "list", "data": inputs, "has_more": False,
                                      "first_id": inputs[0]["id"] if inputs else None,
                                      "last_id": inputs[-1]["id"] if inputs else None})
        if request.path.endswith("/cancel"):
            answer = {**answer, "status": "cancelled"}
        return web.json_response(answer, dumps=lambda o: orjson.dumps(o).decode())

    async def handle(self, kind: str, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        listener = self.listener
        entry = {"path": request.path, "query": dict(request.query),
                 "headers": {str(k).lower(): v for k, v in request.headers.items()},
                 "body": raw.decode("utf-8", "replace"), "at": time.time()}
        listener.received.append(entry)
        del listener.received[:-1000]                 # bounded: a soak must not grow memory
        if listener.api_key and _presented_key(request) != listener.api_key:
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        if _option(listener, request, "reset"):
            _reset(request)
            return web.Response(status=500)
        delay = _option(listener, request, "delay-ms")
        if delay:
            await asyncio.sleep(int(delay) / 1000)
        status = _option(listener, request, "status")
        if status and int(status) >= 400:
            retry_after = _option(listener, request, "retry-after")
            return _error(int(status), f"Mock failure {status}.", "mock_failure", "server_error",
                          {"retry-after": retry_after} if retry_after else None)
        replay = _option(listener, request, "replay")
        if replay:
            return await self._replay(request, replay)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _error(400, "We could not parse the JSON body of your request.", None)
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return _error(400, "you must provide a model parameter", None)
        for name, most in (("n", 128), ("best_of", 20)):    # OpenAI's own bounds
            if isinstance(body.get(name), int) and not 1 <= body[name] <= most:
                return _error(400, f"{body[name]} is not a valid value for '{name}': it must be "
                              f"between 1 and {most}.", "invalid_value")
        if kind == "embeddings":
            return self._embeddings(body)
        return await self._generate(kind, body, request, entry)

    def _embeddings(self, body: dict) -> web.Response:
        inputs = body.get("input")
        flat_ids = isinstance(inputs, list) and bool(inputs) and isinstance(inputs[0], int)
        inputs = [inputs] if isinstance(inputs, str) or flat_ids else list(inputs or [])
        dims = body.get("dimensions") if isinstance(body.get("dimensions"), int) else 1536
        encoding = encoding_for_model(body["model"])
        data = []
        for index, text in enumerate(inputs):
            seed = sum(str(text).encode()) or 1
            vector = [((seed * (i + 7)) % 1000) / 1000.0 - 0.5 for i in range(dims)]
            if body.get("encoding_format") == "base64":
                embedding = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            else:
                embedding = vector
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(count_text(t, encoding) for t in inputs if isinstance(t, str)) + \
            prompt_token_ids("embeddings", body)
        return web.json_response({"object": "list", "data": data, "model": body["model"],
                                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}},
                                 dumps=lambda o: orjson.dumps(o).decode())

    async def _generate(self, kind: str, body: dict, request: web.Request,
                        entry: dict) -> web.StreamResponse:
        model = body["model"]
        encoding = encoding_for_model(model)
        text, finish = _truncate(_last_user_text(kind, body), max_output_tokens(kind, body), encoding)
        tool = _option(self.listener, request, "tool-call") if kind in ("chat", "responses") else None
        if tool:                            # the echo becomes the arguments of a call of that tool
            text = orjson.dumps({"text": text}).decode()
        texts, messages = prompt_texts(kind, body)
        returned, generated = _answers(kind, body)
        usage = {"prompt_tokens": count_prompt(texts, messages, encoding) + prompt_token_ids(kind, body),
                 "completion_tokens": count_text(text, encoding) * generated}
        cached = _option(self.listener, request, "cached-tokens")
        if cached and cached.isdigit():
            usage["cached_tokens"] = min(int(cached), usage["prompt_tokens"])
        no_usage = bool(_option(self.listener, request, "no-usage"))
        shadow = _option(self.listener, request, "shadow")
        parts = _option(self.listener, request, "content-parts") if kind == "chat" else None
        if not no_usage:
            entry["usage"] = usage          # what this provider reported (soak checks compare)
        if body.get("stream") is True and _option(self.listener, request, "garbage"):
            return await self._stream(request, [b"data: {not json\n\n", b"\xff\xfe garbage\n\n",
                                                b": comment\n\ndata: [DONE]\n\n"])
        if body.get("stream") is True:
            include_usage = (body.get("stream_options") or {}).get("include_usage") is True
            size = int(_option(self.listener, request, "chunk-chars") or 0)
            units = int(_option(self.listener, request, "chunk-units") or 0)
            if size:
                pieces = [text[i:i + size] for i in range(0, len(text), size)]
            else:
                pieces = _utf16_pieces(text, units) if units else _words(text)
            events = sse_events(kind, model, pieces or [""], finish, usage,
                                include_usage and not no_usage, no_usage, returned, tool)
            events = [_as_parts(_shadowed(e, shadow), parts) for e in events]
            if _option(self.listener, request, "unended"):
                events[-1] = events[-1].rstrip(b"\n")
            if kind == "responses":
                self._remember(body, orjson.loads(events[-1].split(b"data: ", 1)[1])["response"])
            return await self._stream(request, events)
        reply = _as_parts(_shadowed(json_reply(kind, model, text, finish, None if no_usage else usage,
                                               returned, tool), shadow), parts)
        if kind == "responses":
            self._remember(body, orjson.loads(reply))
        truncate = _option(self.listener, request, "truncate")
        if truncate:
            # Promise the whole body, send a piece of it, then drop the connection.
            response = web.StreamResponse(headers={"content-type": "application/json",
                                                   "content-length": str(len(reply))})
            await response.prepare(request)
            await response.write(reply[:int(truncate)])
            _reset(request)
            return response
        return web.Response(body=reply, content_type="application/json")

    def _remember(self, body: dict, answer: dict) -> None:
        """A response the Responses API stores (unless `store: false`), with its input items."""
        if body.get("store") is False:
            return
        given = body.get("input")
        items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": given}]}] \
            if isinstance(given, str) else [i for i in given or [] if isinstance(i, dict)]
        inputs = [{"id": f"msg_{uuid.uuid4().hex}", **item} for item in items]
        responses = self.listener.responses
        responses[answer["id"]] = (answer, inputs)
        while len(responses) > 1000:                  # bounded: a soak must not grow memory
            del responses[next(iter(responses))]

    async def _stream(self, request: web.Request, events: list[bytes]) -> web.StreamResponse:
        chunk_delay = int(_option(self.listener, request, "chunk-delay-ms") or 0) / 1000
        cut_after = _option(self.listener, request, "cut-after")
        response = web.StreamResponse(headers={"content-type": "text/event-stream; charset=utf-8",
                                               "cache-control": "no-cache"})
        await response.prepare(request)
        size = int(_option(self.listener, request, "write-bytes") or 0)
        if size:
            stream = b"".join(events)
            events = [stream[i:i + size] for i in range(0, len(stream), size)]
        try:
            for index, event in enumerate(events):
                if cut_after is not None and index >= int(cut_after):
                    _reset(request)
                    return response
                if index and chunk_delay:
                    await asyncio.sleep(chunk_delay)
                await response.write(event)
            await response.write_eof()
        except ConnectionResetError:
            pass              # the client left mid-stream (Envoy closes upstream): a provider stops
        return response

    async def _replay(self, request: web.Request, name: str) -> web.StreamResponse:
        if not re.fullmatch(r"[a-z0-9-]+", name) or not self.listener.fixtures:
            return _error(400, "unknown recording", None)
        with open(f"{self.listener.fixtures}/{name}.yaml", encoding="utf-8") as handle:
            recorded = yaml.safe_load(handle)["interactions"][0]["response"]
        content_type = (recorded.get("headers", {}).get("Content-Type") or ["application/json"])[0]
        body = recorded["body"].encode()
        if content_type.startswith("text/event-stream"):
            events = [e + b"\n\n" for e in body.split(b"\n\n") if e.strip()]
            return await self._stream(request, events)
        return web.Response(status=recorded.get("code", 200), body=body,
                            headers={"content-type": content_type})


def _presented_key(request: web.Request) -> str:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("api-key", "")


def listeners_from_config(spec: dict, fixtures: str | None) -> list[Listener]:
    return [Listener(name=item["name"], port=int(item["port"]), host=item.get("host", "127.0.0.1"),
                     api_key=item.get("api_key"), fixtures=fixtures,
                     defaults={k: str(v) for k, v in (item.get("failure") or {}).items()})
            for item in spec.get("listeners", [])]


async def serve(listeners: list[Listener]) -> None:
    for encoding in ("o200k_base", "cl100k_base"):
        get_encoding(encoding)          # warm: the first request must not pay the load
    runners = []
    for listener in listeners:
        runner = web.AppRunner(MockProvider(listener).app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, listener.host, listener.port, reuse_address=True).start()
        runners.append(runner)
    try:
        await asyncio.Event().wait()
    finally:
        for runner in runners:
            await runner.cleanup()

