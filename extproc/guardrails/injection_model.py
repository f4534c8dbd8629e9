"""The injection classifier's model: hashed character n-grams and a linear score, read
with NumPy alone, in windows, so an instruction hidden in a long tool result scores as
it would alone.

A text is lowercased and read as UTF-8 bytes. Every n-gram of 2 to 5 bytes is hashed
into one of `features` slots (a rolling multiply-add per length, mixed, masked); a
window's score is the sum of its n-grams' weights over the square root of their count,
plus the intercept, through the logistic function; a text scores its highest window's.
All of it is array arithmetic over the whole text at once (each window's sums are its
200-byte blocks'): 0.02-0.07 ms per KB where scikit-learn's n-gram analyzer, a Python
loop, took 1.65 (docs/decisions/injection-classifier.md). Training (extproc/plugins/classifier.py)
uses `grams` to build the same features, so a model scores here as it was fitted.

The weights are a NumPy archive without pickles: `weights` (float16, one per slot),
`intercept`, `features`, `window`, `step`.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

# One BLAS thread: the model's arithmetic is element by element (no BLAS call), a worker
# runs per core, and the process that loads the model first is the fork server, which must
# not hold a thread when it forks (store/semantic_index.py sets the same).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

from . import Finding

# The model the gateway ships (docs/decisions/injection-classifier.md: its data, licence
# and measured rates).
SHIPPED = Path(__file__).with_name("injection-model.npz")
SIZES = (2, 3, 4, 5)
WINDOW, STEP = 600, 400             # bytes: where a window's n-grams start, and how far the next one does
_PRIME = np.uint32(1_000_003)
_MIX = np.uint32(0x9E3779B1)


def _bytes(text: str) -> np.ndarray:
    return np.frombuffer(text.lower().encode("utf-8", "surrogatepass"), dtype=np.uint8)


def _hashed(data: np.ndarray, features: int) -> list[np.ndarray]:
    """Per n-gram size, the slot of the n-gram starting at each byte (fewer at the end):
    32-bit arithmetic, wrapping."""
    values = data.astype(np.uint32)
    rolling = values
    slots = []
    mask = np.uint32(features - 1)
    with np.errstate(over="ignore"):
        for size in range(2, SIZES[-1] + 1):
            rolling = rolling[:-1] * _PRIME + values[size - 1:]
            if size in SIZES:
                mixed = (rolling + np.uint32(size)) * _MIX
                slots.append(((mixed ^ (mixed >> np.uint32(15))) & mask).astype(np.intp))
    return slots


def grams(text: str, features: int) -> list[np.ndarray]:
    """The slots of every window's n-grams (training's view of a text): a window holds
    the n-grams that start in it."""
    data = _bytes(text)
    per_size = _hashed(data, features)
    return [np.concatenate([slots[start:start + WINDOW] for slots in per_size]) for start in _starts(len(data))]


def _starts(length: int) -> np.ndarray:
    """Where each window starts."""
    if length <= WINDOW:
        return np.zeros(1, dtype=np.intp)
    return np.arange(0, length - WINDOW + STEP, STEP, dtype=np.intp)


_BLOCK = 200        # WINDOW and STEP are multiples of it: a window is three blocks


@dataclass(frozen=True)
class InjectionModel:
    weights: np.ndarray          # float32, one per slot
    intercept: float
    features: int

    def score(self, text: str) -> float:
        """The probability that `text` holds an injection: its highest window's."""
        data = _bytes(text)
        if len(data) < SIZES[0]:
            return 0.0
        # Each byte's n-grams' weights summed, then summed in blocks, and a window's sum is
        # its blocks': array arithmetic over the whole text, whatever its length.
        weights = np.zeros(len(data))
        present = np.zeros(len(data))
        for slots in _hashed(data, self.features):
            weights[:len(slots)] += self.weights[slots]
            present[:len(slots)] += 1.0
        edges = np.arange(0, len(data), _BLOCK)
        per_block = WINDOW // _BLOCK
        starts = _starts(len(data)) // _BLOCK
        blocks = np.zeros(starts[-1] + per_block)
        counted = np.zeros(len(blocks))
        blocks[:len(edges)] = np.add.reduceat(weights, edges)
        counted[:len(edges)] = np.add.reduceat(present, edges)
        totals = sum(blocks[starts + k] for k in range(per_block))
        counts = sum(counted[starts + k] for k in range(per_block))
        logits = totals / np.sqrt(np.maximum(counts, 1.0)) + self.intercept
        return float(1.0 / (1.0 + np.exp(-logits.max())))

    def scores(self, texts: list[str]) -> list[float]:
        return [self.score(text) if text else 0.0 for text in texts]

    def save(self, path: str | Path) -> None:
        # float16: half the file, and a score moves by less than 1e-3
        np.savez_compressed(path, weights=self.weights.astype(np.float16), intercept=np.array([self.intercept]),
                            features=np.array([self.features]), window=np.array([WINDOW]), step=np.array([STEP]))

    @classmethod
    def load(cls, path: str | Path) -> InjectionModel:
        with np.load(path, allow_pickle=False) as archive:
            if int(archive["window"][0]) != WINDOW or int(archive["step"][0]) != STEP:
                raise ValueError(f"{path}: a model for windows of {int(archive['window'][0])} bytes, "
                                 f"this reader's are {WINDOW}")
            # float32 in memory (1 MB for 2^18 slots): NumPy adds float16 in software, 4x slower
            return cls(archive["weights"].astype(np.float32), float(archive["intercept"][0]),
                       int(archive["features"][0]))


def load_model(path: str | None) -> InjectionModel:
    """The model in `path`, or the one the gateway ships."""
    return InjectionModel.load(path or SHIPPED)


def model_digest(path: str | None) -> str:
    """What tells one model file from another (known findings are keyed by it)."""
    file = Path(path or SHIPPED)
    status = file.stat()
    return _file_digest(str(file), status.st_mtime_ns, status.st_size)


@functools.cache
def _file_digest(path: str, _mtime: int, _size: int) -> str:
    import hashlib
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


class ClassifierDetector:
    """A text guardrail's detector over the model: a text of `min_chars` or more that
    scores `threshold` or more is one finding, the whole text (`INJECTION:model`). It
    reads each text alone (`per_text`): a score is the text's, not its neighbours'."""

    per_text = True

    def __init__(self, model: InjectionModel, threshold: float, min_chars: int) -> None:
        self.model, self.threshold, self.min_chars = model, threshold, min_chars

    def might_find(self, text: str) -> bool:
        return len(text) >= self.min_chars

    def find(self, text: str) -> list[Finding]:
        read = without_reminders(text)
        if len(read) < self.min_chars or self.model.score(read) < self.threshold:
            return []
        return [Finding(0, len(text), "INJECTION:model")]


_OPEN, _CLOSE = "<system-reminder>", "</system-reminder>"


def without_reminders(text: str) -> str:
    """`text` without the reminders an agent's harness appends to a tool's output
    (Claude Code: a blank line, then `<system-reminder>` ... `</system-reminder>`): its
    vendor's instructions, imperative, not the tool's. Only blocks that end the text
    are left out; anything before them is read (a look-alike block there is the tool's)."""
    while True:
        stripped = text.rstrip()
        if not stripped.endswith(_CLOSE):
            return text
        start = stripped.rfind("\n\n" + _OPEN)
        if start < 0 or _CLOSE in stripped[start:-len(_CLOSE)]:
            return text
        text = stripped[:start]
