"""Request headers: which endpoint, which caller, and header hygiene."""

from __future__ import annotations

import hashlib
import hmac
import os
from operator import methodcaller
from urllib.parse import unquote

from ..api.openai import anthropic_shaped, client_path, find_endpoint, google_shaped
from ..config.envoy_contract import INTERNAL_HEADER_PREFIX
from ..dialects import codec_of
from ..observability.settings import request_tags
from ..pipeline.call import Call
from ..pipeline.errors import GatewayError, invalid_api_key, invalid_request
from ..pipeline.stage import ImmediateAnswer, Stage
from .key_ring import KEY_RING, KeyRing
from .models_list import listing
from .token_identity import token_caller, token_refusal

# Every header a caller's credential is read from (`presented_key`), in that order: each
# is removed from every request, to a provider or to an MCP server (stages/mcp/gate.py).
CALLER_CREDENTIAL_HEADERS = ("authorization", "x-api-key", "api-key", "x-goog-api-key")
_INTERNAL = methodcaller("startswith", INTERNAL_HEADER_PREFIX)
# Google's clients may send their key as a query parameter instead.
_QUERY_KEY = "key="
# What the log line keeps of a caller's own request id.
MAX_CLIENT_ID_CHARS = 128


class Admission(Stage):
    """Knows the endpoint, identifies the caller, strips what the caller may not set."""

    name = "admission"
    reads = frozenset({"headers", "request_metadata"})
    writes = frozenset({"endpoint", "key", "log_fields", "method", "path", "provider_kind", "query", "request_id",
                        "resource_id", "tags"})

    def __init__(self, key_ring: KeyRing = KEY_RING) -> None:
        self.key_ring = key_ring      # the keys managed at run time, besides the config file's

    def request_headers(self, call: Call, end_of_stream: bool):
        headers = open_call(call)
        # The caller's own request id, if it sent one, is kept on the log line beside the gateway's.
        client_request_id = headers.get("x-request-id")
        if client_request_id:
            call.log_fields["client_request_id"] = client_request_id[:MAX_CLIENT_ID_CHARS]
        # The gateway's own headers, found in C (a client's SDK sends ~20, usually none of them).
        internal = list(filter(_INTERNAL, headers))
        call.tags = request_tags(headers, internal) if internal else {}
        # Strip first: even a refused request must not leave internal headers behind.
        remove = call.reply.remove_headers
        remove.extend([name for name in CALLER_CREDENTIAL_HEADERS if name in headers])
        remove.extend(internal)

        found = find_endpoint(call.path)
        if found is None:
            raise GatewayError(404, "not_found",
                               f"Unknown path '{call.path[:200]}'. This gateway serves the OpenAI "
                               "API under /v1 (chat/completions, completions, embeddings, "
                               "responses, models, gateway/usage), the same under Azure's /openai/deployments/{model}/, "
                               "Anthropic's (messages, messages/count_tokens, models) and Google's "
                               "(v1beta/ or v1/models/{model}:generateContent, :streamGenerateContent, "
                               ":countTokens, :embedContent and :batchEmbedContents).", type="invalid_request_error")
        endpoint, call.resource_id = found
        # Azure's forms: routed and logged as the OpenAI endpoint (any other path as it is).
        call.path, call.query = client_path(call.path, call.query)
        codec = codec_of(endpoint.kind)
        here = codec.answered_here or codec.reports_own_usage
        if here and "anthropic-version" in headers:
            endpoint = anthropic_shaped(endpoint)
        elif here and google_client(headers, call.query):
            endpoint = google_shaped(endpoint)        # /v1/models, the google-genai SDK's default version
        if call.method not in endpoint.methods:
            allowed = ", ".join(endpoint.methods)
            raise GatewayError(405, "method_not_allowed", f"{call.path[:200]} accepts {allowed} only.",
                               headers={"allow": allowed})
        call.endpoint = endpoint
        call.provider_kind = endpoint.kind
        query_key = ""
        if _QUERY_KEY in call.query:          # a key in the query never goes further than here
            call.query, query_key = without_query_key(call.query)
        _refuse_unreadable_bodies(headers)
        try:
            call.key = self.authenticate(call, query_key)
        except GatewayError as refusal:
            presented = presented_key(call.headers) or query_key
            if refusal.status != 401 or not presented:
                raise
            return self._identified_later(call, refusal, presented, query_key, codec, end_of_stream)
        return _admitted(call, codec, end_of_stream)

    async def _identified_later(self, call: Call, refusal: GatewayError, presented: str, query_key: str, codec,
                                end_of_stream: bool) -> None:
        """For a key this worker does not know, one look in the store before refusing it: a
        key made a moment ago (`extproc keys create` returned) works on the very next call,
        wherever it lands. The key ring bounds the looks (one per unknown key per
        interval, shared by concurrent calls), so a flood of wrong keys costs the store
        little."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        if not await self.key_ring.look_again(digest):
            raise refusal
        call.key = self.authenticate(call, query_key)
        _admitted(call, codec, end_of_stream)

    def authenticate(self, call: Call, query_key: str = ""):
        """The caller's key: a token Envoy verified, a config file key or one made at run time."""
        identity = call.config.identity
        if identity.jwt is not None:          # a token Envoy verified (stages/token_identity.py)
            caller = token_caller(call.request_metadata, identity)
            if caller is not None:
                return caller
        presented = presented_key(call.headers) or query_key
        if not presented:
            raise invalid_api_key(call.dialect)
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        # Lookup by digest, then a constant-time confirmation: timing reveals nothing
        # about how close a near-miss key is to a real one.
        key = call.config.keys_by_hash.get(digest)
        if key is None:
            key = self.key_ring.find(digest)
            if key is None:
                refusal = token_refusal(call.request_metadata, presented, identity) \
                    if identity.jwt is not None else None
                raise refusal or invalid_api_key(call.dialect)
            return key
        if not hmac.compare_digest(key.sha256, digest):
            raise invalid_api_key(call.dialect)
        return key


def _admitted(call: Call, codec, end_of_stream: bool) -> None:
    """What follows the caller's key: the answers given here, the query's problems, a
    request with nothing to route on (`codec`: the endpoint's as the caller called it)."""
    endpoint = call.endpoint
    if codec.answered_here:
        raise ImmediateAnswer(200, listing(call.config, call.key, endpoint, call.resource_id))
    problem = codec.query_problem(endpoint.streams_by_path, call.query)
    if problem is not None:
        raise invalid_request(problem)
    if end_of_stream and (endpoint.generates or codec.counts_tokens):
        # Nothing to route on: without this, Envoy would find no cluster and say 503.
        named = " with a 'model'" if codec.model_in_body and not endpoint.model_in_path else ""
        raise invalid_request(f"The request has no body; send a JSON object{named}.")


def google_client(headers: dict[str, str], query: str) -> bool:
    """Whether a model list's caller is a Google client: its key in Google's header or
    query parameter, or Google's client header (the google-genai SDKs send it)."""
    return "x-goog-api-key" in headers or "x-goog-api-client" in headers or \
        any(part.startswith(_QUERY_KEY) for part in query.split("&"))


def new_request_id() -> str:
    """A random (version 4) UUID as text, as str(uuid.uuid4()) makes it in twice the time."""
    octets = bytearray(os.urandom(16))
    octets[6] = (octets[6] & 0x0F) | 0x40           # version 4
    octets[8] = (octets[8] & 0x3F) | 0x80           # RFC 4122's variant
    digits = octets.hex()
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def open_call(call: Call) -> dict[str, str]:
    """What every pipeline (the model API's, MCP's) reads first: the method, path and
    query; and the request id, which the gateway owns (Envoy generates none:
    envoy/template.yaml): the upstream, the client and the log line see this one."""
    headers = call.headers
    call.method = headers.get(":method", "")
    call.path, _, call.query = headers.get(":path", "").partition("?")
    call.request_id = new_request_id()
    call.reply.set_headers["x-request-id"] = call.request_id
    return headers


# Encodings named back in the refusal (IANA's registry and common ones); any other value
# is not repeated.
_ENCODING_NAMES = frozenset({"gzip", "x-gzip", "deflate", "compress", "x-compress", "br", "zstd", "aes128gcm",
                             "exi", "pack200-gzip", "dcb", "dcz", "snappy", "lz4", "xz", "bzip2"})


def _refuse_unreadable_bodies(headers: dict[str, str]) -> None:
    """A body the gateway cannot read must not pass unread: an encoding Envoy did not
    decompress (gzip, br and zstd arrive decompressed). (gRPC content types never get here:
    envoy/quickstart.yaml answers them 415 itself.)"""
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding and encoding != "identity":
        # Named only when it reads as an encoding's name: a header's value is the caller's
        # text, and errors (and the log lines that carry them) must not repeat any text.
        names = [name.strip() for name in encoding.split(",")]
        named = f" '{encoding}'" if all(name in _ENCODING_NAMES for name in names) else ""
        raise GatewayError(415, "unsupported_content_encoding",
                           f"The request body's content-encoding{named} is not supported; send it "
                           "uncompressed, or compressed with gzip, br or zstd.", type="invalid_request_error")


def presented_key(headers: dict[str, str]) -> str:
    """The key a caller presents: a Bearer token, else `x-api-key` (Anthropic's clients), else
    `api-key` (Azure's). Another scheme in Authorization (Basic, say, added by a proxy on
    the way) does not hide the others."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        # Only HTTP's own whitespace (space, tab) surrounds a token; anything else
        # (a no-break space, say) makes it a different key.
        return token.strip(" \t")
    return next((headers[name] for name in CALLER_CREDENTIAL_HEADERS[1:] if headers.get(name)), "").strip(" \t")


def without_query_key(query: str) -> tuple[str, str]:
    """The query without its `key` parameter (Google's form), and that key."""
    kept, key = [], ""
    for part in query.split("&"):
        if part.startswith(_QUERY_KEY):
            key = unquote(part[len(_QUERY_KEY):])
        elif part:
            kept.append(part)
    return "&".join(kept), key
