"""The injection classifier's model: hashed character n-grams and a linear score, read
with NumPy alone, in windows, so an instruction hidden in a long tool result scores as
it would alone.

A text is lowercased and read as UTF-8 bytes. Every n-gram of 2 to 5 bytes is hashed
into one of `features` slots (a rolling multiply-add per length, mixed, masked); a
window's score is the sum of its n-grams' weights over the square root of their count,
plus the intercept, through the logistic function; a text scores its highest window's.
All of it is array arithmetic over the whole text at once (cumulative sums give every
window's sums): ~0.1 ms per KB where scikit-learn's n-gram analyzer, a Python loop,
took 1.65 (docs/decisions/injection-classifier.md). Training (extproc/plugins/classifier.py)
uses `grams` to build the same features, so a model scores here as it was fitted.

The weights are a NumPy archive without pickles: `weights` (float16, one per slot),
`intercept`, `features`, `window`, `step`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import Finding

# The model the gateway ships (docs/decisions/injection-classifier.md: its data, licence
# and measured rates).
SHIPPED = Path(__file__).with_name("injection-model.npz")
SIZES = (2, 3, 4, 5)
WINDOW, STEP = 600, 400             # bytes: a window, and how far the next one starts
_PRIME = np.uint64(1_000_003)
_MIX = np.uint64(0x9E3779B97F4A7C15)


def _bytes(text: str) -> np.ndarray:
    return np.frombuffer(text.lower().encode("utf-8", "surrogatepass"), dtype=np.uint8)


def _hashed(data: np.ndarray, features: int) -> list[np.ndarray]:
    """Per n-gram size, the slot of the n-gram starting at each byte (fewer at the end)."""
    values = data.astype(np.uint64)
    rolling = values
    slots = []
    mask = np.uint64(features - 1)
    with np.errstate(over="ignore"):
        for size in range(2, SIZES[-1] + 1):
            rolling = rolling[:-1] * _PRIME + values[size - 1:]
            if size in SIZES:
                mixed = (rolling + np.uint64(size)) * _MIX
                slots.append(((mixed ^ (mixed >> np.uint64(29))) & mask).astype(np.int64))
    return slots


def grams(text: str, features: int) -> list[np.ndarray]:
    """The slots of every window's n-grams (training's view of a text)."""
    data = _bytes(text)
    per_size = _hashed(data, features)
    found = []
    for start in _starts(len(data)):
        end = start + WINDOW
        found.append(np.concatenate([slots[start:max(start, end - size + 1)]
                                     for size, slots in zip(SIZES, per_size)]))
    return found


def _starts(length: int) -> range:
    return range(0, max(length - WINDOW, 0) + STEP, STEP) if length > WINDOW else range(1)


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
        totals = np.zeros(len(data) + 1)
        counts = np.zeros(len(data) + 1)
        for size, slots in zip(SIZES, _hashed(data, self.features)):
            # A window [s, s + WINDOW) holds the n-grams starting at s .. s + WINDOW - size:
            # each size's cumulative sums are laid out by start, padded to the text's length.
            weight = np.zeros(len(data))
            weight[:len(slots)] = self.weights[slots]
            present = np.zeros(len(data))
            present[:len(slots)] = 1.0
            starts = np.fromiter(_starts(len(data)), dtype=np.int64)
            ends = np.minimum(starts + WINDOW - size + 1, len(slots))
            ends = np.maximum(ends, starts)
            cumulative = np.concatenate(([0.0], np.cumsum(weight)))
            present_cumulative = np.concatenate(([0.0], np.cumsum(present)))
            totals[:len(starts)] += cumulative[ends] - cumulative[starts]
            counts[:len(starts)] += present_cumulative[ends] - present_cumulative[starts]
        windows = len(_starts(len(data)))
        logits = totals[:windows] / np.sqrt(np.maximum(counts[:windows], 1.0)) + self.intercept
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
