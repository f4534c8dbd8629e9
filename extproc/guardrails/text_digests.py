"""Digests of texts, for the findings remembered by text (known.py): each text's digest
made once per request however many guardrails look it up, and a resent text's digest
found again by a compare rather than hashed again. Imports nothing of the gateway.
"""

from __future__ import annotations

import hashlib
import sys


class TextDigests:
    """Each text's digest, made once per request however many guardrails look it up (a
    long history's hashing is most of what a resent turn costs). Holds each text it
    hashed, so that an `id` stays the text's for as long as the object lives."""

    __slots__ = ("_by_id",)

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[str, bytes]] = {}

    def of(self, text: str) -> bytes:
        entry = self._by_id.get(id(text))
        if entry is None:
            entry = self._by_id[id(text)] = (text, text_digest(text))
        return entry[1]

    def of_all(self, texts: list[str]) -> list[bytes | None]:
        """Each text's digest (None for an empty text), the ones made already found in C."""
        entries = list(map(self._by_id.get, map(id, texts)))
        if None in entries:
            of = self.of
            return [of(text) if text else None for text in texts]
        return [entry[1] if text else None for entry, text in zip(entries, texts)]


# A resent text's digest is found again by its length and ends and a compare of the
# text whole (memcmp, ~10x faster than encoding and hashing it), as api/tokens.py finds
# its counts: the texts are held here, in the worker's memory only (the findings map and
# the store hold digests). Bounded by the bytes the kept texts hold (as api/tokens.py
# counts them: non-ASCII text takes 2 or 4 bytes a character, and a UTF-8 copy); the
# oldest go first.
MEMO_MIN_CHARS = 512
MEMO_MAX_BYTES = 16_000_000
_ENDS = 48
_memo: dict[tuple[int, str, str], tuple[str, bytes, int]] = {}
_memo_bytes = 0


def text_digest(text: str) -> bytes:
    if len(text) < MEMO_MIN_CHARS:
        return _hash(text)
    key = (len(text), text[:_ENDS], text[-_ENDS:])
    kept = _memo.get(key)
    if kept is not None and kept[0] == text:
        return kept[1]
    digest = _hash(text)
    _keep(key, text, digest)
    return digest


def _hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _keep(key: tuple[int, str, str], text: str, digest: bytes) -> None:
    global _memo_bytes
    size = sys.getsizeof(text) + (0 if text.isascii() else len(text))
    if size > MEMO_MAX_BYTES // 4:
        return
    replaced = _memo.pop(key, None)             # same length and ends, another text
    if replaced is not None:
        _memo_bytes -= replaced[2]
    while _memo and _memo_bytes + size > MEMO_MAX_BYTES:
        _memo_bytes -= _memo.pop(next(iter(_memo)))[2]
    _memo[key] = (text, digest, size)
    _memo_bytes += size
