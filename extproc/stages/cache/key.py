"""The response cache's key: what a provider would be asked, whatever dialect asked it.

A request the caller's codec decodes into the conversation model is keyed on that
conversation (stages/cache/lookup.py): its system prompt, turns, tools and settings, with the
system turns a chat caller writes first folded into the system prompt as Anthropic's
and Google's callers write it. A chat call, a Messages call and a Gemini call asking one
model the same thing therefore share an entry, as the provider would get one request
for them; the answer is told to each in its own dialect (dialects/replay.py). What
cannot change the answer is left out: who asks (`user`), the caller's tags
(`metadata`), whether it streams, where the caller wrote each field.

A request the conversation model cannot hold (a field it has no place for, such as
`logprobs`; an endpoint that is not a conversation, such as the legacy completions) is
keyed on its own body, canonicalised (keys sorted, `Codec.answer_neutral_fields` left
out), with its endpoint: such entries are for callers of that endpoint only.

What reaches the provider beside the conversation is keyed too, so that no caller can
plant an answer others receive by sending something the key leaves out:
- when a backend of the model speaks the caller's dialect it gets the caller's body as
  it is, with whatever the conversation model drops (`messages[].name`): a request whose
  reading dropped anything is keyed on its canonical body as well;
- every request header that reaches each backend's provider (`anthropic-beta`,
  `openai-beta`, `anthropic-version` as its dialect sets it, a passed account header, any
  header the gateway does not know), but the credential, the
  request id and trace context, the transport's and the SDKs' own (`user-agent`,
  `x-stainless-*`), and the gateway's (`x-gateway-*`, `cache-control`);
- the query string the caller sent, when a backend of the caller's dialect gets it, but a
  credential in it (Google's `key=`) and a stream's framing (`alt=sse`).
"""

from __future__ import annotations

import dataclasses
import hashlib

import orjson

from ...api.providers import CREDENTIAL_HEADERS
from ...config.envoy_contract import INTERNAL_HEADER_PREFIX
from ...dialects import dialect_named
from ...dialects.conversation import Conversation, Notes
from ...pipeline.call import Call
from ..provider_headers import is_withheld

_NOT_KEYED = frozenset({"user", "metadata", "stream", "include_usage", "names", "places", "dialect", "model", "echo"})
KEYED_FIELDS = tuple(f.name for f in dataclasses.fields(Conversation) if f.name not in _NOT_KEYED)
_SYSTEM_ROLES = ("system", "developer")

# Request headers that reach a provider yet cannot change its answer: transport, trace
# context and request ids, what an SDK says of itself. Every other header is keyed (one
# the gateway does not know included: keying too much only splits entries).
_ANSWER_NEUTRAL_HEADERS = frozenset({
    "host", "content-length", "content-type", "content-encoding", "accept", "accept-encoding", "accept-language",
    "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "expect", "via", "user-agent",
    "cache-control", "pragma", "x-request-id", "x-client-request-id", "request-id", "idempotency-key",
    "traceparent", "tracestate", "baggage", "b3", "x-cloud-trace-context", "x-amzn-trace-id", "sentry-trace",
    "x-forwarded-proto", *CREDENTIAL_HEADERS})
_ANSWER_NEUTRAL_PREFIXES = (":", INTERNAL_HEADER_PREFIX, "x-envoy-", "x-stainless-", "x-b3-")
# Query parameters that cannot change an answer: a caller's credential (Google's
# clients' `?key=`), a stream's framing (Google's `alt=sse`; streaming is not keyed).
_QUERY_NOT_KEYED = frozenset({"key", "alt"})


def conversation_of(call: Call) -> tuple[Conversation | None, bool]:
    """The request as the conversation model holds it (None when it cannot), and whether
    reading it dropped anything of the caller's body."""
    codec = call.codec
    if not codec.translates:
        return None, False
    notes = Notes()
    try:
        return codec.decode_request(call.body, notes, True), bool(notes.dropped)
    except Exception:                 # noqa: BLE001 - a field it has no place for: keyed on the body
        return None, False


def conversation_fields(conversation: Conversation, turns: list) -> dict:
    """The fields that can change an answer, `turns` in place of the conversation's, the
    leading system turns folded into the system prompt."""
    fields = {name: getattr(conversation, name) for name in KEYED_FIELDS}
    system = list(conversation.system)
    start = 0
    while start < len(turns) and turns[start]["role"] in _SYSTEM_ROLES:
        system.extend(turns[start]["content"])
        start += 1
    fields["system"], fields["turns"] = system, turns[start:]
    return fields


_KEYED, _NEUTRAL, _WITHHELD = 0, 1, 2
# Each header name's kind, learned once (names repeat from call to call); bounded, as
# callers choose names.
_KINDS: dict[str, int] = {}
_MAX_KINDS = 4096


def _kind(name: str) -> int:
    kind = _KINDS.get(name)
    if kind is None:
        kind = (_NEUTRAL if name in _ANSWER_NEUTRAL_HEADERS or name.startswith(_ANSWER_NEUTRAL_PREFIXES)
                else _WITHHELD if is_withheld(name) else _KEYED)
        if len(_KINDS) < _MAX_KINDS:
            _KINDS[name] = kind
    return kind


def provider_extras(call: Call, dropped: bool) -> bytes:
    """What each backend's provider receives that the conversation does not say (module
    docstring): the headers that reach it (the caller's, less those its dialect removes,
    with those its dialect sets: `anthropic-version`), and, for a backend of the caller's
    dialect (it gets the caller's path, query and body as they are), the query and, when
    reading the body dropped something, the body. Raises TypeError or ValueError for a
    body orjson cannot write again."""
    caller = call.headers
    kinds = _KINDS
    keyed, withheld = [], []
    for name, value in caller.items():
        kind = kinds.get(name)
        if kind is None:
            kind = _kind(name)
        if kind == _KEYED:
            keyed.append((name, value))
        elif kind == _WITHHELD:
            withheld.append((name, value))
    query = sorted(part for part in call.query.split("&")
                   if part and part.partition("=")[0] not in _QUERY_NOT_KEYED) if call.query else []
    body = None
    if dropped:
        neutral = call.codec.answer_neutral_fields
        body = {k: v for k, v in call.body.items() if k not in neutral and k != "model"}
    extras = []
    for backend in call.model.backends:
        dialect = backend.dialect
        dialect_set, removed, _ = dialect_named(dialect).attempt_headers(caller)
        sent = {name: value for name, value in keyed if name not in removed}
        sent.update((name, value) for name, value in withheld if name in backend.provider.pass_headers)
        sent.update((name, value) for name, value in dialect_set.items() if _kind(name) == _KEYED)
        same = dialect == call.dialect
        # What a backend of another dialect never gets is empty, as when the caller sent none.
        extras.append((sorted(sent.items()), query if same else [], body if same else None))
    return orjson.dumps(extras)


def key_digest(call: Call, scope: str, conversation: Conversation | None, extras: bytes) -> str:
    """`extras`: provider_extras(call, ...). Raises TypeError or ValueError for a body
    orjson cannot write again (a huge integer)."""
    model = call.model
    backends = ",".join(f"{b.provider.name}/{b.model}" for b in model.backends)
    digest = hashlib.sha256(f"{scope}\0{model.name}\0{backends}\0".encode())
    digest.update(extras)
    if conversation is not None:
        digest.update(b"\0conversation\0")
        digest.update(orjson.dumps(conversation_fields(conversation, conversation.turns),
                                   option=orjson.OPT_SORT_KEYS))
    else:
        neutral = call.codec.answer_neutral_fields
        digest.update(f"\0{call.endpoint.kind}\0".encode())
        digest.update(orjson.dumps({k: v for k, v in call.body.items() if k not in neutral},
                                   option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()
