"""What a body of any endpoint holds, whichever API dialect it is in: the stages ask
here, and each question goes to the dialect's own module (openai.py, anthropic.py).

An endpoint kind names both the endpoint and its dialect: chat, completions, embeddings
and responses are OpenAI's; messages and count_tokens Anthropic's. A translated call's
provider answers in the provider's kind (a chat caller on an Anthropic backend gets a
`messages` answer, read here as one, then translated).
"""

from __future__ import annotations

from typing import Any, Iterator

from . import anthropic, anthropic_schema, openai, openai_schema
from .usage import Usage

OPENAI, ANTHROPIC = "openai", "anthropic"


def dialect(kind: str) -> str:
    return ANTHROPIC if kind in anthropic.MESSAGES_KINDS else OPENAI


def prompt_texts(kind: str, body: dict) -> tuple[list[str], int]:
    """Every prompt text of a request and its number of turns (offline counting)."""
    if kind in anthropic.MESSAGES_KINDS:
        return anthropic.prompt_texts(kind, body)
    return openai.prompt_texts(kind, body)


def prompt_token_ids(kind: str, body: dict) -> int:
    return 0 if kind in anthropic.MESSAGES_KINDS else openai.prompt_token_ids(kind, body)


def max_output_tokens(kind: str, body: dict) -> int | None:
    if kind in anthropic.MESSAGES_KINDS:
        return anthropic.max_output_tokens(kind, body)
    return openai.max_output_tokens(kind, body)


def answers_per_request(kind: str, body: dict) -> int:
    return 1 if kind in anthropic.MESSAGES_KINDS else openai.answers_per_request(kind, body)


def usage_from_response(kind: str, body: Any) -> Usage | None:
    if kind in anthropic.MESSAGES_KINDS:
        return anthropic.usage_from_response(kind, body)
    return openai.usage_from_response(body)


def usage_from_event(kind: str, event: dict, so_far: Usage | None) -> Usage | None:
    """The usage after one streamed event (Anthropic's comes in pieces over the stream)."""
    if kind in anthropic.MESSAGES_KINDS:
        return anthropic.usage_from_event(kind, event, so_far)
    return openai.usage_from_event(kind, event) or so_far


def generated_texts(kind: str, event: dict) -> Iterator[str]:
    if kind in anthropic.MESSAGES_KINDS:
        return anthropic.generated_texts(kind, event)
    return openai.generated_texts(kind, event)


# Where each endpoint takes the cap on what one answer may generate.
OUTPUT_CAP_FIELDS = {**openai.OUTPUT_CAP_FIELDS, "messages": "max_tokens"}


def shape_problem(kind: str, body: dict) -> str | None:
    """What is wrong with a body's shape, naming the field (api/schemas.py); None if nothing."""
    if kind in anthropic.MESSAGES_KINDS:
        return anthropic_schema.shape_problem(kind, body)
    return openai_schema.shape_problem(kind, body)
