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
import functools
import html
import re
from typing import Iterator
from urllib.parse import unquote

import re2

from .fastre import Pattern
from .screen import ScreenSet, compile_screen, screen_source
from .screened import screened_finditer

# Runs long enough to hold a value worth finding (16 bytes of base64 is ~22 characters).
_BASE64 = r"[A-Za-z0-9+/_-]{20,}={0,2}"
_HEX = r"\b(?:[0-9a-fA-F]{2}[ :]?){10,}"
_PERCENT = r"(?:[^\s%]{0,24}%[0-9A-Fa-f]{2}){3,}[^\s%]*"
_ENTITIES = r"(?:[^\s&]{0,24}&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z]{2,8});){3,}[^\s&]*"
_KINDS = ("base64", "hex", "percent", "entities")
_SOURCES = (_BASE64, _HEX, _PERCENT, _ENTITIES)
_RUNS = Pattern("|".join(f"(?P<{kind}>{source})" for kind, source in zip(_KINDS, _SOURCES)))
# ASCII text is read as bytes, where RE2's offsets are the text's: an agent's tool result
# of source code holds a run (a long identifier, a path) every ~200 characters, and the
# str interface's per-match offset conversions cost more than the search.
_RUNS_BYTES = re2.compile(_RUNS.re2.pattern.encode(), _RUNS.re2.options) if _RUNS.re2 is not None else None
# Other text keeps Python's re (fastre.py), whose percent and entity alternatives try 24
# characters at every position (~5 MB/s on code): an alternative whose marker ('%', '&')
# the text lacks cannot match anywhere, and leaving it out changes no match.
_MARKED = {"percent": "%", "entities": "&"}


@functools.cache
def _runs_without(absent: frozenset[str]) -> re.Pattern:
    return re.compile("|".join(f"(?P<{kind}>{source})" for kind, source in zip(_KINDS, _SOURCES)
                               if kind not in absent))


# (Text detectors add this screen to their own: fold.py.)
SCREEN_SOURCE = screen_source(_RUNS.python)
# A Set of its own (screen.py, ScreenSet), which keeps its answer for the last text: each
# text guardrail asks it of the same texts.
_SCREEN = ScreenSet([SCREEN_SOURCE]) if compile_screen(SCREEN_SOURCE) is not None else None
# Where the runs may start, for re on other text (screened.py): most places in prose cannot.
_STARTS = compile_screen(SCREEN_SOURCE)
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
    return _SCREEN is None or bool(_SCREEN.matching(text))


# The last texts read for runs, with what they decoded to: each text guardrail reads the
# same texts (as fold.py's folded texts), and source code holds a run every ~200 characters.
_RECENT = 4
_recent: list[tuple[str, list[tuple[int, int, str]]]] = []


def decoded_runs(text: str) -> list[tuple[int, int, str]]:
    """(start, end, decoded text) of each encoded run in `text`."""
    if not might_hold_runs(text):
        return []
    for seen, runs in _recent:
        if seen is text or seen == text:      # (a chunk each guardrail cuts from the same text)
            return runs
    runs = list(_decoded_runs(text))
    _recent.insert(0, (text, runs))
    del _recent[_RECENT:]
    return runs


def _decoded_runs(text: str) -> Iterator[tuple[int, int, str]]:
    if _RUNS_BYTES is not None and text.isascii():
        for match in _RUNS_BYTES.finditer(text.encode("ascii")):
            start, end = match.span()
            decoded = _decode(_KINDS[match.lastindex - 1], text[start:end])
            if decoded is not None:
                yield start, end, decoded
        return
    pattern = _runs_without(frozenset(kind for kind, marker in _MARKED.items() if marker not in text))
    for match in pattern.finditer(text) if _STARTS is None else screened_finditer(pattern, _STARTS, text):
        decoded = _decode(match.lastgroup, match.group())
        if decoded is not None:
            yield match.start(), match.end(), decoded
