"""What each provider type expects on the wire: where each endpoint lives, and how the
credential goes.

  openai   any server of OpenAI's API (OpenAI, vLLM, Ollama, Groq, Mistral, OpenRouter...):
           `base_path` + the endpoint (`/v1` by default; Groq `/openai/v1`, OpenRouter `/api/v1`)
  azure    Azure OpenAI: a deployment's path with `?api-version=`, the deployment being the
           backend's model; the Responses API on its `/openai/v1` paths; `api-key`, or an
           Entra ID token as Bearer
"""

from __future__ import annotations

from urllib.parse import quote

OPENAI, AZURE = "openai", "azure"
TYPES = (OPENAI, AZURE)
# Where each type takes its credential by default: the header and whether it is a Bearer token.
DEFAULT_AUTH = {OPENAI: "bearer", AZURE: "api-key"}
# Endpoints Azure serves per deployment (the rest on its v1 paths).
_AZURE_DEPLOYMENT_KINDS = ("chat", "completions", "embeddings")
CLIENT_PREFIX = "/v1"


def upstream_path(provider_type: str, *, base_path: str, api_version: str, kind: str, path: str,
                  query: str, model: str) -> str:
    """The path (and query) a request for `path` (the client's, under /v1) takes to a
    provider of this type, `model` being the backend's model (Azure: its deployment)."""
    suffix = path[len(CLIENT_PREFIX):] if path.startswith(CLIENT_PREFIX) else path
    if provider_type == AZURE:
        if kind in _AZURE_DEPLOYMENT_KINDS:
            version = f"api-version={quote(api_version, safe='')}"
            return f"/openai/deployments/{quote(model, safe='')}{suffix}?{version}{'&' + query if query else ''}"
        return f"/openai/v1{suffix}{'?' + query if query else ''}"
    return f"{base_path}{suffix}{'?' + query if query else ''}"
