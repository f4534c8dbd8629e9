"""Translation between API dialects: a caller speaking one, a provider another.

`translation_for(caller, provider, kind)` gives the `Bridge` that joins the caller's codec
and the provider's through the conversation model (dialects/conversation.py), or None
when both speak the same API: then nothing is touched, and every field, betas included,
passes as the caller sent it. The stages only call it and the Bridge's methods.

What cannot be carried across follows one rule per field, in the codecs' tables: a hint
that only tunes one provider is dropped and named in `Notes.dropped` (the log line shows
it); a field whose loss would change the answer refuses the request (`Refused`, a 400
naming the field, in the caller's dialect). Content is never silently lost.

Imports api and dialects only: nothing of the pipeline, stages or transport.
"""

from __future__ import annotations

from ..dialects import codec_of, dialect_named
from ..dialects.conversation import Notes, Refused, Target
from .bridge import Bridge, BridgedStream
from .embeddings import EmbeddingBridge

__all__ = ["Bridge", "BridgedStream", "EmbeddingBridge", "Notes", "Refused", "Target", "Translation",
           "translation_for"]

Translation = Bridge | EmbeddingBridge


def translation_for(caller: str, provider: str, kind: str) -> Translation | None:
    """The translation from a caller's dialect (and endpoint kind) to a provider's; None
    when they speak the same. Raises Refused for an endpoint the provider has no match for."""
    if caller == provider:
        return None
    provider_dialect = dialect_named(provider)
    if kind == provider_dialect.generation_kind:
        return None                        # the same API, though the dialects' names differ
    caller_codec = codec_of(kind)
    if caller_codec.embeds:
        if not provider_dialect.embedding_kind:
            raise Refused("model", f"This model's provider speaks {provider_dialect.described}, which has no "
                                   "embeddings endpoint the gateway translates to.")
        return EmbeddingBridge(caller, caller_codec, provider, codec_of(provider_dialect.embedding_kind))
    if not caller_codec.translates:
        raise Refused("model", f"This model's provider speaks {provider_dialect.described}, which has no "
                               f"{kind} endpoint; use /v1/chat/completions, /v1/responses or /v1/messages.")
    return Bridge(caller, caller_codec, provider, codec_of(provider_dialect.generation_kind))
