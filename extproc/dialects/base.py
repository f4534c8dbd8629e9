"""What every dialect implements: `Dialect`, an API family (how its errors look, its model
list, the headers a provider of it takes), and `Codec`, one endpoint of it (what its
requests, answers and stream events hold: texts, usage, caps, tools, and where a stream's
generated text sits). The defaults are an endpoint that generates nothing."""

from __future__ import annotations

from typing import Any, Iterable, Iterator, NamedTuple

from ..api.provider_json import dumps
from ..api.usage import Usage
from . import request_parts
from .conversation import Answer, Conversation, Event, Notes, Problem, Refused, Target


class TextPiece(NamedTuple):
    """New generated text in a stream event: whose it is (its lane's key), the part of the
    event that carries it (a chat choice), the text, where it goes when the event is
    written again (`Codec.event_with`), and what of the event must leave at once (a tool
    call's id and name, with empty arguments: later events carry arguments only)."""
    key: tuple
    choice: dict | None
    text: str
    slot: object
    header: bytes = b""


def keep_tools(body: dict, field: str, choice: str, allowed) -> None:
    """Keeps the allowed entries of a tools list; none left, the list and its choice go.
    A choice that forces a tool taken out goes too (the model then chooses)."""
    if isinstance(body.get(field), list):
        kept = [entry for entry in body[field] if allowed(entry)]
        if not kept:
            body.pop(field)
            body.pop(choice, None)
            return
        body[field] = kept
    if isinstance(body.get(choice), dict) and not allowed(body[choice]):
        body.pop(choice)


class Dialect:
    """An API family a caller or a provider speaks."""

    name = ""
    key_hint = "'Authorization: Bearer <key>'"      # where a key goes, for a 401's message
    reports_stream_usage = False    # every stream of it carries its usage, asked or not
    needs_output_cap = False        # every request must say how much to generate
    generation_kind = ""            # the endpoint a translated call takes at a provider of it
    embedding_kind = ""             # ... and a translated embeddings call ("": it has none)
    described = ""                  # the API it names, for a refusal ("Anthropic's Messages API")
    # Request headers of this API's providers that choose whose account, project,
    # workspace, quota or credential a call runs under (and so who pays and who stores):
    # exact names, and prefixes whose every header does so except the `api_headers`,
    # which tune the API itself. The gateway calls providers under its operators' account:
    # a caller's are withheld from every provider (stages/provider_headers.py) unless the
    # provider's `pass_headers` names them.
    account_headers: frozenset[str] = frozenset()
    account_header_prefixes: tuple[str, ...] = ()
    api_headers: frozenset[str] = frozenset()

    def error_body(self, status: int, message: str, type: str, code: str | None,
                   request_id: str | None = None) -> bytes:
        raise NotImplementedError

    def error_event(self, message: str, code: str) -> bytes:
        """An SSE event that ends a stream with an error."""
        raise NotImplementedError

    def model_entry(self, name: str, created: int) -> dict:
        raise NotImplementedError

    def model_list(self, entries: list[dict]) -> bytes:
        raise NotImplementedError

    def serves(self, model: str) -> bool:
        """Whether a provider of this dialect serves a model of the price table (for a
        provider that lets callers name its models)."""
        return True

    def attempt_headers(self, caller_headers: dict[str, str]) -> tuple[dict[str, str], list[str], list[str]]:
        """For a request to a provider of this dialect: the headers to set, those of the
        caller's to remove, and the names of what that drops (for the log line)."""
        return {}, [], []


class Codec:
    """One endpoint of a dialect."""

    kind = ""
    dialect: Dialect
    generates = False           # a model answers it and the provider bills it
    charges_output = False      # its answer's tokens are generated output
    answered_here = False       # the gateway answers it itself (model lists)
    reports_own_usage = False   # the gateway answers it itself: the caller's own spend and budgets
    counts_tokens = False       # it counts a request's tokens (and generates nothing)
    stores_responses = False    # its answers are stored at the provider, by id
    names_stored_response = False   # its path names a response stored at the provider
    takes_usage_option = False  # a stream's usage comes only when asked (`stream_options`)
    answers_in_json = False     # its non-streamed answer is one JSON document
    # A call may go to a provider of its dialect with its body unread (stages/body_unread.py):
    # the body names the model, and nothing in it names state the gateway keeps.
    body_may_go_unread = False
    streams = False             # it may answer with an SSE stream of events
    answers_in_chunks = False   # its answer may be too large to buffer: it goes by, its usage read at its end
    usage_only_at_stream_end = False    # a stream's usage is in its last events only: read at all, it is final
    operation = ""              # the gen_ai operation name of its spans
    output_cap_field: str | None = None     # where a request caps one answer's output
    # Every body field (dotted) max_output_tokens and answers_per_request read; None: not
    # said, so a budget cannot reserve for a call whose body is unread (stages/budget/unread.py).
    output_fields: tuple[str, ...] | None = None
    provider_path: str | None = None        # where a call translated into it goes at a provider
    known_fields: frozenset[str] | None = None   # a request's top-level fields it knows
    translates = False          # it decodes and encodes the conversation model (below)
    model_in_body = True        # its requests name their model in the body (Gemini's: in the path)
    model_in_entries = False    # ... and in each entry of a batch too (Gemini's batchEmbedContents)
    embeds = False              # it embeds texts (translated to another dialect's embeddings endpoint)
    # Request fields that cannot change the answer (who asks, how it is delivered): the
    # response cache leaves them out of its key.
    answer_neutral_fields: frozenset[str] = frozenset({"stream", "stream_options", "user", "metadata"})

    # --- requests ---------------------------------------------------------------------

    def query_problem(self, streams: bool, query: str) -> str | None:
        """What is wrong with the request's query for this endpoint (a 400), or None."""
        return None

    def count_answer(self, tokens: int) -> bytes:
        """A counting endpoint's answer (counts_tokens) made by the gateway: `tokens` in its shape."""
        raise NotImplementedError

    def prompt_texts(self, body: dict) -> tuple[list[str], int]:
        """Every prompt text and the number of turns (offline counting)."""
        return [], 0

    def prompt_token_ids(self, body: dict) -> int:
        return 0

    def max_output_tokens(self, body: dict) -> int | None:
        return None

    def for_model(self, body: dict, model: str) -> dict:
        """The body naming the backend's `model` where this endpoint's requests name it (a
        new dict when that changes it; Gemini's name it in the path)."""
        if self.model_in_body and body.get("model") != model:
            return {**body, "model": model}
        return body

    def with_output_cap(self, body: dict, cap: int) -> dict:
        """The body with one answer's output capped at `cap` tokens (where
        `output_cap_field` says)."""
        if self.output_cap_field is not None:
            body[self.output_cap_field] = cap
        return body

    def answers_per_request(self, body: dict) -> int:
        return 1

    def temperature(self, body: dict) -> float | None:
        """The sampling temperature a request sets (None: the provider's default)."""
        value = body.get("temperature")
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def shape_problem(self, body: dict, unchanged: tuple[str, int] | None = None) -> str | None:
        """What is wrong with the body's shape (None: nothing); `unchanged`: the first
        items of an array already found of the right shape (api/schemas.py)."""
        return None

    def request_part(self, body: dict, path: tuple) -> str:
        """Which part of the request (request_parts.py) the string at `path` lies in."""
        return request_parts.USER

    def request_parts(self, body: dict, paths: list[tuple]) -> list[str]:
        """request_part of each path (a dialect may work them out in one pass)."""
        return [self.request_part(body, path) for path in paths]

    def tool_result_names(self, body: dict, paths: list[tuple]) -> list[str]:
        """For each string at `paths`, the name of the tool whose result holds it ("" when
        none or not known): its call's name, found by the call's id where the dialect
        gives results an id rather than a name."""
        return ["" for _ in paths]

    def tool_name(self, tool: Any) -> str:
        return ""

    def tool_names(self, body: dict) -> list[str]:
        return [self.tool_name(tool) for tool in body.get("tools") or ()]

    def remove_tools(self, body: dict, forbidden: list[str]) -> None:
        """Takes the tools named in `forbidden` out of a request (a tools guardrail's `remove`)."""
        keep_tools(body, "tools", "tool_choice", lambda tool: self.tool_name(tool) not in forbidden)

    # --- answers and events -------------------------------------------------------------

    def usage_from_response(self, body: Any) -> Usage | None:
        return None

    def usage_from_event(self, event: dict, so_far: Usage | None) -> Usage | None:
        return so_far

    def usage_from_stream_metadata(self, numbers: dict) -> Usage | None:
        """The usage Envoy read from a stream it passed through (envoy/template.yaml's
        sse_to_metadata rules map OpenAI's names, chat's and the Responses API's, to one
        set of keys; other dialects' have keys of their own, read by their codecs)."""
        if "input_tokens" in numbers or "output_tokens" in numbers:
            return Usage(int(numbers.get("input_tokens", 0)), int(numbers.get("output_tokens", 0)),
                         int(numbers.get("cached_tokens", 0)), int(numbers.get("reasoning_tokens", 0)))
        return None

    def stream_usage_is_final(self, numbers: dict) -> bool:
        """Whether the usage Envoy read from a stream is its final one, though the provider's
        answer may not have come whole (a client that left on the last event)."""
        return self.usage_only_at_stream_end

    def generated_texts(self, event: dict) -> Iterator[str]:
        return iter(())

    def called_tools(self, body: dict) -> list[str]:
        """Tool names an answer (or one streamed event) calls."""
        return []

    def last_tool_calls(self, body: dict) -> list[tuple[str, str, int]]:
        """(name, arguments, count) of the tool calls a request carries back with their
        results, each counted since the last user turn (tool_turns.py): loop stopping."""
        return []

    def repeated_answer(self, body: dict) -> tuple[str, int]:
        """(text, times): the last assistant text answer a request carries and how many of
        its latest assistant turns in a row gave it (repeated_answers.py): loop stopping."""
        return "", 0

    def continued_response(self, body: dict) -> str | None:
        """The id of the stored response a request continues (its run is that response's run)."""
        return None

    def conversation_start(self, body: dict) -> tuple[bytes, list] | None:
        """(system prompt and first user turn as sent, the history) of a request, for runs
        inferred without an id (conversation_start.py); None when it has no user turn."""
        return None

    def final_usage(self, event: dict) -> dict | None:
        """The usage object of the event that carries a stream's final usage, else None."""
        return None

    def response_id(self, answer_or_event: dict, streamed: bool) -> str | None:
        """The id an answer (or the stream event that first names it) gives a stored response."""
        return None

    # --- a stream's generated text, for the response guardrails --------------------------

    def stream_pieces(self, event: dict) -> list[TextPiece]:
        return []

    def rest_of_event(self, event: dict, pieces: list[TextPiece]) -> dict | None:
        """The event without the parts its pieces came in, if it carries more (another
        answer's end, say), else None."""
        return None

    def ended(self, event: dict, keys: Iterable[tuple]) -> list[tuple]:
        """The lanes (by key) whose text is complete once this event is read."""
        return list(keys)

    def whole_texts(self, event: dict) -> list[tuple[Any, Any]]:
        """(container, key) of texts an event repeats whole (redacted in place)."""
        return []

    def event_with(self, template: dict, choice: dict | None, slot: object, text: str) -> bytes:
        """An event carrying `text` in `slot`, shaped as the lane's last event."""
        return b"data: " + dumps(template) + b"\n\n"

    def plugin_pieces(self, event: dict) -> Iterator[tuple[tuple, Any, Any]]:
        """(text key, container, field) of each piece of generated text an event carries."""
        return iter(())

    # --- the conversation model: translation (translate/bridge.py) ----------------------
    # A codec that `translates` implements all of these; the stages reach them through a
    # translate.Translation only.

    def decode_request(self, body: dict, notes: Notes, whole: bool = True) -> Conversation:
        """The request as a Conversation; raises Refused for what the model cannot hold.
        `whole` False: all but the turns, for reading its answer back (never raises)."""
        raise Refused("model", f"A {self.kind} call cannot be translated to another dialect.")

    def encode_request(self, conversation: Conversation, target: Target, notes: Notes) -> dict:
        """The body this endpoint takes for `conversation`, for `target.model`; raises Refused."""
        raise NotImplementedError

    def decode_answer(self, body: dict, conversation: Conversation, notes: Notes | None) -> Answer:
        raise NotImplementedError

    def encode_answer(self, answer: Answer, conversation: Conversation) -> dict:
        raise NotImplementedError

    def stream_decoder(self, conversation: Conversation, notes: Notes | None) -> "StreamDecoder":
        raise NotImplementedError

    def stream_encoder(self, conversation: Conversation, notes: Notes | None) -> "StreamEncoder":
        raise NotImplementedError

    def decode_error(self, status: int, body: Any) -> Problem:
        """A provider's error (its status, and its body parsed: None when not JSON)."""
        raise NotImplementedError

    def encode_error(self, status: int, problem: Problem) -> tuple[int, bytes]:
        """An error as this endpoint's callers read it: the status they expect, the body."""
        raise NotImplementedError


class StreamDecoder:
    """A provider's stream, read event by event as the model's Events (an instance per call)."""

    def read(self, data: dict | None, name: bytes, raw: bytes) -> list[Event]:
        """The Events of one SSE event (`data`: its JSON, None when it is not JSON or
        `[DONE]`; `name`: its `event:` field; `raw`: its bytes)."""
        raise NotImplementedError

    def end(self) -> list[Event]:
        """What the stream's end means once the provider closed it: [] when an `end` or
        `error` Event was already read; `end` when all but the last events came (the
        answer is whole); else an `error` (a cut stream)."""
        raise NotImplementedError


class StreamEncoder:
    """Events written as a caller's stream (an instance per call)."""

    # The call's cost so far, USD: the reader (stages/response_stream.py) sets it as the
    # provider's usage moves; the usage the caller gets at the end carries it.
    cost_usd: float | None = None

    def write(self, event: Event) -> bytes:
        """The caller's bytes for one Event: b"" for none, or several events joined.
        Nothing is written after `end` or `error`."""
        raise NotImplementedError


class Translating:
    """A codec's translation, done by its dialect's modules: `request_module` (decode,
    encode), `answer_module` (decode, encode, decode_error, encode_error) and
    `stream_module` (Decoder, Encoder)."""
    translates = True
    request_module: Any
    answer_module: Any
    stream_module: Any

    def decode_request(self, body: dict, notes: Notes, whole: bool = True) -> Conversation:
        return self.request_module.decode(body, notes, whole)

    def encode_request(self, conversation: Conversation, target: Target, notes: Notes) -> dict:
        return self.request_module.encode(conversation, target, notes)

    def decode_answer(self, body: dict, conversation: Conversation, notes: Notes | None) -> Answer:
        return self.answer_module.decode(body, conversation, notes)

    def encode_answer(self, answer: Answer, conversation: Conversation) -> dict:
        return self.answer_module.encode(answer, conversation)

    def stream_decoder(self, conversation: Conversation, notes: Notes | None) -> StreamDecoder:
        return self.stream_module.Decoder(conversation, notes)

    def stream_encoder(self, conversation: Conversation, notes: Notes | None) -> StreamEncoder:
        return self.stream_module.Encoder(conversation, notes)

    def decode_error(self, status: int, body: Any) -> Problem:
        return self.answer_module.decode_error(status, body)

    def encode_error(self, status: int, problem: Problem) -> tuple[int, bytes]:
        return self.answer_module.encode_error(status, problem)
