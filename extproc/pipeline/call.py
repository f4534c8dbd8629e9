"""The per-request context every pipeline stage reads and fills in."""

from __future__ import annotations

import time
from typing import Any, TypeVar

from ..api.openai import Endpoint
from ..api.usage import Usage
from ..config.filter_config import GatewayConfig, VirtualKey
from ..config.models import Backend, Model
from ..dialects import CODECS, Codec, Dialect, dialect_for_path, dialect_named
from .prompt_tokens import prompt_tokens_of
from .protocol import Reply


T = TypeVar("T")


class _BytesWritten:
    """`body_changed` of a body whose bytes the stage that changed it wrote (`body_bytes`):
    true, as any change is; a later change sets True over it (a plain field: read on every
    call, where a property cost ~1% of a short call's instructions)."""
    __slots__ = ()

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return "BYTES_WRITTEN"


BYTES_WRITTEN = _BytesWritten()


class Call:
    """One HTTP request through the gateway, from request headers to the last body chunk.

    Its fields are what stages share: each stage declares which of them it reads and
    writes (`Stage.reads`, `Stage.writes`; stages/pipelines.py checks the order, and
    tests/test_stage_state.py that the code keeps to what it declares). What only one
    stage (or one stage's module) needs lives in that stage's own state object, made on
    first use by `call.own(StateClass)` and declared next to the stage."""

    __slots__ = (
        "config", "started", "request_id", "request_metadata", "method", "path", "query", "endpoint", "resource_id",
        "headers", "envoy_attributes",
        "key", "raw_body", "body", "body_changed", "body_bytes", "body_facts", "body_grown", "model_name", "model", "backend", "backend_order", "attempts", "stream",
        "client_wants_usage", "status", "response_streamed", "usage", "generated",
        "first_byte_at", "ended_at", "outcome", "error_code", "reply", "sse",
        "finished", "done_due", "stream_over", "event_filters", "service_seconds", "message_started",
        "response_in_body", "stream_passed_through", "body_unread", "envoy_features", "sent_bytes",
        "provider_kind",
        "translation", "stream_translation",
        "tags", "verdicts", "log_fields", "notes", "response_json", "response_id", "ratelimit_headers",
        "output_reserved", "sent_output_tokens", "json_passing_by", "provider_answer", "mcp", "cache", "run", "_prompt_tokens",
        "_owned",
    )

    def __init__(self, config: GatewayConfig, envoy_features: frozenset[str] = frozenset()) -> None:
        self.config = config                 # the snapshot this request runs on, reloads or not
        self.envoy_features = envoy_features  # what the Envoy in front announced (config/envoy_contract.py)
        self.started = time.perf_counter()
        self.request_id = ""
        self.request_metadata: dict | None = None   # metadata_context.filter_metadata as dicts, when sent
        self.envoy_attributes: dict[str, str] = {}   # what the filter asked Envoy for ("cluster")
        self.method = ""
        self.path = ""                       # as the client sent it, without its query
        self.query = ""
        self.endpoint: Endpoint | None = None
        self.resource_id = ""                # the id a path names (/v1/responses/{id}), else ""
        self.headers: dict[str, str] = {}
        self.key: VirtualKey | None = None
        self.raw_body = b""                  # the body as sent, while the request body's hooks run
        self.body: dict[str, Any] | None = None
        self.body_changed = False            # a stage edited `body`; Route re-serializes it
        # `body`'s bytes, written by the stage that changed it (the request guardrails write
        # the history's items they redacted into the bytes as sent), while `body_changed`
        # is BYTES_WRITTEN: a change after it sets True, and Route writes the body again.
        self.body_bytes: bytes | None = None
        # What stages found of these very bytes when they came before, and fill in for the
        # next time (api/resent_values.py): true of `body` while `body_changed` is False.
        self.body_facts: dict | None = None
        # The kept body this one grew from (an agent's next turn: api/resent_values.py's
        # Grown): its facts hold of all but the array's items from `kept` on.
        self.body_grown = None
        self.model_name = ""                 # as the client asked
        self.model: Model | None = None
        self.backend: Backend | None = None  # the backend that served (or was chosen)
        self.backend_order: list[int] = []   # backend indices in attempt order
        self.attempts = 1                    # Envoy's attempt that answered
        self.stream = False
        self.client_wants_usage = False
        self.status = 0                      # HTTP status sent to the client
        self.response_streamed = False
        self.usage: Usage | None = None
        self.generated: list[str] = []       # streamed output text, for estimating usage
        self.first_byte_at: float | None = None
        self.ended_at: float | None = None
        self.outcome = "pending"             # ok | refused | upstream_error | cancelled
        self.error_code: str | None = None
        self.reply = Reply()
        self.sse = None
        self.finished = False                # ended: outcome and end time are final
        self.done_due = False                # ended here, its done hooks not run yet
        self.stream_over = False             # the last reply is out: Envoy sends nothing more
        self.event_filters: list = []        # transform streamed SSE events (guardrails)
        self.service_seconds = 0.0           # time inside the service, messages so far
        self.message_started: float | None = None   # set while a message is being handled
        self.response_in_body = False        # response headers skipped: one message (one_message.py)
        self.stream_passed_through = False   # Envoy streams it unseen, usage at its end (pass_through.py)
        self.body_unread = False             # routed at its headers, body and answer unseen (body_unread.py)
        self.sent_bytes = 0                  # body bytes Envoy sent the client (such a stream only)
        self.provider_kind = ""              # the endpoint at the provider: the caller's, or translated
        self.translation = None              # translate.Translation: the provider speaks another dialect
        self.stream_translation = None       # ... and its state for a streamed answer
        self.tags: dict[str, str] = {}       # the caller's x-gateway-tag-* tags (spend by tag)
        self.verdicts: list[dict] = []       # every guardrail verdict, both directions
        self.log_fields: dict[str, Any] = {}  # more fields for the call's log line
        self.notes = None                    # translate.Notes: what a translation left out or filled in
        self.response_json: dict | None = None   # a JSON answer, parsed once, as the caller gets it
        self.response_id: str | None = None  # a Responses answer's id (stored responses)
        self.ratelimit_headers: dict[str, str] = {}   # what budgets add to the answer
        self.output_reserved = 0             # output per answer a budget reserved for a call with no cap
        self.sent_output_tokens: int | None = None   # a cut stream's output, from what Envoy sent
        self.json_passing_by = False         # a JSON answer too large to buffer goes by in chunks
        self.provider_answer = None          # a JSON answer as the provider wrote it, parsed
        self.mcp = None                      # an MCP call's state (stages/mcp/gate.py)
        self.cache = None                    # the response cache's part in the call (stages/cache/lookup.py)
        self.run = None                      # runs.Run: the agent run the call belongs to (stages/runs/limits.py,
                                             # stages/mcp/gate.py), None when nothing names one
        self._prompt_tokens: int | None = None
        self._owned: dict[type, Any] = {}

    def own(self, kind: type[T]) -> T:
        """The state of type `kind` a stage keeps for this call, made on first use."""
        state = self._owned.get(kind)
        if state is None:
            state = self._owned[kind] = kind()
        return state

    def owned(self, kind: type[T]) -> T | None:
        """That state if the stage made it, else None."""
        return self._owned.get(kind)

    @property
    def dialect(self) -> str:
        """The API the caller speaks: its errors are answered in it."""
        if self.endpoint is not None:
            return self.endpoint.dialect
        return dialect_for_path(self.path)

    @property
    def caller(self) -> Dialect:
        """The caller's dialect (its errors' shape, its model list)."""
        return dialect_named(self.dialect)

    @property
    def codec(self) -> Codec:
        """The endpoint the caller called, in its dialect (the stages ask ~20 times a call)."""
        return CODECS[self.endpoint.kind]

    @property
    def team(self) -> str:
        return self.key.team if self.key else ""

    def prompt_tokens(self) -> int:
        """Prompt tokens counted offline, once per call (guardrail caps and budgets share it)."""
        cached = self._prompt_tokens
        if cached is None:
            unchanged = not self.body_changed
            cached = self._prompt_tokens = prompt_tokens_of(
                self.codec, self.body, self.model.encoding if self.model else "o200k_base",
                self.body_facts if unchanged else None, self.body_grown if unchanged else None)
        return cached

    def output_cap(self) -> int:
        """The most output tokens the call can generate: the request's cap (else what its
        budget reserved, else its model's maximum output; none for embeddings) for each
        answer it asks for (`n`, `best_of`). Also what a stream passed through is charged
        when its usage never came: the service did not see the text."""
        codec = self.codec
        if not codec.charges_output:
            return 0
        each = codec.max_output_tokens(self.body) or self.output_reserved or (
            self.model.output_ceiling(self.dialect)[0] if self.model is not None
            else self.config.store.default_output_tokens)
        return each * codec.answers_per_request(self.body)

    def new_reply(self) -> Reply:
        self.reply = Reply()
        return self.reply
