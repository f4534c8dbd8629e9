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

from .fastre import Pattern, for_re2
from .screen import screen_source
from .screen_sets import ScreenSet, compile_screen
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
# The same runs' spans, without the groups: RE2's automata alone find a match's span, and
# a group makes it run a second engine over each match (in code, a run every few hundred
# characters: the grouped search read code at ~2.3x this one's cost). Which kind a run is,
# is told after: base64's when that alternative alone reads the run whole (it comes first, so it
# wins wherever it matches: most runs in code are identifiers), else the grouped pattern
# says, asked where the run starts (the hex alternative's `\b` reads the byte before it).
_SPANS_BYTES = re2.compile(b"|".join(b"(?:%s)" % for_re2(source).encode() for source in _SOURCES),
                           _RUNS.re2.options) if _RUNS.re2 is not None else None
_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-"
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
# A Set of its own (screen_sets.py, ScreenSet), which keeps its answer for the last text: each
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


def _base64_whole(run: bytes) -> bool:
    """Whether the base64 alternative reads `run` whole: 20 or more of its characters,
    then at most two '='."""
    core = run.rstrip(b"=")
    return len(run) - len(core) <= 2 and len(core) >= 20 and not core.translate(None, _BASE64_ALPHABET)


def might_hold_runs(text: str) -> bool:
    # A text whose runs are kept passed the screen when they were found: the next rule's
    # copy of a chunk (an equal text, another object) is not screened again.
    return _SCREEN is None or (len(text) <= _SHORT and text in _short) or bool(_SCREEN.matching(text))


# The texts read for runs lately, with what they decoded to: each text guardrail reads the
# same texts (as fold.py's folded texts), and source code holds a run every ~200 characters.
# A long text is read chunk by chunk (joined.py), each rule all of its chunks before the
# next rule reads them again: texts of a chunk's size are kept up to a budget of
# characters (~100 chunks), so the next rule finds every one of them; longer texts, read
# whole, the last few only.
_SHORT = 4096
_SHORT_KEPT_CHARS = 1 << 18
_LONG_KEPT = 4
_short: dict[str, list[tuple[int, int, str]]] = {}
_short_chars = 0
_long: list[tuple[str, list[tuple[int, int, str]]]] = []


def decoded_runs(text: str) -> list[tuple[int, int, str]]:
    """(start, end, decoded text) of each encoded run in `text`."""
    global _short_chars
    if len(text) <= _SHORT:
        runs = _short.get(text)
        if runs is None:
            if _SCREEN is not None and not _SCREEN.matching(text):
                return []
            runs = _short[text] = list(_decoded_runs(text))
            _short_chars += len(text)
            while _short_chars > _SHORT_KEPT_CHARS and _short:
                oldest = next(iter(_short))
                _short_chars -= len(oldest)
                _short.pop(oldest, None)
        return runs
    if not might_hold_runs(text):
        return []
    for seen, runs in _long:
        if seen is text or seen == text:
            return runs
    runs = list(_decoded_runs(text))
    _long.insert(0, (text, runs))
    del _long[_LONG_KEPT:]
    return runs


def _decoded_runs(text: str) -> Iterator[tuple[int, int, str]]:
    if _SPANS_BYTES is not None and text.isascii():
        data = text.encode("ascii")
        for match in _SPANS_BYTES.finditer(data):
            start, end = match.span()
            kind = "base64" if _base64_whole(data[start:end]) else \
                _KINDS[_RUNS_BYTES.match(data, start).lastindex - 1]
            decoded = _decode(kind, text[start:end])
            if decoded is not None:
                yield start, end, decoded
        return
    pattern = _runs_without(frozenset(kind for kind, marker in _MARKED.items() if marker not in text))
    for match in pattern.finditer(text) if _STARTS is None else screened_finditer(pattern, _STARTS, text):
        decoded = _decode(match.lastgroup, match.group())
        if decoded is not None:
            yield match.start(), match.end(), decoded
