"""A memory of what was worked out from long texts that come again: an agent resends its
whole history on every turn, and the token counts (tokens.py) and the guardrails' digests
(guardrails/text_digests.py) of its earlier turns are found here rather than worked out
again. Imports nothing of the gateway.

A text is looked up by its length and ends (hashing a whole 4 KB text costs more than
its look-up should), and a hit is the text itself, compared whole (memcmp, ~1 µs; ~10x
faster than encoding and hashing it), so a value is never another text's. A text that
is the very object kept (a long body's values are handed out again: resent_values.py)
is found by its identity first. Bounded by the bytes the kept texts hold; the oldest go
first."""

from __future__ import annotations

import sys
from itertools import repeat
from typing import Generic, TypeVar

Value = TypeVar("Value")

_ENDS = 48          # characters of each end in a text's key


def held_bytes(text: str) -> int:
    """What a kept text holds in memory: the string (1, 2 or 4 bytes a character), and for
    non-ASCII text the UTF-8 copy that orjson and the tokenizer make of it."""
    return sys.getsizeof(text) + (0 if text.isascii() else len(text))


class ResentTexts(Generic[Value]):
    """Texts of `min_chars` or more and a value of each, within `max_bytes` (a text over a
    quarter of it is not kept). `scope` parts the values of one text (a count per
    tokenizer)."""

    __slots__ = ("min_chars", "max_bytes", "held", "_kept", "_objects")

    def __init__(self, min_chars: int = 512, max_bytes: int = 16_000_000) -> None:
        self.min_chars, self.max_bytes = min_chars, max_bytes
        self.held = 0                                   # bytes the kept texts hold
        self._kept: dict[tuple[str, int, str, str], tuple[str, Value, int]] = {}
        # (id of a kept text, scope) -> its key in _kept; the entry holds the text, so
        # the id is its own while it is kept, and leaves with it.
        self._objects: dict[tuple[int, str], tuple[str, int, str, str]] = {}

    def get(self, text: str, scope: str = "") -> Value | None:
        key = self._objects.get((id(text), scope))
        if key is not None:
            return self._kept[key][1]
        kept = self._kept.get((scope, len(text), text[:_ENDS], text[-_ENDS:]))
        return kept[1] if kept is not None and kept[0] == text else None

    def get_many(self, texts: list[str], scope: str = "") -> list[Value | None]:
        """Each text's value, those of the very objects kept found in C (a resent history's
        texts: resent_values.py hands them out again); the others looked up one by one."""
        keys = list(map(self._objects.get, zip(map(id, texts), repeat(scope))))
        entries = list(map(self._kept.get, keys))
        get, least = self.get, self.min_chars
        return [entry[1] if entry is not None else get(text, scope) if len(text) >= least else None
                for entry, text in zip(entries, texts)]

    def put(self, text: str, value: Value, scope: str = "") -> None:
        size = held_bytes(text)
        if len(text) < self.min_chars or size > self.max_bytes // 4:
            return
        kept = self._kept
        key = (scope, len(text), text[:_ENDS], text[-_ENDS:])
        replaced = kept.pop(key, None)                  # same length and ends, another text
        if replaced is not None:
            self._forget(key, replaced)
        while kept and self.held + size > self.max_bytes:
            oldest = next(iter(kept))
            self._forget(oldest, kept.pop(oldest))
        kept[key] = (text, value, size)
        self._objects[(id(text), scope)] = key
        self.held += size

    def _forget(self, key: tuple[str, int, str, str], entry: tuple[str, Value, int]) -> None:
        self.held -= entry[2]
        del self._objects[(id(entry[0]), key[0])]

    def texts(self) -> list[str]:
        return [text for text, _value, _size in self._kept.values()]

    def clear(self) -> None:
        self._kept.clear()
        self._objects.clear()
        self.held = 0

    def __len__(self) -> int:
        return len(self._kept)
