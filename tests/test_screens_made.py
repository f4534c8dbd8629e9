"""The built-in rules' screens and prefix screens are shipped made
(extproc/guardrails/screens_made.json):
a worker reads them at start instead of rewriting each pattern (~0.5 s of CPU). The
file must be exactly what screen.py makes today, or a screen could let through what
its rule matches."""

import json
import subprocess
import sys

import pytest

from extproc.guardrails import prefixes, screen, screens_made


def test_the_shipped_screens_are_what_screen_py_makes_today():
    data = json.loads(screens_made.FILE.read_text(encoding="utf-8"))
    assert data["made_with"] == screens_made.made_with(), \
        "screen.py or Python changed: remake with `python -m extproc.guardrails.screens_make`"
    assert data["screens"]
    kinds = set()
    for made_key, source in data["screens"].items():
        flags, kind, pattern = made_key.split(" ", 2)
        kinds.add(kind)
        try:
            fresh = prefixes.made_prefixes(pattern, int(flags)) if kind == screens_made.PREFIXES \
                else screen._rewritten(pattern, int(flags), bool(int(kind)))
        except screen.Unscreenable:
            fresh = None
        assert source == fresh, f"the shipped screen ({kind}) of {pattern[:80]!r} is stale"
    assert kinds == {"0", "1", screens_made.PREFIXES}


def test_a_worker_building_the_built_in_detectors_rewrites_no_pattern():
    counted = subprocess.run([sys.executable, "-c", """
from extproc.guardrails import screen
from extproc.guardrails import prefixes
made = []
rewritten, prefixed = screen._rewritten, prefixes.made_prefixes
screen._rewritten = lambda *a, **k: made.append(a) or rewritten(*a, **k)
prefixes.made_prefixes = lambda *a, **k: made.append(a) or prefixed(*a, **k)
from extproc.guardrails.config import _injection_detector, _pii_detector
from extproc.guardrails.pii import ENTITIES
_pii_detector(ENTITIES); _pii_detector(("email", "card")); _injection_detector()
print(len(made))
"""], capture_output=True, text=True, timeout=120)
    assert counted.returncode == 0, counted.stderr
    assert counted.stdout.strip() == "0"


def test_a_file_made_for_other_code_is_not_read(monkeypatch):
    some_key = next(iter(json.loads(screens_made.FILE.read_text(encoding="utf-8"))["screens"]))
    flags, kind, pattern = some_key.split(" ", 2)
    screens_made._shipped.cache_clear()
    monkeypatch.setattr(screens_made, "made_with", lambda: "screen.py 0000; Python 3.11; Unicode 1.0")
    try:
        reverse = kind if kind == screens_made.PREFIXES else bool(int(kind))
        assert screens_made.shipped(pattern, int(flags), reverse) is screens_made.NOT_MADE
    finally:
        screens_made._shipped.cache_clear()


@pytest.mark.parametrize("pattern", [r"pass(?:word|phrase)\s*[:=]\s*\S{4,}", r"(?i)naïve\b"])
def test_a_pattern_the_file_does_not_hold_gets_its_screen_made(pattern):
    import re
    assert screens_made.shipped(pattern, 0, False) is screens_made.NOT_MADE
    assert screen.rewrite(pattern) == screen._rewritten(pattern)
    assert screen.screen(re.compile(pattern)).search("x NAÏVE y" if "ï" in pattern else "password: hunter22")
