"""A small prompt-injection classifier: character n-grams, hashed, and a logistic
regression (scikit-learn), trained from labelled texts and kept in one local file.

It is an example of the optional classifier stage behind the plugin API, not a
pretrained model: the machine that builds the gateway has no model hub to fetch one of
the Prompt Guard 2 class from, so `train()` fits one from the corpora the rules are
measured on (tests/corpora/: attacks and benign prompts; Claude Code's own prose as
more benign text when given). Its figures on held-out texts are in docs/guardrails.md.
A real deployment swaps in its own model behind the same `Check` call.

The file is a NumPy archive (no pickle): the weights, the intercept and the hashing
parameters; loading it needs NumPy and scikit-learn (`pip install scikit-learn`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

_HASHING = {"analyzer": "char_wb", "ngram_range": [2, 5], "n_features": 1 << 18,
            "alternate_sign": False, "norm": "l2", "lowercase": True}
# Long texts are read in windows: an instruction hidden in a long document scores as it
# would alone, not diluted by the rest.
WINDOW, STEP = 600, 400


def _vectorizer(params: dict):
    from sklearn.feature_extraction.text import HashingVectorizer
    return HashingVectorizer(**{**params, "ngram_range": tuple(params["ngram_range"])})


def windows(text: str) -> list[str]:
    if len(text) <= WINDOW:
        return [text]
    return [text[start:start + WINDOW] for start in range(0, len(text) - WINDOW + STEP, STEP)]


@dataclass
class Classifier:
    coef: object            # numpy array (n_features,)
    intercept: float
    params: dict

    def __post_init__(self) -> None:
        self._vectorizer = _vectorizer(self.params)

    def scores(self, texts: list[str]) -> list[float]:
        """Each text's probability of being an injection (its highest window's)."""
        import numpy as np
        spans, pieces = [], []
        for text in texts:
            parts = windows(text) if text else []
            spans.append((len(pieces), len(pieces) + len(parts)))
            pieces.extend(parts)
        if not pieces:
            return [0.0 for _ in texts]
        logits = self._vectorizer.transform(pieces) @ self.coef + self.intercept
        probabilities = 1 / (1 + np.exp(-logits))
        return [float(probabilities[a:b].max()) if b > a else 0.0 for a, b in spans]

    def save(self, path: str | Path) -> None:
        import numpy as np
        np.savez_compressed(path, coef=self.coef.astype("float32"), intercept=np.array([self.intercept]),
                            params=np.array(json.dumps(self.params)))

    @classmethod
    def load(cls, path: str | Path) -> Classifier:
        import numpy as np
        with np.load(path, allow_pickle=False) as archive:
            return cls(archive["coef"].astype("float64"), float(archive["intercept"][0]),
                       json.loads(str(archive["params"])))


def train(attacks: list[str], benign: list[str], c: float = 4.0, n_features: int = _HASHING["n_features"]) -> Classifier:
    """Fit the classifier on labelled texts (each text's windows carry its label).
    `n_features`: the hashing space (2^18 for the small corpora; 2^20 for tens of
    thousands of texts, whose n-grams collide less in it)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    pieces, labels = [], []
    for label, texts in ((1, attacks), (0, benign)):
        for text in texts:
            for piece in windows(text):
                pieces.append(piece)
                labels.append(label)
    params = {**_HASHING, "n_features": n_features}
    features = _vectorizer(params).transform(pieces)
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
    model.fit(features, np.array(labels))
    return Classifier(model.coef_[0], float(model.intercept_[0]), params)


def corpus_texts(corpora: str | Path) -> tuple[list[str], list[str]]:
    """(attacks, benign) from a corpora directory laid out as tests/corpora/."""
    corpora = Path(corpora)
    attacks, benign = [], []
    for name, into in (("injection_attacks.tsv", attacks), ("benign_prompts.tsv", benign)):
        for line in (corpora / name).read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                into.append(line.split("\t", 2)[2].replace("\\n", "\n"))
    for name, into in (("injection.txt", attacks), ("benign.txt", benign)):
        into.extend(line for line in (corpora / name).read_text(encoding="utf-8").splitlines()
                    if line.strip() and not line.startswith("#"))
    return attacks, benign
