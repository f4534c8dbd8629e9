"""Encoded runs a model decodes as it reads: base64, hex, percent-encoding, HTML entities.

A model asked to "decode this" reads `amFuZUBleGFtcGxlLmNvbQ==` as the address it
encodes. So each run of one of these encodings above a size is decoded once (not
recursively: a run encoded twice is not looked into) and, when the result is text,
the detector reads it; a finding there covers the whole run in the original text
(the run is what a redaction replaces: part of an encoding cannot be cut out).

Not covered: arbitrary ciphers (ROT13, XOR, a made-up alphabet), compressed data,
encodings other than these four. (Text written backwards: backwards.py.)
"""

from __future__ import annotations

import base64
import binascii
import html
import re
from typing import Iterator
from urllib.parse import unquote

from .fastre import Pattern
from .screen import compile_screen, might_match, screen_source

# Runs long enough to hold a value worth finding (16 bytes of base64 is ~22 characters).
_BASE64 = r"[A-Za-z0-9+/_-]{20,}={0,2}"
_HEX = r"\b(?:[0-9a-fA-F]{2}[ :]?){10,}"
_PERCENT = r"(?:[^\s%]{0,24}%[0-9A-Fa-f]{2}){3,}[^\s%]*"
_ENTITIES = r"(?:[^\s&]{0,24}&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z]{2,8});){3,}[^\s&]*"
_KINDS = ("base64", "hex", "percent", "entities")
_RUNS = Pattern("|".join(f"(?P<{kind}>{source})" for kind, source in
                         zip(_KINDS, (_BASE64, _HEX, _PERCENT, _ENTITIES))))
# (Text detectors fold this screen into their own: one RE2 pass says both, fold.py.)
SCREEN_SOURCE = screen_source(_RUNS.python)
_SCREEN = compile_screen(SCREEN_SOURCE)
_SPACES = re.compile(r"[ :]")


_ALL_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")


def _decode(kind: str, run: str) -> str | None:
    if kind == "base64" and _ALL_HEX.fullmatch(run):     # hex digits are base64's too
        return _decode("hex", run) or _decode("base64-only", run)
    kind = "base64" if kind == "base64-only" else kind
    try:
        if kind == "base64":
            run = run.rstrip("=")
            data = base64.b64decode(run.replace("-", "+").replace("_", "/") + "=" * (-len(run) % 4),
                                    validate=True)
            text = data.decode("utf-8")
        elif kind == "hex":
            text = bytes.fromhex(_SPACES.sub("", run)).decode("utf-8")
        elif kind == "percent":
            text = unquote(run, errors="strict")
        else:
            text = html.unescape(run)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    # Text a model would read: mostly printable (random bytes seldom decode to UTF-8 that is).
    if not text or sum(ch.isprintable() or ch in "\n\t" for ch in text) < 0.9 * len(text):
        return None
    return text if text != run else None


def might_hold_runs(text: str) -> bool:
    return _SCREEN is None or might_match(_SCREEN, text)


def decoded_runs(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, decoded text) of each encoded run in `text`."""
    if not might_hold_runs(text):
        return
    for match in _RUNS.finditer(text):
        decoded = _decode(match.lastgroup, match.group())
        if decoded is not None:
            yield match.start(), match.end(), decoded
