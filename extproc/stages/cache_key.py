"""The response cache's key: what a provider would be asked, whatever dialect asked it.

A request the caller's codec decodes into the conversation model is keyed on that
conversation (cache_lookup.py): its system prompt, turns, tools and settings, with the
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
"""

from __future__ import annotations

import dataclasses
import hashlib

import orjson

from ..dialects.conversation import Conversation, Notes
from ..pipeline.call import Call

_NOT_KEYED = frozenset({"user", "metadata", "stream", "include_usage", "names", "places", "dialect", "model", "echo"})
KEYED_FIELDS = tuple(f.name for f in dataclasses.fields(Conversation) if f.name not in _NOT_KEYED)
_SYSTEM_ROLES = ("system", "developer")


def conversation_of(call: Call) -> Conversation | None:
    """The request as the conversation model holds it; None when it cannot."""
    codec = call.codec
    if not codec.translates:
        return None
    try:
        return codec.decode_request(call.body, Notes(), True)
    except Exception:                 # noqa: BLE001 - a field it has no place for: keyed on the body
        return None


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


def key_digest(call: Call, scope: str, conversation: Conversation | None) -> str:
    """Raises TypeError or ValueError for a body orjson cannot write again (a huge integer)."""
    model = call.model
    backends = ",".join(f"{b.provider.name}/{b.model}" for b in model.backends)
    digest = hashlib.sha256(f"{scope}\0{model.name}\0{backends}\0".encode())
    if conversation is not None:
        digest.update(b"conversation\0")
        digest.update(orjson.dumps(conversation_fields(conversation, conversation.turns),
                                   option=orjson.OPT_SORT_KEYS))
    else:
        neutral = call.codec.answer_neutral_fields
        digest.update(f"{call.endpoint.kind}\0".encode())
        digest.update(orjson.dumps({k: v for k, v in call.body.items() if k not in neutral},
                                   option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()
