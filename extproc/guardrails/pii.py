"""PII and secrets, with validators to keep false positives down.

Candidates come from regexes; cards must pass Luhn, IBANs their checksum, US SSNs
the SSA's structural rules, phone numbers libphonenumber's validity check, IPs
the ipaddress parser. Secret patterns follow the providers' documented formats
(the same families detect-secrets' regex plugins cover).
"""

from __future__ import annotations

import ipaddress
import re

import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum.us import ssn as stdnum_ssn

from . import Finding
from .backwards import reversed_pattern, reversed_source
from .fastre import Pattern
from .hold import Tail, of
from .screen import screen, screen_source
from .screen_sets import EVERY, ScreenSet, might_match

# E-mail addresses as a model reads them: plain, with a quoted or non-ASCII local part, an
# IDN domain (Unicode letters, or its xn-- form), `%40` for '@' (percent-encoded), and
# spelt out: `name [at] domain [dot] com`, `name (at) domain.com`, `name at domain dot com`
# (spelt with words alone only with both "at" and "dot", which prose seldom strings so).
_LOCAL = r'(?:[\w.%+-]{1,64}|"[^"\n]{1,64}")'
_DOMAIN = r"[\w.-]{1,253}\.(?:[^\W\d_]{2,24}|xn--[a-z0-9-]{1,59})"
_BRACKETED = r"\s?[\[({<]\s?{word}\s?[\])}>]\s?"
_SPELT_AT, _SPELT_DOT = _BRACKETED.replace("{word}", "at"), _BRACKETED.replace("{word}", "dot")
# Spelt with words alone, the address must end in a common top-level domain ("look at the
# dot on the map" is not one).
_TLDS = ("com|net|org|edu|gov|mil|int|io|co|ai|dev|app|info|biz|me|us|uk|de|fr|es|it|nl|be|ch|at|se|no|"
         "dk|fi|pl|cz|pt|ie|ca|au|nz|jp|cn|kr|in|ru|br|mx|ar|za|eu")
_EMAIL = Pattern(rf"{_LOCAL}(?:@|%40){_DOMAIN}")
_EMAIL_SPELT = Pattern(
    rf"[\w.+-]{{1,64}}(?i:{_SPELT_AT})[\w-]{{1,63}}(?:(?i:{_SPELT_DOT})[\w-]{{1,63}}|\.[\w-]{{1,63}})+"
    rf"|\b[\w.+-]{{1,64}}\s+(?i:at)\s+[\w-]{{1,63}}(?:\s+(?i:dot)\s+[\w-]{{1,63}})*\s+(?i:dot)\s+(?i:{_TLDS})\b")
# Card numbers: digits alone or one space or dash apart, or in groups (4-4-4-4, 4-6-5,
# 4-4-4-4-3) with any short run of punctuation or spaces between them (`.`, `/`, `_`,
# `+`, `|`, tabs, commas, double spaces); Luhn decides.
_GAP = r"(?:[^\w\n]|_){1,4}"
# (Each pattern opens with a digit, its lookbehind after it: re then skips to digits fast.)
_CARD = re.compile(rf"\d(?<![\d-]\d)(?:(?:[ -]?\d){{12,18}}|\d{{3}}(?:{_GAP}\d{{4}}){{2}}{_GAP}\d{{1,7}}"
                   rf"|\d{{3}}{_GAP}\d{{6}}{_GAP}\d{{4,5}}|\d{{3}}(?:{_GAP}\d{{4}}){{3}}{_GAP}\d{{1,3}})(?![\d-])")
# A UUID (8-4-4-4-12 hex digits: ids, cache keys, sessions): its all-digit groups can read
# as a card that passes Luhn or a phone number; what lies wholly inside one is neither.
_UUID = re.compile(r"(?<![0-9A-Fa-f-])[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}(?![0-9A-Fa-f-])")
# A hex identifier (an item or message id, a hash, an object id: 24 or more hex digits with
# a letter among them, alone or after `msg_`): its digit runs pass Luhn as often as any
# digits do, and the model reads it as the id it is.
_HEX_ID = re.compile(r"(?<![0-9A-Za-z])(?=[0-9]*[A-Fa-f])[0-9A-Fa-f]{24,}(?![0-9A-Za-z])")
_DIGIT_GROUPS = frozenset({"CARD", "PHONE"})
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
# US SSNs: 3-2-4 digits with any short run of punctuation or spaces between the groups,
# or nine digits in a row where "SSN" or "social security" comes just before them (nine
# digits alone are too often something else); the SSA's rules decide.
_SSN = re.compile(rf"\d(?<![\d-]\d)\d{{2}}{_GAP}\d{{2}}{_GAP}\d{{4}}(?![\d-])")
_SSN_NAMED = re.compile(r"(?i:\bss#|\bssn|social\s+security(?:\s+(?:number|no))?)\W{0,12}(?P<bare>\d{9})(?!\d)")
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}(?!\w)")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![:\w])(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{1,4}(?![:\w])")

SECRET_PATTERNS = {
    # OpenAI keys, their prefix in any case and with '_' for '-'; a key without its prefix
    # still carries "T3BlbkFJ" (base64 of "OpenAI") between its two halves.
    "openai": r"\b(?i:sk[-_](?:proj|svcacct|admin)[-_])[A-Za-z0-9_-]{20,}|\b(?i:sk)-[A-Za-z0-9_-]{20,}"
              r"|[A-Za-z0-9_-]{16,}T3BlbkFJ[A-Za-z0-9_-]{16,}",
    "anthropic": r"\b(?i:sk[-_]ant[-_](?:api|admin)\d{2}[-_])[A-Za-z0-9_-]{20,}",
    "aws_access_key": r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b",
    "aws_secret_key": r"(?i:aws).{0,20}?(?i:secret|key).{0,20}?['\"=: ]+[A-Za-z0-9/+=]{40}\b",
    "github": r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})\b",
    "slack": r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b",
    "google_api_key": r"\bAIza[0-9A-Za-z_-]{35}\b",
    "stripe": r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b",
    "private_key": r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----(?:(?s:.)*?-----END (?:[A-Z]+ )?PRIVATE KEY-----)?",
    "jwt": r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\b",
}
_SECRETS = Pattern("|".join(f"(?:{p})" for p in SECRET_PATTERNS.values()))

# What a stream holds back (hold.py): each finder's regex. A private key's header is
# held with everything after it until its END line (finding makes the block optional,
# so that a header without its end is still redacted); its body may not run past an
# END, else any text after the key could still extend it.
_HOLD_SECRETS = {**SECRET_PATTERNS, "private_key":
                 r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----(?:(?!-----END)(?s:.))*"
                 r"-----END (?:[A-Z]+ )?PRIVATE KEY-----"}
_HOLD = {"email": of(_EMAIL, _EMAIL_SPELT), "phone": of(_PHONE), "card": of(_CARD), "iban": of(_IBAN),
         "ssn": of(_SSN, _SSN_NAMED), "ip": of(_IPV4, _IPV6),
         "secret": [(p, 0) for p in _HOLD_SECRETS.values()]}

# Pre-checks, run by RE2 on any text: each finder's regexes as a screen (screen.py),
# which matches wherever they might. When it finds nothing the finder is skipped: most
# prompts hold no '@' and no digit runs, and skip nearly all of the work.
_SCREENED = {"email": (_EMAIL.python, _EMAIL_SPELT.python), "phone": (_PHONE,), "card": (_CARD,), "iban": (_IBAN,), "ssn": (_SSN, _SSN_NAMED),
             "ip": (_IPV4, _IPV6), "secret": (_SECRETS.python,)}

ENTITIES = ("email", "phone", "card", "iban", "ssn", "ip", "secret")
# Screens whose automaton grows with the runs they count: each in an RE2 Set of its own,
# each way (on code, email's and secret's screens in one Set read ~4 MB/s, apart 40-500).
_SCREENED_ALONE = ("email", "secret")
# Values also read backwards (backwards.py). Phone numbers and IP addresses are not: any
# list of numbers reads as one of them backwards about as often as forwards.
BACKWARDS = ("email", "card", "iban", "ssn", "secret")


def _validated(pattern, text: str, valid):
    """The matches of `pattern` that `valid` accepts. Past a refused candidate (digits
    failing Luhn) the search goes on from its next place a match can start, not from its
    end: `finditer` would let it hide a valid value starting inside it (a card right after
    another number), and which of the two is read would then depend on how much of the
    text has arrived: a stream would release the first digits of a card it redacts once
    the whole text is known. Past an accepted one it goes on from its end, as `finditer`:
    reading inside values found would make a long run of numbers (a table, a list of
    ids) many overlapping findings."""
    position = 0
    while (match := pattern.search(text, position)) is not None:
        if valid(match.group()):
            yield match
            position = match.end()
        else:
            position = match.start() + 1


_NON_DIGIT = re.compile(r"\D")
_DOUBLED = str.maketrans("0123456789", "0246813579")     # a digit doubled, its digits summed


def _luhn(digits: str) -> bool:
    """The Luhn check, summed in C: a run of digit groups failing it holds a candidate at
    each group, and stdnum's `luhn.is_valid` cost ~6 µs each (2/3 of the detector's time
    on such text), this ~1 µs. Tested against stdnum in tests/test_guardrails_unit.py."""
    if not digits.isascii():         # `\d` reads other scripts' digits too; stdnum refuses them
        return False
    kept, doubled = digits[-1::-2].encode(), digits[-2::-2].translate(_DOUBLED).encode()
    return (sum(kept) + sum(doubled) - 48 * len(digits)) % 10 == 0


def _is_card(candidate: str) -> bool:
    digits = _NON_DIGIT.sub("", candidate)
    return 13 <= len(digits) <= 19 and _luhn(digits)


def _is_ssn(candidate: str) -> bool:
    return stdnum_ssn.is_valid(_NON_DIGIT.sub("", candidate))


def _checked(pattern, valid, label: str):
    """A finder: the matches of `pattern` that `valid` accepts (`_validated`)."""
    def find(text: str):
        for match in _validated(pattern, text, valid):
            yield Finding(match.start(), match.end(), label)
    return find


def _read_backwards(valid):
    """A validator of a value written backwards: the value is the candidate reversed."""
    return lambda candidate: valid(candidate[::-1])


_cards = _checked(_CARD, _is_card, "CARD")
_ibans = _checked(_IBAN, stdnum_iban.is_valid, "IBAN")


def _ssn_finder(grouped, named, valid):
    """US SSNs: 3-2-4 digit groups, and nine digits the words "SSN" or "social security"
    name (`named`, its digits in the group `bare`)."""
    grouped_finder = _checked(grouped, valid, "SSN")
    named_screen = screen(named)

    def find(text: str):
        yield from grouped_finder(text)
        if named_screen is None or might_match(named_screen, text):
            for match in named.finditer(text):
                if valid(match.group("bare")):
                    yield Finding(match.start("bare"), match.end("bare"), "SSN")
    return find


_ssns = _ssn_finder(_SSN, _SSN_NAMED, _is_ssn)


def _is_phone(candidate: str) -> bool:
    digits = sum(ch.isdigit() for ch in candidate)
    if digits < 8 or digits > 15:
        return False
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(candidate, "US"))
    except phonenumbers.NumberParseException:
        return False


def _phones(text: str):
    # libphonenumber costs ~50 µs a candidate: text that repeats one ("12 12 12 …")
    # would cost ~5 s per MB without remembering the answers within the text.
    verdicts: dict[str, bool] = {}
    for match in _PHONE.finditer(text):
        candidate = match.group()
        verdict = verdicts.get(candidate)
        if verdict is None:
            verdict = verdicts[candidate] = _is_phone(candidate)
        if verdict:
            yield Finding(match.start(), match.end(), "PHONE")


def _ips(text: str):
    for pattern in (_IPV4, _IPV6):
        for match in pattern.finditer(text):
            try:
                address = ipaddress.ip_address(match.group())
            except ValueError:
                continue
            if not (address.is_loopback or address.is_unspecified):
                yield Finding(match.start(), match.end(), "IP")


def _matched(patterns, label: str):
    """A finder: every match of the patterns, each read on its own."""
    def find(text: str):
        for pattern in patterns:
            for match in pattern.finditer(text):
                yield Finding(match.start(), match.end(), label)
    return find


_emails = _matched((_EMAIL, _EMAIL_SPELT), "EMAIL")
_secrets = _matched((_SECRETS,), "SECRET")

_FINDERS = {"email": _emails, "phone": _phones, "card": _cards, "iban": _ibans,
            "ssn": _ssns, "ip": _ips, "secret": _secrets}


def _reversed_fast(pattern: Pattern) -> Pattern:
    return Pattern(reversed_source(pattern.python.pattern, pattern.python.flags, first_character=False))


# A card's and an SSN's patterns reversed, spelt to open with a digit as the forward ones
# do, so that re skips to digits in C: reversed_pattern() leads with a lookbehind and a
# group, where re finds no first character and enters its engine at every place (1.6-1.8x
# the time on text with digits). Each matches what reversed_pattern() of its forward
# pattern matches, at every place (tests/test_guardrails_backwards.py).
_CARD_BACKWARDS = re.compile(
    rf"\d(?<![\d-]\d)(?:[ -]?(?:\d[ -]?){{11,17}}|\d{{0,6}}{_GAP}(?:\d{{4}}{_GAP}){{2}}\d{{3}}"
    rf"|\d{{3,4}}{_GAP}\d{{6}}{_GAP}\d{{3}}|\d{{0,2}}{_GAP}(?:\d{{4}}{_GAP}){{3}}\d{{3}})\d(?![\d-])")
_SSN_BACKWARDS = re.compile(rf"\d(?<![\d-]\d)\d{{3}}{_GAP}\d{{2}}{_GAP}\d{{3}}(?![\d-])")

# Values written backwards, read forwards with their patterns reversed (backwards.py).
_BACKWARDS_FINDERS = {
    "email": _matched((_reversed_fast(_EMAIL), _reversed_fast(_EMAIL_SPELT)), "EMAIL"),
    "card": _checked(_CARD_BACKWARDS, _read_backwards(_is_card), "CARD"),
    "iban": _checked(reversed_pattern(_IBAN), _read_backwards(stdnum_iban.is_valid), "IBAN"),
    "ssn": _ssn_finder(_SSN_BACKWARDS, reversed_pattern(_SSN_NAMED), _read_backwards(_is_ssn)),
    "secret": _matched((_reversed_fast(_SECRETS),), "SECRET"),
}
# What a stream holds back for them: their hold patterns reversed.
_HOLD_BACKWARDS = {entity: [(reversed_source(source, flags), flags) for source, flags in _HOLD[entity]]
                   for entity in _BACKWARDS_FINDERS}


class PIIDetector:
    def __init__(self, entities: tuple[str, ...] = ENTITIES) -> None:
        self.finders = [_FINDERS[e] for e in entities]
        # Values written backwards: their patterns reversed, read forwards over the text,
        # where the screen of their patterns read backwards matches it.
        self.backwards = [_BACKWARDS_FINDERS[e] for e in entities if e in BACKWARDS]
        forward = [screen_source(*_SCREENED[e]) for e in entities]
        backwards = [screen_source(*_SCREENED[e], reverse=True) for e in entities if e in BACKWARDS]
        # Every finder's pre-check, both ways: one pass over a text per RE2 Set says which
        # finders may find something (most text: none). The screens that count long runs
        # (an address's parts, a secret's characters) get a Set each: together their
        # states multiply (screen_sets.py, ScreenSet).
        sources = forward + backwards
        directions = [*entities, *(e for e in entities if e in BACKWARDS)]
        alone = frozenset(index for index, e in enumerate(directions) if e in _SCREENED_ALONE)
        self.screens = ScreenSet(sources, alone) if all(source is not None for source in sources) else None
        self.tail = Tail([*(pattern for e in entities for pattern in _HOLD[e]),
                          *(pattern for e in entities if e in BACKWARDS for pattern in _HOLD_BACKWARDS[e])])

    def _matching(self, text: str):
        return self.screens.matching(text) if self.screens is not None else EVERY

    def might_find(self, text: str) -> bool:
        """False when find() finds nothing in `text` nor in any part of it (screens
        read no context: what matches inside a part matches inside the whole)."""
        return bool(self._matching(text))

    def find(self, text: str) -> list[Finding]:
        matching = self._matching(text)
        if not matching:
            return []
        findings: list[Finding] = []
        for index, finder in enumerate(self.finders):
            if index in matching:
                findings.extend(finder(text))
        first = len(self.finders)
        backwards = [finder for index, finder in enumerate(self.backwards, first) if index in matching]
        for finder in backwards:
            findings.extend(finder(text))
        if any(f.label in _DIGIT_GROUPS for f in findings):
            ids = [m.span() for m in _HEX_ID.finditer(text)]
            if "-" in text:
                ids += [m.span() for m in _UUID.finditer(text)]
            if ids:
                findings = [f for f in findings if f.label not in _DIGIT_GROUPS or not any(
                    low <= f.start and f.end <= high for low, high in ids)]
        # Secrets win over the pieces of them that look like phone numbers or cards.
        secrets = [f for f in findings if f.label == "SECRET"]
        if secrets:
            findings = secrets + [f for f in findings if f.label != "SECRET" and not any(
                s.start <= f.start < s.end for s in secrets)]
        return list(dict.fromkeys(findings))     # a value that reads the same both ways: once

    def hold_from(self, text: str, start: int = 0) -> int | None:
        return self.tail.hold_from(text, start)
