"""OpenAI's dialect: its errors and model list, and its endpoints but Responses
(responses.py): Chat Completions, the legacy Completions, Embeddings. What their bodies
hold is read by api/openai.py; how a chat stream's text is held and written again is in
openai_stream.py."""

from __future__ import annotations

import base64
import binascii
import struct
from typing import Any, Iterable

import orjson

from ...api import openai, openai_schema
from ...api.providers import CHAT_PATH
from ...api.usage import Usage
from .. import conversation_start, repeated_answers, tool_turns
from . import chat_answer
from . import chat_request
from . import chat_stream
from . import stream as openai_stream
from .. import request_parts
from ..base import Codec, Dialect, TextPiece, Translating, keep_tools
from ..embedding import EmbeddingAnswer, EmbeddingRequest

EMBEDDINGS_PATH = "/v1/embeddings"
# Headers of Anthropic's API: a provider of this dialect has no use for them.
_ANTHROPIC_HEADERS = ("anthropic-version", "anthropic-beta")


class OpenAI(Dialect):
    name = "openai"
    generation_kind = "chat"
    embedding_kind = "embeddings"
    described = "OpenAI's API"
    # The organization and project of the account that pays and stores; Azure's API
    # Management subscription (whose quota and bill) and Azure Resource Manager's
    # auxiliary tokens (another tenant's credential).
    account_headers = frozenset({"openai-organization", "openai-project", "ocp-apim-subscription-key",
                                 "x-ms-authorization-auxiliary"})

    def error_body(self, status: int, message: str, type: str, code: str | None,
                   request_id: str | None = None) -> bytes:
        return orjson.dumps({"error": {"message": message, "type": type, "code": code}})

    def error_event(self, message: str, code: str) -> bytes:
        return b"data: " + self.error_body(400, message, "invalid_request_error", code) + b"\n\n"

    def model_entry(self, name: str, created: int) -> dict:
        return {"id": name, "object": "model", "created": created, "owned_by": "llm-gateway"}

    def model_list(self, entries: list[dict]) -> bytes:
        return orjson.dumps({"object": "list", "data": entries})

    def serves(self, model: str) -> bool:
        return not model.startswith("claude-")

    def attempt_headers(self, caller_headers: dict[str, str]) -> tuple[dict[str, str], list[str], list[str]]:
        sent = [name for name in _ANTHROPIC_HEADERS if name in caller_headers]
        return {}, sent, ["anthropic-beta"] if "anthropic-beta" in sent else []   # betas tune Anthropic's API alone


OPENAI = OpenAI()


# A chat message's role, as a request part (request_parts.py); other roles are the user's.
_CHAT_ROLE_PARTS = {"system": request_parts.SYSTEM, "developer": request_parts.SYSTEM,
                    "assistant": request_parts.ASSISTANT, "tool": request_parts.TOOL_RESULTS,
                    "function": request_parts.TOOL_RESULTS}


def _role_part(message: Any) -> str:
    role = message.get("role") if isinstance(message, dict) else None
    return _CHAT_ROLE_PARTS.get(role, request_parts.USER) if isinstance(role, str) else request_parts.USER


class _OpenAICodec(Codec):
    dialect = OPENAI
    usage_only_at_stream_end = True     # chat's usage chunk, the Responses API's response.completed

    # Each endpoint's own readers in api/openai.py, functions of the body or event, named
    # as the codec's methods (staticmethod: `codec.prompt_texts(body)` calls the one of its
    # endpoint, nothing branches on the kind). Here chat's; the other endpoints set theirs.
    max_output_tokens = staticmethod(openai.max_output_tokens)      # any of the endpoints' cap fields
    usage_from_response = staticmethod(openai.usage_from_response)  # every endpoint's usage object
    generated_texts = staticmethod(openai.chat_generated_texts)
    _usage_from_event = staticmethod(openai.chat_usage_from_event)

    def usage_from_event(self, event: dict, so_far: Usage | None) -> Usage | None:
        return self._usage_from_event(event) or so_far

    def final_usage(self, event: dict) -> dict | None:
        usage = event.get("usage")
        return usage if isinstance(usage, dict) else None


class Chat(Translating, _OpenAICodec):
    kind = "chat"
    request_module, answer_module, stream_module = chat_request, chat_answer, chat_stream
    generates = charges_output = takes_usage_option = answers_in_json = streams = True
    operation = "chat"
    body_may_go_unread = True
    output_cap_field = openai.CHAT_OUTPUT_CAP
    output_fields = openai.CHAT_OUTPUT_FIELDS
    provider_path = CHAT_PATH
    prompt_texts = staticmethod(openai.chat_prompt_texts)
    answers_per_request = staticmethod(openai.chat_answers)
    shape_problem = staticmethod(openai_schema.chat_shape_problem)
    known_fields = frozenset({
        "messages", "tools", "functions", "tool_choice", "function_call", "response_format", "prediction",
        "user", "metadata", "stop", "logit_bias", "web_search_options", "audio", "stream_options",
        "prompt_cache_key", "safety_identifier", "store"})

    def tool_name(self, tool: Any) -> str:
        return function_tool_name(tool, nested=True)

    def request_part(self, body: dict, path: tuple) -> str:
        if path[:1] in (("tools",), ("functions",)):
            return request_parts.TOOLS
        return _role_part(request_parts.item(body, path, "messages"))

    def request_parts(self, body: dict, paths: list[tuple]) -> list[str]:
        """Each message's part read once from its role, then each path's by its message: an
        agent's history of ~100 messages looked up path by path cost ~0.1 ms a call. Only
        the messages the paths lie in: a grown body's rules ask of its new turns alone."""
        messages = body.get("messages")
        count = len(messages) if isinstance(messages, list) else 0
        by_message: dict[int, str] = {}
        parts = []
        for path in paths:
            if len(path) >= 2 and path[0] == "messages" and isinstance(path[1], int) and 0 <= path[1] < count:
                part = by_message.get(path[1])
                if part is None:
                    part = by_message[path[1]] = _role_part(messages[path[1]])
                parts.append(part)
            else:
                parts.append(self.request_part(body, path))
        return parts

    def tool_result_names(self, body: dict, paths: list[tuple]) -> list[str]:
        """A `tool` message's call by its `tool_call_id`; a `function` message names its own."""
        messages = body.get("messages") if isinstance(body.get("messages"), list) else []
        called = request_parts.names_by_id(
            [(call.get("id"), (call.get("function") or call.get("custom") or {}).get("name"))
             for message in messages if isinstance(message, dict) and message.get("role") == "assistant"
             and isinstance(message.get("tool_calls"), list)
             for call in message["tool_calls"] if isinstance(call, dict)
             and isinstance(call.get("function") or call.get("custom") or {}, dict)])
        return request_parts.result_names(body, paths, "messages", "tool_call_id", called,
                                          lambda message: message.get("role") == "function")

    def tool_names(self, body: dict) -> list[str]:
        """`tools`, and the deprecated `functions`."""
        names = super().tool_names(body)
        names.extend(legacy_function_name(f) for f in body.get("functions") or ())
        return names

    def remove_tools(self, body: dict, forbidden: list[str]) -> None:
        super().remove_tools(body, forbidden)
        keep_tools(body, "functions", "function_call", lambda f: legacy_function_name(f) not in forbidden)

    def called_tools(self, body: dict) -> list[str]:
        return openai_stream.called_tools(body)

    def last_tool_calls(self, body: dict) -> list[tuple[str, str, int]]:
        return tool_turns.chat_last_tool_calls(body)

    def repeated_answer(self, body: dict) -> tuple[str, int]:
        return repeated_answers.chat_repeated_answer(body)

    def conversation_start(self, body: dict) -> tuple[bytes, list] | None:
        return conversation_start.chat_start(body)

    def stream_pieces(self, event: dict) -> list[TextPiece]:
        return openai_stream.chat_pieces(event)

    def rest_of_event(self, event: dict, pieces: list[TextPiece]) -> dict | None:
        return openai_stream.rest_of_event(event, pieces)

    def ended(self, event: dict, keys: Iterable[tuple]) -> list[tuple]:
        return openai_stream.ended(event, keys)

    def event_with(self, template: dict, choice: dict | None, slot: object, text: str) -> bytes:
        return openai_stream.event_with(template, choice, slot, text)

    def plugin_pieces(self, event: dict):
        return openai_stream.plugin_pieces(event, completions=False)


class Completions(Chat):
    kind = "completions"
    operation = "text_completion"
    output_cap_field = openai.COMPLETIONS_OUTPUT_CAP
    provider_path = None
    prompt_texts = staticmethod(openai.completions_prompt_texts)
    prompt_token_ids = staticmethod(openai.completions_token_ids)
    answers_per_request = staticmethod(openai.completions_answers)
    shape_problem = staticmethod(openai_schema.completions_shape_problem)
    generated_texts = staticmethod(openai.completions_generated_texts)
    known_fields = frozenset({"prompt", "suffix", "user", "stop", "logit_bias"})

    def tool_names(self, body: dict) -> list[str]:
        return []

    def stream_pieces(self, event: dict) -> list[TextPiece]:
        return openai_stream.completion_pieces(event)

    def plugin_pieces(self, event: dict):
        return openai_stream.plugin_pieces(event, completions=True)


class Embeddings(_OpenAICodec):
    kind = "embeddings"
    generates = True
    answers_in_chunks = True         # a 2,048-input batch's answer is some 40 MB
    operation = "embeddings"
    known_fields = frozenset({"input", "user", "encoding_format"})
    prompt_texts = staticmethod(openai.embeddings_prompt_texts)
    prompt_token_ids = staticmethod(openai.embeddings_token_ids)
    shape_problem = staticmethod(openai_schema.embeddings_shape_problem)

    def final_usage(self, event: dict) -> dict | None:
        return None

    # --- another dialect's embeddings call, translated (translate/embeddings.py) ----------
    provider_path = EMBEDDINGS_PATH

    @staticmethod
    def encode_embeddings(request: EmbeddingRequest, model: str) -> dict:
        body: dict = {"model": model, "input": request.texts, "encoding_format": "float"}
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        return body

    @staticmethod
    def decode_embedded(body: dict) -> EmbeddingAnswer:
        """The answer's vectors in input order (float or base64), and its usage."""
        data = sorted((item for item in body.get("data") or () if isinstance(item, dict)),
                      key=lambda item: item.get("index") if isinstance(item.get("index"), int) else 0)
        vectors = []
        for item in data:
            vector = item.get("embedding")
            if isinstance(vector, str):
                raw = base64.b64decode(vector)
                vector = list(struct.unpack(f"<{len(raw) // 4}f", raw))
            vectors.append(vector if isinstance(vector, list) else [])
        return EmbeddingAnswer(vectors, openai.usage_from_response(body))

    # The gateway's own embedding calls (the semantic cache's): through its listener,
    # as any caller's.
    path = EMBEDDINGS_PATH

    @staticmethod
    def request_for(model: str, text: str, dimensions: int | None) -> bytes:
        body = {"model": model, "input": text, "encoding_format": "base64"}
        if dimensions is not None:
            body["dimensions"] = dimensions
        return orjson.dumps(body)

    @staticmethod
    def vector_in(answer: bytes) -> bytes | None:
        """The first embedding of an answer as little-endian float32 bytes, else None."""
        try:
            data = orjson.loads(answer)["data"][0]["embedding"]
            if isinstance(data, str):
                return base64.b64decode(data, validate=True)
            return struct.pack(f"<{len(data)}f", *data)
        except (ValueError, KeyError, IndexError, TypeError, struct.error, binascii.Error):
            return None


def function_tool_name(tool: Any, nested: bool) -> str:
    """What a tools allowlist calls a declared tool: a function's (or custom tool's) name,
    in `function.name` (`nested`: chat) or `name`; a built-in tool's type
    (`web_search_preview`, `code_interpreter`, `mcp`, ...), whatever else it carries; ""
    for a shape it cannot name, which no list allows."""
    if not isinstance(tool, dict):
        return ""
    tool_type = tool.get("type")
    if tool_type not in ("function", "custom"):
        return tool_type if isinstance(tool_type, str) else ""
    holder = tool.get(tool_type) if nested else tool
    name = holder.get("name") if isinstance(holder, dict) else None
    return name if isinstance(name, str) else ""


def legacy_function_name(function: Any) -> str:
    name = function.get("name") if isinstance(function, dict) else None
    return name if isinstance(name, str) else ""
