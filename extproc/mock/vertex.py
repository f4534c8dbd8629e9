"""The mock's Vertex AI surface, on /v1 and /v1beta1 (the google-genai SDK's default):
  POST .../projects/{p}/locations/{l}/publishers/google/models/{model}:generateContent,
       :streamGenerateContent (`?alt=sse`), :countTokens    Gemini, answered as gemini.py
       answers, in Vertex's shape (createTime, trafficType, no candidate index)
  POST .../publishers/anthropic/models/{model}:rawPredict (JSON), :streamRawPredict (SSE)
       Claude: Anthropic's Messages API answered by anthropic.py, with Vertex's `vrtx` ids
       and the four usage counts (see provider-recordings/vertex-claude-rawpredict.yaml)
  POST .../publishers/anthropic/models/count-tokens:rawPredict    Claude's token count

Every call needs `Authorization: Bearer <token>` with a token this listener's /token
issued (oauth.py) and that has not expired; any other gets Vertex's 401 (UNAUTHENTICATED).
A Claude body must carry `anthropic_version: vertex-2023-10-16` and no `model` (the path
names it): Vertex refuses either mistake in Anthropic's error shape. The answer names the
path's model as Vertex does, `@` turned to `-` (claude-haiku-4-5@20251001 answers as
claude-haiku-4-5-20251001). Claude's failures (x-mock-status) come in Anthropic's shape,
except a 429: Vertex's quota refuses it before Claude sees it, in Google's shape.
"""

from __future__ import annotations

from aiohttp import web

from .anthropic import AnthropicRoutes, parse_body, prompt_tokens
from .anthropic import error as anthropic_error
from .anthropic_shapes import VERTEX, count_tokens_json, request_id
from .gemini import METHODS as GEMINI_METHODS
from .gemini import GeminiRoutes
from .google_errors import error, unauthenticated
from .listener import Listener, record
from .oauth import TokenEndpoint

VERTEX_VERSION = "vertex-2023-10-16"
CLAUDE_METHODS = ("rawPredict", "streamRawPredict")
COUNT_TOKENS_MODEL = "count-tokens"
_RPC_NAMES = {"generateContent": "GenerateContent", "streamGenerateContent": "StreamGenerateContent",
              "countTokens": "CountTokens", "rawPredict": "RawPredict", "streamRawPredict": "StreamRawPredict"}


def claude_model(path_model: str) -> str:
    """The model a Claude answer names: the path's, `@` before its date turned to `-`."""
    return path_model.replace("@", "-")


def quota_exceeded(path_model: str, retry_after: str | None) -> web.Response:
    """Vertex's 429 for a partner model, in Google's shape (its quota answers, not Claude)."""
    base = "anthropic-" + path_model.split("@")[0]
    return error(429, "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model "
                      f"with base model: {base}. Please submit a quota increase request. "
                      "https://cloud.google.com/vertex-ai/docs/generative-ai/quotas-genai.",
                 headers={"retry-after": retry_after} if retry_after else None)


class VertexRoutes:
    """The Vertex AI handlers of one listener, answering through its Gemini and Anthropic
    handlers once the caller's token is checked."""

    def __init__(self, listener: Listener, tokens: TokenEndpoint, gemini: GeminiRoutes,
                 anthropic: AnthropicRoutes) -> None:
        self.listener, self.tokens, self.gemini, self.anthropic = listener, tokens, gemini, anthropic

    def add_to(self, app: web.Application) -> None:
        for version in ("/v1", "/v1beta1"):
            app.router.add_post(version + "/projects/{project}/locations/{location}/publishers/{publisher}"
                                          "/models/{target}", self.call)

    async def call(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        entry = record(self.listener, request, raw)
        publisher = request.match_info["publisher"]
        model, _, method = request.match_info["target"].rpartition(":")
        version = request.path.split("/")[1]
        refusal = self.tokens.refusal(request)
        if refusal:
            rpc = _RPC_NAMES.get(method, method)
            return unauthenticated(refusal, f"google.cloud.aiplatform.{version}.PredictionService.{rpc}")
        if publisher == "google" and model and method in GEMINI_METHODS:
            fault = await self.gemini.faults(request, vertex=True)
            if fault is not None:
                return fault
            return await self.gemini.answer(request, raw, entry, model, method, vertex=True)
        if publisher == "anthropic" and model and method in CLAUDE_METHODS:
            return await self.claude(request, raw, entry, model, method)
        info = request.match_info
        return error(404, f"Publisher Model `projects/{info['project']}/locations/{info['location']}/publishers/"
                          f"{publisher}/models/{model or info['target']}` not found.")

    async def claude(self, request: web.Request, raw: bytes, entry: dict, model: str,
                     method: str) -> web.StreamResponse:
        """Claude's Messages API: the faults, then Vertex's checks of the body, then
        anthropic.py's answer naming the path's model."""
        rid = request_id(VERTEX)
        fault = await self.anthropic.faults(
            request, rid, lambda status, retry_after: quota_exceeded(model, retry_after) if status == 429 else None)
        if fault is not None:
            return fault
        counting = model == COUNT_TOKENS_MODEL and method == "rawPredict"
        required = ("anthropic_version", "model", "messages") if counting else \
            ("anthropic_version", "messages", "max_tokens")
        body, problem = parse_body(raw, required)
        if body is None:
            return anthropic_error(400, problem, rid)
        if "model" in body and not counting:
            return anthropic_error(400, "model: Extra inputs are not permitted", rid)
        if body["anthropic_version"] != VERTEX_VERSION:
            return anthropic_error(400, f"anthropic_version: Input should be '{VERTEX_VERSION}'", rid)
        if counting:
            return web.Response(body=count_tokens_json(prompt_tokens(body)), content_type="application/json",
                                headers={"request-id": rid})
        return await self.anthropic.answer(request, {**body, "model": claude_model(model)}, entry, rid, VERTEX,
                                           streamed=method == "streamRawPredict")
