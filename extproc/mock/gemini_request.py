"""Reading a Gemini `generateContent` request, the Gemini API's and Vertex AI's alike: what
Google's validation says of it, the text the mock echoes, the prompt's texts for the
gateway's own count, and the generation settings the answer obeys.

Google's JSON parser takes each field in lowerCamelCase or in the proto's snake_case
(`generationConfig` or `generation_config`); the mock reads both and refuses any other
top-level name, as Google does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

from ..api.tokens import count_prompt

ENCODING = "o200k_base"
_CAMEL_HUMP = re.compile(r"(?<!^)(?=[A-Z])")

# The top-level fields of a GenerateContentRequest (Vertex adds `labels`), and of a
# CountTokensRequest, in lowerCamelCase.
GENERATE_FIELDS = frozenset({"model", "contents", "tools", "toolConfig", "safetySettings", "systemInstruction",
                             "generationConfig", "cachedContent", "labels", "serviceTier", "store"})
COUNT_FIELDS = frozenset({"model", "contents", "generateContentRequest", "instances", "systemInstruction",
                          "tools", "generationConfig"})
# The roles Google's message names; "function" (an older way to send function responses)
# is still taken.
ROLES = ("user", "model", "function")


def snake(name: str) -> str:
    return _CAMEL_HUMP.sub("_", name).lower()


def field(obj: object, name: str) -> object:
    """`obj[name]` under its lowerCamelCase name or its snake_case one; None if neither."""
    if not isinstance(obj, dict):
        return None
    value = obj.get(name)
    return obj.get(snake(name)) if value is None else value


@dataclass(frozen=True)
class Problem:
    """Why Google refuses a request: its message, and the details it adds (a BadRequest's
    field violations for JSON it could not read)."""
    message: str
    details: tuple[dict, ...] = ()


def _unreadable(message: str) -> Problem:
    return Problem(message, ({"@type": "type.googleapis.com/google.rpc.BadRequest",
                              "fieldViolations": [{"description": message}]},))


def parse(raw: bytes, fields: frozenset[str] = GENERATE_FIELDS,
          vertex: bool = False) -> tuple[dict | None, Problem | None]:
    """The request's JSON body, or None and what Google says of it: JSON it cannot read, a
    name it does not know, contents missing or with a role other than user and model."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, _unreadable("Invalid JSON payload received. Unexpected token.")
    if not isinstance(body, dict):
        return None, _unreadable("Invalid JSON payload received. Expected an object.")
    known = fields | {snake(name) for name in fields}
    for name in body:
        if name not in known:
            return None, _unreadable(f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.')
    if fields is COUNT_FIELDS:
        return body, None
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        # Each service words it its own way.
        return None, Problem("Unable to submit request because it has an empty contents field. Learn more: "
                             "https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/gemini"
                             if vertex else "* GenerateContentRequest.contents: contents is not specified\n")
    for content in contents:
        role = content.get("role") if isinstance(content, dict) else None
        if not isinstance(content, dict) or (role not in (None, "", *ROLES)):
            return None, Problem("Please use a valid role: user, model.")
    config = field(body, "generationConfig")
    tokens = field(config, "maxOutputTokens")
    if tokens is not None and (not isinstance(tokens, int) or isinstance(tokens, bool)):
        return None, _unreadable("Invalid value at 'generation_config.max_output_tokens' (TYPE_INT32), "
                                 f"{orjson.dumps(tokens).decode()}")
    return body, None


def counted_request(body: dict) -> dict:
    """What a countTokens request counts: its `generateContentRequest`, else itself."""
    inner = field(body, "generateContentRequest")
    return inner if isinstance(inner, dict) else body


def _parts(content: object) -> list:
    parts = field(content, "parts")
    return parts if isinstance(parts, list) else []


def _part_texts(content: object) -> list[str]:
    """The texts of a content's parts: text, a call's name and arguments, a function's
    response (as JSON), as a model reads them."""
    texts = []
    for part in _parts(content):
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        for name in ("functionCall", "functionResponse"):
            call = field(part, name)
            if isinstance(call, dict):
                texts.append(str(call.get("name", "")))
                payload = call.get("args") if name == "functionCall" else call.get("response")
                if payload is not None:
                    texts.append(orjson.dumps(payload).decode())
    return texts


def prompt_texts(body: dict) -> tuple[list[str], int]:
    """Every text of the request (system instruction, each content's parts, the function
    declarations) and its number of contents, for offline counting."""
    system = field(body, "systemInstruction")
    texts = [system] if isinstance(system, str) else _part_texts(system)
    contents = [c for c in body.get("contents") or () if isinstance(c, dict)]
    for content in contents:
        texts.extend(_part_texts(content))
    for tool in body.get("tools") or ():
        for declaration in field(tool, "functionDeclarations") or ():
            if not isinstance(declaration, dict):
                continue
            texts.extend(v for v in (declaration.get("name"), declaration.get("description")) if isinstance(v, str))
            schema = field(declaration, "parameters") or field(declaration, "parametersJsonSchema")
            if isinstance(schema, dict):
                texts.append(orjson.dumps(schema).decode())
    return texts, len(contents)


def declares_functions(body: dict) -> bool:
    return any(field(tool, "functionDeclarations") for tool in body.get("tools") or ())


def prompt_tokens(body: dict) -> int:
    texts, contents = prompt_texts(body)
    return count_prompt(texts, contents, ENCODING)


def last_user_text(body: dict) -> str:
    """What the answer echoes: the text parts of the last user content joined, as received
    (a content without a role is the user's, as Google reads a single turn)."""
    for content in reversed(body.get("contents") or []):
        if isinstance(content, dict) and content.get("role") in (None, "", "user"):
            return "".join(p["text"] for p in _parts(content)
                           if isinstance(p, dict) and isinstance(p.get("text"), str) and not p.get("thought"))
    return ""


@dataclass(frozen=True)
class Settings:
    """The generation settings an answer obeys: the output budget (None: no limit), the
    stop sequences, whether the model thinks and whether its thoughts are shown."""
    max_tokens: int | None
    stop_sequences: tuple[str, ...]
    thinks: bool
    shows_thoughts: bool


def settings(body: dict) -> Settings:
    config = field(body, "generationConfig")
    tokens = field(config, "maxOutputTokens")
    stops = field(config, "stopSequences")
    thinking = field(config, "thinkingConfig")
    shown = field(thinking, "includeThoughts") is True
    budget = field(thinking, "thinkingBudget")
    # A budget of 0 turns thinking off; asking for thoughts, a budget or a level turns it on.
    off = isinstance(budget, int) and budget == 0
    thinks = not off and (shown or budget is not None or field(thinking, "thinkingLevel") is not None)
    return Settings(max_tokens=tokens if isinstance(tokens, int) and tokens > 0 else None,
                    stop_sequences=tuple(s for s in stops or () if isinstance(s, str) and s),
                    thinks=thinks, shows_thoughts=thinks and shown)
