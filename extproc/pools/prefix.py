"""Which replica has seen a prompt's leading blocks: an estimate of its prefix cache.

A prompt's UTF-8 text is cut in blocks of `block_chars` bytes (rounded up to a multiple of
8; characters, for ASCII); each block's hash stands for the whole prefix up to its block
(as vLLM's chained block hashes do). Each replica keeps the hashes sent to it, each with
the tick of its last use, and forgets the least recently used past `capacity`; a call's
leading blocks get the later ticks, so they are the last to go (vLLM frees a sequence's
blocks tail first). An index from hash to replicas makes a lookup cost the prompt's
blocks, not the replicas' count."""

from __future__ import annotations

import heapq
import zlib

MAX_BLOCKS = 512            # a prompt's leading blocks that count (~128 KB at 256)
_multipliers = None         # this process's random odd 64-bit multipliers (block_hashes)


def block_hashes(texts: list[str], block_chars: int) -> list[int]:
    """The prefix hashes of the prompt's full leading blocks: a multilinear hash of the
    prefix's 64-bit words with random odd multipliers, mod 2^64 (each prefix's hash is the
    running sum, so one NumPy pass gives them all: ~9 µs for 45 blocks, against ~15 µs for
    a Python hash per block, and 3x less on long prompts). The multipliers are drawn per
    process: each worker keeps its own table, so workers need not agree, and a caller
    cannot aim a prompt at another's hash."""
    global _multipliers
    import numpy as np                 # loaded with the first pool call, not by every worker
    words_per_block = -(-block_chars // 8)
    data = "\x1e".join(texts).encode("utf-8", "surrogatepass")
    blocks = min(len(data) // (8 * words_per_block), MAX_BLOCKS)
    if not blocks:
        return []
    words = blocks * words_per_block
    if _multipliers is None or len(_multipliers) < words:        # extended, never redrawn:
        have = 0 if _multipliers is None else len(_multipliers)     # the table's hashes stay valid
        more = np.random.default_rng().integers(0, 1 << 63, size=max(words, MAX_BLOCKS * 32) - have,
                                                 dtype=np.uint64) * 2 + 1
        _multipliers = more if _multipliers is None else np.concatenate((_multipliers, more))
    sums = np.cumsum(np.frombuffer(data, dtype=np.uint64, count=words) * _multipliers[:words])
    return sums[words_per_block - 1::words_per_block].tolist()


HOME_CHARS = 8192           # how much of the conversation's start names its home replica


def home_key(texts: list[str]) -> int:
    """A process-independent key of the conversation: the beginnings of its first two
    texts (the system prompt and the first user turn: HOME_CHARS / 2 of each; of a lone
    text, HOME_CHARS), so that every worker, each with its own PrefixTable, sends a
    conversation's turns that no replica is known to hold to the same replica while
    conversations under one system prompt spread by their first user turn (picker.py).
    Beginnings, not ends: a question asked at the end of a long document (a lone user
    turn) keeps the document's home; a key read from the end gave every question a home
    of its own, and the two workers each sent a document to replicas of their own (the
    pool's caches held each document twice: 23% of prompt tokens from cache, not ~90%)."""
    if not texts:
        return 0
    if len(texts) == 1:
        start = texts[0][:HOME_CHARS]
    else:
        start = texts[0][:HOME_CHARS // 2] + "\x1e" + texts[1][:HOME_CHARS // 2]
    return zlib.crc32(start.encode("utf-8", "surrogatepass")) if start else 0


class PrefixTable:
    """Recording a call sets a tick per block in a plain dict; the least recently used are
    dropped in one pass once a replica holds an eighth more than `capacity`, down to
    `capacity` (small tables at once). Into a full table: 10.6 µs a 45-block call, where
    an ordered dict moved and dropped block by block in 33 µs."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._slack = capacity // 8 if capacity >= 64 else 0
        self._tick = 0
        self._blocks: dict[str, dict[int, int]] = {}      # replica -> block hash -> tick of last use
        self._owners: dict[int, set[str]] = {}

    def matched(self, hashes: list[int]) -> dict[str, int]:
        """For each replica that has the first block: how many leading blocks it has.

        The holders of a block hold the blocks before it (a call records its deepest block
        first, so a block is always used less recently than the one before it and goes
        first), so the holders of the prompt's blocks shrink with depth: each depth at which
        some replica stops is found by a binary search (a few lookups per replica set, not
        one per block)."""
        if not hashes:
            return {}
        owners = self._owners
        first = owners.get(hashes[0])
        if not first:
            return {}
        depth: dict[str, int] = {}
        wanted = len(first)
        top = len(hashes)                     # the blocks from `top` on are placed
        while len(depth) < wanted and top > 0:
            placed = len(depth)
            low, high = 0, top - 1            # the deepest block more replicas hold than placed
            while low < high:
                middle = (low + high + 1) >> 1
                if len(owners.get(hashes[middle], ())) > placed:
                    low = middle
                else:
                    high = middle - 1
            new = owners[hashes[low]].difference(depth) if hashes[low] in owners else ()
            if new:
                depth.update(dict.fromkeys(new, low + 1))
            top = low
        return depth

    def record(self, endpoint: str, hashes: list[int]) -> None:
        """`endpoint` now holds these blocks (the most recently used, the first the latest)."""
        blocks = self._blocks.get(endpoint)
        if blocks is None:
            blocks = self._blocks[endpoint] = {}
        self._tick = tick = self._tick + len(hashes) + 1
        owners = self._owners
        for hash_ in hashes:
            tick -= 1
            if hash_ not in blocks:
                holders = owners.get(hash_)
                if holders is None:
                    owners[hash_] = {endpoint}
                else:
                    holders.add(endpoint)
            blocks[hash_] = tick
        if len(blocks) > self.capacity + self._slack:
            self._evict(endpoint, blocks)

    def _evict(self, endpoint: str, blocks: dict[int, int]) -> None:
        dropped = heapq.nsmallest(len(blocks) - self.capacity, blocks, key=blocks.__getitem__)
        for old in dropped:
            del blocks[old]
        self._release(endpoint, dropped)

    def _release(self, endpoint: str, hashes) -> None:
        """`endpoint` no longer holds these blocks: the index forgets it as their holder."""
        owners = self._owners
        for hash_ in hashes:
            holders = owners.get(hash_)
            if holders is not None:
                holders.discard(endpoint)
                if not holders:
                    del owners[hash_]

    def forget(self, endpoint: str) -> None:
        """A replica gone (or restarted): its cache is empty."""
        self._release(endpoint, self._blocks.pop(endpoint, ()))

    def size(self, endpoint: str) -> int:
        return len(self._blocks.get(endpoint, ()))
