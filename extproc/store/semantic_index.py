"""A worker's index of the semantic cache's vectors: per partition, a matrix of unit
vectors searched exhaustively (one matrix-vector product, NumPy), read on from the
store (cache_vectors.py) at each lookup.

Exact search, no approximate index: one search costs ~0.1 ms over 1k vectors of 1,536
dimensions and ~14 ms over 100k on one core, next to the embedding call every semantic
lookup makes through the gateway, and it needs no rebuild when entries end
(docs/decisions/semantic-cache.md has the figures). Reading a partition from SQLite and
searching a large one run in a thread (NumPy and sqlite3 release the GIL), so the
worker's loop serves other calls meanwhile. Partitions are kept most recently used
first, up to MAX_BYTES of vectors in all.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

MAX_BYTES = 256 * 1024 * 1024


def numpy():
    """NumPy, imported when a semantic rule first needs it: a worker without one never
    loads it (nor starts its BLAS threads); with one, a single BLAS thread (a worker per
    core), started after the worker's scheduling policy is set, so it inherits it."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import numpy as np
    return np

IN_THREAD = 2_000_000               # floats: a search of more (~1 ms) runs off the loop


class _Partition:
    __slots__ = ("position", "digests", "seen", "matrix", "ends", "size")

    def __init__(self) -> None:
        self.position = None               # the store's position of the last vector read
        self.digests: list[str] = []
        self.seen: set[str] = set()        # digests held (a worker's own, added before the store has them)
        self.matrix: np.ndarray | None = None
        self.ends = None
        self.size = 0

    def append(self, digest: str, vector: np.ndarray, end: float) -> None:
        if digest in self.seen:
            return
        np = numpy()
        if self.matrix is None or self.matrix.shape[1] != vector.shape[0]:
            self.matrix, self.ends, self.size, self.digests, self.seen = \
                np.zeros((16, vector.shape[0]), np.float32), np.zeros(16), 0, [], set()
        elif self.size == self.matrix.shape[0]:            # room doubles: appends cost O(1) on average
            self.matrix = np.concatenate([self.matrix, np.zeros_like(self.matrix)])
            self.ends = np.concatenate([self.ends, np.zeros_like(self.ends)])
        self.matrix[self.size] = vector
        self.ends[self.size] = end
        self.digests.append(digest)
        self.seen.add(digest)
        self.size += 1


class SemanticIndex:
    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self._partitions: OrderedDict[str, _Partition] = OrderedDict()
        self._held = 0
        self.max_bytes = max_bytes

    async def nearest(self, store, part: str, vector: np.ndarray) -> tuple[str, float] | None:
        """The digest whose question is nearest `vector` in `part` (cosine similarity),
        after reading what the store has that this worker has not seen."""
        np = numpy()
        partition = self._partition(part)
        since = store.since
        rows = await (asyncio.to_thread(since, part, partition.position) if not inspect.iscoroutinefunction(since)
                      else since(part, partition.position))
        for position, digest, data, end in rows:
            found = np.frombuffer(data, np.float32)
            if found.shape == vector.shape:
                partition.append(digest, found, end)
                self._held += found.nbytes
            partition.position = position
        self._trim()
        if partition.size == 0:
            return None
        matrix, ends = partition.matrix[:partition.size], partition.ends[:partition.size]
        if matrix.size > IN_THREAD:
            best, score = await asyncio.to_thread(_best, matrix, ends, vector)
        else:
            best, score = _best(matrix, ends, vector)
        return (partition.digests[best], score) if score > -2.0 else None

    def add(self, part: str, digest: str, vector: np.ndarray, end: float) -> None:
        """A vector this worker stored: found at once, before the store gives it back."""
        self._partition(part).append(digest, vector, end)
        self._held += vector.nbytes

    def _partition(self, part: str) -> _Partition:
        partition = self._partitions.get(part)
        if partition is None:
            partition = self._partitions[part] = _Partition()
        else:
            self._partitions.move_to_end(part)
        return partition

    def _trim(self) -> None:
        while self._held > self.max_bytes and len(self._partitions) > 1:
            _, oldest = self._partitions.popitem(last=False)
            self._held -= oldest.size * (oldest.matrix.shape[1] * 4 if oldest.matrix is not None else 0)


def _best(matrix: np.ndarray, ends: np.ndarray, vector: np.ndarray) -> tuple[int, float]:
    """The row nearest `vector` among those not past their end (-2: none is)."""
    np = numpy()
    scores = matrix @ vector
    scores[ends <= time.time()] = -2.0
    best = int(np.argmax(scores))
    return best, float(scores[best])
