"""The mock's Gemini API surface (generativelanguage.googleapis.com), on /v1beta and /v1:
POST models/{model}:generateContent (JSON), :streamGenerateContent (SSE with `?alt=sse`,
else one JSON array streamed chunk by chunk), :countTokens, :embedContent and
:batchEmbedContents (gemini_embed.py), and GET models (paged by
`pageSize`, `pageToken`) and models/{model}. Vertex AI's Gemini routes (vertex.py) answer
through the same code.

The key comes in `x-goog-api-key` or `?key=`; a listener with an `api_key` refuses a call
without it (403) or with another (400 API_KEY_INVALID), as Google does. The answer echoes
the last user content's text parts joined, exactly as received, cut at the first of
`generationConfig.stopSequences` and to `maxOutputTokens` (finishReason STOP or
MAX_TOKENS). A request whose `thinkingConfig` turns thinking on gets thoughts counted in
thoughtsTokenCount (and against maxOutputTokens), shown as a first `thought` part when it
asks for them (`includeThoughts`), and the thought's signature on the first part after
them when the request declares functions or is answered with a call (as Gemini 2.5 signs:
see the recordings, a plain text answer after thinking has none). x-mock-tool-call answers
with a `functionCall` of that tool, args {"text": <echo>}. Usage comes from the gateway's
own tokenizer (o200k_base); x-mock-cached-tokens is reported as cachedContentTokenCount,
within the prompt's count as Google reports it.
"""

from __future__ import annotations

from aiohttp import web

from ..api.tokens import count_text
from .anthropic import first_stop_sequence
from .anthropic_shapes import tool_input
from .echo import cut_to_tokens, stream_pieces, words
from .gemini_embed import EMBED_METHODS, embed_answer
from .gemini_request import (
    COUNT_FIELDS,
    ENCODING,
    counted_request,
    declares_functions,
    last_user_text,
    parse,
    prompt_texts,
    prompt_tokens,
    settings,
)
from .gemini_shapes import (
    DEFAULT_PAGE_SIZE,
    GeminiAnswer,
    count_tokens_json,
    json_array_pieces,
    model_info,
    models_json,
    pretty,
    response_json,
    sse_frames,
    stream_chunks,
)
from .google_errors import JSON, api_key_invalid, api_key_missing, error, failure
from .listener import Listener, option, record
from .wire import (
    delay_first_byte,
    find_recording,
    replay,
    reset_connection,
    unended,
    write_stream,
    write_truncated,
)

THINKING_WORDS = 8              # how much of the echo the thought quotes
METHODS = ("generateContent", "streamGenerateContent", "countTokens")
# Google's streams: no charset, and sent as an attachment (see gemini-stream-sse.yaml).
STREAM_HEADERS = {"content-type": "text/event-stream", "content-disposition": "attachment"}
# What a replayed recording keeps of its headers.
REPLAYED_HEADERS = ("content-type", "content-disposition")


def presented_key(request: web.Request) -> str:
    return request.headers.get("x-goog-api-key") or request.query.get("key", "")


def compose_answer(listener: Listener, request: web.Request, body: dict, model: str,
                   vertex: bool = False) -> GeminiAnswer:
    """The echo (or a call of x-mock-tool-call's tool with it as args), after an optional
    thought, within maxOutputTokens."""
    echo, config = last_user_text(body), settings(body)
    thought, thought_tokens = None, 0
    if config.thinks:
        thought, _ = cut_to_tokens("Thinking about: " + "".join(words(echo)[:THINKING_WORDS]).lstrip(),
                                   config.max_tokens, ENCODING)
        thought_tokens = count_text(thought, ENCODING)
    budget = None if config.max_tokens is None else config.max_tokens - thought_tokens
    tool = option(listener, request, "tool-call")
    stop = None if tool else first_stop_sequence(echo, list(config.stop_sequences))
    text, cut = cut_to_tokens(echo[:stop[0]] if stop else echo, budget, ENCODING)
    prompt = prompt_tokens(body)
    cached = option(listener, request, "cached-tokens") or ""
    cached_tokens = min(int(cached), prompt) if cached.isascii() and cached.isdigit() else 0
    signed = bool(tool) or declares_functions(body)
    return GeminiAnswer(model=model, text=text, finish_reason="MAX_TOKENS" if cut else "STOP",
                        prompt_tokens=prompt, output_tokens=count_text(tool_input(text) if tool else text, ENCODING),
                        thought=thought, thought_shown=config.shows_thoughts, thought_tokens=thought_tokens,
                        cached_tokens=cached_tokens, tool=tool, signed=signed, vertex=vertex)


def billable_characters(body: dict) -> int:
    """What Vertex bills a prompt by: its characters, whitespace left out."""
    texts, _ = prompt_texts(body)
    return sum(len("".join(text.split())) for text in texts)


class GeminiRoutes:
    """The Gemini handlers of one listener. Each request is recorded, then its key is
    checked, then the faults that answer before the body is read act (reset, delay,
    status, replay), then the body is validated and answered."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener

    def add_to(self, app: web.Application) -> None:
        for version in ("/v1beta", "/v1"):
            app.router.add_post(version + "/models/{target}", self.call)
            app.router.add_get(version + "/models/{model}", self.model)
        # GET /v1/models is shared with the other dialects: server.py sends Google's clients here.
        app.router.add_get("/v1beta/models", self.models)

    async def call(self, request: web.Request) -> web.StreamResponse:
        """POST models/{model}:{method}."""
        raw = await request.read()
        entry = record(self.listener, request, raw)
        model, _, method = request.match_info["target"].rpartition(":")
        refused = self._refused(request)
        if refused is not None:
            return refused
        if not model or method not in METHODS + EMBED_METHODS:
            return error(404, "Requested entity was not found.")
        fault = await self.faults(request)
        if fault is not None:
            return fault
        if method in EMBED_METHODS:
            return await embed_answer(raw, entry, model, method)
        return await self.answer(request, raw, entry, model, method)

    async def answer(self, request: web.Request, raw: bytes, entry: dict, model: str, method: str,
                     vertex: bool = False) -> web.StreamResponse:
        """The answer to one of METHODS for `model`, once the caller is let in and no fault
        answered (Vertex's Gemini routes come here too)."""
        listener = self.listener
        if method == "countTokens":
            body, problem = parse(raw, COUNT_FIELDS)
            if body is None:
                return error(400, problem.message, problem.details)
            counted = counted_request(body)
            return web.Response(body=count_tokens_json(prompt_tokens(counted),
                                                       billable_characters(counted) if vertex else None),
                                headers={"content-type": JSON})
        body, problem = parse(raw, vertex=vertex)
        if body is None:
            return error(400, problem.message, problem.details)
        answer = compose_answer(listener, request, body, model, vertex)
        # What this provider reported, in the form the other dialects record (soak checks compare).
        entry["usage"] = {"prompt_tokens": answer.prompt_tokens,
                          "completion_tokens": answer.output_tokens + answer.thought_tokens,
                          "cached_tokens": answer.cached_tokens}
        if method == "streamGenerateContent":
            chunks = stream_chunks(answer, lambda text: stream_pieces(listener, request, text))
            if request.query.get("alt") == "sse":
                return await write_stream(listener, request, unended(listener, request, sse_frames(chunks)),
                                          STREAM_HEADERS)
            return await write_stream(listener, request, json_array_pieces(chunks), {"content-type": JSON})
        reply = response_json(answer)
        truncate = option(listener, request, "truncate")
        if truncate:
            return await write_truncated(request, reply, int(truncate))
        return web.Response(body=reply, headers={"content-type": JSON})

    async def models(self, request: web.Request) -> web.StreamResponse:
        """GET models: a page of `pageSize` (default 50, 1 to 1000) from `pageToken`."""
        early = await self._early_answer(request)
        if early is not None:
            return early
        size, token = request.query.get("pageSize", str(DEFAULT_PAGE_SIZE)), request.query.get("pageToken", "0")
        if not (size + token).isascii() or not size.isdigit() or not token.isdigit():
            return error(400, "Invalid value for pageSize or pageToken.")
        return web.Response(body=models_json(min(max(int(size), 1), 1000), int(token)),
                            headers={"content-type": JSON})

    async def model(self, request: web.Request) -> web.StreamResponse:
        """GET models/{model}."""
        early = await self._early_answer(request)
        if early is not None:
            return early
        name = request.match_info["model"]
        info = model_info(name)
        if info is None:
            version = request.path.split("/")[1]
            return error(404, f"models/{name} is not found for API version {version}, or is not supported "
                              "for get. Call ListModels to see the list of available models and their "
                              "supported methods.")
        return web.Response(body=pretty(info), headers={"content-type": JSON})

    async def faults(self, request: web.Request, vertex: bool = False) -> web.StreamResponse | None:
        """The answer of a fault, if the request asks for one: x-mock-reset, -status (in
        Google's shape) with -retry-after, -replay, after x-mock-delay-ms."""
        listener = self.listener
        if option(listener, request, "reset"):
            reset_connection(request)
            return web.Response(status=500)
        await delay_first_byte(listener, request)
        status = option(listener, request, "status")
        if status and int(status) >= 400:
            answer = failure(int(status), option(listener, request, "retry-after"), vertex)
            if request.query.get("alt") == "sse":
                # Google's stream endpoint says text/event-stream on its errors too, with a
                # plain JSON body (seen on a 404 for an unknown model).
                answer.headers["content-type"] = "text/event-stream"
            return answer
        name = option(listener, request, "replay")
        if not name:
            return None
        recording = find_recording(listener.fixtures, name)
        if recording is None:
            return error(400, f"unknown recording {name!r}")
        return await replay(listener, request, recording, REPLAYED_HEADERS)

    async def _early_answer(self, request: web.Request) -> web.StreamResponse | None:
        """For a call without a body to answer: recorded, then refused or faulted, or None."""
        record(self.listener, request, await request.read())
        # (aiohttp's responses are mappings, false when empty: compare with None, never `or`.)
        refused = self._refused(request)
        return refused if refused is not None else await self.faults(request)

    def _refused(self, request: web.Request) -> web.Response | None:
        """A missing key's 403, a wrong one's 400, when the listener wants a key."""
        expected = self.listener.api_key
        if not expected:
            return None
        key = presented_key(request)
        if not key:
            return api_key_missing()
        return api_key_invalid() if key != expected else None
