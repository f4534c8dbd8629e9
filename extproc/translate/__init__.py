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

from importlib import import_module

from .base import (  # noqa: F401 (the translations' names, as callers import them)
    ANTHROPIC, OPENAI, OPENAI_RESPONSES, Notes, Refused, StreamTranslation, Target, Translation, anthropic_event,
    openai_event)


# (caller's dialect, provider's dialect, endpoint kind) -> the translation, made when asked.
_TRANSLATIONS = {
    (OPENAI, ANTHROPIC, "chat"): ("chat_to_messages", "ChatToMessages"),
    (OPENAI, ANTHROPIC, "responses"): ("responses_to_messages", "ResponsesToMessages"),
    (ANTHROPIC, OPENAI, "messages"): ("messages_to_chat", "MessagesToChat"),
    (OPENAI, OPENAI_RESPONSES, "chat"): ("chat_to_responses", "ChatToResponses"),
    (ANTHROPIC, OPENAI_RESPONSES, "messages"): ("chat_to_responses", "MessagesToResponses"),
}
# The same API on both sides, though the dialects' names differ: nothing to translate.
_SAME_API = {(OPENAI, OPENAI_RESPONSES, "responses")}
# What each provider dialect serves, for the refusal of an endpoint it has no match for.
_SERVES = {ANTHROPIC: "Anthropic's Messages API", OPENAI_RESPONSES: "OpenAI's Responses API only"}


def translation_for(caller: str, provider: str, kind: str) -> Translation | None:
    """The translation from a caller's dialect (and endpoint kind) to a provider's; None
    when they speak the same. Raises Refused for an endpoint the provider has no match for."""
    if caller == provider or (caller, provider, kind) in _SAME_API:
        return None
    found = _TRANSLATIONS.get((caller, provider, kind))
    if found is None:
        raise Refused("model", f"This model's provider speaks {_SERVES.get(provider, provider)}, which has "
                               f"no {kind} endpoint; use /v1/chat/completions, /v1/responses or /v1/messages.")
    module, name = found
    return getattr(import_module(f".{module}", __name__), name)()
