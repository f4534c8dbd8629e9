"""Which replica has seen a prompt's leading blocks: an estimate of its prefix cache.

A prompt's text is cut in blocks of `block_chars`; each block's hash chains the one
before it (as vLLM's block hashes do), so a hash stands for the whole prefix up to its
block. Each replica keeps the hashes sent to it, newest last, and forgets the oldest past
`capacity` (vLLM evicts its least recently used blocks). An index from hash to replicas
makes a lookup cost the prompt's blocks, not the replicas' count."""

from __future__ import annotations

import zlib
from collections import OrderedDict

MAX_BLOCKS = 512            # a prompt's leading blocks that count (~128 K characters at 256)


def block_hashes(texts: list[str], block_chars: int) -> list[int]:
    """The chained hashes of the prompt's full leading blocks."""
    prompt = "\x1e".join(texts)
    hashes = []
    previous = 0
    for start in range(0, min(len(prompt) - block_chars + 1, MAX_BLOCKS * block_chars), block_chars):
        previous = hash((previous, prompt[start:start + block_chars]))
        hashes.append(previous)
    return hashes


HOME_CHARS = 8192           # how much of the conversation's start names its home replica


def home_key(texts: list[str]) -> int:
    """A process-independent key of the prompt's start, so that every worker, each with
    its own PrefixTable, sends prompts no replica is known to hold to the same replica
    (rendezvous hashing: picker.py): the first text (a system prompt, a document) when it
    is most of the prompt, else the first two (a conversation's system prompt and first
    user turn: its turns share a home, conversations spread)."""
    if not texts:
        return 0
    first = texts[0]
    start = first if 2 * len(first) >= sum(len(text) for text in texts) else "\x1e".join(texts[:2])
    start = start[:HOME_CHARS]
    return zlib.crc32(start.encode("utf-8", "surrogatepass")) if start else 0


def home_rank(key: int, address: str) -> int:
    return zlib.crc32(address.encode(), key)


class PrefixTable:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._blocks: dict[str, OrderedDict[int, None]] = {}
        self._owners: dict[int, set[str]] = {}

    def matched(self, hashes: list[int]) -> dict[str, int]:
        """For each replica that has the first block: how many leading blocks it has."""
        if not hashes:
            return {}
        owners = self._owners.get(hashes[0])
        if not owners:
            return {}
        depth = {endpoint: 1 for endpoint in owners}
        alive = set(owners)
        for hash_ in hashes[1:]:
            alive &= self._owners.get(hash_, set())
            if not alive:
                break
            for endpoint in alive:
                depth[endpoint] += 1
        return depth

    def record(self, endpoint: str, hashes: list[int]) -> None:
        """`endpoint` now holds these blocks (the most recently used)."""
        blocks = self._blocks.get(endpoint)
        if blocks is None:
            blocks = self._blocks[endpoint] = OrderedDict()
        owners = self._owners
        for hash_ in hashes:
            if hash_ in blocks:
                blocks.move_to_end(hash_)
            else:
                blocks[hash_] = None
                owners.setdefault(hash_, set()).add(endpoint)
        while len(blocks) > self.capacity:
            old, _ = blocks.popitem(last=False)
            holders = owners.get(old)
            if holders is not None:
                holders.discard(endpoint)
                if not holders:
                    del owners[old]

    def forget(self, endpoint: str) -> None:
        """A replica gone (or restarted): its cache is empty."""
        for hash_ in self._blocks.pop(endpoint, ()):
            holders = self._owners.get(hash_)
            if holders is not None:
                holders.discard(endpoint)
                if not holders:
                    del self._owners[hash_]

    def size(self, endpoint: str) -> int:
        return len(self._blocks.get(endpoint, ()))
