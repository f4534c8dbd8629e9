"""The conversation model: what any dialect's request, answer and stream say, in one form.

A call whose provider speaks another dialect than its caller is translated through this
model (translate/bridge.py): the caller's codec decodes the request into a `Conversation`
and the provider's encodes it; the provider's codec decodes the answer into an `Answer`
(a stream into `Event`s) and the caller's encodes it. Each dialect is read and written
once, in its own modules; a new dialect is a decoder and an encoder of this model, not a
translation to every other.

Content is a list of blocks, each a dict with a `type` from BLOCK_TYPES (the TypedDicts
below say their fields). Their vocabulary follows Anthropic's Messages, the richest of
the dialects (thinking with its signature, redacted thinking, documents, tool results
holding blocks), plus audio. A signature (a thinking block's, a Gemini function call's
`thoughtSignature`) is only readable by the dialect that made it: `origin` names that
dialect and an encoder of another drops it. A block of a type not listed here is one only
its own dialect knows (Anthropic's `search_result`, `container_upload`): it keeps its raw
form, and an encoder that cannot carry it refuses the request naming it.

Notes and refusals name the caller's fields: a decoder records in `Conversation.names`
what the caller called the fields an encoder may drop or refuse (`conversation.field(...)`).

Imports api only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal, TypedDict

from ..api.usage import Usage

# --- what a translation notes or refuses ---------------------------------------------


class Refused(Exception):
    """A request the translation cannot carry without changing the answer (a 400 naming
    the field, in the caller's dialect)."""

    # A refusal may quote the value it refuses (the caller's own): never more than this.
    MAX_MESSAGE = 500

    def __init__(self, field_name: str, message: str) -> None:
        if len(message) > self.MAX_MESSAGE:
            message = message[:self.MAX_MESSAGE] + "…"
        super().__init__(message)
        self.field = field_name
        self.message = message


@dataclass(slots=True)
class Notes:
    """What a translation did that the caller should know: named on the log line."""
    dropped: list[str] = field(default_factory=list)       # hints the provider has no use for
    defaulted: list[str] = field(default_factory=list)     # fields set for the provider (max_tokens)


def note(names: list[str], name: str) -> None:
    """Names `name` once in a Notes list (a long conversation repeats the same field)."""
    if name not in names:
        names.append(name)


def read_fields(readers: Iterable[Callable[..., None]], whole: bool, *args: Any) -> None:
    """Runs a decoder's field readers on `args`. Reading only a request's head (`whole`
    False: to read its answer back) a refusal is passed over: the request was refused, or
    not, when it was read whole."""
    for reader in readers:
        try:
            reader(*args)
        except Refused:
            if whole:
                raise


@dataclass(frozen=True, slots=True)
class Target:
    """What an encoder needs to know of the attempt's backend."""
    model: str                         # the model's name at the provider
    default_max_tokens: int = 4096     # when the provider needs an output cap the caller did not set
    stream: bool = False               # the call streams (a Gemini caller says so in its path, not its body)


# --- content blocks ------------------------------------------------------------------

class Source(TypedDict, total=False):
    type: Literal["base64", "url", "text", "content", "file"]
    media_type: str                   # base64, text
    data: str                         # base64: the bytes in base64; text: the text itself
    url: str                          # url
    content: list                     # content: blocks
    file_id: str                      # file: an id only its provider knows


class TextBlock(TypedDict, total=False):
    type: Literal["text"]
    text: str
    cache_control: dict               # a prompt-cache breakpoint (Anthropic's; LiteLLM's clients send it too)
    refusal: bool                     # the model's refusal (OpenAI's `refusal`), where a dialect tells it apart


class ImageBlock(TypedDict, total=False):
    type: Literal["image"]
    source: Source
    detail: str                       # OpenAI's low/high/auto
    cache_control: dict


class DocumentBlock(TypedDict, total=False):
    type: Literal["document"]
    source: Source
    title: str
    context: str
    citations: dict
    cache_control: dict


class AudioBlock(TypedDict, total=False):
    type: Literal["audio"]
    format: str                       # wav, mp3
    data: str                         # base64


class ToolUseBlock(TypedDict, total=False):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict
    signature: str                    # Gemini's thoughtSignature on a function call
    origin: str                       # the dialect that made the signature
    cache_control: dict


class ToolResultBlock(TypedDict, total=False):
    type: Literal["tool_result"]
    tool_use_id: str
    name: str                         # the called tool's name (Gemini pairs results by name)
    content: str | list               # a text, or blocks (text, image, document)
    is_error: bool
    cache_control: dict


class ThinkingBlock(TypedDict, total=False):
    type: Literal["thinking"]
    thinking: str
    signature: str                    # "" when the provider signs nothing
    origin: str                       # the dialect that made the signature


class RedactedThinkingBlock(TypedDict, total=False):
    type: Literal["redacted_thinking"]
    data: str
    origin: str


Block = dict[str, Any]
BLOCK_TYPES = frozenset({"text", "image", "document", "audio", "tool_use", "tool_result", "thinking",
                         "redacted_thinking"})


class Turn(TypedDict):
    """One turn: `user` or `assistant` (a `system` turn stands where the caller put it;
    `developer`, OpenAI's newer name for one, is a system turn an OpenAI provider takes as such)."""
    role: str
    content: list[Block]


class Tool(TypedDict, total=False):
    name: str
    description: str
    input_schema: dict
    strict: bool
    cache_control: dict


@dataclass(slots=True)
class ToolChoice:
    mode: Literal["auto", "any", "none", "tool"]
    name: str | None = None           # mode "tool": the tool to call


@dataclass(slots=True)
class Reasoning:
    """How hard the model thinks: an effort (OpenAI's words), a budget of tokens
    (Anthropic's, Gemini's), or both; `enabled` False turns thinking off."""
    enabled: bool = True
    effort: str | None = None         # minimal, low, medium, high, xhigh, max
    budget: int | None = None         # thinking tokens
    adaptive: bool = False            # the model decides (Anthropic's `adaptive`)
    hidden: bool = False              # think, but show no thinking (Anthropic's display "omitted")
    summary: str | None = None        # Responses' reasoning.summary
    raw: dict | None = None           # the caller's own field, for a provider of its dialect


@dataclass(slots=True)
class AnswerFormat:
    """The answer as JSON: any object (`json_object`) or one matching `schema`."""
    kind: Literal["json_object", "json_schema"]
    schema: dict | None = None
    name: str | None = None
    strict: bool | None = None
    description: str | None = None


# --- a request -----------------------------------------------------------------------

@dataclass(slots=True)
class Conversation:
    """A request, whatever dialect it came in."""
    dialect: str                                   # the caller's dialect (Dialect.name)
    model: str | None = None
    system: list[Block] = field(default_factory=list)          # text blocks
    turns: list[Turn] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None        # False: at most one call per answer
    max_output: int | None = None                  # the caller's cap on generated tokens
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    candidates: int = 1                            # answers asked for (OpenAI's n, Gemini's candidateCount)
    reasoning: Reasoning | None = None
    answer_format: AnswerFormat | None = None
    verbosity: str | None = None
    user: str | None = None                        # who the end user is (opaque id)
    metadata: dict | None = None                   # the caller's own tags
    stream: bool = False
    include_usage: bool = False                    # a chat stream's usage chunk was asked for
    # What only some dialects carry, by the caller's field name: an encoder that can carry
    # one takes it (OpenAI's presence_penalty to Gemini), the others note it dropped.
    hints: dict[str, Any] = field(default_factory=dict)
    # The caller's name for a field of this model (notes and refusals name the caller's).
    names: dict[str, str] = field(default_factory=dict)
    # What the caller's dialect repeats in its answer (a Responses object echoes its
    # request's settings), as the caller wrote it.
    echo: dict[str, Any] = field(default_factory=dict)
    # Where the caller wrote each turn and content block (by the object's id), so that an
    # encoder refusing one names it as the caller did ("messages[2].content[0]").
    places: dict[int, str] = field(default_factory=dict)

    def field(self, name: str) -> str:
        """The caller's name for field `name` of this model."""
        return self.names.get(name, name)

    def place(self, part: object) -> str:
        """Where the caller wrote a turn or a block (its list of turns when not known)."""
        return self.places.get(id(part)) or self.field("turns")


# --- an answer -----------------------------------------------------------------------

# Why an answer stopped, whatever the dialect calls it.
END, LENGTH, TOOL_USE, STOP_SEQUENCE, REFUSAL, CONTENT_FILTER, PAUSE = (
    "end", "length", "tool_use", "stop_sequence", "refusal", "content_filter", "pause")


@dataclass(slots=True)
class Answer:
    id: str | None = None
    model: str | None = None
    content: list[Block] = field(default_factory=list)
    stop: str = END
    stop_sequence: str | None = None
    usage: Usage | None = None
    service_tier: str | None = None                # OpenAI's names: default, priority, flex


@dataclass(slots=True)
class Problem:
    """An error, whatever dialect wrote it: its kind in Anthropic's words (the finest of
    the dialects: invalid_request_error, authentication_error, permission_error,
    not_found_error, request_too_large, rate_limit_error, billing_error, api_error,
    overloaded_error, timeout_error) and its message."""
    kind: str
    message: str
    # OpenAI's own words when the provider wrote them, for an OpenAI caller: its error
    # type (invalid_request_error, server_error, ...), code and param.
    openai_type: str | None = None
    code: str | None = None
    param: str | None = None


# --- a stream ------------------------------------------------------------------------

class Event:
    """One step of a streamed answer. `kind` is one of:
      start        the answer begins (`id`, `model`, `usage`: the prompt's, when known)
      block        a block begins at `index` (`block`: its type and header: a tool call's
                   id and name, a thinking block's signature so far)
      delta        more of block `index`: `delta` is text, thinking, json (a tool call's
                   input), or signature; `text` the piece
      block_stop   block `index` is complete
      usage        the answer's usage so far (`usage`), cumulative
      stop         why it stopped (`stop`, `stop_sequence`); more usage may follow
      end          the answer is complete
      error        the provider failed mid-stream (`problem`); nothing follows
    Blocks may interleave (OpenAI streams parallel tool calls so): an encoder whose
    dialect needs them one after another orders them."""
    __slots__ = ("kind", "index", "block", "delta", "text", "usage", "stop", "stop_sequence", "id", "model",
                 "problem")

    def __init__(self, kind: str, index: int = 0, *, block: Block | None = None, delta: str = "",
                 text: str = "", usage: Usage | None = None, stop: str | None = None,
                 stop_sequence: str | None = None, id: str | None = None, model: str | None = None,
                 problem: Problem | None = None) -> None:
        self.kind = kind
        self.index = index
        self.block = block
        self.delta = delta
        self.text = text
        self.usage = usage
        self.stop = stop
        self.stop_sequence = stop_sequence
        self.id = id
        self.model = model
        self.problem = problem

    def __repr__(self) -> str:
        fields = {name: getattr(self, name) for name in self.__slots__ if getattr(self, name) not in (None, "", 0)}
        return f"Event({fields})"
