"""AWS Bedrock's dialect: its errors ({"message": ...}, the exception named in the
x-amzn-ErrorType header) and model list (ListFoundationModels' `modelSummaries`), and its one
generating endpoint, Converse.

A request names its model in the path (/model/{modelId}/converse), never in the body, and
streams by the path too (/converse-stream); its output cap is `inferenceConfig.maxTokens`,
optional (the model's own default applies). A stream is AWS's binary event stream, read by
the gateway's framing into one JSON payload per message: messageStart, contentBlockStart (a
tool call's id and name), contentBlockDelta, contentBlockStop, messageStop (the stop
reason), metadata (the usage); a failure is an exception message. Translation:
converse_request.py (with converse_content.py), converse_answer.py, converse_stream.py.

Not offered for a Bedrock stream: `final_usage` (the gateway writes the cost into the last
usage event as SSE JSON) and the stream guardrails' text pieces (`stream_pieces`, written
again as SSE events); a Bedrock stream is binary, so its events pass as they came.
"""

from __future__ import annotations

from typing import Any, Iterator

import orjson

from ...api import provider_json
from ...api.usage import Usage
from . import converse_answer
from . import converse_request
from . import converse_stream
from .. import request_parts
from ..base import Codec, Dialect, Translating
from .converse_answer import error_body, usage_from
from .converse_content import vendor_of
from .converse_stream import exception_frame

# Headers of Anthropic's API: Converse has no use for them.
_ANTHROPIC_HEADERS = ("anthropic-version", "anthropic-beta")


class Bedrock(Dialect):
    name = "bedrock"
    generation_kind = "converse"
    described = "AWS Bedrock's Converse API"
    reports_stream_usage = True     # every stream ends with a metadata event holding its usage
    needs_output_cap = False
    # AWS's `x-amz-*` / `x-amzn-*` headers: a security token (whose role signs, when Envoy's
    # credentials carry none of their own), the requester who pays, the account's
    # guardrails and tiers. Envoy's signer adds its own x-amz-date, x-amz-security-token
    # and x-amz-content-sha256 after the gateway's filter has run.
    account_header_prefixes = ("x-amz-", "x-amzn-")

    def error_body(self, status: int, message: str, type: str, code: str | None,
                   request_id: str | None = None) -> bytes:
        return error_body(message)

    def error_event(self, message: str, code: str) -> bytes:
        """An exception message that ends a Bedrock caller's event stream."""
        return exception_frame("invalid_request_error", message)

    def model_entry(self, name: str, created: int) -> dict:
        return {"modelId": name, "modelName": name, "providerName": vendor_of(name) or "unknown",
                "inputModalities": ["TEXT"], "outputModalities": ["TEXT"], "responseStreamingSupported": True,
                "inferenceTypesSupported": ["ON_DEMAND"], "modelLifecycle": {"status": "ACTIVE"}}

    def model_list(self, entries: list[dict]) -> bytes:
        return orjson.dumps({"modelSummaries": entries})

    def serves(self, model: str) -> bool:
        """Bedrock ids: a vendor and its model (amazon.nova-micro-v1:0, us.anthropic.claude-...),
        or an inference profile's ARN."""
        return bool(vendor_of(model)) or model.startswith("arn:aws") and ":bedrock:" in model

    def attempt_headers(self, caller_headers: dict[str, str]) -> tuple[dict[str, str], list[str], list[str]]:
        sent = [name for name in _ANTHROPIC_HEADERS if name in caller_headers]
        return {}, sent, ["anthropic-beta"] if "anthropic-beta" in sent else []   # betas tune Anthropic's API alone


BEDROCK = Bedrock()


def _blocks(body: Any) -> Iterator[dict]:
    """The content blocks of a Converse answer."""
    output = body.get("output") if isinstance(body, dict) else None
    message = output.get("message") if isinstance(output, dict) else None
    for block in (message.get("content") or ()) if isinstance(message, dict) else ():
        if isinstance(block, dict):
            yield block


def _config(body: dict) -> dict:
    config = body.get("inferenceConfig")
    return config if isinstance(config, dict) else {}


def _tool_config(body: dict) -> dict:
    config = body.get("toolConfig")
    return config if isinstance(config, dict) else {}


class Converse(Translating, Codec):
    kind = "converse"
    dialect = BEDROCK
    generates = charges_output = answers_in_json = streams = True
    model_in_body = False
    operation = "chat"
    output_cap_field = "inferenceConfig.maxTokens"
    request_module, answer_module, stream_module = converse_request, converse_answer, converse_stream

    def prompt_texts(self, body: dict) -> tuple[list[str], int]:
        texts = [block["text"] for block in body.get("system") or ()
                 if isinstance(block, dict) and isinstance(block.get("text"), str)]
        messages = body.get("messages")
        messages = messages if isinstance(messages, list) else []
        for message in messages:
            for block in (message.get("content") or ()) if isinstance(message, dict) else ():
                if not isinstance(block, dict):
                    continue
                if isinstance(block.get("text"), str):
                    texts.append(block["text"])
                elif isinstance(block.get("toolResult"), dict):
                    texts.extend(part["text"] for part in block["toolResult"].get("content") or ()
                                 if isinstance(part, dict) and isinstance(part.get("text"), str))
        return texts, len(messages)

    def max_output_tokens(self, body: dict) -> int | None:
        cap = _config(body).get("maxTokens")
        return cap if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0 else None

    def with_output_cap(self, body: dict, cap: int) -> dict:
        if not isinstance(body.get("inferenceConfig"), dict):
            body["inferenceConfig"] = {}
        body["inferenceConfig"]["maxTokens"] = cap
        return body

    def tool_name(self, tool: Any) -> str:
        spec = tool.get("toolSpec") if isinstance(tool, dict) else None
        name = spec.get("name") if isinstance(spec, dict) else None
        return name if isinstance(name, str) else ""

    def request_part(self, body: dict, path: tuple) -> str:
        if path[:1] == ("system",):
            return request_parts.SYSTEM
        if path[:1] == ("toolConfig",):
            return request_parts.TOOLS
        message = request_parts.item(body, path, "messages")
        if not message:
            return request_parts.USER
        if message.get("role") == "assistant":
            return request_parts.ASSISTANT
        block = request_parts.block(message, path, "content")
        return request_parts.TOOL_RESULTS if isinstance(block, dict) and "toolResult" in block \
            else request_parts.USER

    def tool_result_names(self, body: dict, paths: list[tuple]) -> list[str]:
        """A `toolResult`'s call (`toolUse`) by its `toolUseId`."""
        messages = body.get("messages") if isinstance(body.get("messages"), list) else []
        called = request_parts.names_by_id(
            [(block["toolUse"].get("toolUseId"), block["toolUse"].get("name")) for message in messages
             if isinstance(message, dict) and message.get("role") == "assistant" and isinstance(message.get("content"), list)
             for block in message["content"] if isinstance(block, dict) and isinstance(block.get("toolUse"), dict)])
        names = []
        for path in paths:
            message = request_parts.item(body, path, "messages") or {}
            block = request_parts.block(message, path, "content") if message else None
            result = block.get("toolResult") if isinstance(block, dict) else None
            call_id = result.get("toolUseId") if isinstance(result, dict) else None
            names.append(called.get(call_id, "") if isinstance(call_id, str) else "")
        return names

    def tool_names(self, body: dict) -> list[str]:
        return [self.tool_name(tool) for tool in _tool_config(body).get("tools") or ()
                if isinstance(tool, dict) and "toolSpec" in tool]

    def remove_tools(self, body: dict, forbidden: list[str]) -> None:
        config = _tool_config(body)
        if not isinstance(config.get("tools"), list):
            return
        kept: list[dict] = []
        for tool in config["tools"]:
            if isinstance(tool, dict) and "toolSpec" in tool:
                if self.tool_name(tool) not in forbidden:
                    kept.append(tool)
            elif kept and "toolSpec" in kept[-1]:
                kept.append(tool)                       # a cachePoint stays after the tool it follows
        if not any("toolSpec" in tool for tool in kept):
            body.pop("toolConfig")
            return
        config["tools"] = kept
        choice = config.get("toolChoice")
        if isinstance(choice, dict) and isinstance(choice.get("tool"), dict) and choice["tool"].get("name") in forbidden:
            config.pop("toolChoice")                    # the model then chooses

    def usage_from_response(self, body: Any) -> Usage | None:
        return usage_from(body.get("usage")) if isinstance(body, dict) else None

    def usage_from_event(self, event: dict, so_far: Usage | None) -> Usage | None:
        usage = usage_from(event.get("usage"))          # the metadata event's
        return so_far if usage is None else usage

    def generated_texts(self, event: dict) -> Iterator[str]:
        delta = event.get("delta")
        if isinstance(delta, dict):                     # a contentBlockDelta
            reasoning, call = delta.get("reasoningContent"), delta.get("toolUse")
            for piece in (delta.get("text"), call.get("input") if isinstance(call, dict) else None,
                          reasoning.get("text") if isinstance(reasoning, dict) else None):
                if isinstance(piece, str):
                    yield piece
            return
        for block in _blocks(event):                    # a whole answer
            reasoning = block.get("reasoningContent")
            thought = reasoning.get("reasoningText") if isinstance(reasoning, dict) else None
            if isinstance(block.get("text"), str):
                yield block["text"]
            elif isinstance(block.get("toolUse"), dict):
                yield provider_json.dumps(block["toolUse"].get("input") or {}).decode()
            elif isinstance(thought, dict) and isinstance(thought.get("text"), str):
                yield thought["text"]

    def called_tools(self, body: dict) -> list[str]:
        start = body.get("start")                       # a contentBlockStart
        calls = [start.get("toolUse")] if isinstance(start, dict) else [block.get("toolUse") for block in _blocks(body)]
        return [call["name"] for call in calls if isinstance(call, dict) and isinstance(call.get("name"), str)]
