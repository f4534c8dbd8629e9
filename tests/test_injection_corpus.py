"""The prompt injection rules measured on independent corpora (tests/corpora/SOURCES.md):
block rate on attacks, false-positive rate on benign prompts, and Claude Code's own
system prompt and tool descriptions, which must pass untouched."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

from extproc.guardrails.fold import FoldingDetector
from extproc.guardrails.injection import InjectionDetector
from bare_call import bare_call

CORPORA = Path(__file__).parent / "corpora"
CLAUDE_CODE = Path(__file__).resolve().parent.parent / ".venv" / "claude-code" / "node_modules" / "@anthropic-ai" / \
    "claude-code"
# As the config builds the guardrail (guardrails/config.py).
DETECTOR = FoldingDetector(InjectionDetector(), also_original=True)

MIN_BLOCK_RATE = 0.97
MAX_FALSE_POSITIVE_RATE = 0.0


def _rows(name: str) -> list[tuple[str, str, str]]:
    rows = []
    for line in (CORPORA / name).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            family, source, text = line.split("\t", 2)
            rows.append((family, source, text.replace("\\n", "\n")))
    return rows


def test_block_rate_on_attacks():
    attacks = _rows("injection_attacks.tsv")
    missed = [(family, text) for family, _, text in attacks if not DETECTOR.find(text)]
    rate = 1 - len(missed) / len(attacks)
    print(f"\ninjection attacks: blocked {len(attacks) - len(missed)}/{len(attacks)} ({rate:.1%})")
    assert len(attacks) >= 90
    assert rate >= MIN_BLOCK_RATE, missed


def test_false_positive_rate_on_benign_prompts():
    benign = _rows("benign_prompts.tsv")
    flagged = [text for _, _, text in benign if DETECTOR.find(text)]
    rate = len(flagged) / len(benign)
    print(f"\nbenign prompts: flagged {len(flagged)}/{len(benign)} ({rate:.1%})")
    assert len(benign) >= 60
    assert rate <= MAX_FALSE_POSITIVE_RATE, flagged


@functools.cache
def claude_code_texts() -> list[str]:
    """Every prose string literal in the installed Claude Code (its system prompt's parts,
    its tools' descriptions and parameter descriptions, its messages): quoted or template
    literals of 60+ characters with 8+ spaces, read out of the package's JavaScript
    (`cli.js`, or the source a native build carries)."""
    files = [CLAUDE_CODE / "cli.js"] if (CLAUDE_CODE / "cli.js").exists() else sorted((CLAUDE_CODE / "bin").glob("*"))
    literal = re.compile(rb'"((?:[^"\\\n\x00]|\\.){60,4000})"|`((?:[^`\\\x00]|\\.){60,8000})`')
    texts = set()
    for path in files:
        for match in literal.finditer(path.read_bytes()):
            raw = match.group(1) or match.group(2)
            if raw.count(b" ") < 8:
                continue
            try:
                texts.add(raw.decode("utf-8").replace("\\n", "\n").replace("\\t", "\t"))
            except UnicodeDecodeError:
                continue
    return sorted(texts)


def test_claude_code_system_prompt_and_tools_pass_untouched(claude_code_prose):
    texts = claude_code_prose
    # The extraction reached the system prompt and the tools' descriptions.
    assert any("You are Claude Code, Anthropic's official CLI for Claude" in t for t in texts)
    assert any("The working directory persists between commands" in t for t in texts)   # Bash tool
    flagged = [t[:200] for t in texts if DETECTOR.find(t)]
    print(f"\nClaude Code prose strings: {len(texts)}, flagged {len(flagged)}")
    assert flagged == []


def test_claude_code_texts_read_as_one_request_pass_untouched(claude_code_prose):
    """As Claude Code sends them: many of them in one request, read as one conversation."""
    from types import SimpleNamespace

    from extproc.guardrails.config import Guardrail
    from extproc.stages.guard.request import check_texts
    texts = claude_code_prose
    rule = Guardrail("injection", "prompt_injection", "block", frozenset({"request"}), "closed", DETECTOR)
    for start in range(0, len(texts), 200):
        blocks = [{"type": "text", "text": t} for t in texts[start:start + 200]]
        check_texts(bare_call(), rule, [(b, "text") for b in blocks], "request")
