"""Prompt injection rules for the common families.

  override       "ignore all previous instructions", "disregard the rules above"
  impersonation  fake system/developer turns, chat-template tokens, jailbreak personas
  exfiltration   "reveal your system prompt", "repeat the text above verbatim"
  encoded        base64 / hex payloads that decode to any of the above
Rules are written to need an instruction verb *and* its target, which keeps
benign text ("ignore the noise in this data") passing.
"""

from __future__ import annotations

import base64
import binascii
import re

from . import Finding
from .fastre import Pattern
from .hold import Tail, of
from .screen import might_match, screen

_TARGET = (r"(?:instructions?|prompts?|rules?|guidelines?|directives?|context|messages?|"
           r"constraints?|polic(?:y|ies)|guardrails?|system\s+prompt)")
_SCOPE = r"(?:all\s+|any\s+|the\s+|your\s+|my\s+|these\s+|those\s+|every\s+)*(?:previous|prior|above|earlier|preceding|original|initial|existing|system|safety|developer)?"

RULES = {
    "override": [
        rf"\b(?:ignore|disregard|forget|override|bypass|skip|drop)\s+{_SCOPE}\s*{_TARGET}",
        r"\bforget\s+(?:everything|all)\s+(?:you\s+(?:were|have\s+been)\s+told|above|before)",
        r"\b(?:new|updated)\s+instructions?\s*:",
        r"\bfrom\s+now\s+on,?\s+you\s+(?:will|must|are)\s+(?:ignore|no\s+longer|not\s+bound)",
    ],
    "impersonation": [
        r"<\|im_start\|>\s*system|<\|system\|>|\[/?INST\]|<</?SYS>>",
        r"(?m:^\s*(?:#{1,4}\s*)?(?:system|developer)\s*(?:prompt|message)?\s*:\s*you\s+(?:are|must|will))",
        r"\byou\s+are\s+(?:now\s+)?(?:DAN|in\s+developer\s+mode|an?\s+unrestricted|jailbroken|free\s+of\s+all)",
        r"\b(?:act|behave|respond)\s+as\s+(?:if\s+you\s+(?:have|had)\s+no|an?\s+(?:AI|assistant|model)\s+(?:without|with\s+no))\s+(?:restrictions|rules|filters|limits)",
        r"\bdeveloper\s+mode\s+(?:enabled|activated|on)\b",
    ],
    "exfiltration": [
        r"\b(?:reveal|show|print|display|output|repeat|leak|tell\s+me|what\s+(?:is|are))\s+(?:me\s+)?(?:your|the)\s+(?:full\s+|entire\s+|hidden\s+|initial\s+|original\s+)?(?:system\s+prompt|system\s+message|instructions|hidden\s+prompt|prompt)\b",
        r"\brepeat\s+(?:the\s+|all\s+)?(?:text|words|everything)\s+above\b",
        r"\b(?:what|everything)\s+(?:was|were)\s+you\s+told\s+(?:before|above|initially)",
    ],
}
# One alternation, one pass over the text; the named group says which family matched.
_COMBINED = Pattern("|".join(f"(?P<{family}>{'|'.join(f'(?:{p})' for p in patterns)})"
                             for family, patterns in RULES.items()), re.IGNORECASE)
_BASE64 = Pattern(r"[A-Za-z0-9+/]{24,}={0,2}")
_HEX = Pattern(r"\b(?:[0-9a-fA-F]{2}){16,}\b")


def _decoded_payloads(text: str):
    for match in _BASE64.finditer(text):
        chunk = match.group()
        try:
            decoded = base64.b64decode(chunk + "=" * (-len(chunk) % 4), validate=True)
            yield match, decoded.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
    for match in _HEX.finditer(text):
        try:
            yield match, bytes.fromhex(match.group()).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            continue


_TAIL = Tail(of(_COMBINED, _BASE64, _HEX))
# Where none of the three might match, find() finds nothing (screen.py).
_SCREEN = screen(_COMBINED.python, _BASE64.python, _HEX.python)


class InjectionDetector:
    def might_find(self, text: str) -> bool:
        """False when find() finds nothing in `text` nor in any part of it."""
        return _SCREEN is None or might_match(_SCREEN, text)

    def hold_from(self, text: str, start: int = 0) -> int | None:
        return _TAIL.hold_from(text, start)

    def find(self, text: str) -> list[Finding]:
        # The screen is one RE2 pass where the rules and both payload scans are three: a
        # clean chat message costs ~2.5 µs instead of ~8.5.
        if not self.might_find(text):
            return []
        match = _COMBINED.search(text)
        if match:
            return [Finding(match.start(), match.end(), f"INJECTION:{match.lastgroup}")]
        for match, decoded in _decoded_payloads(text):
            if _COMBINED.search(decoded):
                return [Finding(match.start(), match.end(), "INJECTION:encoded")]
        return []
