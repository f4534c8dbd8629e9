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
  bedrock    AWS Bedrock's Converse API: `/model/{model id}/converse` (`/converse-stream`, whose
             answer is AWS's binary event stream); Anthropic's models through InvokeModel
             instead (`/model/{model id}/invoke`, `/invoke-with-response-stream`: the Messages
             API, the body naming `anthropic_version: bedrock-2023-05-31` and neither model nor
             stream), so thinking signatures and cache tokens pass as Anthropic sends them; no
             credential header: Envoy's aws_request_signing filter signs each attempt (SigV4)
             after its body is final
  vertex     Vertex AI: `base_path` (`/v1`) + `/projects/{project}/locations/{location}/publishers/`,
             then Google's models (`google/models/{model}:generateContent`, Gemini's dialect) or
             Anthropic's (`anthropic/models/{model}:rawPredict`, `:streamRawPredict` for a stream:
             the Messages API, the body naming `anthropic_version: vertex-2023-10-16` and no
             model); an OAuth access token as Bearer (credentials/google.py mints it)
"""

from __future__ import annotations

from urllib.parse import quote

OPENAI, AZURE, ANTHROPIC, OPENAI_RESPONSES, GEMINI = "openai", "azure", "anthropic", "openai-responses", "gemini"
VERTEX, BEDROCK = "vertex", "bedrock"
POOL = "pool"        # replicas of an OpenAI-compatible model server, one picked per call (config/pools.py)
TYPES = (OPENAI, AZURE, ANTHROPIC, OPENAI_RESPONSES, GEMINI, VERTEX, BEDROCK, POOL)
# The API dialect each type speaks (translate/: a caller of another dialect is translated).
DIALECTS = {OPENAI: "openai", AZURE: "openai", ANTHROPIC: "anthropic", OPENAI_RESPONSES: "openai-responses",
            GEMINI: "gemini", VERTEX: "gemini", BEDROCK: "bedrock", POOL: "openai"}
# Vertex AI serves partners' models beside Google's, each in its maker's dialect; the
# model's name says whose it is.
_VERTEX_PUBLISHERS = (("claude-", "anthropic", "anthropic"),)
VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"
BEDROCK_ANTHROPIC_VERSION = "bedrock-2023-05-31"
# Bedrock's model ids name their maker: "anthropic.claude-...", with an inference
# profile's geography before it ("us.anthropic....") or an ARN around it.
_BEDROCK_MAKERS = {"anthropic": "anthropic"}
# Platforms whose streams are not SSE (AWS's binary event stream): always read, never passed through.
_EVENT_STREAM_TYPES = frozenset({BEDROCK})
# Where each type takes its credential by default.
AUTH_HEADERS = {"bearer": "authorization", "api-key": "api-key", "x-api-key": "x-api-key",
                "x-goog-api-key": "x-goog-api-key", "sigv4": ""}
DEFAULT_AUTH = {OPENAI: "bearer", AZURE: "api-key", ANTHROPIC: "x-api-key", OPENAI_RESPONSES: "bearer",
                GEMINI: "x-goog-api-key", VERTEX: "bearer", BEDROCK: "sigv4", POOL: "bearer"}
# Every header a credential may come in: a caller's never reaches a provider, and an
# attempt carries only its provider's own.
CREDENTIAL_HEADERS = tuple(header for header in AUTH_HEADERS.values() if header)
# Where each type has its API when the config names no `base_path`.
DEFAULT_BASE_PATHS = {GEMINI: "/v1beta", VERTEX: "/v1"}
CLIENT_PREFIX = "/v1"
# Endpoints Azure serves per deployment, by their path below /v1 (the rest on its v1 paths).
_AZURE_DEPLOYMENT_PATHS = frozenset({"/chat/completions", "/completions", "/embeddings"})


def vertex_publisher(model: str) -> tuple[str, str]:
    """Whose model Vertex AI serves under this name, and the dialect it speaks there."""
    for prefix, publisher, dialect in _VERTEX_PUBLISHERS:
        if model.startswith(prefix):
            return publisher, dialect
    return "google", DIALECTS[VERTEX]


def bedrock_maker_dialect(model: str) -> str | None:
    """The dialect Bedrock's InvokeModel speaks for a model id of a maker whose own API it
    serves (Anthropic's); None for a model reached through Converse."""
    segments = model.rsplit("/", 1)[-1].split(".", 2)
    for segment in segments[:2]:
        if segment in _BEDROCK_MAKERS:
            return _BEDROCK_MAKERS[segment]
    return None


def dialect_of(provider_type: str, model: str) -> str:
    """The API dialect a provider of this type speaks for `model`."""
    if provider_type == VERTEX:
        return vertex_publisher(model)[1]
    if provider_type == BEDROCK:
        return bedrock_maker_dialect(model) or DIALECTS[BEDROCK]
    return DIALECTS[provider_type]


def body_for_platform(provider_type: str, model: str, counts: bool, body: dict) -> dict:
    """A body in the model's dialect as its platform takes it: Claude on Vertex AI names
    the API version in the body and the model in the path only (a count, `counts`, names
    it in both); on Bedrock the path says whether the answer streams, too."""
    if provider_type == VERTEX and vertex_publisher(model)[0] == "anthropic":
        moved = {key: value for key, value in body.items() if key != "model" or counts}
        moved["anthropic_version"] = VERTEX_ANTHROPIC_VERSION
        return moved
    if provider_type == BEDROCK and bedrock_maker_dialect(model) is not None:
        moved = {key: value for key, value in body.items() if key not in ("model", "stream")}
        moved["anthropic_version"] = BEDROCK_ANTHROPIC_VERSION
        return moved
    return body


def wraps_bodies(provider_type: str) -> bool:
    """Whether bodies may change on their way to a platform of this type (body_for_platform)."""
    return provider_type in (VERTEX, BEDROCK)


def streams_in_sse(provider_type: str) -> bool:
    """Whether this type's streams are SSE (else the gateway reads and re-frames them)."""
    return provider_type not in _EVENT_STREAM_TYPES


def counts_tokens(provider_type: str, model: str) -> bool:
    """Whether the provider serves its dialect's token-count endpoint for this model
    (Claude on Bedrock does not: the gateway counts)."""
    return not (provider_type == BEDROCK and bedrock_maker_dialect(model) is not None)


def _vertex_path(base_path: str, project: str, location: str, counts: bool, model: str, stream: bool) -> str:
    publisher = vertex_publisher(model)[0]
    where = f"{base_path}/projects/{quote(project, safe='')}/locations/{quote(location, safe='')}/publishers/{publisher}"
    if publisher == "anthropic":
        if counts:
            return f"{where}/models/count-tokens:rawPredict"
        return f"{where}/models/{quote(model, safe='@')}:{'streamRawPredict' if stream else 'rawPredict'}"
    method = "countTokens" if counts else "streamGenerateContent?alt=sse" if stream \
        else "generateContent"
    return f"{where}/models/{quote(model, safe='')}:{method}"


def upstream_path(provider_type: str, *, base_path: str, api_version: str, path: str, query: str,
                  model: str, stream: bool = False, counts: bool = False, project: str = "",
                  location: str = "") -> str:
    """The path (and query) a request takes to a provider of this type: `path` is the
    endpoint's in the provider's dialect (the client's, under /v1, when no translation
    happens), `counts` whether the endpoint counts a request's tokens (Gemini's
    countTokens, Anthropic's count_tokens), `model` the backend's model (Azure: its
    deployment; Gemini: in the path, whose method says whether the answer streams;
    Vertex AI: in its project and location)."""
    if provider_type == VERTEX:
        return _vertex_path(base_path, project, location, counts, model, stream)
    if provider_type == BEDROCK:
        if bedrock_maker_dialect(model) is not None:
            return f"/model/{quote(model, safe='')}/{'invoke-with-response-stream' if stream else 'invoke'}"
        return f"/model/{quote(model, safe='')}/{'converse-stream' if stream else 'converse'}"
    if provider_type == GEMINI:
        method = "countTokens" if counts else "streamGenerateContent" if stream else "generateContent"
        if path.endswith(_GEMINI_EMBED_METHODS):        # Google's embeddings, as the caller named them
            method = path.rpartition(":")[2]
        kept = "&".join(part for part in query.split("&") if part and not part.startswith("alt="))
        options = "&".join(part for part in ("alt=sse" if stream else "", kept) if part)
        return f"{base_path}/models/{quote(model, safe='')}:{method}{'?' + options if options else ''}"
    if provider_type == ANTHROPIC:
        # Anthropic's endpoints at their own paths (a caller's trailing slash dropped).
        return path.rstrip("/") + (f"?{query}" if query else "")
    suffix = path[len(CLIENT_PREFIX):] if path.startswith(CLIENT_PREFIX) else path
    if provider_type == AZURE:
        if suffix.rstrip("/") in _AZURE_DEPLOYMENT_PATHS:
            version = f"api-version={quote(api_version, safe='')}"
            return f"/openai/deployments/{quote(model, safe='')}{suffix}?{version}{'&' + query if query else ''}"
        return f"/openai/v1{suffix}{'?' + query if query else ''}"
    return f"{base_path}{suffix}{'?' + query if query else ''}"


_GEMINI_EMBED_METHODS = (":embedContent", ":batchEmbedContents")
CHAT_PATH = "/v1/chat/completions"      # where a translated call goes at an OpenAI-dialect provider
