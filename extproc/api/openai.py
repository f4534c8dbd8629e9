"""What the gateway knows about the OpenAI API shapes: endpoints, prompt text, usage.

One place for the field names, so the stages stay free of API trivia.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import unquote

from .usage import Usage


@dataclass(frozen=True, slots=True)
class Endpoint:
    kind: str                    # chat | completions | embeddings | responses | messages | models | ...
    methods: tuple[str, ...]
    dialect: str = "openai"      # the API the caller speaks on it: its errors' shape
    model_in_path: bool = False  # Azure's form: the path names the deployment, which is the model
    streams_by_path: bool = False    # Google's form: the path's method says the answer streams
    generates: bool = False      # a call that a model answers, and the provider bills

    @property
    def method(self) -> str:
        return self.methods[0]


GEMINI_COUNT_KIND = "count_content_tokens"
GEMINI_EMBED_KIND = "embed_content"
GEMINI_BATCH_EMBED_KIND = "batch_embed_contents"
MODELS = Endpoint("models", ("GET",))                                # answered by the gateway
# The caller's own spend and budgets, answered by the gateway; errors in the dialect of
# the caller's client (anthropic-version: Anthropic's; a Google client: Google's).
OWN_USAGE = Endpoint("gateway_usage", ("GET",))
ANTHROPIC_OWN_USAGE = Endpoint("gateway_usage", ("GET",), "anthropic")
GEMINI_OWN_USAGE = Endpoint("gateway_usage", ("GET",), "gemini")
ENDPOINTS = {
    "/v1/chat/completions": Endpoint("chat", ("POST",), generates=True),
    "/v1/completions": Endpoint("completions", ("POST",), generates=True),
    "/v1/embeddings": Endpoint("embeddings", ("POST",), generates=True),
    "/v1/responses": Endpoint("responses", ("POST",), generates=True),
    "/v1/models": MODELS,
    "/v1/gateway/usage": OWN_USAGE,
    # Anthropic's Messages API, on the same listener.
    "/v1/messages": Endpoint("messages", ("POST",), "anthropic", generates=True),
    "/v1/messages/count_tokens": Endpoint("count_tokens", ("POST",), "anthropic"),
}
# Google's Gemini API: /v1beta/models/{model}:generateContent (and :streamGenerateContent),
# the model named in the path; its model list. The google-genai SDK given a base URL calls
# /v1/models/{model}:generateContent: a model's method under /v1 is Gemini's too.
GEMINI_PREFIX = "/v1beta/models"
GEMINI_METHODS = {"generateContent": Endpoint("generate_content", ("POST",), "gemini", model_in_path=True,
                                              generates=True),
                  "streamGenerateContent": Endpoint("generate_content", ("POST",), "gemini", model_in_path=True,
                                                    streams_by_path=True, generates=True),
                  "countTokens": Endpoint(GEMINI_COUNT_KIND, ("POST",), "gemini", model_in_path=True),
                  # Google's embeddings: one content, or a batch of them (the google-genai SDK's).
                  "embedContent": Endpoint(GEMINI_EMBED_KIND, ("POST",), "gemini", model_in_path=True,
                                           generates=True),
                  "batchEmbedContents": Endpoint(GEMINI_BATCH_EMBED_KIND, ("POST",), "gemini", model_in_path=True,
                                                 generates=True)}
GEMINI_MODELS = Endpoint("models", ("GET",), "gemini")
GEMINI_MODEL = Endpoint("model", ("GET",), "gemini")
ANTHROPIC_MODELS = Endpoint("models", ("GET",), "anthropic")      # GET /v1/models with anthropic-version
ANTHROPIC_MODEL = Endpoint("model", ("GET",), "anthropic")        # ... and /v1/models/{id}
# Paths naming one resource, by their prefix and what may follow its id.
MODEL = Endpoint("model", ("GET",))                                  # answered by the gateway
STORED_RESPONSE = Endpoint("response", ("GET", "DELETE"))           # at the provider holding it
STORED_RESPONSE_ACTIONS = {"cancel": Endpoint("response_cancel", ("POST",)),
                           "input_items": Endpoint("response_input_items", ("GET",))}
_MAX_ID = 256
# Azure OpenAI's path form, as the AzureOpenAI SDKs call it: /openai/deployments/{deployment}/
# chat/completions?api-version=... The deployment is the model; the rest is the OpenAI endpoint.
AZURE_DEPLOYMENTS = "/openai/deployments/"
_AZURE_ENDPOINTS = {rest: (path, Endpoint(ENDPOINTS[path].kind, ("POST",), model_in_path=True,
                                          generates=ENDPOINTS[path].generates))
                    for rest in ("chat/completions", "completions", "embeddings", "responses")
                    for path in (f"/v1/{rest}",)}
# Azure's newer forms name the model in the body, as OpenAI's do: its v1 API
# (/openai/v1/chat/completions, ... without api-version) and the Responses API of the
# AzureOpenAI SDK (/openai/responses?api-version=...). Each is OpenAI's path behind a prefix.
_AZURE_PREFIXES = ("/openai/v1/", "/openai/responses")
_AZURE_SERVED = tuple(f"/v1/{rest}{end}" for rest in ("chat/completions", "completions", "embeddings", "responses",
                                                       "models") for end in ("", "/"))


def anthropic_shaped(endpoint: Endpoint) -> Endpoint:
    """A model list's endpoint (OpenAI's or Gemini's list, or one model) answering in
    Anthropic's shape (asked with `anthropic-version`); the caller's own usage, with
    errors in Anthropic's shape."""
    if endpoint is OWN_USAGE:
        return ANTHROPIC_OWN_USAGE
    return ANTHROPIC_MODELS if endpoint is MODELS or endpoint is GEMINI_MODELS else ANTHROPIC_MODEL


def google_shaped(endpoint: Endpoint) -> Endpoint:
    """A model list's endpoint (OpenAI's list, or one model) answering in Google's shape
    (asked by a Google client on /v1/models: the google-genai SDK's default API version);
    the caller's own usage, with errors in Google's shape."""
    if endpoint is OWN_USAGE:
        return GEMINI_OWN_USAGE
    return GEMINI_MODELS if endpoint is MODELS or endpoint is GEMINI_MODELS else GEMINI_MODEL


def find_endpoint(path: str) -> tuple[Endpoint, str] | None:
    """The endpoint a path (without its query) names, and the id of the resource it names
    ("" for none; Azure's form: the deployment); None for a path the gateway does not serve."""
    path = path.rstrip("/")
    endpoint = ENDPOINTS.get(path)
    if endpoint is not None:
        return endpoint, ""
    if path.startswith(_AZURE_PREFIXES):
        openai_path = _openai_path(path)
        return find_endpoint(openai_path) if openai_path.startswith(_AZURE_SERVED) else None
    if path.startswith(GEMINI_PREFIX):
        return _gemini_endpoint(path[len(GEMINI_PREFIX):])
    if path.startswith("/v1/models/"):
        name = path[len("/v1/models/"):]
        method = _gemini_endpoint("/" + name) if ":" in name else None
        if method is not None:
            return method
        return (MODEL, name) if 0 < len(name) <= _MAX_ID else None
    if path.startswith(AZURE_DEPLOYMENTS):
        deployment, _, rest = path[len(AZURE_DEPLOYMENTS):].partition("/")
        found = _AZURE_ENDPOINTS.get(rest)
        return (found[1], unquote(deployment)) if found and 0 < len(deployment) <= _MAX_ID else None
    if path.startswith("/v1/responses/"):
        rest = path[len("/v1/responses/"):].split("/")
        if not rest[0] or len(rest[0]) > _MAX_ID or len(rest) > 2:
            return None
        if len(rest) == 1:
            return STORED_RESPONSE, rest[0]
        action = STORED_RESPONSE_ACTIONS.get(rest[1])
        return (action, rest[0]) if action else None
    return None


def _gemini_endpoint(rest: str) -> tuple[Endpoint, str] | None:
    """A path below /v1beta/models: the list, one model, or a model's method."""
    if not rest:
        return GEMINI_MODELS, ""
    if not rest.startswith("/"):
        return None
    name, colon, method = unquote(rest[1:]).rpartition(":")
    if not colon:
        return (GEMINI_MODEL, method) if 0 < len(method) <= _MAX_ID else None
    endpoint = GEMINI_METHODS.get(method)
    return (endpoint, name) if endpoint is not None and 0 < len(name) <= _MAX_ID else None


def client_path(path: str, query: str) -> tuple[str, str]:
    """The OpenAI path and query a request in Azure's form stands for (its `api-version`
    is the caller's SDK's, not the provider's: each provider's attempt sets its own);
    any other path as it is."""
    if path.startswith(_AZURE_PREFIXES):
        path = _openai_path(path)
    elif path.startswith(AZURE_DEPLOYMENTS):
        path = _AZURE_ENDPOINTS[path[len(AZURE_DEPLOYMENTS):].partition("/")[2].rstrip("/")][0]
    else:
        return path, query
    kept = "&".join(part for part in query.split("&") if part and not part.startswith("api-version="))
    return path, kept


def _openai_path(path: str) -> str:
    """OpenAI's path for one of Azure's prefixed forms."""
    return "/v1/" + path[len("/openai/v1/"):] if path.startswith("/openai/v1/") else "/v1" + path[len("/openai"):]


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from(obj: Any) -> Usage | None:
    """Usage from a `usage` object of any endpoint (chat, completions, embeddings, responses)."""
    if not isinstance(obj, dict):
        return None
    if "input_tokens" in obj or "output_tokens" in obj:           # Responses API
        details_in = obj.get("input_tokens_details") or {}
        details_out = obj.get("output_tokens_details") or {}
        return Usage(_int(obj.get("input_tokens")), _int(obj.get("output_tokens")),
                     _int(details_in.get("cached_tokens")) if isinstance(details_in, dict) else 0,
                     _int(details_out.get("reasoning_tokens")) if isinstance(details_out, dict) else 0)
    if "prompt_tokens" in obj:                                     # chat, completions, embeddings
        details_in = obj.get("prompt_tokens_details") or {}
        details_out = obj.get("completion_tokens_details") or {}
        return Usage(_int(obj.get("prompt_tokens")), _int(obj.get("completion_tokens")),
                     _int(details_in.get("cached_tokens")) if isinstance(details_in, dict) else 0,
                     _int(details_out.get("reasoning_tokens")) if isinstance(details_out, dict) else 0)
    return None


def usage_from_response(body: Any) -> Usage | None:
    return usage_from(body.get("usage")) if isinstance(body, dict) else None


# --- prompt text, for offline counting and guardrails -------------------------------

def _content_texts(content: Any) -> Iterator[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    yield text
            elif isinstance(part, str):
                yield part


def chat_prompt_texts(body: dict) -> tuple[list[str], int]:
    """All prompt text of a chat request (every message and role, tool calls included)
    and its number of messages."""
    texts: list[str] = []
    messages = 0
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        messages += 1
        content = message.get("content")
        if type(content) is str and "tool_calls" not in message:     # most of a history's
            texts.append(content)
            continue
        texts.extend(_content_texts(content))
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                texts.extend(v for v in (function.get("name"), function.get("arguments"))
                             if isinstance(v, str))
    return texts, messages


def completions_prompt_texts(body: dict) -> tuple[list[str], int]:
    """A completions prompt's text (none of it in messages)."""
    texts = list(_content_texts(body.get("prompt")))
    if isinstance(body.get("suffix"), str):     # the text after the insertion: prompt too
        texts.append(body["suffix"])
    return texts, 0


def embeddings_prompt_texts(body: dict) -> tuple[list[str], int]:
    return list(_content_texts(body.get("input"))), 0


def responses_prompt_texts(body: dict) -> tuple[list[str], int]:
    """A Responses request's instructions and input items' text, and its number of items
    (a string input: one)."""
    texts: list[str] = []
    messages = 0
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        texts.append(instructions)
    items = body.get("input")
    if isinstance(items, str):
        texts.append(items)
        messages = 1
    elif isinstance(items, list):
        for item in items:
            if isinstance(item, dict):
                messages += 1
                texts.extend(_content_texts(item.get("content")))
                for key in ("arguments", "output"):
                    if isinstance(item.get(key), str):
                        texts.append(item[key])
    return texts, messages


def _token_ids(given: Any) -> int:
    """Tokens a prompt or input gives as token ids (a list of ints, or a batch of them)
    rather than text: counted as they are."""
    if not isinstance(given, list):
        return 0
    batch = given if given and isinstance(given[0], list) else [given]
    return sum(len(ids) for ids in batch
               if isinstance(ids, list) and all(type(i) is int for i in ids))


def completions_token_ids(body: dict) -> int:
    return _token_ids(body.get("prompt"))


def embeddings_token_ids(body: dict) -> int:
    return _token_ids(body.get("input"))


# Where each endpoint takes the cap on what one answer may generate (chat's max_tokens is
# deprecated, and reasoning models refuse it).
CHAT_OUTPUT_CAP = "max_completion_tokens"
COMPLETIONS_OUTPUT_CAP = "max_tokens"
RESPONSES_OUTPUT_CAP = "max_output_tokens"


# The fields a chat request's output is bounded by: max_output_tokens and chat_answers.
CHAT_OUTPUT_FIELDS = (CHAT_OUTPUT_CAP, COMPLETIONS_OUTPUT_CAP, RESPONSES_OUTPUT_CAP, "n")


def max_output_tokens(body: dict) -> int | None:
    """The cap a request sets on one answer, in whichever of the endpoints' fields it is."""
    for key in (CHAT_OUTPUT_CAP, COMPLETIONS_OUTPUT_CAP, RESPONSES_OUTPUT_CAP):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def chat_answers(body: dict) -> int:
    """How many answers one chat request has generated, each up to its output cap (the
    provider bills the output of all of them): `n`."""
    return _int(body.get("n")) or 1


def completions_answers(body: dict) -> int:
    """How many answers one completions request has generated: `max(n, best_of)` per
    prompt (`best_of` are generated, `n` of them returned), for each prompt of a batch (a
    list of strings, or of token lists)."""
    answers = max(_int(body.get("n")) or 1, _int(body.get("best_of")))
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
        answers *= len(prompt)
    return answers


# --- generated text of a stream, for estimating usage when the provider gives none ----

def chat_generated_texts(event: dict) -> Iterator[str]:
    """The text and tool-call arguments one streamed chat chunk (or a whole answer) adds."""
    for choice in event.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta") or choice.get("message") or {}
        if not isinstance(delta, dict):
            continue
        yield from _content_texts(delta.get("content"))
        for call in delta.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                yield from (v for v in (function.get("name"), function.get("arguments"))
                            if isinstance(v, str))


def completions_generated_texts(event: dict) -> Iterator[str]:
    for choice in event.get("choices") or ():
        if isinstance(choice, dict) and isinstance(choice.get("text"), str):
            yield choice["text"]


def responses_generated_texts(event: dict) -> Iterator[str]:
    delta = event.get("delta")
    if isinstance(delta, str) and str(event.get("type", "")).endswith(".delta"):
        yield delta


def chat_usage_from_event(event: dict) -> Usage | None:
    """A chat, completions or embeddings chunk's usage (the last one's, when asked for)."""
    return usage_from(event.get("usage"))


def responses_usage_from_event(event: dict) -> Usage | None:
    if event.get("type") in ("response.completed", "response.incomplete", "response.failed"):
        response = event.get("response")
        return usage_from_response(response) if isinstance(response, dict) else None
    return None
