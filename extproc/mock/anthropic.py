"""The mock's Anthropic surface: POST /v1/messages (JSON and SSE; `?beta=true` too),
POST /v1/messages/count_tokens, and GET /v1/models for a request carrying
`anthropic-version`.

The answer echoes the last user turn's text exactly as received (its text blocks joined,
a string content as is), cut at the first of its `stop_sequences` and to `max_tokens`.
A request asking for thinking (`thinking.type` enabled or adaptive) gets a thinking block
first ("Thinking about: " and the echo's first words, with a signature); its tokens count
against `max_tokens` as Anthropic's do. Usage comes from the gateway's own tokenizer
(o200k_base), reported as Anthropic does: `input_tokens` leaves out cache reads
(x-mock-cached-tokens) and cache writes (x-mock-cache-write-tokens). Every answer carries
a `request-id`; errors come in Anthropic's envelope with the type for their status.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

import orjson
from aiohttp import web

from ..api.anthropic import error_body, prompt_texts
from ..api.tokens import count_prompt, count_text
from .anthropic_shapes import (
    ANTHROPIC,
    Answer,
    Platform,
    ReportedUsage,
    count_tokens_json,
    message_json,
    models_json,
    request_id,
    stream_events,
    tool_input,
)
from .echo import cut_to_tokens, stream_pieces, words
from .listener import Listener, option, record
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

ENCODING = "o200k_base"
THINKING_WORDS = 8             # how much of the echo the thinking block quotes
# What a replayed recording keeps of its headers, besides content-type.
REPLAYED_HEADERS = ("request-id", "anthropic-ratelimit-", "x-should-retry", "retry-after")
_RETRYABLE = {408, 409, 429}   # and every 5xx: what Anthropic's x-should-retry says yes to
# A platform's own answer to x-mock-status (status, retry-after), or None for Anthropic's.
FailureAnswer = Callable[[int, str | None], web.Response | None]
_STATUS_MESSAGES = {429: "Number of requests has exceeded your rate limit.", 500: "Internal server error",
                    529: "Overloaded"}


def error(status: int, message: str, rid: str, headers: dict | None = None) -> web.Response:
    should_retry = status in _RETRYABLE or status >= 500
    return web.Response(status=status, body=error_body(status, message, rid), content_type="application/json",
                        headers={"request-id": rid, "x-should-retry": str(should_retry).lower(), **(headers or {})})


def presented_key(request: web.Request) -> str:
    """The key an Anthropic client sends: x-api-key, or Authorization: Bearer (a token)."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key", "")


def last_user_text(body: dict) -> str:
    """What the answer echoes: the last user turn's text blocks joined, or its string content."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "".join(b["text"] for b in content
                               if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str))
            return content if isinstance(content, str) else ""
    return ""


def parse_body(raw: bytes, required: tuple[str, ...]) -> tuple[dict | None, str]:
    """The request's JSON body, or None and what Anthropic's validation says of it."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, "There was an error parsing the body of your request: invalid JSON."
    problem = invalid_field(body, required)
    return (None, problem) if problem else (body, "")


def invalid_field(body: object, required: tuple[str, ...]) -> str | None:
    """What Anthropic's validation says of a body missing a required field or with a
    `max_tokens` that is not a count; None for a body it accepts."""
    if not isinstance(body, dict):
        return "Input should be a valid dictionary"
    for name in required:
        if name not in body:
            return f"{name}: Field required"
    if not isinstance(body.get("messages"), list):
        return "messages: Input should be a valid list"
    tokens = body.get("max_tokens", 0)
    if not isinstance(tokens, int) or isinstance(tokens, bool):
        return "max_tokens: Input should be a valid integer"
    if tokens < 0:
        return "max_tokens: Input should be greater than or equal to 0"
    return None


def prompt_tokens(body: dict) -> int:
    texts, messages = prompt_texts(body)
    return count_prompt(texts, messages, ENCODING)


def thinking_text(body: dict, echo: str) -> str | None:
    """The thinking block's text when the request asks for thinking, else None."""
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "adaptive"):
        return None
    if thinking.get("display") == "omitted":
        return ""
    return "Thinking about: " + "".join(words(echo)[:THINKING_WORDS]).lstrip()


def first_stop_sequence(text: str, sequences: object) -> tuple[int, str] | None:
    """Where the earliest of the request's `stop_sequences` occurs in `text`, and which."""
    if not isinstance(sequences, list):
        return None
    return min(((text.index(s), s) for s in sequences if isinstance(s, str) and s and s in text), default=None)


def _count_option(listener: Listener, request: web.Request, name: str) -> int:
    value = option(listener, request, name) or ""
    return int(value) if value.isascii() and value.isdigit() else 0


def recorded_usage(usage: ReportedUsage) -> dict:
    """The usage a request's record keeps, in the form the OpenAI handlers record (and soak
    checks compare with the gateway's): every prompt token in `prompt_tokens`."""
    return {"prompt_tokens": usage.fresh + usage.cache_read + usage.cache_write,
            "completion_tokens": usage.output, "cached_tokens": usage.cache_read,
            "cache_write_tokens": usage.cache_write}


def reported_usage(listener: Listener, request: web.Request, prompt: int, output: int) -> ReportedUsage:
    """The prompt's tokens split as Anthropic reports them: x-mock-cached-tokens read from
    the cache, x-mock-cache-write-tokens written to it (each at most what is left)."""
    read = min(_count_option(listener, request, "cached-tokens"), prompt)
    write = min(_count_option(listener, request, "cache-write-tokens"), prompt - read)
    return ReportedUsage(fresh=prompt - read - write, cache_read=read, cache_write=write, output=output)


def compose_answer(listener: Listener, request: web.Request, body: dict,
                   platform: Platform = ANTHROPIC) -> Answer:
    """The echo (or a call of x-mock-tool-call's tool with it as input), after an optional
    thinking block, within `max_tokens`."""
    echo, budget = last_user_text(body), body["max_tokens"]
    thinking = thinking_text(body, echo)
    thinking_tokens = 0
    if thinking is not None:
        thinking, _ = cut_to_tokens(thinking, budget, ENCODING)
        thinking_tokens = count_text(thinking, ENCODING)
    tool = option(listener, request, "tool-call")
    stop = None if tool else first_stop_sequence(echo, body.get("stop_sequences"))
    text, cut = cut_to_tokens(echo[:stop[0]] if stop else echo, budget - thinking_tokens, ENCODING)
    stop_reason = "max_tokens" if cut else "stop_sequence" if stop else "tool_use" if tool else "end_turn"
    output = thinking_tokens + count_text(tool_input(text) if tool else text, ENCODING)
    return Answer(model=str(body["model"]), text=text, stop_reason=stop_reason, thinking=thinking, tool=tool,
                  stop_sequence=stop[1] if stop and not cut else None, platform=platform,
                  usage=reported_usage(listener, request, prompt_tokens(body), output))


def ratelimit_headers(usage: ReportedUsage) -> dict[str, str]:
    """anthropic-ratelimit-* as Anthropic sends them, this call taken from generous limits."""
    reset = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    prompt = usage.fresh + usage.cache_read + usage.cache_write
    used = {"input-tokens": (2_000_000, prompt), "output-tokens": (400_000, usage.output),
            "requests": (4_000, 1), "tokens": (2_400_000, prompt + usage.output)}
    headers = {}
    for name, (limit, taken) in used.items():
        headers[f"anthropic-ratelimit-{name}-limit"] = str(limit)
        headers[f"anthropic-ratelimit-{name}-remaining"] = str(max(limit - taken, 0))
        headers[f"anthropic-ratelimit-{name}-reset"] = reset
    return headers


class AnthropicRoutes:
    """The Anthropic handlers of one listener. Each request is recorded, then its key is
    checked, then the faults that answer before the body is read act (reset, delay,
    status, replay), then the body is validated and answered."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener

    def add_to(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/messages/count_tokens", self.count_tokens)

    async def messages(self, request: web.Request) -> web.StreamResponse:
        rid, raw, entry = await self._received(request)
        early = await self._early_answer(request, rid)
        if early is not None:
            return early
        body, problem = parse_body(raw, ("model", "messages", "max_tokens"))
        if body is None:
            return error(400, problem, rid)
        return await self.answer(request, body, entry, rid)

    async def answer(self, request: web.Request, body: dict, entry: dict, rid: str,
                     platform: Platform = ANTHROPIC, streamed: bool | None = None) -> web.StreamResponse:
        """The answer to a valid Messages body (its `model` the one to name): JSON, or SSE
        when `streamed` (by default, when the body asks for a stream). Claude on other
        platforms comes here too, with their ids and usage (`platform`) and without
        Anthropic's rate-limit headers."""
        listener = self.listener
        answer = compose_answer(listener, request, body, platform)
        headers = {"request-id": rid}
        if platform is ANTHROPIC:
            headers.update(ratelimit_headers(answer.usage))
        if streamed is None:
            streamed = body.get("stream") is True
        stream_error = option(listener, request, "stream-error") if streamed else None
        if not stream_error:                # what this provider reported (soak checks compare)
            entry["usage"] = recorded_usage(answer.usage)
        if streamed:
            events = stream_events(answer, lambda text: stream_pieces(listener, request, text), stream_error)
            return await write_stream(listener, request, unended(listener, request, events), headers)
        reply = message_json(answer)
        truncate = option(listener, request, "truncate")
        if truncate:
            return await write_truncated(request, reply, int(truncate))
        return web.Response(body=reply, content_type="application/json", headers=headers)

    async def count_tokens(self, request: web.Request) -> web.StreamResponse:
        rid, raw, _ = await self._received(request)
        early = await self._early_answer(request, rid)
        if early is not None:
            return early
        body, problem = parse_body(raw, ("model", "messages"))
        if body is None:
            return error(400, problem, rid)
        return web.Response(body=count_tokens_json(prompt_tokens(body)), content_type="application/json",
                            headers={"request-id": rid})

    async def models(self, request: web.Request) -> web.StreamResponse:
        """The models list (GET /v1/models with `anthropic-version`), `limit` of them."""
        rid, _, _ = await self._received(request)
        early = await self._early_answer(request, rid)
        if early is not None:
            return early
        limit = request.query.get("limit", "20")
        if not (limit.isascii() and limit.isdigit()) or not 1 <= int(limit) <= 1000:
            return error(400, "limit: Input should be between 1 and 1000", rid)
        return web.Response(body=models_json(int(limit)), content_type="application/json",
                            headers={"request-id": rid})

    async def _received(self, request: web.Request) -> tuple[str, bytes, dict]:
        """The request's id (for its answer), its body, and its record."""
        raw = await request.read()
        return request_id(), raw, record(self.listener, request, raw)

    async def _early_answer(self, request: web.Request, rid: str) -> web.StreamResponse | None:
        """The answer given before the body is read: a wrong key's 401, or a fault's."""
        listener = self.listener
        if listener.api_key and presented_key(request) != listener.api_key:
            return error(401, "invalid x-api-key", rid)
        return await self.faults(request, rid)

    async def faults(self, request: web.Request, rid: str,
                     failure: FailureAnswer | None = None) -> web.StreamResponse | None:
        """The answer of a fault, if the request asks for one: x-mock-reset, -status with
        -retry-after, -replay, after x-mock-delay-ms; None to answer the request. A platform
        answering some failures in its own shape gives `failure`: None from it leaves the
        status to Anthropic's error."""
        listener = self.listener
        if resets_this_attempt(listener, request):
            reset_connection(request)
            return web.Response(status=500)
        await delay_first_byte(listener, request)
        status = option(listener, request, "status")
        if status and int(status) >= 400:
            retry_after = option(listener, request, "retry-after")
            own = failure(int(status), retry_after) if failure else None
            if own is not None:
                return own
            return error(int(status), _STATUS_MESSAGES.get(int(status), f"Mock failure {status}."), rid,
                         {"retry-after": retry_after} if retry_after else None)
        name = option(listener, request, "replay")
        if not name:
            return None
        recording = find_recording(listener.fixtures, name)
        if recording is None:
            return error(400, f"unknown recording {name!r}", rid)
        return await replay(listener, request, recording, REPLAYED_HEADERS)
