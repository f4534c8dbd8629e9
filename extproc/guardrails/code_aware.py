"""Where a PII finding sits in code: what a `pii` rule with `code_aware` leaves alone.

    - {name: pii, type: pii, action: redact, code_aware: true}     # the default

Code is what an agent reads from a repository: the whole of a tool result (a file read, a
grep, a shell command's output, a diff) and, in any other part of a request, a fenced
block (a text between two lines of ```). Inside code these are not a person's data:

- an e-mail address on a commit trailer's line (`Co-Authored-By:`, `Signed-off-by:`, ...),
  a git log's `Author:` / `Commit:`, a license header's `Copyright` line, or package
  metadata (`author_email`, `maintainer_email`, `Maintainer:`, `authors = [...]`, an
  `"email":` in package.json's `author`, `maintainers` or `contributors`);
- an address at a domain reserved for examples and tests (RFC 2606 and 6761: `example.com`,
  `.org`, `.net`, `*.example`, `*.test`, `*.invalid`, `*.localhost`): no one receives mail
  there, and code and its tests are full of them;
- a card network's published test number (`4111 1111 1111 1111`, `4242 4242 4242 4242`...);
- a number that is part of an identifier, a hash or a version: digits glued to letters,
  digits or `_` (a hex digest, `build_4111...`), groups joined by dots alone (`1.2.3`,
  `2024.11.26.1234`), or a card number no card network issues (epoch milliseconds, row
  ids and the like pass Luhn one time in ten).

Secrets are always found: a key in code is still a key. The check runs only on a text's
findings (rare), on the line around each: a few regex searches over a short string.
"""

from __future__ import annotations

import re

from . import Finding

# The start of a line whose address names a code's author, not a person to protect.
_AUTHOR_LINE = re.compile(
    r"(?i)^[\s+\->#*/;\"'|]*(?:[\w.-]+:\s*)?"     # diff/quote/comment marks; a grep's "file:line:"
    r"(?:\d+\s*(?:→|\t|:)\s*)?"                  # a file reader's line number
    r"[\s+\->#*/;\"'|]*"
    r"(?:co-authored-by|signed-off-by|reviewed-by|acked-by|tested-by|reported-by|suggested-by|"
    r"helped-by|author|commit|committer|maintainer|maintainers|uploaders|"
    r"\"?(?:author|maintainer)_?email\"?|__(?:author|email|maintainer)__|"
    r"(?:copyright\b|\(c\)|©|spdx-filecopyrighttext\b)[^\n]*?)"
    r"(?:\s*[:=]|\s)")
# In package metadata: a line inside an authors list (pyproject's `{name = ..., email = ...}`,
# Cargo's `"Name <address>"`) or package.json's author/maintainers/contributors objects.
_AUTHORS_LIST = re.compile(r"(?i)\b(?:authors|maintainers|contributors|author|bugs)\"?\s*[:=]\s*[\[{]")
_EMAIL_KEY = re.compile(r"(?i)(?:\"email\"\s*:\s*\"|\bemail\s*=\s*\"|<)$")
_COMMENT_LINE = re.compile(r"^[\s\d→:]*(?:#|//|/\*|\*|;|--|%|\.\.)")
_LICENSE_NEAR = re.compile(r"(?i)copyright|\(c\)|©|licen[cs]ed|spdx-license-identifier")

_RESERVED_DOMAIN = re.compile(r"(?i)[@.](?:example\.(?:com|net|org)|[\w-]+\.(?:example|test|invalid|localhost)"
                              r"|example|test|invalid|localhost)$")
# The networks' and processors' published test card numbers (Visa, Mastercard, Amex, Discover,
# Diners, JCB, UnionPay).
_TEST_CARDS = frozenset({
    "4111111111111111", "4242424242424242", "4012888888881881", "4000056655665556", "4222222222222",
    "5555555555554444", "5105105105105100", "5200828282828210", "2223003122003222", "378282246310005",
    "371449635398431", "378734493671000", "6011111111111117", "6011000990139424", "30569309025904",
    "38520000023237", "3530111333300000", "3566002020360505", "6200000000000005"})
_DIGIT_LABELS = frozenset({"CARD", "SSN", "PHONE", "IBAN", "IP"})
_DOTTED = re.compile(r"\d+(?:\.\d+)+")
_NON_DIGIT = re.compile(r"\D")
# The card numbers the networks issue (first digits and lengths): Visa, Mastercard, Amex,
# Discover, JCB, Diners, UnionPay, Maestro.
_ISSUED = re.compile(r"4\d{12}(?:\d{3}){0,2}|5[1-5]\d{14}|2(?:2[2-9]\d|[3-6]\d\d|7[01]\d|720)\d{12}"
                     r"|3[47]\d{13}|6(?:011|5\d\d|4[4-9]\d)\d{12}(?:\d{3})?|35(?:2[89]|[3-8]\d)\d{12}(?:\d{3})?"
                     r"|3(?:0[0-5]|[689]\d)\d{11,16}|62\d{14,17}|(?:5[06-9]|6\d)\d{10,17}")
_GLUED = re.compile(r"[\w.]")


def fenced(text: str) -> bool:
    """Whether the text holds a fenced block at all (the cheap first question)."""
    return "```" in text


def in_fence(text: str, start: int) -> bool:
    """Whether `start` lies between an odd and the next fence mark (```)."""
    return text.count("```", 0, start) % 2 == 1


def _line(text: str, start: int, end: int) -> tuple[str, str]:
    """The finding's line: what precedes it on its line, and what follows it."""
    low = text.rfind("\n", 0, start) + 1
    high = text.find("\n", end)
    return text[low:start], text[end:high if high >= 0 else len(text)]


def _an_authors_address(text: str, finding: Finding) -> bool:
    if _RESERVED_DOMAIN.search(text, finding.start, finding.end):
        return True
    before, _after = _line(text, finding.start, finding.end)
    if _AUTHOR_LINE.match(before):
        return True
    if _EMAIL_KEY.search(before):
        # Inside an authors list or object that is still open where the address stands.
        window_start = max(0, finding.start - 400)
        opened = None
        for opened in _AUTHORS_LIST.finditer(text, window_start, finding.start):
            pass
        if opened is not None:
            closer = "]" if opened.group().endswith("[") else "}"
            if text.find(closer, opened.end(), finding.start) < 0:
                return True
    # A license header: a comment line right under the copyright or licence words.
    if _COMMENT_LINE.match(before):
        line_start = finding.start - len(before)
        above = text.rfind("\n", 0, max(0, text.rfind("\n", 0, max(0, line_start - 1))))
        return bool(_LICENSE_NEAR.search(text, max(0, above), line_start))
    return False


def _a_numbers_identity(text: str, finding: Finding) -> bool:
    value = text[finding.start:finding.end]
    glued_before = finding.start > 0 and _GLUED.match(text, finding.start - 1) is not None
    glued_after = finding.end < len(text) and _GLUED.match(text, finding.end) is not None \
        and not (text[finding.end] == "." and (finding.end + 1 == len(text) or not text[finding.end + 1].isalnum()))
    if glued_before or glued_after or _DOTTED.fullmatch(value):
        return True
    if finding.label == "CARD":
        digits = _NON_DIGIT.sub("", value)
        return digits in _TEST_CARDS or _ISSUED.fullmatch(digits) is None
    return False


def not_pii_in_code(text: str, finding: Finding) -> bool:
    """Whether a finding lying in code is not a person's data (above); never a secret."""
    if finding.label == "EMAIL":
        return _an_authors_address(text, finding)
    if finding.label in _DIGIT_LABELS:
        return _a_numbers_identity(text, finding)
    return False


def kept(text: str, findings: list[Finding], all_code: bool) -> list[Finding]:
    """The findings a code-aware rule keeps: those outside code, and those inside it that
    are a person's data. `all_code`: the text is a tool result, code as a whole."""
    if not all_code and not fenced(text):
        return findings
    return [f for f in findings if not ((all_code or in_fence(text, f.start)) and not_pii_in_code(text, f))]
