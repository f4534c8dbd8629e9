"""The mock's OpenAI surface: chat, completions, embeddings, responses (with the responses
it stores) and models, on OpenAI's paths and Azure OpenAI's deployment paths.

The chat reply echoes the last user message exactly as received, cut to `max_tokens`
(`n` answers of it, each billed), with usage from the gateway's own tokenizer. Errors
come in OpenAI's envelope: {"error": {"message", "type", "param", "code"}}.
"""

from __future__ import annotations

import asyncio
import base64
import re
import struct
import time
import uuid

import orjson
from aiohttp import web

from ..api.openai import (
    chat_prompt_texts,
    completions_prompt_texts,
    completions_token_ids,
    embeddings_token_ids,
    max_output_tokens,
    responses_prompt_texts,
)
from ..api.tokens import count_prompt, count_text, encoding_for_model
from .echo import cut_to_tokens, stream_pieces
from .listener import KEPT, Listener, headers_of, keep, option, record
from .shapes import json_reply, sse_events
from .wire import (
    delay_first_byte,
    find_recording,
    replay,
    reset_connection,
    resets_this_attempt,
    unended,
    write_stream,
    write_truncated,
)

MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")
MAX_DIMENSIONS = 3072                # text-embedding-3-large's; -small's is 1536
# The gateway's readers of each generating endpoint's prompt, for the usage it reports.
_PROMPT_TEXTS = {"chat": chat_prompt_texts, "completions": completions_prompt_texts,
                 "responses": responses_prompt_texts}
_GARBAGE = [b"data: {not json\n\n", b"\xff\xfe garbage\n\n", b": comment\n\ndata: [DONE]\n\n"]


def error(status: int, message: str, code: str | None, type_: str = "invalid_request_error",
          headers: dict | None = None) -> web.Response:
    body = orjson.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def presented_key(request: web.Request) -> str:
    """The key an OpenAI client sends (Authorization: Bearer) or an Azure one (api-key)."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("api-key", "")


def shadowed(payload: bytes, shadow: str | None) -> bytes:
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


def as_parts(payload: bytes, parts: str | None) -> bytes:
    """Each string "content" as a list of parts (x-mock-content-parts: text or thinking)."""
    return _CONTENT_STRING.sub(_PARTS[parts], payload) if parts in _PARTS else payload


def answers(kind: str, body: dict) -> tuple[int, int]:
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


def _content_text(content) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def last_user_text(kind: str, body: dict) -> str:
    """What the answer echoes: the last user message (chat), input (responses), prompt."""
    if kind == "chat":
        for message in reversed(body.get("messages") or []):
            if isinstance(message, dict) and message.get("role") == "user":
                return _content_text(message.get("content"))
        return ""
    if kind == "responses":
        items = body.get("input")
        if isinstance(items, str):
            return items
        for item in reversed(items or []):
            if isinstance(item, dict) and item.get("role", "user") == "user":
                return _content_text(item.get("content"))
        return ""
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) else " ".join(p for p in prompt or [] if isinstance(p, str))


def embeddings(body: dict) -> web.Response:
    """Unit vectors, float or base64: a text's from a real sentence-embedding model
    (embedding_model.py: paraphrases lie close), token ids' derived from their values."""
    inputs = body.get("input")
    flat_ids = isinstance(inputs, list) and bool(inputs) and isinstance(inputs[0], int)
    inputs = [inputs] if isinstance(inputs, str) or flat_ids else list(inputs or [])
    dims = body.get("dimensions") if isinstance(body.get("dimensions"), int) else 1536
    if not 1 <= dims <= MAX_DIMENSIONS:
        return error(400, f"The requested dimensions must be between 1 and {MAX_DIMENSIONS}.", None)
    encoding = encoding_for_model(body["model"])
    texts = [text for text in inputs if isinstance(text, str)]
    from .embedding_model import embed     # NumPy, imported at the first embeddings call (~0.2 s)
    meant = iter(embed(texts, dims).tolist() if texts else [])
    data = []
    for index, text in enumerate(inputs):
        if isinstance(text, str):
            vector = next(meant)
        else:
            seed = sum(str(text).encode()) or 1
            vector = [((seed * (i + 7)) % 1000) / 1000.0 - 0.5 for i in range(dims)]
        if body.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        else:
            embedding = vector
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(count_text(t, encoding) for t in inputs if isinstance(t, str)) + \
        embeddings_token_ids(body)
    return web.json_response({"object": "list", "data": data, "model": body["model"],
                              "usage": {"prompt_tokens": tokens, "total_tokens": tokens}},
                             dumps=lambda o: orjson.dumps(o).decode())


class OpenAIRoutes:
    """The OpenAI and Azure OpenAI handlers of one listener."""

    def __init__(self, listener: Listener, tokens=None) -> None:
        self.listener = listener
        self.tokens = tokens            # its Entra ID token endpoint (oauth.py): Azure's Bearer tokens

    def refused(self, request: web.Request) -> bool:
        """Whether the call lacks the listener's key and a token its Entra endpoint issued."""
        listener = self.listener
        if not listener.api_key or presented_key(request) == listener.api_key:
            return False
        return self.tokens is None or self.tokens.refusal(request) is not None

    def add_to(self, app: web.Application) -> None:
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

    async def models(self, request: web.Request) -> web.Response:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "mock"} for m in MODELS]
        return web.json_response({"object": "list", "data": data})

    def _handler(self, kind: str, azure: bool = False):
        async def handle(request: web.Request) -> web.StreamResponse:
            if azure and not request.query.get("api-version"):
                return error(404, "Resource not found", "404")       # what Azure answers without one
            return await self.handle(kind, request)
        return handle

    async def stored_response(self, request: web.Request) -> web.Response:
        """A response this listener made: retrieved, deleted, cancelled, or its input items."""
        listener = self.listener
        keep(listener, {"path": request.path, "method": request.method, "at": time.time(),
                        "headers": headers_of(request), "body": (await request.read()).decode("utf-8", "replace")})
        if self.refused(request):
            return error(401, "Incorrect API key provided.", "invalid_api_key")
        stored = listener.responses.get(request.match_info["id"])
        if stored is None:
            return error(404, f"No response found with id '{request.match_info['id']}'.", None)
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
        entry = record(listener, request, raw)
        if self.refused(request):
            return error(401, "Incorrect API key provided.", "invalid_api_key")
        if resets_this_attempt(listener, request):
            reset_connection(request)
            return web.Response(status=500)
        await delay_first_byte(listener, request)
        status = option(listener, request, "status")
        if status and int(status) >= 400:
            retry_after = option(listener, request, "retry-after")
            return error(int(status), f"Mock failure {status}.", "mock_failure", "server_error",
                         {"retry-after": retry_after} if retry_after else None)
        name = option(listener, request, "replay")
        if name:
            recording = find_recording(listener.fixtures, name)
            return await replay(listener, request, recording) if recording else \
                error(400, "unknown recording", None)
        try:
            body = listener.large_bodies.json(raw)
        except orjson.JSONDecodeError:
            return error(400, "We could not parse the JSON body of your request.", None)
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return error(400, "you must provide a model parameter", None)
        for name, most in (("n", 128), ("best_of", 20)):    # OpenAI's own bounds
            if isinstance(body.get(name), int) and not 1 <= body[name] <= most:
                return error(400, f"{body[name]} is not a valid value for '{name}': it must be "
                             f"between 1 and {most}.", "invalid_value")
        if kind == "embeddings":       # the model runs off the loop: other requests go on meanwhile
            return await asyncio.get_running_loop().run_in_executor(None, embeddings, body)
        return await self._generate(kind, body, request, entry)

    async def _generate(self, kind: str, body: dict, request: web.Request,
                        entry: dict) -> web.StreamResponse:
        listener, model = self.listener, body["model"]
        encoding = encoding_for_model(model)
        text, cut = cut_to_tokens(last_user_text(kind, body), max_output_tokens(body), encoding)
        finish = "length" if cut else "stop"
        tool = option(listener, request, "tool-call") if kind in ("chat", "responses") else None
        if tool:                            # the echo becomes the arguments of a call of that tool
            text = orjson.dumps({"text": text}).decode()
        texts, messages = _PROMPT_TEXTS[kind](body)
        returned, generated = answers(kind, body)
        usage = {"prompt_tokens": count_prompt(texts, messages, encoding) +
                 (completions_token_ids(body) if kind == "completions" else 0),
                 "completion_tokens": count_text(text, encoding) * generated}
        cached = option(listener, request, "cached-tokens")
        if cached and cached.isascii() and cached.isdigit():
            usage["cached_tokens"] = min(int(cached), usage["prompt_tokens"])
        no_usage = bool(option(listener, request, "no-usage"))
        shadow = option(listener, request, "shadow")
        parts = option(listener, request, "content-parts") if kind == "chat" else None
        if not no_usage:
            entry["usage"] = usage          # what this provider reported (soak checks compare)
        if body.get("stream") is True and option(listener, request, "garbage"):
            return await write_stream(listener, request, _GARBAGE)
        if body.get("stream") is True:
            include_usage = (body.get("stream_options") or {}).get("include_usage") is True
            events = sse_events(kind, model, stream_pieces(listener, request, text), finish, usage,
                                include_usage and not no_usage, no_usage, returned, tool)
            events = unended(listener, request, [as_parts(shadowed(e, shadow), parts) for e in events])
            if kind == "responses":
                self._remember(body, orjson.loads(events[-1].split(b"data: ", 1)[1])["response"])
            return await write_stream(listener, request, events)
        reply = as_parts(shadowed(json_reply(kind, model, text, finish, None if no_usage else usage,
                                             returned, tool), shadow), parts)
        if kind == "responses":
            self._remember(body, orjson.loads(reply))
        truncate = option(listener, request, "truncate")
        if truncate:
            return await write_truncated(request, reply, int(truncate))
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
        while len(responses) > KEPT:
            del responses[next(iter(responses))]
