"""What each provider type expects on the wire: which API dialect it speaks, where each
endpoint lives, and how the credential goes.

  openai     any server of OpenAI's API (OpenAI, vLLM, Ollama, Groq, Mistral, OpenRouter...):
             `base_path` + the endpoint (`/v1` by default; Groq `/openai/v1`, OpenRouter `/api/v1`)
  azure      Azure OpenAI: a deployment's path with `?api-version=`, the deployment being the
             backend's model; the Responses API on its `/openai/v1` paths; `api-key`, or an
             Entra ID token as Bearer
  anthropic  Anthropic's Messages API: `/v1/messages`, the key in `x-api-key`, with
             `anthropic-version`
  openai-responses  a server of OpenAI's Responses API only (`base_path` + `/responses`):
             chat and Messages callers are translated to it
  gemini     Google's Gemini API: `base_path` (`/v1beta`) + `/models/{model}:generateContent`
             (`:streamGenerateContent?alt=sse` for a stream), the key in `x-goog-api-key`
"""

from __future__ import annotations

from urllib.parse import quote

OPENAI, AZURE, ANTHROPIC, OPENAI_RESPONSES, GEMINI = "openai", "azure", "anthropic", "openai-responses", "gemini"
TYPES = (OPENAI, AZURE, ANTHROPIC, OPENAI_RESPONSES, GEMINI)
# The API dialect each type speaks (translate/: a caller of another dialect is translated).
DIALECTS = {OPENAI: "openai", AZURE: "openai", ANTHROPIC: "anthropic", OPENAI_RESPONSES: "openai-responses",
            GEMINI: "gemini"}
# Where each type takes its credential by default.
AUTH_HEADERS = {"bearer": "authorization", "api-key": "api-key", "x-api-key": "x-api-key",
                "x-goog-api-key": "x-goog-api-key"}
DEFAULT_AUTH = {OPENAI: "bearer", AZURE: "api-key", ANTHROPIC: "x-api-key", OPENAI_RESPONSES: "bearer",
                GEMINI: "x-goog-api-key"}
# Every header a credential may come in: a caller's never reaches a provider, and an
# attempt carries only its provider's own.
CREDENTIAL_HEADERS = tuple(AUTH_HEADERS.values())
# Where each type has its API when the config names no `base_path`.
DEFAULT_BASE_PATHS = {GEMINI: "/v1beta"}
# Endpoints Azure serves per deployment (the rest on its v1 paths).
_AZURE_DEPLOYMENT_KINDS = ("chat", "completions", "embeddings")
_ANTHROPIC_PATHS = {"messages": "/v1/messages", "count_tokens": "/v1/messages/count_tokens"}
CLIENT_PREFIX = "/v1"


def upstream_path(provider_type: str, *, base_path: str, api_version: str, kind: str, path: str,
                  query: str, model: str, stream: bool = False) -> str:
    """The path (and query) a request takes to a provider of this type: `kind` is the
    endpoint at the provider, `path` the client's (under /v1: the same endpoint when no
    translation happens), `model` the backend's model (Azure: its deployment; Gemini: in
    the path, whose method says whether the answer streams)."""
    if provider_type == GEMINI:
        method = "streamGenerateContent" if stream else "generateContent"
        kept = "&".join(part for part in query.split("&") if part and not part.startswith("alt="))
        options = "&".join(part for part in ("alt=sse" if stream else "", kept) if part)
        return f"{base_path}/models/{quote(model, safe='')}:{method}{'?' + options if options else ''}"
    if provider_type == ANTHROPIC:
        return _ANTHROPIC_PATHS.get(kind, path) + (f"?{query}" if query else "")
    suffix = path[len(CLIENT_PREFIX):] if path.startswith(CLIENT_PREFIX) else path
    if provider_type == AZURE:
        if kind in _AZURE_DEPLOYMENT_KINDS:
            version = f"api-version={quote(api_version, safe='')}"
            return f"/openai/deployments/{quote(model, safe='')}{suffix}?{version}{'&' + query if query else ''}"
        return f"/openai/v1{suffix}{'?' + query if query else ''}"
    return f"{base_path}{suffix}{'?' + query if query else ''}"


CHAT_PATH = "/v1/chat/completions"      # where a translated call goes at an OpenAI-dialect provider
