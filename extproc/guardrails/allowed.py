"""Values a text rule never finds: its `allow:` list.

    - {name: pii, type: pii, action: redact, allow: [noreply@anthropic.com, "*@users.noreply.github.com"]}

Each entry is a value or a glob (`*` any run of characters, `?` one), matched against
the whole text of a finding, case-insensitively: an agent vendor's commit trailer, the
company's own domains, a test card number. A finding is dropped only when its text, as
written in the request, is an allowed value: a look-alike or encoded form of one (which the
detectors find through folding and decoding) is not the value and is still found.
"""

from __future__ import annotations

import fnmatch
import re

from . import Finding


class AllowedValues:
    """A detector whose findings leave out the allowed values (same interface as the
    detector it wraps: find, might_find, hold_from)."""

    def __init__(self, detector, allow: tuple[str, ...]) -> None:
        self.detector = detector
        self._allowed = re.compile("|".join(f"(?:{fnmatch.translate(value.lower())})" for value in allow))

    def find(self, text: str) -> list[Finding]:
        return [finding for finding in self.detector.find(text)
                if not self._allowed.match(text[finding.start:finding.end].lower())]

    def might_find(self, text: str) -> bool:
        return self.detector.might_find(text)

    def hold_from(self, text: str, start: int = 0) -> int | None:
        return self.detector.hold_from(text, start)
