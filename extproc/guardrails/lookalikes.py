"""The ASCII character each look-alike character stands for, one for one.

A model reads `ignоre` with a Cyrillic 'о', `𝐢𝐠𝐧𝐨𝐫𝐞` (mathematical bold), `ⓘgnore`
or `bob＠example․com` as the plain words; the detectors' regexes do not. Two sources,
both maintained elsewhere:
- Unicode's compatibility forms (NFKC): fullwidth, mathematical, circled, superscript
  and subscript letters and digits, odd spaces, when NFKC gives one ASCII character;
- Unicode's confusables (UTS #39, through `confusable_homoglyphs`' copy of the data):
  letters of other scripts drawn like Latin ones (Cyrillic 'о', Greek 'Α', Cherokee
  'Ꭺ'), dashes, quotes, dot leaders, when the prototype is one ASCII character.

- decimal digits of every script (Arabic-Indic '٤', Persian '۴', Devanagari '४'...):
  the ASCII digit of their value, as a model reads them in a card or phone number.
  The confusables would make some of them letters (Devanagari zero an 'o', Persian
  one an 'l') or other digits (Bengali four an '8'); an ASCII '0' in "ign0re" is not
  read as an 'o' either.

Only characters whose stand-in is a single ASCII character are kept, so a folded text
keeps every position. The confusables' prototype of 'I' is 'l' (they look alike in
many fonts); an upper-case look-alike of it stands for 'I' here, since injection
phrases are matched as words ("Ignore", not "lgnore").

Built once per process (~30 ms; 1,700+ characters).
"""

from __future__ import annotations

import re
import unicodedata

from confusable_homoglyphs import utils as confusables

from .screen import every_code_point

# Where the compatibility forms that fold to ASCII live: the BMP, mathematical
# alphanumerics, enclosed alphanumerics (looking through all 1.1M code points costs ~0.3 s).
_COMPATIBILITY_RANGES = (range(0x80, 0x10000), range(0x1D400, 0x1D800), range(0x1F100, 0x1F200))


def _ascii(char: str) -> bool:
    return len(char) == 1 and char.isascii() and char.isprintable()


def ascii_lookalikes() -> dict[int, str]:
    """{code point: its ASCII stand-in}, for `str.translate`."""
    table: dict[int, str] = {}
    for code in (code for codes in _COMPATIBILITY_RANGES for code in codes):
        folded = unicodedata.normalize("NFKC", chr(code))
        if _ascii(folded):
            table[code] = folded
    for char, homoglyphs in confusables.load("confusables.json").items():
        if len(char) != 1 or char.isascii() or ord(char) in table:
            continue
        prototypes = {glyph["c"] for glyph in homoglyphs}
        if len(prototypes) != 1:
            continue
        prototype = prototypes.pop()
        if _ascii(prototype) and prototype != " ":
            table[ord(char)] = "I" if prototype == "l" and char.isupper() else prototype
    for digits in re.finditer(r"\d+", every_code_point()[0x80:]):
        for char in digits.group():
            table[ord(char)] = str(unicodedata.decimal(char))
    return table
