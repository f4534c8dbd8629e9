"""PII findings per 1,000 agent calls on this repository's own code: the quickstart's `pii`
rule with and without `code_aware`, and its old default (every part, code read as prose);
and the tool results the quickstart's injection classifier (`injection-model`) blocks.

Each call carries one new tool result as the agent's tool writes it, over this repository's
tracked files (what an agent working on it reads):

    claude-code   Read (`     N→line`, 2,000 lines at most), Grep (`path:N:line`, 50 hits),
                  Bash `git log -n 20 --format=full` (authors and trailers)
    codex         shell output as Codex sends it back (`Exit code: 0 ... Output:`): `sed -n`
                  of a file, `rg -n`, `git log`

and the agent's own first request (tests/agent_requests/: system prompt and tools), read by
the rule as it is scoped. The blocked tool results are split by what they hold: attack
text the built-in injection rules also find (the corpora, tests and guides that quote
attacks), an agent's captured system prompt (tests/agent_requests/), or neither: the
false positives an operator would see on ordinary code and documentation.
Run: .venv/bin/python bench/agent_pii_findings.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from extproc.guardrails import code_aware  # noqa: E402
from extproc.guardrails.config import _injection_detector, parse_guardrails  # noqa: E402
from extproc.yamltree import Node, Problems  # noqa: E402

ALLOW = ["noreply@anthropic.com", "*@users.noreply.github.com"]


def _rule(**fields):
    problems = Problems("bench")
    rule = parse_guardrails(Node({"rules": [{"name": "pii", "type": "pii", "action": "redact", **fields}]},
                                 "guardrails", problems)).default[0]
    problems.raise_if_any()
    return rule


def _files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    chosen = []
    for name in listed.split():
        path = ROOT / name
        if path.suffix in (".py", ".md", ".yaml", ".yml", ".toml", ".json", ".sh", ".txt", ".tsv", ".proto", ".js",
                           ".html", ".css", ".cfg", ".ini") and path.is_file() and path.stat().st_size < 400_000:
            chosen.append(path)
    return chosen


def _read(path: Path) -> str:
    lines = path.read_text(errors="replace").splitlines()[:2000]
    return "\n".join(f"{n:>6}→{line}" for n, line in enumerate(lines, 1))


def _grep(word: str) -> str:
    done = subprocess.run(["git", "grep", "-n", "-I", word], cwd=ROOT, capture_output=True, text=True)
    return "\n".join(done.stdout.splitlines()[:50])


def _git_log(skip: int) -> str:
    return subprocess.run(["git", "log", "-n", "20", f"--skip={skip}", "--format=full"], cwd=ROOT,
                          capture_output=True, text=True).stdout


def tool_results(agent: str) -> list[str]:
    """One tool result per tracked file (in `_files()` order), then the searches and the logs."""
    words = ["email", "card", "import", "def ", "guardrail", "token", "key", "version", "sha256", "author"]
    files = _files()
    if agent == "claude-code":
        results = [_read(path) for path in files]
        results += [_grep(word) for word in words]
        results += [_git_log(skip) for skip in range(0, 400, 20)]
    else:
        def shell(output: str) -> str:
            return f"Exit code: 0\nWall time: 0.1 seconds\nOutput:\n{output}"
        results = [shell(path.read_text(errors="replace")[:20_000]) for path in files]
        results += [shell(_grep(word)) for word in words]
        results += [shell(_git_log(skip)) for skip in range(0, 400, 20)]
    return results


def own_parts(agent: str) -> list[str]:
    """The strings of the agent's system prompt, instructions and tool definitions."""
    body = json.loads((ROOT / "tests" / "agent_requests" / f"{agent}-1.json").read_text())["body"]
    parts = [body.get("system"), body.get("instructions"), body.get("tools"),
             [i for i in body.get("input", []) if isinstance(i, dict) and i.get("role") in ("developer", "system")]]
    texts: list[str] = []

    def walk(value):
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                texts.append(key)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
    walk(parts)
    return texts


def count(rule, texts: list[str], all_code: bool) -> tuple[int, dict[str, int]]:
    total, kinds = 0, {}
    for text in texts:
        findings = rule.detector.find(text)
        if rule.code_aware:
            findings = code_aware.kept(text, findings, all_code)
        total += len(findings)
        for finding in findings:
            kinds[finding.label.lower()] = kinds.get(finding.label.lower(), 0) + 1
    return total, kinds


def main() -> None:
    old = _rule(entities=["email", "card", "ssn", "iban", "secret"], allow=ALLOW, code_aware=False)
    scoped = _rule(entities=["email", "card", "ssn", "iban"], allow=ALLOW, code_aware=False)
    aware = _rule(entities=["email", "card", "ssn", "iban"], allow=ALLOW)
    secrets = _rule(entities=["secret"], code_aware=False)
    problems = Problems("bench")
    classifier = parse_guardrails(Node({"rules": [{"name": "injection-model", "type": "injection_classifier"}]},
                                       "guardrails", problems)).default[0]
    problems.raise_if_any()
    print("| agent | calls | old default (every part, no code_aware) | pii on tool results, code_aware off | "
          "code_aware on | secrets (everywhere) | system prompt + tools: old | now | injection classifier: "
          "tool results blocked | of which attack text / an agent's prompt / neither |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rules = _injection_detector()
    captures = {i for i, path in enumerate(_files()) if "agent_requests" in path.parts}
    for agent in ("claude-code", "codex"):
        results = tool_results(agent)
        calls = len(results)
        per = 1000 / calls
        before, before_kinds = count(old, results, True)
        off, _ = count(scoped, results, True)
        on, on_kinds = count(aware, results, True)
        keys, _ = count(secrets, results, True)
        own = own_parts(agent)
        own_old, _ = count(old, own, False)
        own_now = count(secrets, own, False)[0]       # the quickstart reads them for secrets alone
        blocked = [i for i, text in enumerate(results) if classifier.detector.find(text)]
        attack_text = [i for i in blocked if rules.find(results[i])]
        prompts = [i for i in blocked if i in captures and i not in attack_text]
        neither = len(blocked) - len(attack_text) - len(prompts)
        print(f"| {agent} | {calls} | {before * per:.0f} {before_kinds} | {off * per:.0f} | {on * per:.0f} {on_kinds} "
              f"| {keys * per:.0f} | {own_old} | {own_now} | {len(blocked) * per:.1f} per 1,000 ({len(blocked)}) "
              f"| {len(attack_text)} / {len(prompts)} / {neither} ({neither * per:.1f} per 1,000) |")
    if os.environ.get("SHOW_BLOCKED"):
        for text in tool_results(os.environ["SHOW_BLOCKED"]):
            if classifier.detector.find(text):
                print("blocked:", repr(text[:160]))
    if os.environ.get("SHOW"):
        for text in tool_results(os.environ["SHOW"]):
            for f in code_aware.kept(text, aware.detector.find(text), True):
                print(f.label, repr(text[max(0, f.start - 60):f.end + 20]))


if __name__ == "__main__":
    main()
