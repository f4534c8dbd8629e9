"""Makes extproc/guardrails/screens_made.json: the screens of the built-in rules, as
screen.py makes them with the running Python (screens_made.py says why they are shipped).

    python -m extproc.guardrails.screens_make
"""

from __future__ import annotations

import json

from . import screen, screens_made


def make() -> dict:
    """Every screen the built-in detectors ask for, made afresh. Run in a process that
    has not yet made them (their modules make some when imported)."""
    made: dict[str, str | None] = {}
    rewritten = screen._rewritten

    def recording(pattern: str, flags: int = 0, reverse: bool = False) -> str:
        try:
            source = rewritten(pattern, flags, reverse)
        except screen.Unscreenable:
            made[screens_made.key(pattern, flags, reverse)] = None
            raise
        made[screens_made.key(pattern, flags, reverse)] = source
        return source

    screen.rewrite.cache_clear()
    screen._rewritten, screens_made._from_file[0] = recording, False
    try:
        from .config import _injection_detector, _pii_detector
        from .pii import ENTITIES
        _pii_detector(ENTITIES)
        _injection_detector()
    finally:
        screen._rewritten, screens_made._from_file[0] = rewritten, True
    return {"made_with": screens_made.made_with(), "screens": dict(sorted(made.items()))}


def write() -> None:
    screens_made.FILE.write_text(json.dumps(make(), indent=0, ensure_ascii=True) + "\n", encoding="utf-8")
    print(f"wrote {screens_made.FILE}")


if __name__ == "__main__":
    write()
