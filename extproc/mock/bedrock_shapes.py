"""Bodies and event-stream frames of the mock's Bedrock routes, shaped like the
recordings in mock/recordings/provider-recordings (bedrock-*.yaml): Converse's JSON with
its keys sorted as Bedrock writes them, ConverseStream's events (each payload padded with
the random `p` field Bedrock adds), InvokeModel's Anthropic message with Bedrock's `bdrk`
ids and usage, its stream as `chunk` events carrying each Anthropic event base64-encoded,
Bedrock's errors, what Bedrock's validation says of a Converse or Anthropic body, and
what the routes read of a request (the Claude model an id names, Converse's texts) or of
a recording (its event stream's frames)."""

from __future__ import annotations

import base64
import json
import re
import struct
import uuid
from dataclasses import dataclass

import orjson

from ..api import provider_json
from ..api.eventstream import encode_message
from .anthropic_shapes import Answer, Platform, ReportedUsage, message_json, new_id

# Where an error comes from, as x-amzn-ErrorType names it: Bedrock's own checks, or the
# AWS front door's (signatures, credentials).
BEDROCK_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"
SERVICE_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.coral.service/"
# x-mock-status -> Bedrock's exception and its words.
STATUS_ERRORS = {
    400: ("ValidationException", "Malformed input request, please reformat your input and try again."),
    403: ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
    404: ("ResourceNotFoundException", "The requested resource could not be found."),
    408: ("ModelTimeoutException", "Model has timed out in processing the request. Try your request again."),
    424: ("ModelErrorException", "The model encountered an error while processing the request."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "The system encountered an unexpected error during processing. "
                                     "Try your request again."),
    503: ("ServiceUnavailableException", "Bedrock is unable to process your request."),
}
# x-mock-stream-exception -> the message of the in-stream exception of that type.
STREAM_EXCEPTIONS = {"throttlingException": STATUS_ERRORS[429][1], "internalServerException": STATUS_ERRORS[500][1],
                     "serviceUnavailableException": STATUS_ERRORS[503][1],
                     "modelStreamErrorException": "The model stream encountered an error. Try your request again.",
                     "validationException": STATUS_ERRORS[400][1],
                     "modelTimeoutException": STATUS_ERRORS[408][1]}
# Claude through InvokeModel (see bedrock-invoke-anthropic.yaml): `bdrk` ids; the message has
# no stop_details and its usage no service tier or geography (strip_anthropic removes them).
BEDROCK = Platform("msg_bdrk_01", "toolu_bdrk_01", "req_bdrk_011C", detailed_usage=True)
_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# A Claude model id, cross-region prefix (us., eu., global., ...) and version suffix around its name.
_CLAUDE = re.compile(r"(?:[a-z]{2,6}\.)?anthropic\.(?P<name>claude[\w.:-]*?)(?:-v\d+(?::\d+)?)?")
_CONTENT_BLOCKS = ("text", "image", "document", "video", "audio", "toolUse", "toolResult", "guardContent",
                   "cachePoint", "reasoningContent", "citationsContent", "searchResult")


def request_id() -> str:
    return str(uuid.uuid4())


def error_headers(error_type: str, namespace: str = BEDROCK_NAMESPACE) -> dict[str, str]:
    return {"x-amzn-RequestId": request_id(), "x-amzn-ErrorType": f"{error_type}:{namespace}"}


def status_error(status: int) -> tuple[str, str]:
    """The exception and message Bedrock answers this status with (x-mock-status)."""
    if status in STATUS_ERRORS:
        return STATUS_ERRORS[status]
    return ("ValidationException" if status < 500 else "InternalServerException", f"Mock failure {status}.")


def _dumps(value: dict) -> bytes:
    """JSON with its keys sorted, as Bedrock writes them; a lone surrogate (a piece of
    x-mock-chunk-units) kept as an escape, which orjson refuses."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class ConverseAnswer:
    """One Converse answer: the text, or a call of `tool` with input {"text": text}."""
    text: str
    stop_reason: str
    usage: ReportedUsage
    tool: str | None = None
    cache_reported: bool = False        # x-mock-cached-tokens given: report cache reads and writes


def converse_usage(answer: ConverseAnswer) -> dict:
    """Converse's usage: `inputTokens` leaves out cache reads and writes; the total has them."""
    usage = answer.usage
    reported = {"inputTokens": usage.fresh, "outputTokens": usage.output, "serverToolUsage": {},
                "totalTokens": usage.fresh + usage.cache_read + usage.cache_write + usage.output}
    if answer.cache_reported:
        reported.update(cacheReadInputTokens=usage.cache_read, cacheWriteInputTokens=usage.cache_write)
    return reported


def tool_use_id() -> str:
    return "tooluse_" + new_id("", 22)


def converse_json(answer: ConverseAnswer, latency_ms: int) -> bytes:
    """Converse's JSON answer (bedrock-converse.yaml)."""
    if answer.tool:
        block: dict = {"toolUse": {"input": {"text": answer.text}, "name": answer.tool, "toolUseId": tool_use_id()}}
    else:
        block = {"text": answer.text}
    return _dumps({"metrics": {"latencyMs": latency_ms},
                   "output": {"message": {"content": [block], "role": "assistant"}},
                   "stopReason": answer.stop_reason, "usage": converse_usage(answer)})


def event(event_type: str, payload: dict, number: int) -> bytes:
    """One event frame, its JSON padded with a `p` field (0-61 characters, varied but
    reproducible, as Bedrock's random ones are: readers must ignore it)."""
    padded = {**payload, "p": _PADDING[:(number * 23 + 11) % 62]}
    return encode_message({":event-type": event_type, ":content-type": "application/json",
                           ":message-type": "event"}, _dumps(padded))


def exception_frame(exception_type: str) -> bytes:
    """An in-stream exception (`:message-type: exception`), as Bedrock ends a failing stream."""
    message = STREAM_EXCEPTIONS.get(exception_type, "Mock stream exception.")
    return encode_message({":exception-type": exception_type, ":content-type": "application/json",
                           ":message-type": "exception"}, orjson.dumps({"message": message}))


def converse_events(answer: ConverseAnswer, pieces: list[str], latency_ms: int) -> list[tuple[str, dict]]:
    """ConverseStream's events (bedrock-converse-stream.yaml): messageStart, the block (a
    toolUse's start first), its deltas, contentBlockStop, messageStop, metadata."""
    events: list[tuple[str, dict]] = [("messageStart", {"role": "assistant"})]
    if answer.tool:
        start = {"toolUse": {"name": answer.tool, "toolUseId": tool_use_id()}}
        events.append(("contentBlockStart", {"contentBlockIndex": 0, "start": start}))
        deltas: list[dict] = [{"toolUse": {"input": piece}} for piece in pieces]
    else:
        deltas = [{"text": piece} for piece in pieces]
    events.extend(("contentBlockDelta", {"contentBlockIndex": 0, "delta": delta}) for delta in deltas)
    events += [("contentBlockStop", {"contentBlockIndex": 0}), ("messageStop", {"stopReason": answer.stop_reason}),
               ("metadata", {"metrics": {"latencyMs": latency_ms}, "usage": converse_usage(answer)})]
    return events


def first_of(events: list[tuple[str, dict]], event_type: str) -> int:
    """The index of the first event of this type (the stream's first delta)."""
    return next(index for index, (kind, _) in enumerate(events) if kind == event_type)


def frames_of(events: list[tuple[str, dict]], exception: str | None = None, after: int = 0) -> list[bytes]:
    """The events as frames; with `exception`, an exception frame follows event number
    `after` and the stream ends there."""
    frames = [event(event_type, payload, number) for number, (event_type, payload) in enumerate(events)]
    return [*frames[:after + 1], exception_frame(exception)] if exception else frames


# --- Claude through InvokeModel -------------------------------------------------------------------

def strip_anthropic(message: dict) -> dict:
    """An Anthropic message (or message_start's) as Bedrock returns it: no stop_details,
    usage without the service tier and geography."""
    message.pop("stop_details", None)
    usage = message.get("usage")
    if isinstance(usage, dict):
        usage.pop("service_tier", None)
        usage.pop("inference_geo", None)
    return message


def invoke_json(answer: Answer) -> bytes:
    """InvokeModel's answer (bedrock-invoke-anthropic.yaml): Anthropic's message, stripped."""
    message = provider_json.loads(message_json(answer))
    return provider_json.dumps(strip_anthropic(message) if isinstance(message, dict) else {})


def invocation_metrics(usage: ReportedUsage, latency_ms: int) -> dict:
    """What Bedrock adds to the last event of a streamed invocation."""
    metrics = {"inputTokenCount": usage.fresh, "outputTokenCount": usage.output,
               "invocationLatency": latency_ms, "firstByteLatency": latency_ms}
    if usage.cache_read or usage.cache_write:
        metrics.update(cacheReadInputTokenCount=usage.cache_read, cacheWriteInputTokenCount=usage.cache_write)
    return metrics


def sse_data(frame: bytes) -> dict | None:
    """The JSON of one Anthropic SSE frame's `data:` line; None for a ping (Bedrock does not
    forward Anthropic's pings)."""
    for line in frame.split(b"\n"):
        if line.startswith(b"data:"):
            data = provider_json.loads(line[5:])
            return None if not isinstance(data, dict) or data.get("type") == "ping" else data
    return None


def chunk_events(sse_frames: list[bytes], metrics: dict) -> tuple[list[tuple[str, dict]], int]:
    """InvokeModelWithResponseStream's events: each Anthropic event's JSON, base64-encoded,
    in a `chunk` event's `bytes`; message_stop carries the invocation's metrics. With them,
    the index of the first content_block_delta (where x-mock-stream-exception cuts in)."""
    events: list[tuple[str, dict]] = []
    first_delta = 0
    for frame in sse_frames:
        data = sse_data(frame)
        if data is None:
            continue
        if data["type"] == "message_start":
            strip_anthropic(data["message"])
        elif data["type"] == "message_delta":
            data["delta"].pop("stop_details", None)
        elif data["type"] == "message_stop":
            data["amazon-bedrock-invocationMetrics"] = metrics
        elif data["type"] == "content_block_delta" and not first_delta:
            first_delta = len(events)
        events.append(("chunk", {"bytes": base64.b64encode(provider_json.dumps(data)).decode()}))
    return events, first_delta


# --- what Bedrock's validation says -------------------------------------------------------------

def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _inference_problems(config: object) -> list[str]:
    """inferenceConfig's members against their types and ranges, in AWS's constraint words."""
    if config is None:
        return []
    if not isinstance(config, dict):
        return [f"Value '{config}' at 'inferenceConfig' failed to satisfy constraint: Member must be a structure"]
    problems = []
    tokens = config.get("maxTokens")
    if tokens is not None and not (_is_int(tokens) and tokens >= 1):
        need = "have value greater than or equal to 1" if _is_int(tokens) else "be an integer"
        problems.append(f"Value '{tokens}' at 'inferenceConfig.maxTokens' failed to satisfy constraint: "
                        f"Member must {need}")
    for name in ("temperature", "topP"):
        value = config.get(name)
        if value is not None and not (_is_number(value) and 0 <= value <= 1):
            need = "have value between 0 and 1" if _is_number(value) else "be a number"
            problems.append(f"Value '{value}' at 'inferenceConfig.{name}' failed to satisfy constraint: "
                            f"Member must {need}")
    stops = config.get("stopSequences")
    if stops is not None and not (isinstance(stops, list) and all(isinstance(s, str) and s for s in stops)):
        problems.append("Value at 'inferenceConfig.stopSequences' failed to satisfy constraint: "
                        "Member must be a list of non-empty strings")
    return problems


def _content_problem(index: int, content: object) -> str | None:
    if not isinstance(content, list) or not content:
        return (f"The content field in the Message object at messages.{index} is empty. "
                "Add a ContentBlock object to the content field and try again.")
    for number, block in enumerate(content):
        where = f"messages.{index}.content.{number}"
        if not isinstance(block, dict) or len(block) != 1 or next(iter(block)) not in _CONTENT_BLOCKS:
            return (f"The ContentBlock object at {where} must set exactly one of its members "
                    f"({', '.join(_CONTENT_BLOCKS)}); it sets {list(block) if isinstance(block, dict) else block!r}.")
        if "text" in block and (not isinstance(block["text"], str) or not block["text"].strip()):
            return (f"The text field in the ContentBlock object at {where} is blank. "
                    "Add text to the text field, and try again.")
    return None


def converse_problem(body: object) -> str | None:
    """What Bedrock's validation says of a Converse body; None for one it accepts."""
    if not isinstance(body, dict):
        return ("Malformed input request: the request body must be a JSON object, "
                "please reformat your input and try again.")
    messages = body.get("messages")
    if not isinstance(messages, list):
        what = "null" if messages is None else f"'{messages}'"
        return (f"1 validation error detected: Value {what} at 'messages' failed to satisfy constraint: "
                "Member must be a list")
    problems = _inference_problems(body.get("inferenceConfig"))
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    problems += [f"Value '{role}' at 'messages.{number + 1}.member.role' failed to satisfy constraint: "
                 "Member must satisfy enum value set: [user, assistant]"
                 for number, role in enumerate(roles) if role not in ("user", "assistant")]
    if problems:
        count = len(problems)
        return f"{count} validation error{'s' if count > 1 else ''} detected: " + "; ".join(problems)
    if not messages or roles[0] != "user":
        return ("A conversation must start with a user message. "
                "Try again with a conversation that starts with a user message.")
    if any(a == b for a, b in zip(roles, roles[1:])):
        return ("A conversation must alternate between user and assistant roles. "
                "Make sure the conversation alternates between user and assistant roles and try again.")
    for index, message in enumerate(messages):
        problem = _content_problem(index, message.get("content"))
        if problem:
            return problem
    return None


ANTHROPIC_VERSION = "bedrock-2023-05-31"
_JSON_TYPES = {int: "Integer", float: "Number", str: "String", list: "JSONArray", dict: "JSONObject",
               bool: "Boolean", type(None): "null"}


def invoke_problem(body: object) -> str | None:
    """What Bedrock says of an Anthropic body for InvokeModel, its JSON Schema validator's
    findings joined as it joins them; None for a body it accepts."""
    if not isinstance(body, dict):
        found = _JSON_TYPES.get(type(body), "unknown")
        return (f"Malformed input request: #: expected type: JSONObject, found: {found}, "
                "please reformat your input and try again.")
    problems = [f"#: required key [{key}] not found" for key in ("anthropic_version", "max_tokens", "messages")
                if key not in body]
    problems += [f"#: extraneous key [{key}] is not permitted" for key in ("model", "stream") if key in body]
    version = body.get("anthropic_version", ANTHROPIC_VERSION)
    if version != ANTHROPIC_VERSION:
        problems.append(f"#/anthropic_version: {version} is not a valid enum value")
    for key, expected in (("max_tokens", int), ("messages", list)):
        if key in body and (not isinstance(body[key], expected) or isinstance(body[key], bool)):
            found = _JSON_TYPES.get(type(body[key]), "unknown")
            problems.append(f"#/{key}: expected type: {_JSON_TYPES[expected]}, found: {found}")
    if not problems:
        return None
    return "Malformed input request: " + "".join(problems) + ", please reformat your input and try again."


# --- what a request holds, what a recording holds -------------------------------------------------

def claude_model(model_id: str) -> str | None:
    """The name a Claude answer gives for a Bedrock model id (an inference profile's ARN
    too); None for a model that is not Claude."""
    match = _CLAUDE.fullmatch(model_id.rsplit("/", 1)[-1])
    return match["name"] if match else None


def converse_texts(body: dict) -> tuple[list[str], int]:
    """A Converse request's texts (system, text blocks, tool results' texts) and its turns."""
    texts = [block["text"] for block in body.get("system") or () if isinstance(block, dict)
             and isinstance(block.get("text"), str)]
    for message in body["messages"]:
        for block in message["content"]:
            if isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif isinstance(block.get("toolResult"), dict):
                texts.extend(part["text"] for part in block["toolResult"].get("content") or ()
                             if isinstance(part, dict) and isinstance(part.get("text"), str))
    return texts, len(body["messages"])


def last_user_text(body: dict) -> str:
    """What Converse echoes: the last user turn's text blocks joined."""
    for message in reversed(body["messages"]):
        if message["role"] == "user":
            return "".join(block["text"] for block in message["content"] if isinstance(block.get("text"), str))
    return ""


def recorded_frames(body: bytes) -> list[bytes]:
    """A recorded event stream cut into its messages (each prelude's total length), so the
    stream faults act per frame; what follows a cut is kept as one last piece."""
    frames, at = [], 0
    while at + 4 <= len(body):
        (total,) = struct.unpack_from(">I", body, at)
        frames.append(body[at:at + max(total, 4)])
        at += max(total, 4)
    return frames + ([body[at:]] if at < len(body) else [])
