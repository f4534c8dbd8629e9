"""Guardrails: offline detectors that run on every message, both directions.
Imports api, config and the plugin API only: nothing of the pipeline or its stages.

A text guardrail finds spans (`Finding`) in a string; the action decides:
  block   refuse (400 content_blocked; the message names the guardrail, never the text)
  redact  replace each span with a placeholder such as [EMAIL]
  log     shadow mode: record the verdict, change nothing
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Finding:
    start: int
    end: int
    label: str          # placeholder name: EMAIL, CARD, SECRET, …


def redact(text: str, findings: list[Finding]) -> str:
    """Replace each span with its placeholder. Overlapping spans merge into one, named by
    the one that starts first (the longest of those): no part of any span survives (an
    SSN inside a longer card number must not leave the card's tail behind)."""
    merged: list[list] = []                      # [start, end, label], in text order
    for finding in sorted(findings, key=lambda f: (f.start, -f.end)):
        if merged and finding.start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], finding.end)
        else:
            merged.append([finding.start, finding.end, finding.label])
    out, position = [], 0
    for start, end, label in merged:
        out.append(text[position:start])
        out.append(f"[{label}]")
        position = end
    out.append(text[position:])
    return "".join(out)
