"""The mock provider's listeners: one aiohttp app per listener, speaking OpenAI's API
(openai.py: chat, completions, embeddings, responses, Azure's paths), Anthropic's
Messages API (anthropic.py: messages, count_tokens), Google's Gemini API (gemini.py:
generateContent, streamGenerateContent, countTokens, models on /v1beta and /v1) and
Vertex AI (vertex.py: Gemini, and Claude's rawPredict and streamRawPredict, behind the
OAuth token endpoint of oauth.py) and AWS Bedrock (bedrock.py: /model/{id}/converse and
converse-stream, and invoke and invoke-with-response-stream for Anthropic models, every
call SigV4-signed) side by side. GET /v1/models answers in Anthropic's
list shape when the request carries `anthropic-version`, in Google's when it carries a
Google key (`x-goog-api-key`, `?key=`) or `x-goog-api-client`, else in OpenAI's.

Failure modes come from the listener's config (`failure:`) or, per request, from headers
(a control that takes a number and is given something else is a 400 naming it).
Every dialect:
  x-mock-status: 503          answer with this status (the dialect's error body and type)
  x-mock-retry-after: 2       with this retry-after header
  x-mock-reset: 1             reset the connection before answering
  x-mock-reset-times: 1       ... only the first N attempts of a request (same x-request-id):
                              Envoy's retry is answered
  x-mock-delay-ms: 500        wait before the first byte
  x-mock-chunk-delay-ms: 50   wait between SSE events
  x-mock-end-delay-ms: 500    wait after a stream's last event before ending it
  x-mock-cut-after: 3         reset the connection after N SSE events
  x-mock-stall-after: 3       send nothing more after N SSE events, the connection held open
                              (a provider that hangs mid-stream; 10 minutes at most)
  x-mock-tool-call: lookup    answer (chat, Responses, Messages, Gemini, Converse) with a call
                              of this tool whose arguments (input, args) are {"text": <the
                              echo>}, streamed piece by piece (Gemini's function call comes
                              whole, in one chunk)
  x-mock-chunk-chars: 7       stream the reply in pieces of N characters (default: words,
                              each with the space before it, as OpenAI tokens come: " the")
  x-mock-chunk-units: 7       ... of N UTF-16 code units, as a JavaScript server slicing its
                              strings does: an emoji's two halves may go in two events, each
                              a lone surrogate escape ("\\ud83d")
  x-mock-write-bytes: 5       write the stream's bytes N at a time (events cut anywhere)
  x-mock-unended: 1           end the stream without the blank line that ends its last event
  x-mock-cached-tokens: 5     report this many of the prompt's tokens as read from the
                              provider's prompt cache (at most all of them)
  x-mock-truncate: 20         send only the first N bytes of a JSON body, then reset
  x-mock-replay: chat-basic   answer with a recorded response from the fixtures (any folder
                              directly below the --fixtures root)
  x-mock-only: mock-failing   apply the x-mock-* headers on this listener only
OpenAI only:
  x-mock-content-parts: text  chat content as a list of parts, as Mistral's reasoning models
                              answer: [{"type": "text", ...}] (or `thinking`: a thinking chunk
                              nesting a text part)
  x-mock-no-usage: 1          omit usage (as some providers do; Anthropic always sends it)
  x-mock-garbage: 1           stream events that are not JSON (a broken provider)
  x-mock-shadow: content=hi   write each "content" key of the reply twice, "hi" first (a
                              provider whose JSON repeats a key: parsers keep one or the other)
Anthropic only:
  x-mock-cache-write-tokens: 9  report this many prompt tokens as written to the cache
                              (cache_creation_input_tokens, all at the 5-minute TTL)
  x-mock-stream-error: overloaded_error  send an `error` event of this type after the first
                              content block's first delta, inside the 200 stream, and end it
Gemini and Vertex:
  x-mock-status: 429          a google.rpc.Status body with the code's status name (here
                              RESOURCE_EXHAUSTED, with RetryInfo given x-mock-retry-after);
                              Claude on Vertex answers in Anthropic's shape, a 429 in Google's
  x-mock-cached-tokens: 5     reported as cachedContentTokenCount, within promptTokenCount
  x-mock-replay: gemini-stream-sse  replayed with Google's CRLF framing, byte for byte
  token-ttl: 60               (listener default, or x-mock-token-ttl) the lifetime in seconds
                              of the access tokens POST /token issues (default 3600); Vertex's
                              routes take no other; GET /_mock/tokens counts those issued
Bedrock (the stream controls count event-stream frames; x-mock-unended does not apply):
  x-mock-status: 429          Bedrock's exception for the status, named by x-amzn-ErrorType
                              (429 ThrottlingException, 400 ValidationException, 403
                              AccessDeniedException, 404 ResourceNotFoundException, 500
                              InternalServerException, 503 ServiceUnavailableException)
  x-mock-stream-exception: throttlingException  send an exception frame of this type after
                              the first delta, inside the 200 event stream, and end it there
  x-mock-cached-tokens: 5     reported as cacheReadInputTokens (x-mock-cache-write-tokens as
                              cacheWriteInputTokens); InvokeModel reports Anthropic's usage
  x-mock-replay: bedrock-converse-stream  a binary recording (base64 in its YAML) replayed
                              decoded, byte for byte, frame by frame
  aws_access_key_id, aws_secret_access_key, aws_region  (listener settings, not headers)
Azure OpenAI with Entra ID:
  POST /{tenant}/oauth2/v2.0/token  Entra ID's client-credentials grant; its tokens (for
                              token-ttl seconds) are taken as `Authorization: Bearer` on
                              the OpenAI and Azure routes beside the listener's api_key
  entra_client_secret         (listener setting) the only client secret it takes
                              the credentials each call must be signed with; by default
                              bedrock.py's demo ones, in us-east-1
Every request is recorded per listener: GET /_mock/requests, DELETE to clear.
Beside the listeners, `vllm_pools:` serves simulated vLLM replicas (vllm_pool.py: a KV
cache with prefix caching, continuous batching and vLLM's /metrics, one port a replica).
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from ..api.tokens import get_encoding
from .anthropic import AnthropicRoutes
from .bedrock import BedrockRoutes
from .gemini import GeminiRoutes
from .listener import Listener, listeners_from_config
from .oauth import TokenEndpoint
from .openai import OpenAIRoutes
from .vertex import VertexRoutes

__all__ = ["Listener", "build_app", "listeners_from_config", "serve"]

MAX_BODY = 64 * 1024 * 1024


def is_google_client(request: web.Request) -> bool:
    """A request from Google's SDKs or a client of the Gemini API: it carries its key or
    Google's client header."""
    return "x-goog-api-key" in request.headers or "key" in request.query or "x-goog-api-client" in request.headers


# The controls that take a whole number (a header of another value is the test's mistake:
# said with a 400 here, where every route reads them, not as a reset mid-answer).
NUMERIC_CONTROLS = ("status", "retry-after", "reset-times", "delay-ms", "chunk-delay-ms", "end-delay-ms", "cut-after",
                    "stall-after",
                    "chunk-chars", "chunk-units", "write-bytes", "cached-tokens", "cache-write-tokens",
                    "truncate", "token-ttl")


@web.middleware
async def numeric_controls(request: web.Request, handler):
    for name in NUMERIC_CONTROLS:
        value = request.headers.get(f"x-mock-{name}")
        if value and not (value.isascii() and value.isdigit() and len(value) <= 9):
            return web.json_response({"error": {"message": f"x-mock-{name} must be a whole number",
                                                "type": "invalid_request_error", "code": "mock_control"}},
                                     status=400)
    return await handler(request)


def build_app(listener: Listener) -> web.Application:
    """The app one listener serves: every dialect, and its record of received requests."""
    tokens = TokenEndpoint(listener)
    openai_routes, anthropic_routes = OpenAIRoutes(listener, tokens), AnthropicRoutes(listener)
    gemini_routes = GeminiRoutes(listener)

    async def recorded(request: web.Request) -> web.Response:
        return web.json_response(listener.received, dumps=lambda o: orjson.dumps(o).decode())

    async def clear(request: web.Request) -> web.Response:
        listener.received.clear()
        return web.Response(status=204)

    async def models(request: web.Request) -> web.StreamResponse:
        # Both dialects list models on the same path; Anthropic's clients always send a version.
        if "anthropic-version" in request.headers:
            return await anthropic_routes.models(request)
        if is_google_client(request):
            return await gemini_routes.models(request)
        return await openai_routes.models(request)

    app = web.Application(client_max_size=MAX_BODY, middlewares=[numeric_controls])
    app.router.add_get("/_mock/requests", recorded)
    app.router.add_delete("/_mock/requests", clear)
    app.router.add_get("/v1/models", models)
    openai_routes.add_to(app)
    anthropic_routes.add_to(app)
    gemini_routes.add_to(app)
    tokens.add_to(app)
    VertexRoutes(listener, tokens, gemini_routes, anthropic_routes).add_to(app)
    BedrockRoutes(listener).add_to(app)
    return app


async def serve(listeners: list[Listener], pools: list | None = None) -> None:
    """Serve every listener, and every simulated vLLM pool (vllm_pool.py), until cancelled."""
    # Warm what nearly every call counts with, so the first one does not pay the load (~0.8 s
    # of CPU); cl100k_base (embeddings, older models) loads when first asked for, as a stack
    # that never serves one need not spend ~0.4 s on it.
    get_encoding("o200k_base")
    pools = list(pools or ())
    for pool in pools:          # before the listeners: a caller waiting for those finds these up
        await pool.start()
    runners = []
    for listener in listeners:
        runner = web.AppRunner(build_app(listener), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, listener.host, listener.port, reuse_address=True).start()
        runners.append(runner)
    try:
        await asyncio.Event().wait()
    finally:
        for runner in runners:
            await runner.cleanup()
        for pool in pools:
            await pool.stop()
