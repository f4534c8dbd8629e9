"""The screens of the built-in rules, and their prefix screens, made once and shipped
(screens_made.json).

Rewriting a pattern into its screen (screen.py) reads re's verdict on every code point
for each of its classes: the built-in PII, secret and injection rules took ~0.5 s of
CPU at each worker's start. Their screens depend only on the patterns, on screen.py and
on the running Python's re and Unicode tables and RE2's version, so they are made here
once and read at start. The file records what it was made with; where that differs from
the running code (screen.py edited, another Python, Unicode or RE2 version), it is not read and every
screen is made at start as before. A pattern the file does not hold (an operator's
banned pattern) is rewritten at start too.

Remake the file after changing screen.py, prefixes.py, wide_classes.py or a built-in rule:

    python -m extproc.guardrails.screens_make

(tests/test_screens_made.py checks that it is current and holds every built-in rule.)
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import sys
import unicodedata
from pathlib import Path

FILE = Path(__file__).with_name("screens_made.json")
_SCREEN_CODE = tuple(Path(__file__).with_name(name) for name in ("screen.py", "prefixes.py", "wide_classes.py"))

NOT_MADE = object()         # the file holds nothing for this pattern


def made_with() -> str:
    """What a screen depends on besides its pattern: screen.py's, prefixes.py's and
    wide_classes.py's code, Python's re (its version) and Unicode tables, and RE2's
    (a class written as a Unicode property was checked against its tables)."""
    code = hashlib.sha256(b"".join(path.read_bytes() for path in _SCREEN_CODE)).hexdigest()[:16]
    return (f"screen.py {code}; Python {sys.version_info[0]}.{sys.version_info[1]}; "
            f"Unicode {unicodedata.unidata_version}; google-re2 {_re2_version()}")


def _re2_version() -> str:
    try:
        return importlib.metadata.version("google-re2")
    except importlib.metadata.PackageNotFoundError:     # RE2 built otherwise: nothing shipped fits it for sure
        return "unknown"


PREFIXES = "prefixes"        # the kind of a prefix screen's source (prefixes.py)


def key(pattern: str, flags: int, reverse: bool | str) -> str:
    """The file's key of a screen (`reverse`: read backwards) or of a prefix screen
    (`reverse` is PREFIXES)."""
    kind = reverse if isinstance(reverse, str) else int(reverse)
    return f"{int(flags)} {kind} {pattern}"


@functools.cache
def _shipped() -> dict[str, str | None]:
    try:
        data = json.loads(FILE.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("made_with") != made_with():
            return {}
    except (OSError, ValueError):       # no file, or no screen.py to check it against
        return {}
    return data.get("screens") or {}


def shipped(pattern: str, flags: int, reverse: bool | str):
    """The screen's source as made; None: the rewrite does not cover the pattern;
    NOT_MADE: not in the file (or the file is not for this code)."""
    return _shipped().get(key(pattern, flags, reverse), NOT_MADE)


_from_file = [True]          # False while screens_make.py makes the file: every screen made afresh


def from_file_allowed() -> bool:
    return _from_file[0]
