"""Digests of texts, for the findings remembered by text (known.py): each text's digest
made once per request however many guardrails look it up, and a resent text's digest
found again by a compare rather than hashed again (api/resent_texts.py). Imports
nothing of the gateway but that.
"""

from __future__ import annotations

import hashlib

from ..api.resent_texts import ResentTexts


class TextDigests:
    """Each text's digest, made once per request however many guardrails look it up (a
    long history's hashing is most of what a resent turn costs). Holds each text it
    hashed, so that an `id` stays the text's for as long as the object lives."""

    __slots__ = ("_by_id",)

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[str, bytes]] = {}

    def of(self, text: str) -> bytes:
        entry = self._by_id.get(id(text))
        if entry is None or entry[1] is None:       # (None: an empty text, as of_all holds it)
            entry = self._by_id[id(text)] = (text, text_digest(text))
        return entry[1]

    def of_all(self, texts: list[str]) -> list[bytes | None]:
        """Each text's digest (None for an empty text), the ones made already found in C."""
        by_id = self._by_id
        entries = list(map(by_id.get, map(id, texts)))
        if None not in entries:
            return [entry[1] if text else None for entry, text in zip(entries, texts)]
        # The first guardrail to ask: the kept texts' digests found in C (a resent history's
        # are the very objects kept), the others made one by one, all held at once.
        out = DIGESTED.get_many(texts)
        for index in [index for index, digest in enumerate(out) if digest is None]:
            text = texts[index]
            entry = entries[index]
            out[index] = entry[1] if entry is not None else text_digest(text) if text else None
        by_id.update(zip(map(id, texts), zip(texts, out)))
        return out


# A resent text's digest is found again by its length and ends and a compare of the
# text whole, as api/tokens.py finds its counts: the texts are held here, in the worker's
# memory only (the findings map and the store hold digests).
MIN_CHARS = 512                                 # shorter texts are hashed, not kept
DIGESTED: ResentTexts[bytes] = ResentTexts(min_chars=MIN_CHARS, max_bytes=16_000_000)
_found, _keep = DIGESTED.get, DIGESTED.put      # (bound once: a look-up per text of a history)


def text_digest(text: str) -> bytes:
    if len(text) < MIN_CHARS:
        return _hash(text)
    digest = _found(text)
    if digest is None:
        digest = _hash(text)
        _keep(text, digest)
    return digest


def _hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
