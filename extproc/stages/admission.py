"""Request headers: which endpoint, which caller, and header hygiene."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid

import orjson

from ..api.openai import find_endpoint
from ..config.envoy_contract import INTERNAL_HEADER_PREFIX
from ..observability.settings import request_tags
from ..pipeline.call import Call
from ..pipeline.errors import GatewayError, invalid_api_key, invalid_request
from . import ImmediateAnswer, Stage

# Credentials the caller sends; never forwarded to a provider.
_CALLER_CREDENTIAL_HEADERS = ("authorization", "api-key")
# What the log line keeps of a caller's own request id.
MAX_CLIENT_ID_CHARS = 128


class Admission(Stage):
    """Knows the endpoint, identifies the caller, strips what the caller may not set."""

    name = "admission"

    def request_headers(self, call: Call, end_of_stream: bool) -> None:
        headers = call.headers
        call.method = headers.get(":method", "")
        call.path, _, call.query = headers.get(":path", "").partition("?")
        # The gateway owns the request id (Envoy generates none: envoy/quickstart.yaml): the
        # provider, the client and the log line see this one; the caller's, if it sent one,
        # is kept on the log line beside it.
        call.request_id = str(uuid.uuid4())
        call.reply.set_headers["x-request-id"] = call.request_id
        client_request_id = headers.get("x-request-id")
        if client_request_id:
            call.stage_state.setdefault("log", {})["client_request_id"] = client_request_id[:MAX_CLIENT_ID_CHARS]
        tags = request_tags(headers)
        if tags:
            call.stage_state.setdefault("log", {})["tags"] = tags
        # Strip first: even a refused request must not leave internal headers behind.
        call.reply.remove_headers.extend(
            name for name in headers
            if name in _CALLER_CREDENTIAL_HEADERS or name.startswith(INTERNAL_HEADER_PREFIX))

        found = find_endpoint(call.path)
        if found is None:
            raise GatewayError(404, "not_found",
                               f"Unknown path '{call.path[:200]}'. This gateway serves the OpenAI "
                               "API under /v1 (chat/completions, completions, embeddings, "
                               "responses, models).", type="invalid_request_error")
        endpoint, call.resource_id = found
        if call.method not in endpoint.methods:
            allowed = ", ".join(endpoint.methods)
            raise GatewayError(405, "method_not_allowed", f"{call.path[:200]} accepts {allowed} only.",
                               headers={"allow": allowed})
        call.endpoint = endpoint
        _refuse_unreadable_bodies(headers)
        call.key = self._authenticate(call)
        if endpoint.kind == "models":
            raise ImmediateAnswer(200, self._models_list(call))
        if endpoint.kind == "model":
            raise ImmediateAnswer(200, self._model(call, call.resource_id))
        if end_of_stream and endpoint.generates:
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
        data = [_model_object(name, created) for name in call.config.models if call.key.may_use(name)]
        return orjson.dumps({"object": "list", "data": data})

    @staticmethod
    def _model(call: Call, name: str) -> bytes:
        """One model, as OpenAI's GET /v1/models/{model} answers; one this key may not use
        is as unknown to it as one that does not exist."""
        if name not in call.config.models or not call.key.may_use(name):
            raise GatewayError(404, "model_not_found",
                               f"The model '{name[:100]}' does not exist or you do not have access to it.")
        return orjson.dumps(_model_object(name, int(time.time())))


def _model_object(name: str, created: int) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": "llm-gateway"}


def _refuse_unreadable_bodies(headers: dict[str, str]) -> None:
    """A body the gateway cannot read must not pass unread: an encoding Envoy did not
    decompress (gzip, br and zstd arrive decompressed). (gRPC content types never get here:
    envoy/quickstart.yaml answers them 415 itself.)"""
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding and encoding != "identity":
        raise GatewayError(415, "unsupported_content_encoding",
                           f"The request body's content-encoding '{encoding[:40]}' is not supported; send it "
                           "uncompressed, or compressed with gzip, br or zstd.", type="invalid_request_error")


def _presented_key(headers: dict[str, str]) -> str:
    """The key a caller presents: a Bearer token, else the `api-key` header (Azure's
    clients). Another scheme in Authorization (Basic, say, added by a proxy on the way)
    does not hide an `api-key`."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        # Only HTTP's own whitespace (space, tab) surrounds a token; anything else
        # (a no-break space, say) makes it a different key.
        return token.strip(" \t")
    return headers.get("api-key", "").strip(" \t")
