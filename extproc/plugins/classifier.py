"""Training the injection classifier (extproc/guardrails/injection_model.py: hashed
character n-grams, a linear score, read with NumPy): a logistic regression
(scikit-learn) fitted on labelled texts, each text's windows carrying its label, with
the same features the model reads at run time.

`python -m extproc.plugins.classifier_plugin train` fits one from the corpora the rules
are measured on (tests/corpora/), or with `--public` from public data sets a PyPI package
ships (public_corpora.py); the gateway's own model, shipped with it, was fitted so
(docs/decisions/injection-classifier.md). Training needs scikit-learn
(`pip install scikit-learn`); scoring needs NumPy only.
"""

from __future__ import annotations

from pathlib import Path

from ..guardrails.injection_model import STEP, WINDOW, InjectionModel, grams

Classifier = InjectionModel          # what the plugin and its tests load and score with


def windows(text: str) -> list[str]:
    """Pieces of about a window each (characters), as benign training texts are cut."""
    if len(text) <= WINDOW:
        return [text]
    return [text[start:start + WINDOW] for start in range(0, len(text) - WINDOW + STEP, STEP)]


def _features(texts: list[str], features: int):
    """One sparse row per window of each text: its n-grams' counts over the square root
    of their number (what InjectionModel.score sums)."""
    import numpy as np
    from scipy import sparse
    indptr, slots, values = [0], [], []
    for text in texts:
        for window in grams(text, features):
            found, counts = np.unique(window, return_counts=True)
            slots.append(found)
            values.append(counts / np.sqrt(max(len(window), 1)))
            indptr.append(indptr[-1] + len(found))
    if len(indptr) == 1:
        return sparse.csr_matrix((0, features))
    return sparse.csr_matrix((np.concatenate(values), np.concatenate(slots), np.array(indptr)),
                             shape=(len(indptr) - 1, features))


def train(attacks: list[str], benign: list[str], c: float = 1.5, n_features: int = 1 << 18) -> InjectionModel:
    """Fit the classifier on labelled texts. `c`: the inverse of the regularisation
    (1.5: of 1 to 8, chosen on the public sets' validation splits, measured in
    docs/decisions/injection-classifier.md); `n_features`: the hashing space (2^18: as good as 2^20 on the
    public sets, measured, and a quarter of the weights)."""
    import numpy as np
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression
    attack_rows, benign_rows = _features(attacks, n_features), _features(benign, n_features)
    rows = sparse.vstack([attack_rows, benign_rows]).tocsr()
    labels = np.r_[np.ones(attack_rows.shape[0]), np.zeros(benign_rows.shape[0])]
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=3000)
    model.fit(rows, labels)
    return InjectionModel(model.coef_[0].astype(np.float32), float(model.intercept_[0]), n_features)


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
