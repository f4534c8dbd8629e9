"""Google's dialect: the Gemini API (generateContent, streamGenerateContent), its errors
(`{"error": {code, message, status}}`) and model list, and its one generating endpoint.

A request names its model in the path, not the body, and says it streams by the path's
method; its output cap is `generationConfig.maxOutputTokens`. A stream is SSE with CRLF
line ends and no terminal event: each `data:` chunk is a whole answer object holding the
new parts, the last one its finishReason, every one its usage so far. Function calls
arrive whole in one part. Translation: gemini_request.py, gemini_answer.py,
gemini_stream.py.
"""

from __future__ import annotations

from typing import Any, Iterator

import orjson

from ...api.openai import GEMINI_COUNT_KIND
from ...api.usage import Usage
from .. import conversation_start, repeated_answers, tool_turns
from . import gemini_answer
from . import gemini_request
from . import gemini_schema
from . import gemini_stream
from .. import request_parts
from ..base import Codec, Dialect, Translating
from .gemini_answer import error_body, usage_from

# The keys envoy/template.yaml's sse_to_metadata rules fill from a passed-through stream's
# usageMetadata (each chunk's counts are cumulative: the last one wins).
_STREAM_METADATA_KEYS = {"gemini_prompt": "promptTokenCount", "gemini_candidates": "candidatesTokenCount",
                         "gemini_thoughts": "thoughtsTokenCount", "gemini_cached": "cachedContentTokenCount",
                         "gemini_tool_prompt": "toolUsePromptTokenCount"}


class Gemini(Dialect):
    name = "gemini"
    generation_kind = "generate_content"
    described = "Google's Gemini API"
    key_hint = "'x-goog-api-key: <key>', '?key=<key>' or 'Authorization: Bearer <key>'"
    reports_stream_usage = True
    # Google's `x-goog-*` headers: x-goog-user-project chooses the Cloud project billed and
    # whose quota is used (Vertex AI, under the gateway's service account), others carry
    # IAM credentials or name resources; none tunes the API.
    account_header_prefixes = ("x-goog-",)

    def error_body(self, status: int, message: str, type: str, code: str | None,
                   request_id: str | None = None) -> bytes:
        return error_body(status, message)

    def error_event(self, message: str, code: str) -> bytes:
        return b"data: " + error_body(400, message) + b"\r\n\r\n"

    def model_entry(self, name: str, created: int) -> dict:
        return {"name": f"models/{name}", "baseModelId": name, "displayName": name,
                "supportedGenerationMethods": ["generateContent"]}

    def model_list(self, entries: list[dict]) -> bytes:
        return orjson.dumps({"models": entries})

    def serves(self, model: str) -> bool:
        return model.startswith("gemini-")


GEMINI = Gemini()


def _parts(answer: Any) -> Iterator[dict]:
    """The parts of an answer's (or a stream chunk's) candidates."""
    for candidate in answer.get("candidates") or () if isinstance(answer, dict) else ():
        content = candidate.get("content") if isinstance(candidate, dict) else None
        for part in (content.get("parts") or ()) if isinstance(content, dict) else ():
            if isinstance(part, dict):
                yield part


def _generation_setting(body: dict, camel: str, snake: str) -> int | None:
    """A positive integer of the generation config, in either spelling (the larger)."""
    found = None
    for config, name in ((body.get("generationConfig"), camel), (body.get("generation_config"), snake)):
        value = config.get(name) if isinstance(config, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            found = max(found or 0, value)
    return found


class GenerateContent(Translating, Codec):
    kind = "generate_content"
    dialect = GEMINI
    generates = charges_output = answers_in_json = streams = True
    model_in_body = False
    operation = "chat"
    body_may_go_unread = True
    output_cap_field = "generationConfig.maxOutputTokens"
    request_module, answer_module, stream_module = gemini_request, gemini_answer, gemini_stream
    shape_problem = staticmethod(gemini_schema.generate_content_shape_problem)

    def query_problem(self, streams: bool, query: str) -> str | None:
        """Google writes a stream as server-sent events when asked (`alt=sse`, as its SDKs
        and Gemini CLI ask) and as one JSON array otherwise; the gateway writes events only,
        so a stream asked without `alt=sse` is refused rather than answered in a form the
        caller would not read."""
        if streams and "alt=sse" not in query.split("&"):
            return ("streamGenerateContent is served as server-sent events only: add alt=sse to the query "
                    "(the google-genai SDK and Gemini CLI do).")
        return None

    def prompt_texts(self, body: dict) -> tuple[list[str], int]:
        texts: list[str] = []
        contents = body.get("contents") if isinstance(body.get("contents"), list) else []
        system = body.get("systemInstruction")
        for content in ([system] if isinstance(system, dict) else []) + contents:
            for part in (content.get("parts") or ()) if isinstance(content, dict) else ():
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    texts.append(part["text"])
        return texts, len(contents)

    # The fields the two below read (Envoy's request reader reads them too: budgets on calls
    # whose body is unread, stages/budget/unread.py). Google's JSON takes a field by its
    # proto name as well as in camel case: of the two, the larger counts.
    output_fields = ("generationConfig.maxOutputTokens", "generationConfig.candidateCount",
                     "generation_config.max_output_tokens", "generation_config.candidate_count")

    def max_output_tokens(self, body: dict) -> int | None:
        return _generation_setting(body, "maxOutputTokens", "max_output_tokens")

    def with_output_cap(self, body: dict, cap: int) -> dict:
        config = body.get("generationConfig")
        if not isinstance(config, dict):
            config = body["generationConfig"] = {}
        config["maxOutputTokens"] = cap
        return body

    def answers_per_request(self, body: dict) -> int:
        return _generation_setting(body, "candidateCount", "candidate_count") or 1

    def tool_name(self, tool: Any) -> str:
        return tool.get("name", "") if isinstance(tool, dict) and isinstance(tool.get("name"), str) else ""

    def temperature(self, body: dict) -> float | None:
        config = body.get("generationConfig")
        value = config.get("temperature") if isinstance(config, dict) else None
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def request_part(self, body: dict, path: tuple) -> str:
        if path[:1] in (("systemInstruction",), ("system_instruction",)):
            return request_parts.SYSTEM
        if path[:1] in (("tools",), ("toolConfig",), ("tool_config",)):
            return request_parts.TOOLS
        content = request_parts.item(body, path, "contents")
        if not content:
            return request_parts.USER
        if content.get("role") == "model":
            return request_parts.ASSISTANT
        part = request_parts.block(content, path, "parts")
        return request_parts.TOOL_RESULTS if isinstance(part, dict) and \
            ("functionResponse" in part or "function_response" in part) else request_parts.USER

    def tool_result_names(self, body: dict, paths: list[tuple]) -> list[str]:
        """A `functionResponse` names its function."""
        names = []
        for path in paths:
            content = request_parts.item(body, path, "contents") or {}
            part = request_parts.block(content, path, "parts") if content else None
            response = (part.get("functionResponse") or part.get("function_response")) if isinstance(part, dict) else None
            names.append(request_parts.named(response.get("name")) if isinstance(response, dict) else "")
        return names

    def tool_names(self, body: dict) -> list[str]:
        return [self.tool_name(declaration) for tool in body.get("tools") or () if isinstance(tool, dict)
                for declaration in tool.get("functionDeclarations") or ()]

    def remove_tools(self, body: dict, forbidden: list[str]) -> None:
        for tool in body.get("tools") or ():
            if isinstance(tool, dict) and isinstance(tool.get("functionDeclarations"), list):
                tool["functionDeclarations"] = [d for d in tool["functionDeclarations"]
                                                if self.tool_name(d) not in forbidden]
        if isinstance(body.get("tools"), list):
            body["tools"] = [tool for tool in body["tools"]
                             if not (isinstance(tool, dict) and tool.get("functionDeclarations") == [])]
            if not body["tools"]:
                body.pop("tools")
                body.pop("toolConfig", None)

    def usage_from_response(self, body: Any) -> Usage | None:
        return usage_from(body.get("usageMetadata")) if isinstance(body, dict) else None

    def usage_from_stream_metadata(self, numbers: dict) -> Usage | None:
        """The last chunk's usageMetadata counts, as Envoy kept them (gemini_* keys)."""
        if not any(key.startswith("gemini_") for key in numbers):
            return None
        return usage_from({field: int(numbers[key]) for key, field in _STREAM_METADATA_KEYS.items()
                                  if isinstance(numbers.get(key), (int, float))})

    def usage_from_event(self, event: dict, so_far: Usage | None) -> Usage | None:
        usage = usage_from(event.get("usageMetadata"))
        return so_far if usage is None else usage

    def generated_texts(self, event: dict) -> Iterator[str]:
        for part in _parts(event):
            if isinstance(part.get("text"), str):
                yield part["text"]

    def called_tools(self, body: dict) -> list[str]:
        return [part["functionCall"]["name"] for part in _parts(body)
                if isinstance(part.get("functionCall"), dict) and isinstance(part["functionCall"].get("name"), str)]

    def last_tool_calls(self, body: dict) -> list[tuple[str, str, int]]:
        return tool_turns.gemini_last_tool_calls(body)

    def repeated_answer(self, body: dict) -> tuple[str, int]:
        return repeated_answers.gemini_repeated_answer(body)

    def conversation_start(self, body: dict) -> tuple[bytes, list] | None:
        return conversation_start.gemini_start(body)


class CountContentTokens(GenerateContent):
    """`:countTokens`: the tokens of a request (`contents`, or a whole
    `generateContentRequest`), counted by a Gemini backend or, for a model served in
    another dialect, by the gateway."""
    kind = GEMINI_COUNT_KIND
    generates = charges_output = answers_in_json = streams = False
    counts_tokens = True
    operation = ""
    output_cap_field = None
    shape_problem = staticmethod(gemini_schema.count_tokens_shape_problem)

    def prompt_texts(self, body: dict) -> tuple[list[str], int]:
        inner = body.get("generateContentRequest")
        return super().prompt_texts(inner if isinstance(inner, dict) else body)

    def count_answer(self, tokens: int) -> bytes:
        return orjson.dumps({"totalTokens": tokens, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}]})

