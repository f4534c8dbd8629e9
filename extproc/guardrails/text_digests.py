"""Digests of texts, for the findings remembered by text (known.py): each text's digest
made once per request however many guardrails look it up, and a resent text's digest
found again by a compare rather than hashed again. Imports nothing of the gateway.
"""

from __future__ import annotations

import hashlib


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
# the store hold digests). Bounded by the characters kept; the oldest go first.
MEMO_MIN_CHARS = 512
MEMO_MAX_CHARS = 16_000_000
_ENDS = 48
_memo: dict[tuple[int, str, str], tuple[str, bytes]] = {}
_memo_chars = 0


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
    global _memo_chars
    if len(text) > MEMO_MAX_CHARS // 4:
        return
    replaced = _memo.pop(key, None)             # same length and ends, another text
    if replaced is not None:
        _memo_chars -= len(replaced[0])
    while _memo and _memo_chars + len(text) > MEMO_MAX_CHARS:
        _memo_chars -= len(_memo.pop(next(iter(_memo)))[0])
    _memo[key] = (text, digest)
    _memo_chars += len(text)
