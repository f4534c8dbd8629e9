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
    """The chained hashes of the prompt's full leading blocks (~0.3 µs a block). Python's
    own hash: each worker keeps its own table, so they need not agree across processes."""
    prompt = "\x1e".join(texts)
    hashes = []
    previous = 0
    for start in range(0, min(len(prompt) - block_chars + 1, MAX_BLOCKS * block_chars), block_chars):
        previous = hash((previous, prompt[start:start + block_chars]))
        hashes.append(previous)
    return hashes


HOME_CHARS = 8192           # how much of the conversation's start names its home replica


def home_key(texts: list[str]) -> int:
    """A process-independent key of the conversation: its first two texts (the system
    prompt and the first user turn), so that every worker, each with its own PrefixTable,
    sends a conversation's turns that no replica is known to hold to the same replica
    while conversations under one system prompt spread (picker.py)."""
    start = "\x1e".join(texts[:2])[:HOME_CHARS]
    return zlib.crc32(start.encode("utf-8", "surrogatepass")) if start else 0


class PrefixTable:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._blocks: dict[str, OrderedDict[int, None]] = {}
        self._owners: dict[int, set[str]] = {}

    def matched(self, hashes: list[int]) -> dict[str, int]:
        """For each replica that has the first block: how many leading blocks it has.
        Read from the deepest block back (a replica holding a block holds those before
        it, recorded with it), stopping once every holder of the first block is placed."""
        if not hashes:
            return {}
        owners = self._owners
        first = owners.get(hashes[0])
        if not first:
            return {}
        depth: dict[str, int] = {}
        wanted = len(first)
        for index in range(len(hashes) - 1, -1, -1):
            holders = owners.get(hashes[index])
            if holders:
                for endpoint in holders:
                    if endpoint not in depth:
                        depth[endpoint] = index + 1
                if len(depth) >= wanted:
                    break
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
