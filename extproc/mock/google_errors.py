"""Errors as Google's APIs send them (the Gemini API, Vertex AI): a google.rpc.Status
body, `{"error": {"code", "message", "status", "details"}}`, pretty-printed, with the
canonical status name for its HTTP code (see provider-recordings/gemini-error-400.yaml,
whose bytes `api_key_invalid` reproduces)."""

from __future__ import annotations

from aiohttp import web

from .gemini_shapes import pretty

# The canonical code Google maps each HTTP status to.
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL",
                501: "UNIMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
# What Google says with each, for x-mock-status.
FAILURE_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    429: "You exceeded your current quota, please check your plan and billing details. For more information on "
         "this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
    500: "An internal error has occurred. Please retry or report in "
         "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}
VERTEX_QUOTA = ("Resource exhausted. Please try again later. Please refer to "
                "https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.")
JSON = "application/json; charset=UTF-8"


def status_name(code: int) -> str:
    return STATUS_NAMES.get(code) or ("FAILED_PRECONDITION" if 400 <= code < 500 else "UNKNOWN")


def error_body(code: int, message: str, details: list[dict] | tuple[dict, ...] = ()) -> bytes:
    error: dict = {"code": code, "message": message, "status": status_name(code)}
    if details:
        error["details"] = list(details)
    return pretty({"error": error})


def error(code: int, message: str, details: list[dict] | tuple[dict, ...] = (),
          headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=code, body=error_body(code, message, details), headers={"content-type": JSON,
                                                                                      **(headers or {})})


def failure(code: int, retry_after: str | None, vertex: bool = False) -> web.Response:
    """x-mock-status's answer. A 429 carries the delay to wait (RetryInfo) when
    x-mock-retry-after gives one, and the retry-after header every dialect sends then."""
    message = VERTEX_QUOTA if vertex and code == 429 else FAILURE_MESSAGES.get(code, f"Mock failure {code}.")
    details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after}s"}] \
        if code == 429 and retry_after else []
    return error(code, message, details, {"retry-after": retry_after} if retry_after else None)


def _error_info(reason: str, service: str, metadata: dict[str, str] | None = None) -> dict:
    return {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com",
            "metadata": {"service": service, **(metadata or {})}}


def api_key_invalid() -> web.Response:
    """The Gemini API's answer to a wrong key, as recorded."""
    message = "API key not valid. Please pass a valid API key."
    return error(400, message, [_error_info("API_KEY_INVALID", "generativelanguage.googleapis.com"),
                                {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
                                 "message": message}])


def api_key_missing() -> web.Response:
    """The Gemini API's answer to a call without a key."""
    return error(403, "Method doesn't allow unregistered callers (callers without established identity). "
                      "Please use API Key or other form of API consumer identity to call this API.")


_CREDENTIALS = ("Expected OAuth 2 access token, login cookie or other valid authentication credential. "
                "See https://developers.google.com/identity/sign-in/web/devconsole-project.")


def unauthenticated(reason: str, method: str) -> web.Response:
    """Vertex AI's 401 for a call without a valid access token: `reason` is
    CREDENTIALS_MISSING (none sent), ACCESS_TOKEN_EXPIRED or ACCESS_TOKEN_TYPE_UNSUPPORTED
    (one it does not know); `method` the RPC called."""
    message = ("Request is missing required authentication credential. " if reason == "CREDENTIALS_MISSING"
               else "Request had invalid authentication credentials. ") + _CREDENTIALS
    return error(401, message, [_error_info(reason, "aiplatform.googleapis.com", {"method": method})],
                 {"www-authenticate": 'Bearer realm="https://accounts.google.com/"'})
