"""The text detectors' automata built before the workers exist: a fork server reads a
corpus through each of its config's detectors once, so that every worker it forks starts
with the DFA states and reverse programs RE2 builds lazily, shared copy-on-write.

RE2 builds a DFA state the first time a search meets it and compiles a pattern's reverse
program the first time a match's start is asked. Source code, what an agent's tool
results mostly hold, walks states prose does not: in a fresh worker the quickstart's
request rules read a 20 KB tool result of code in ~21 ms for its first ten calls and
~3 ms once the states exist (bench/README.md, "Guardrails on source code"). The corpus is
this Python's own standard library, code with its comments and docstrings, present
wherever the gateway runs and never the traffic measured. A detector is read once per
process, whichever configs share it; what is found is never changed, only when the cost
is paid.

Imports the guardrails' own modules only."""

from __future__ import annotations

import os
import sysconfig

from .allowed import AllowedValues
from .config import GuardrailSettings

# How much of the corpus each detector reads: ~0.4 s of a fork server's start for the
# quickstart's request rules; more gains little (docs/decisions/guardrails-warmed-before-fork.md).
CORPUS_BYTES = 1 << 20
# Read in pieces of a tool result's usual size: long enough to be read chunk by chunk.
PIECE = 8192

_warmed: dict[int, object] = {}      # id → the detector, held so that its id stays its own


def corpus(size: int = CORPUS_BYTES) -> list[str]:
    """Pieces of about `size` characters in all of the standard library's modules, the
    files picked evenly across its listing; [] where its sources are not installed."""
    folder = sysconfig.get_paths().get("stdlib") or ""
    try:
        names = sorted(name for name in os.listdir(folder) if name.endswith(".py"))
    except OSError:
        return []
    picked = names[::max(1, len(names) // 64)]
    texts, total = [], 0
    for name in picked + [name for name in names if name not in picked]:
        if total >= size:
            break
        try:
            with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as file:
                text = file.read(size - total)
        except OSError:
            continue
        texts.append(text)
        total += len(text)
    return [text[i:i + PIECE] for text in texts for i in range(0, len(text), PIECE)]


def text_detectors(settings: GuardrailSettings) -> list:
    """Each policy's text detectors that RE2 serves, once each: not a plugin's client nor
    the injection classifier (a model scores each text alone, built at load)."""
    found: dict[int, object] = {}
    for policy in settings.policies():
        for rule in policy:
            detector = rule.detector
            while isinstance(detector, AllowedValues):       # made per rule; its detector is shared
                detector = detector.detector
            if rule.scans_text and not rule.per_text and hasattr(detector, "might_find"):
                found.setdefault(id(detector), detector)
    return list(found.values())


def warm(settings: GuardrailSettings, pieces: list[str] | None = None) -> int:
    """Reads the corpus through each text detector not read yet in this process, as a
    request's texts are read (the screens first, then the detector; not through
    joined.py, whose odds of a clean long text the corpus must not move); returns how
    many detectors read it."""
    due = [detector for detector in text_detectors(settings) if id(detector) not in _warmed]
    if not due:
        return 0
    pieces = corpus() if pieces is None else pieces
    for detector in due:
        for piece in pieces:
            if detector.might_find(piece):
                detector.find(piece)
        _warmed[id(detector)] = detector
    return len(due)
