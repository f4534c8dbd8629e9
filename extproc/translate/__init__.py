"""Translation between API dialects: a caller speaking one, a provider another.

One module per pair, each a `Translation`: the request the caller sent, as the provider
takes it; the provider's JSON answer, stream events and errors, as the caller reads them.
The stages only call `translation_for(caller, provider)` and these methods (None: the
same dialect on both sides, and nothing is touched: every field, betas included, passes
as the caller sent it). Imports api only: nothing of the pipeline, stages or transport.

What cannot be carried across follows one rule per field (each pair's module lists them):
a hint that only tunes one provider is dropped and named in `Notes.dropped` (the log line
shows it); a field whose loss would change the answer refuses the request (`Refused`, a
400 naming the field, in the caller's dialect). Content is never silently lost.
"""

from __future__ import annotations

from .base import (  # noqa: F401 (the translations' names, as callers import them)
    ANTHROPIC, OPENAI, Notes, Refused, StreamTranslation, Target, Translation, anthropic_event, openai_event)


def translation_for(caller: str, provider: str, kind: str) -> Translation | None:
    """The translation from a caller's dialect (and endpoint kind) to a provider's; None
    when they speak the same. Raises Refused for an endpoint the provider has no match for."""
    if caller == provider:
        return None
    if caller == OPENAI and provider == ANTHROPIC:
        if kind == "responses":
            from .responses_to_messages import ResponsesToMessages
            return ResponsesToMessages()
        if kind != "chat":
            raise Refused("model", f"This model's provider speaks Anthropic's Messages API, which has "
                                   f"no {kind} endpoint; use /v1/chat/completions, /v1/responses or /v1/messages.")
        from .chat_to_messages import ChatToMessages
        return ChatToMessages()
    if caller == ANTHROPIC and provider == OPENAI:
        from .messages_to_chat import MessagesToChat
        return MessagesToChat()
    raise Refused("model", f"No translation from {caller} to {provider}.")
