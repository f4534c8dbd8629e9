"""Where each conversation's latest turn went, shared by the workers of one gateway.

Each worker keeps its own PrefixTable (prefix.py): it knows what it sent, not what the
other workers sent, and Envoy spreads a conversation's turns over the workers. A
conversation's key (prefix.home_key: the start of its first texts, the same in every
worker) names a slot here, in a file the workers map into memory; each pick writes the
replica it chose into its key's slot, and the next turn's pick, in whichever worker,
reads it back as the conversation's home. So a conversation placed away from its hash
home (its home was past its load bound) stays where its history is, in every worker.

A slot is one 64-bit word, (key << 32) | CRC-32 of the replica's address, written and
read whole (an aligned 8-byte store: a reader sees the old word or the new one, never
half of each); keys that share a slot overwrite each other, the newer winning, like a
cache. An empty word is 0: key 0 is never stored. Without a shared folder (a worker run
on its own, a unit test) the table is this process's memory.

Imports nothing of the gateway's."""

from __future__ import annotations

import mmap
import os
import zlib

SLOTS = 1 << 16                 # 512 KB a pool: conversations in flight are far fewer
SHARED_DIR_ENV = "LLMGW_RUN_DIR"        # set by the supervisor for its workers


class SharedHomes:
    def __init__(self, pool_name: str, folder: str | None = None) -> None:
        folder = os.environ.get(SHARED_DIR_ENV) if folder is None else folder
        size = SLOTS * 8
        if folder and os.path.isdir(folder):
            path = os.path.join(folder, f"pool-homes-{zlib.crc32(pool_name.encode()):08x}.bin")
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                if os.fstat(descriptor).st_size < size:     # made by the first worker (zeros)
                    os.ftruncate(descriptor, size)
                self._map = mmap.mmap(descriptor, size)
            finally:
                os.close(descriptor)                        # the mapping stays
        else:
            self._map = mmap.mmap(-1, size)
        self._words = memoryview(self._map).cast("Q")

    def get(self, key: int) -> int:
        """The address CRC last written for `key`, or 0."""
        if not key:
            return 0
        word = self._words[key % SLOTS]
        return word & 0xFFFFFFFF if word >> 32 == key else 0

    def put(self, key: int, address_crc: int) -> None:
        if key:
            self._words[key % SLOTS] = (key << 32) | address_crc


def address_crc(address: str) -> int:
    return zlib.crc32(address.encode())
