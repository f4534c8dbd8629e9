"""Every refusal the gateway makes goes through here, in the caller's dialect.

OpenAI's callers get the contract's `{"error": {"message", "type", "code"}}`, Anthropic's
`{"type": "error", "error": {"type", "message"}}` with Anthropic's type for the status.
The message never carries caller input that could be secret (keys, matched text).
"""

from __future__ import annotations

import difflib
from typing import Iterable

import orjson

from ..dialects import dialect_named


class GatewayError(Exception):
    """A refusal with its HTTP status; raised by pipeline stages, answered by Envoy."""

    def __init__(self, status: int, code: str, message: str, *, type: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.type = type or _TYPE_BY_STATUS.get(status, "api_error")
        self.headers = headers or {}

    def body(self, dialect: str = "openai", request_id: str | None = None) -> bytes:
        return dialect_named(dialect).error_body(self.status, self.message, self.type, self.code, request_id)


_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def error_body(message: str, type: str, code: str | None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type, "code": code}})


def invalid_request(message: str) -> GatewayError:
    return GatewayError(400, "invalid_request", message)


def invalid_api_key(dialect: str = "openai") -> GatewayError:
    return GatewayError(401, "invalid_api_key",
                        f"Missing or unknown API key. Send it as {dialect_named(dialect).key_hint}.")


def model_not_found(model: str, known: Iterable[str] = ()) -> GatewayError:
    """404 for a model name nobody configured; `known`: the names the caller may use, of
    which the closest (a typo's intended name) are suggested."""
    closest = difflib.get_close_matches(model[:200], list(known), n=3, cutoff=0.6) if model else []
    hint = f" Did you mean {' or '.join(repr(name) for name in closest)}?" if closest else ""
    return GatewayError(404, "model_not_found", f"The model '{_clip(model)}' does not exist.{hint}")


def model_not_allowed(model: str) -> GatewayError:
    return GatewayError(403, "model_not_allowed",
                        f"This API key may not use the model '{_clip(model)}'.")


def model_not_priced(model: str, budget: str) -> GatewayError:
    return GatewayError(403, "model_not_priced",
                        f"The model '{_clip(model)}' has no price, so the USD budget '{budget}' cannot charge "
                        "it; the gateway refuses it until its operators price it (`price:` in the filter config).")


def request_too_large(size: int, largest: int, model: str) -> GatewayError:
    return GatewayError(413, "request_too_large",
                        f"The request body is {size:,} bytes; the providers of the model '{_clip(model)}' "
                        f"accept at most {largest:,} (`max_request_bytes` of the provider).")


def gateway_error(message: str = "The gateway failed to process the request.") -> GatewayError:
    return GatewayError(500, "gateway_error", message, type="api_error")


def _clip(text: str, limit: int = 100) -> str:
    """Model names are echoed back; keep a hostile one from bloating the error."""
    return text if len(text) <= limit else text[:limit] + "…"
