"""Makes extproc/guardrails/screens_made.json: the screens of the built-in rules, as
screen.py makes them with the running Python (screens_made.py says why they are shipped).

    python -m extproc.guardrails.screens_make
"""

from __future__ import annotations

import json

from . import prefixes, screen, screens_made


def make() -> dict:
    """Every screen the built-in detectors ask for, made afresh. Run in a process that
    has not yet made them (their modules make some when imported)."""
    made: dict[str, str | None] = {}
    rewritten, prefixed = screen._rewritten, prefixes.made_prefixes

    def recording(pattern: str, flags: int = 0, reverse: bool = False) -> str:
        try:
            source = rewritten(pattern, flags, reverse)
        except screen.Unscreenable:
            made[screens_made.key(pattern, flags, reverse)] = None
            raise
        made[screens_made.key(pattern, flags, reverse)] = source
        return source

    def recording_prefixes(pattern: str, flags: int = 0) -> str:
        try:
            source = prefixed(pattern, flags)
        except screen.Unscreenable:
            made[screens_made.key(pattern, flags, screens_made.PREFIXES)] = None
            raise
        made[screens_made.key(pattern, flags, screens_made.PREFIXES)] = source
        return source

    screen.rewrite.cache_clear()
    prefixes.prefixes_source.cache_clear()
    screen._rewritten, screens_made._from_file[0] = recording, False
    prefixes.made_prefixes = recording_prefixes
    try:
        from .config import _injection_detector, _pii_detector
        from .pii import ENTITIES
        _pii_detector(ENTITIES)
        _injection_detector()
    finally:
        screen._rewritten, screens_made._from_file[0] = rewritten, True
        prefixes.made_prefixes = prefixed
    return {"made_with": screens_made.made_with(), "screens": dict(sorted(made.items()))}


def write() -> None:
    screens_made.FILE.write_text(json.dumps(make(), indent=0, ensure_ascii=True) + "\n", encoding="utf-8")
    print(f"wrote {screens_made.FILE}")


if __name__ == "__main__":
    write()
