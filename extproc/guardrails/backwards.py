"""Text written backwards: `moc.elpmaxe@enaj`, a key or a card number reversed, an
instruction spelt from its last letter to its first. A model asked to "read this
backwards" reads the value; a detector's regexes do not.

Reading every text a second time backwards would double the guardrails' cost, so a
detector reads the reversed text only where its patterns, read backwards, might match
the text as written: each pattern's screen rewritten with its sequences turned round
(screen.py, `reverse=True`), folded into the detector's one RE2 pre-check. Most text
holds nothing such a screen matches (no reversed top-level domain before an '@', no
reversed key prefix, no reversed rule), and costs nothing more than that pass.
A finding in the reversed text is mapped back onto the original's positions.
"""

from __future__ import annotations

from . import Finding


def flipped(findings, length: int) -> list[Finding]:
    """Findings in a text of `length` characters read backwards, as spans of the text."""
    return [Finding(length - f.end, length - f.start, f.label) for f in findings]
