"""Text carried inside a request in another form: a base64 payload or a data URL.

A model reads a text document however it was wrapped, so the guardrails must too. A
payload is read as text when anything says it is text: its data URL's media type, the
`media_type` beside it, or its file name's extension (`a.txt` sent as
`application/octet-stream` is still text). What is decoded:
- base64 in the standard or the URL-safe alphabet, with or without padding, wrapped
  over lines (MIME) or with spaces anywhere;
- bytes in UTF-8 (a BOM or none), UTF-16 or UTF-32 by their BOM (unless the bytes
  behind it are UTF-8 text: a forged BOM does not turn them into other characters), or
  UTF-16 without a BOM when its zero bytes show it; bytes invalid in the encoding are
  read as U+FFFD (one stray byte does not hide the rest of the text);
- a data URL without `;base64` (percent-encoded text).
A payload of no declared type is read when it decodes to text (a BOM, valid UTF-8, or
mostly printable characters), and left alone otherwise (image, audio, PDF bytes).

A payload declared as text that cannot be decoded (characters outside both base64
alphabets, say) is not passed unread: it becomes an `UnreadableText` slot, and each text
guardrail applies its fail mode to it (stages/guard/request.py: closed refuses the request, 400
naming the field).

A redaction writes the text back in the payload's own form: the same alphabet, padding,
line length, character encoding and BOM, the data URL's prefix kept.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote_to_bytes

# Media types read as text (by prefix).
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-yaml", "application/yaml",
              "application/javascript", "application/csv", "application/x-ndjson", "application/ld+json",
              "application/sql", "application/x-sh", "application/toml", "application/x-python")
# File name extensions read as text, whatever media type the payload claims.
TEXT_EXTENSIONS = frozenset({
    "txt", "text", "md", "markdown", "rst", "csv", "tsv", "json", "jsonl", "ndjson", "xml", "html", "htm",
    "yaml", "yml", "toml", "ini", "cfg", "conf", "log", "sql", "sh", "py", "js", "ts", "java", "c", "h",
    "cpp", "go", "rs", "rb", "php", "css", "tex", "srt", "vtt", "eml", "env", "properties"})
# Media types that say "bytes of some kind" rather than naming one: a text file name wins.
_UNNAMED_TYPES = ("application/octet-stream", "binary/octet-stream", "application/unknown", "")
_STANDARD = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_URL_SAFE = re.compile(r"[A-Za-z0-9\-_]*={0,2}")
# BOMs, longest first (UTF-32 LE begins as UTF-16 LE's does).
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
         (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
# An undeclared payload is text when at least this share of its characters are printable.
_PRINTABLE_SHARE = 0.9


class Undecodable(ValueError):
    """A payload declared as text that cannot be read."""


@dataclass(frozen=True, slots=True)
class Form:
    """How a text was wrapped, to wrap a redacted one the same way."""
    prefix: str = ""            # the data URL's `data:...,` (empty for bare base64)
    base64: bool = True         # False: a percent-encoded data URL
    url_safe: bool = False
    padded: bool = True
    line_length: int = 0        # MIME wrapping (0: one line)
    line_break: str = "\n"
    encoding: str = "utf-8"
    bom: bytes = b""

    def wrap(self, text: str) -> str:
        raw = self.bom + text.encode(self.encoding, "replace")
        if not self.base64:
            return self.prefix + quote(raw, safe="")
        encoded = (base64.urlsafe_b64encode(raw) if self.url_safe else base64.b64encode(raw)).decode("ascii")
        if not self.padded:
            encoded = encoded.rstrip("=")
        if self.line_length:
            encoded = self.line_break.join(encoded[i:i + self.line_length]
                                           for i in range(0, len(encoded), self.line_length))
        return self.prefix + encoded


class EmbeddedText:
    """A wrapped text as a slot: decoded to read, wrapped again in its form to write."""

    __slots__ = ("container", "key", "form", "text")

    def __init__(self, container: Any, key: Any, form: Form, text: str) -> None:
        self.container, self.key, self.form, self.text = container, key, form, text

    def __getitem__(self, _key: Any) -> str:
        return self.text

    def __setitem__(self, _key: Any, text: str) -> None:
        self.text = text
        self.container[self.key] = self.form.wrap(text)


class UnreadableText:
    """A payload declared as text that could not be decoded: reads as no text, and names
    its field for the refusal (each text guardrail applies its fail mode to it)."""

    __slots__ = ("field",)

    def __init__(self, path: tuple) -> None:
        self.field = field_name(path)

    def __getitem__(self, _key: Any) -> str:
        return ""

    def __setitem__(self, _key: Any, _text: str) -> None:
        """Nothing was read, so nothing is written back."""


def field_name(path: tuple) -> str:
    """A body path as the caller would write it: messages[0].content[1].file.file_data."""
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out[:200]


def declared_type(container: Any, value: str) -> str:
    """The media type the payload declares: its data URL's, else the one beside it."""
    if value[:5].lower() == "data:":
        head = value[5:value.find(",")] if "," in value else value[5:]
        return head.split(";", 1)[0].strip().lower()
    for name in ("media_type", "mime_type"):
        media = container.get(name) if isinstance(container, dict) else None
        if isinstance(media, str):
            return media.strip().lower()
    return ""


def _named_as_text(container: Any) -> bool:
    name = container.get("filename") if isinstance(container, dict) else None
    if not isinstance(name, str) or "." not in name:
        return False
    return name.rsplit(".", 1)[1].strip().lower() in TEXT_EXTENSIONS


def read(container: Any, key: Any, value: str, path: tuple):
    """The slot a payload is read through: an EmbeddedText, an UnreadableText (declared
    text that cannot be decoded), or None (bytes no model reads as text: not scanned)."""
    media = declared_type(container, value)
    is_text = media.startswith(TEXT_TYPES) or (
        _named_as_text(container) and (media in _UNNAMED_TYPES or not media.startswith(("image/", "audio/",
                                                                                       "video/"))))
    undeclared = not is_text and media in _UNNAMED_TYPES
    if not (is_text or undeclared):
        return None                 # an image's, a PDF's bytes: not read as text here
    try:
        form, text = decode(value, declared_text=is_text)
    except Undecodable:
        return UnreadableText(path) if is_text else None
    return EmbeddedText(container, key, form, text)


def decode(value: str, declared_text: bool) -> tuple[Form, str]:
    """(form, text) of a payload; raises Undecodable when it is not text (or, declared as
    text, cannot be read)."""
    prefix, payload, is_base64 = "", value, True
    if value[:5].lower() == "data:":
        head, comma, payload = value.partition(",")
        if not comma:
            raise Undecodable("a data URL without a comma")
        prefix = head + ","
        is_base64 = head.lower().rstrip().endswith(";base64")
    if not is_base64:
        raw = unquote_to_bytes(payload)
        encoding, bom, text = _text_of(raw, declared_text)
        return Form(prefix=prefix, base64=False, encoding=encoding, bom=bom), text
    raw, form = _unbase64(payload)
    encoding, bom, text = _text_of(raw, declared_text)
    return Form(prefix=prefix, url_safe=form[0], padded=form[1], line_length=form[2], line_break=form[3],
                encoding=encoding, bom=bom), text


def _unbase64(payload: str) -> tuple[bytes, tuple[bool, bool, int, str]]:
    try:                            # the common case, one line of standard base64: ~0.2 ms per 100 KB
        return base64.b64decode(payload, validate=True), (False, True, 0, "\n")
    except (binascii.Error, ValueError):
        pass
    stripped = payload.strip()
    first_break = stripped.find("\n")
    line_break = "\r\n" if first_break > 0 and stripped[first_break - 1] == "\r" else "\n"
    line_length = len(stripped[:first_break].rstrip("\r")) if first_break > 0 else 0
    compact = "".join(payload.split())
    url_safe = "-" in compact or "_" in compact
    if not (_URL_SAFE if url_safe else _STANDARD).fullmatch(compact):
        raise Undecodable("characters outside the base64 alphabets")
    padded = compact.endswith("=") or len(compact) % 4 == 0
    compact = compact.rstrip("=")
    if len(compact) % 4 == 1:
        raise Undecodable("a base64 length no encoder makes")
    compact += "=" * (-len(compact) % 4)
    try:
        raw = base64.urlsafe_b64decode(compact) if url_safe else base64.b64decode(compact)
    except (binascii.Error, ValueError):
        raise Undecodable("not base64") from None
    return raw, (url_safe, padded, line_length, line_break)


def _text_of(raw: bytes, declared_text: bool) -> tuple[str, bytes, str]:
    """(encoding, BOM, text) of bytes; raises Undecodable for bytes of no declared type
    that do not look like text."""
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            rest = raw[len(bom):]
            if encoding != "utf-8" and _reads_as_utf8(rest):
                break               # UTF-8 text behind bytes that look like a BOM: read as UTF-8
            return encoding, bom, rest.decode(encoding, "replace")
    try:
        return "utf-8", b"", raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    encoding = _bomless_utf16(raw) or "utf-8"
    text = raw.decode(encoding, "replace")
    if declared_text:
        return encoding, b"", text
    printable = sum(1 for ch in text if ch.isprintable() or ch in "\n\r\t")
    if text and printable >= _PRINTABLE_SHARE * len(text):
        return encoding, b"", text
    raise Undecodable("bytes, not text")


def _reads_as_utf8(data: bytes) -> bool:
    """Whether bytes are UTF-8 text (few zero bytes, which UTF-16 text of ASCII-range
    characters is half made of, and few invalid sequences, which UTF-16 text of other
    scripts is full of): a UTF-16 or UTF-32 BOM in front of UTF-8 text must not make the
    gateway read what the model reads as UTF-8 as another text."""
    if data.count(0) > 0.05 * len(data):
        return False
    text = data.decode("utf-8", "replace")
    return text.count("\ufffd") <= 0.1 * max(len(text), 1)


def _bomless_utf16(raw: bytes) -> str:
    """UTF-16 without a BOM, when zero bytes stand on one side of the pairs only (the
    ASCII-range characters of UTF-16 text), however many other characters surround them."""
    if len(raw) < 4:
        return ""
    even, odd = raw[0::2].count(0), raw[1::2].count(0)
    if odd >= 2 and odd >= 10 * even:
        return "utf-16-le"
    if even >= 2 and even >= 10 * odd:
        return "utf-16-be"
    return ""
