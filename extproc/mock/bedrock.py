"""The mock's AWS Bedrock surface, as bedrock-runtime serves it:
  POST /model/{modelId}/converse                      Converse: JSON
  POST /model/{modelId}/converse-stream               ConverseStream: an event stream
  POST /model/{modelId}/invoke                        InvokeModel, Anthropic models: the
  POST /model/{modelId}/invoke-with-response-stream   Messages API answered by anthropic.py,
                                                      streamed as `chunk` events
The model id comes URL-encoded (`amazon.nova-micro-v1%3A0`) or not; either is read.

Every call must be signed with AWS Signature Version 4 by the listener's credentials
(`aws_access_key_id`, `aws_secret_access_key`, `aws_region` in its `mock_provider:` entry;
by default the demo ones below, region us-east-1), service `bedrock`. The signature is
computed again with botocore's signer over what was received (method, raw path and query,
the headers the Authorization header lists, x-amz-date, the body) and compared in constant
time; a refusal is AWS's 403 in its words (x-amzn-ErrorType, `{"message": ...}`): an
unsigned call, an unknown access key, a wrong signature (with the canonical request and
string to sign AWS would have used), a credential scoped elsewhere, a clock more than five
minutes off.

Converse answers the same echo as the other dialects (the last user turn's text blocks);
InvokeModel takes an Anthropic body with `anthropic_version: bedrock-2023-05-31` and no
`model` (the path names it) and answers naming the path's model as Bedrock does
(us.anthropic.claude-haiku-4-5-20251001-v1:0 answers as claude-haiku-4-5-20251001).
Bodies Bedrock would refuse get its 400 ValidationException, failures (x-mock-status)
Bedrock's exception for the status; the shapes are bedrock_shapes.py's.
"""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import hmac
import re
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import orjson
import yaml
from aiohttp import web

from ..api import provider_json
from ..api.tokens import count_prompt, count_text
from .anthropic import ENCODING, compose_answer, first_stop_sequence, recorded_usage, reported_usage
from .anthropic_shapes import stream_events, tool_input
from .bedrock_shapes import (
    BEDROCK,
    BEDROCK_NAMESPACE,
    SERVICE_NAMESPACE,
    ConverseAnswer,
    chunk_events,
    claude_model,
    converse_events,
    converse_json,
    converse_problem,
    converse_texts,
    error_headers,
    first_of,
    frames_of,
    invocation_metrics,
    invoke_json,
    invoke_problem,
    last_user_text,
    recorded_frames,
    request_id,
    status_error,
)
from .echo import cut_to_tokens, stream_pieces
from .listener import Listener, option, record
from .wire import delay_first_byte, find_recording, reset_connection, write_stream, write_truncated

# The demo credentials a listener verifies signatures with unless its config names others:
# published here on purpose, they open nothing but the mock.
DEMO_ACCESS_KEY_ID = "AKIDMOCKBEDROCK0000"
DEMO_SECRET_ACCESS_KEY = "mockBedrockDemoSecretKey/0000000000000000"
DEFAULT_REGION = "us-east-1"
SERVICE = "bedrock"
MAX_CLOCK_SKEW = datetime.timedelta(minutes=5)      # AWS's tolerance for x-amz-date
EVENT_STREAM = "application/vnd.amazon.eventstream"
_AUTHORIZATION = re.compile(r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*"
                            r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-fA-F]+)\s*")
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_MISMATCH = ("The request signature we calculated does not match the signature you provided. Check your AWS "
             "Secret Access Key and signing method. Consult the service documentation for details.")

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)    # libyaml: recordings read ten times faster


@dataclass(frozen=True)
class AwsCredentials:
    """The credentials a listener's Bedrock routes verify signatures with, and its region."""
    access_key_id: str = DEMO_ACCESS_KEY_ID
    secret_access_key: str = DEMO_SECRET_ACCESS_KEY
    region: str = DEFAULT_REGION

    @classmethod
    def from_config(cls, item: dict) -> AwsCredentials:
        """From a `mock_provider:` listener entry's aws_* settings (the demo ones when absent)."""
        return cls(str(item.get("aws_access_key_id") or DEMO_ACCESS_KEY_ID),
                   str(item.get("aws_secret_access_key") or DEMO_SECRET_ACCESS_KEY),
                   str(item.get("aws_region") or DEFAULT_REGION))


def bedrock_error(status: int, error_type: str, message: str, extra: dict[str, str] | None = None,
                  namespace: str | None = None, key: str = "message") -> web.Response:
    """An error as Bedrock answers it: x-amzn-ErrorType names the exception, the body the message."""
    headers = error_headers(error_type, namespace or BEDROCK_NAMESPACE)
    return web.Response(status=status, body=orjson.dumps({key: message}), content_type="application/json",
                        headers={**headers, **(extra or {})})


def refused(error_type: str, message: str, key: str = "message") -> web.Response:
    """A 403 from AWS's front door, before Bedrock sees the call."""
    return bedrock_error(403, error_type, message, namespace=SERVICE_NAMESPACE, key=key)


@functools.cache
def _verifier_class():
    """botocore's SigV4 signer over exactly the headers the request says it signed (its own
    choice leaves some out, e.g. user-agent, that another client may have signed).
    botocore is imported at the first signed call (~0.2 s of CPU): most mock providers
    are started and stopped without one."""
    from botocore.auth import SigV4Auth

    class Verifier(SigV4Auth):
        def __init__(self, credentials, region: str, signed) -> None:
            super().__init__(credentials, SERVICE, region)
            self._signed = signed

        def headers_to_sign(self, request):
            return self._signed
    return Verifier


def signature_refusal(request: web.Request, body: bytes, aws: AwsCredentials,
                      now: datetime.datetime) -> web.Response | None:
    """AWS's 403 for a request not signed by `aws` for Bedrock at about `now`; None when
    its signature holds."""
    authorization = request.headers.get("authorization")
    if authorization is None:
        return refused("AccessDeniedException", "Authorization header is missing", key="Message")
    match = _AUTHORIZATION.fullmatch(authorization.strip())
    if match is None:
        return refused("IncompleteSignatureException",
                       "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters "
                       f"of an AWS4-HMAC-SHA256 signature. Authorization={authorization[:40]}")
    credential, signed = match["credential"], match["signed"].lower().split(";")
    scope = credential.split("/")
    if len(scope) != 5:
        return refused("IncompleteSignatureException", "Credential must have exactly 5 slash-delimited elements, "
                                                       f"e.g. keyid/date/region/service/term, got '{credential}'")
    key_id, day, region, service, terminator = scope
    if key_id != aws.access_key_id:
        return refused("UnrecognizedClientException", "The security token included in the request is invalid.")
    if terminator != "aws4_request":
        return refused("InvalidSignatureException",
                       f"Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'.")
    if service != SERVICE:
        return refused("InvalidSignatureException", f"Credential should be scoped to correct service: '{SERVICE}'. ")
    if region != aws.region:
        return refused("InvalidSignatureException", f"Credential should be scoped to a valid region, not '{region}'. ")
    stamp = request.headers.get("x-amz-date", "")
    try:
        signed_at = datetime.datetime.strptime(stamp, _AMZ_DATE).replace(tzinfo=datetime.UTC)
    except ValueError:
        return refused("IncompleteSignatureException",
                       "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    if day != stamp[:8]:
        return refused("InvalidSignatureException",
                       "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                       f"'{day}' != '{stamp[:8]}', from '{stamp}'.")
    if signed_at < now - MAX_CLOCK_SKEW:
        return refused("InvalidSignatureException", f"Signature expired: {stamp} is now earlier than "
                                                    f"{(now - MAX_CLOCK_SKEW).strftime(_AMZ_DATE)} "
                                                    f"({now.strftime(_AMZ_DATE)} - 5 min.)")
    if signed_at > now + MAX_CLOCK_SKEW:
        return refused("InvalidSignatureException", f"Signature not yet current: {stamp} is still later than "
                                                    f"{(now + MAX_CLOCK_SKEW).strftime(_AMZ_DATE)} "
                                                    f"({now.strftime(_AMZ_DATE)} + 5 min.)")
    if "host" not in signed:
        return refused("InvalidSignatureException",
                       "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
    claimed = request.headers.get("x-amz-content-sha256")
    if claimed not in (None, "UNSIGNED-PAYLOAD", hashlib.sha256(body).hexdigest()):
        return refused("InvalidSignatureException",
                       "The provided 'x-amz-content-sha256' header does not match what was computed.")
    from botocore.awsrequest import AWSRequest
    from botocore.compat import HTTPHeaders
    from botocore.credentials import Credentials

    headers = HTTPHeaders()
    for name in signed:
        for value in request.headers.getall(name, ()):
            headers[name] = value                   # HTTPHeaders adds: a repeated header keeps each value
    wire = AWSRequest(method=request.method, url=f"https://{request.headers.get('host', '')}{request.raw_path}",
                      data=body, headers={"X-Amz-Content-SHA256": claimed} if claimed else None)
    wire.context["timestamp"] = stamp
    verifier = _verifier_class()(Credentials(aws.access_key_id, aws.secret_access_key), region, headers)
    canonical = verifier.canonical_request(wire)
    string_to_sign = verifier.string_to_sign(wire, canonical)
    if hmac.compare_digest(verifier.signature(string_to_sign, wire), match["signature"].lower()):
        return None
    return refused("InvalidSignatureException", f"{_MISMATCH}\n\nThe Canonical String for this request should have "
                                                f"been\n'{canonical}'\n\nThe String-to-Sign should have been\n"
                                                f"'{string_to_sign}'\n")


@functools.cache
def _recorded_response(path: Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_LOADER)["interactions"][0]["response"]  # noqa: S506


class BedrockRoutes:
    """The Bedrock handlers of one listener. Each request is recorded, its signature
    checked, then the faults act (reset, delay, status, replay), then the body is
    validated and answered."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.aws = AwsCredentials.from_config(listener.aws)

    def add_to(self, app: web.Application) -> None:
        for operation, handler in (("converse", self.converse), ("converse-stream", self.converse_stream),
                                   ("invoke", self.invoke), ("invoke-with-response-stream", self.invoke_stream)):
            app.router.add_post("/model/{model_id:.+}/" + operation, handler)

    async def converse(self, request: web.Request) -> web.StreamResponse:
        return await self._converse(request, streamed=False)

    async def converse_stream(self, request: web.Request) -> web.StreamResponse:
        return await self._converse(request, streamed=True)

    async def invoke(self, request: web.Request) -> web.StreamResponse:
        return await self._invoke(request, streamed=False)

    async def invoke_stream(self, request: web.Request) -> web.StreamResponse:
        return await self._invoke(request, streamed=True)

    async def _received(self, request: web.Request) -> tuple[bytes, dict, web.StreamResponse | None]:
        """The body, its record, and the answer given before it is read (a refused
        signature, a fault), if any."""
        raw = await request.read()
        entry = record(self.listener, request, raw)
        refusal = signature_refusal(request, raw, self.aws, datetime.datetime.now(datetime.UTC))
        return raw, entry, refusal or await self._faults(request)

    async def _faults(self, request: web.Request) -> web.StreamResponse | None:
        listener = self.listener
        if option(listener, request, "reset"):
            reset_connection(request)
            return web.Response(status=500)
        await delay_first_byte(listener, request)
        status = option(listener, request, "status")
        if status and int(status) >= 400:
            error_type, message = status_error(int(status))
            retry_after = option(listener, request, "retry-after")
            return bedrock_error(int(status), error_type, message,
                                 {"retry-after": retry_after} if retry_after else None)
        name = option(listener, request, "replay")
        return await self._replay(request, name) if name else None

    async def _replay(self, request: web.Request, name: str) -> web.StreamResponse:
        """A recording's response: its status, body (base64 decoded when the recording says
        so) and AWS headers; an event stream frame by frame, so the stream faults apply."""
        path = find_recording(self.listener.fixtures, name)
        if path is None:
            return bedrock_error(400, "ValidationException", f"unknown recording {name!r}")
        recorded = _recorded_response(path)
        headers = {key.lower(): values[0] if isinstance(values, list) else str(values)
                   for key, values in (recorded.get("headers") or {}).items()}
        carried = {key: values[0] if isinstance(values, list) else str(values)
                   for key, values in (recorded.get("headers") or {}).items() if key.lower().startswith("x-amzn-")}
        body = recorded["body"].encode()
        if headers.get("x-fixture-body-encoding") == "base64":
            body = base64.b64decode(body)
        content_type = headers.get("content-type", "application/json")
        if content_type == EVENT_STREAM:
            return await write_stream(self.listener, request, recorded_frames(body),
                                      {**carried, "content-type": content_type})
        return web.Response(status=recorded.get("code", 200), body=body,
                            headers={**carried, "content-type": content_type})

    def _converse_answer(self, request: web.Request, body: dict) -> ConverseAnswer:
        """The echo within inferenceConfig's maxTokens and before its first stop sequence,
        or a call of x-mock-tool-call's tool with it as input."""
        listener, config = self.listener, body.get("inferenceConfig") or {}
        echo, tool = last_user_text(body), option(listener, request, "tool-call")
        stop = None if tool else first_stop_sequence(echo, config.get("stopSequences"))
        text, cut = cut_to_tokens(echo[:stop[0]] if stop else echo, config.get("maxTokens"), ENCODING)
        stop_reason = "max_tokens" if cut else "stop_sequence" if stop else "tool_use" if tool else "end_turn"
        output = count_text(tool_input(text) if tool else text, ENCODING)
        usage = reported_usage(listener, request, count_prompt(*converse_texts(body), ENCODING), output)
        cached = any(option(listener, request, name) for name in ("cached-tokens", "cache-write-tokens"))
        return ConverseAnswer(text, stop_reason, usage, tool, cache_reported=cached)

    async def _converse(self, request: web.Request, streamed: bool) -> web.StreamResponse:
        started = time.monotonic()
        raw, entry, early = await self._received(request)
        if early is not None:
            return early
        body = provider_json.loads(raw)
        problem = converse_problem(body)
        if problem or not isinstance(body, dict):
            return bedrock_error(400, "ValidationException", problem or "")
        listener = self.listener
        answer = self._converse_answer(request, body)
        exception = option(listener, request, "stream-exception") if streamed else None
        if not exception:
            entry["usage"] = recorded_usage(answer.usage)
        latency = max(1, int((time.monotonic() - started) * 1000))
        headers = {"x-amzn-RequestId": request_id()}
        if streamed:
            pieces = stream_pieces(listener, request, tool_input(answer.text) if answer.tool else answer.text)
            events = converse_events(answer, pieces, latency)
            frames = frames_of(events, exception, first_of(events, "contentBlockDelta"))
            return await write_stream(listener, request, frames, {**headers, "content-type": EVENT_STREAM})
        reply = converse_json(answer, latency)
        truncate = option(listener, request, "truncate")
        if truncate:
            return await write_truncated(request, reply, int(truncate))
        return web.Response(body=reply, content_type="application/json", headers=headers)

    async def _invoke(self, request: web.Request, streamed: bool) -> web.StreamResponse:
        started = time.monotonic()
        raw, entry, early = await self._received(request)
        if early is not None:
            return early
        model_id = urllib.parse.unquote(request.match_info["model_id"])
        model = claude_model(model_id)
        if model is None:
            return bedrock_error(400, "ValidationException",
                                 "This mock answers InvokeModel for Anthropic models only (anthropic.*, "
                                 f"us.anthropic.*, ...), not {model_id}: call Converse for it.")
        body = provider_json.loads(raw)
        problem = invoke_problem(body)
        if problem or not isinstance(body, dict):
            return bedrock_error(400, "ValidationException", problem or "")
        listener = self.listener
        answer = compose_answer(listener, request, {**body, "model": model}, BEDROCK)
        exception = option(listener, request, "stream-exception") if streamed else None
        if not exception:
            entry["usage"] = recorded_usage(answer.usage)
        latency = max(1, int((time.monotonic() - started) * 1000))
        if streamed:
            sse = stream_events(answer, lambda text: stream_pieces(listener, request, text))
            events, first_delta = chunk_events(sse, invocation_metrics(answer.usage, latency))
            return await write_stream(listener, request, frames_of(events, exception, first_delta),
                                      {"x-amzn-RequestId": request_id(), "content-type": EVENT_STREAM,
                                       "X-Amzn-Bedrock-Content-Type": "application/json"})
        usage = answer.usage
        headers = {"x-amzn-RequestId": request_id(), "X-Amzn-Bedrock-Invocation-Latency": str(latency),
                   "X-Amzn-Bedrock-Output-Token-Count": str(usage.output),
                   "X-Amzn-Bedrock-Input-Token-Count": str(usage.fresh)}
        if usage.cache_read or usage.cache_write:
            headers.update({"X-Amzn-Bedrock-Cache-Read-Input-Token-Count": str(usage.cache_read),
                            "X-Amzn-Bedrock-Cache-Write-Input-Token-Count": str(usage.cache_write)})
        reply = invoke_json(answer)
        truncate = option(listener, request, "truncate")
        if truncate:
            return await write_truncated(request, reply, int(truncate))
        return web.Response(body=reply, content_type="application/json", headers=headers)
