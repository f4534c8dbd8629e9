"""Guardrails: offline detectors that run on every message, both directions.

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
    """Replace spans right to left so earlier offsets stay valid; overlaps merge."""
    out = text
    last_start = len(text) + 1
    for finding in sorted(findings, key=lambda f: (f.start, -f.end), reverse=True):
        end = min(finding.end, last_start)
        if end <= finding.start:
            continue
        out = out[:finding.start] + f"[{finding.label}]" + out[end:]
        last_start = finding.start
    return out
