"""Banned words, regexes and topics from config, compiled once into one regex."""

from __future__ import annotations

import re

from . import Finding
from .fastre import Pattern


class BannedDetector:
    def __init__(self, words: tuple[str, ...], patterns: tuple[str, ...], label: str = "BANNED") -> None:
        parts = [rf"\b{re.escape(word)}\b" for word in words] + list(patterns)
        self.regex = Pattern("|".join(f"(?:{p})" for p in parts), re.IGNORECASE) if parts else None
        self.label = label

    def find(self, text: str) -> list[Finding]:
        if self.regex is None:
            return []
        return [Finding(m.start(), m.end(), self.label) for m in self.regex.finditer(text)]
