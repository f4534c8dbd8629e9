"""The text a mock answer is made of: the echo cut to a token limit, and the pieces a
stream sends it in (x-mock-chunk-chars, x-mock-chunk-units, else words)."""

from __future__ import annotations

import re

from aiohttp import web

from ..api.tokens import get_encoding, token_ids
from .listener import Listener, int_option

_WORD = re.compile(r"\s*\S+|\s+")


def cut_to_tokens(text: str, limit: int | None, encoding: str) -> tuple[str, bool]:
    """`text` cut to its first `limit` tokens (None: no limit), and whether it was cut."""
    if limit is None:
        return text, False
    tokens = token_ids(text, encoding)
    if len(tokens) <= limit:
        return text, False
    return get_encoding(encoding).decode(tokens[:limit]), True


def words(text: str) -> list[str]:
    """Each word with the whitespace before it, as model tokens come (" the")."""
    return _WORD.findall(text) or [""]


def utf16_pieces(text: str, units: int) -> list[str]:
    """Pieces of `units` UTF-16 code units, as a JavaScript server slicing its strings sends:
    an emoji's two halves may land in two pieces, each a lone surrogate."""
    utf16 = text.encode("utf-16-le", "surrogatepass")
    return [utf16[i:i + 2 * units].decode("utf-16-le", "surrogatepass") for i in range(0, len(utf16), 2 * units)]


def stream_pieces(listener: Listener, request: web.Request, text: str) -> list[str]:
    """The pieces a stream sends `text` in (never none: an empty text is one empty piece)."""
    size = int_option(listener, request, "chunk-chars")
    units = int_option(listener, request, "chunk-units")
    if size:
        pieces = [text[i:i + size] for i in range(0, len(text), size)]
    else:
        pieces = utf16_pieces(text, units) if units else words(text)
    return pieces or [""]
