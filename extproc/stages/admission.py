"""Request headers: which endpoint, which caller, and header hygiene."""

from __future__ import annotations

import hashlib
import hmac
import time

import orjson

from ..api.openai import ENDPOINTS
from ..config.envoy_contract import INTERNAL_HEADER_PREFIX
from ..observability.settings import request_tags
from ..pipeline.call import Call
from ..pipeline.errors import GatewayError, invalid_api_key, invalid_request
from . import ImmediateAnswer, Stage

# Credentials the caller sends; never forwarded to a provider.
_CALLER_CREDENTIAL_HEADERS = ("authorization", "api-key")


class Admission(Stage):
    """Knows the endpoint, identifies the caller, strips what the caller may not set."""

    name = "admission"

    def request_headers(self, call: Call, end_of_stream: bool) -> None:
        headers = call.headers
        call.method = headers.get(":method", "")
        path = headers.get(":path", "")
        call.path = path.split("?", 1)[0]
        call.request_id = headers.get("x-request-id", "")
        tags = request_tags(headers)
        if tags:
            call.stage_state.setdefault("log", {})["tags"] = tags
        # Strip first: even a refused request must not leave internal headers behind.
        call.reply.remove_headers.extend(
            name for name in headers
            if name in _CALLER_CREDENTIAL_HEADERS or name.startswith(INTERNAL_HEADER_PREFIX))

        endpoint = ENDPOINTS.get(call.path.rstrip("/"))
        if endpoint is None:
            raise GatewayError(404, "not_found",
                               f"Unknown path '{call.path[:200]}'. This gateway serves the OpenAI "
                               "API under /v1 (chat/completions, completions, embeddings, "
                               "responses, models).", type="invalid_request_error")
        if call.method != endpoint.method:
            raise GatewayError(405, "method_not_allowed",
                               f"{call.path} accepts {endpoint.method} only.",
                               headers={"allow": endpoint.method})
        call.endpoint = endpoint
        call.key = self._authenticate(call)
        if endpoint.kind == "models":
            raise ImmediateAnswer(200, self._models_list(call))
        if end_of_stream:
            raise invalid_request("The request has no body; send a JSON object with a 'model'.")

    @staticmethod
    def _authenticate(call: Call):
        presented = _presented_key(call.headers)
        if not presented:
            raise invalid_api_key()
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        # Lookup by digest, then a constant-time confirmation: timing reveals nothing
        # about how close a near-miss key is to a real one.
        key = call.config.keys_by_hash.get(digest)
        if key is None or not hmac.compare_digest(key.sha256, digest):
            raise invalid_api_key()
        return key

    @staticmethod
    def _models_list(call: Call) -> bytes:
        created = int(time.time())
        data = [{"id": name, "object": "model", "created": created, "owned_by": "llm-gateway"}
                for name in call.config.models if call.key.may_use(name)]
        return orjson.dumps({"object": "list", "data": data})


def _presented_key(headers: dict[str, str]) -> str:
    auth = headers.get("authorization", "")
    if auth:
        scheme, _, token = auth.partition(" ")
        # Only HTTP's own whitespace (space, tab) surrounds a token; anything else
        # (a no-break space, say) makes it a different key.
        return token.strip(" \t") if scheme.lower() == "bearer" else ""
    return headers.get("api-key", "").strip(" \t")
