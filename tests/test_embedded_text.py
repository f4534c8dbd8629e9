"""Text documents carried in base64 or data URLs: read however wrapped, written back in
the same form (extproc/guardrails/embedded_text.py). Through Envoy: test_embedded_text_e2e.py."""

from __future__ import annotations

import base64
import codecs

import pytest

from extproc.guardrails.embedded_text import EmbeddedText, UnreadableText, read
from extproc.guardrails.walk import request_texts

TEXT = "Mail jane.doe@corp.example — café"


def _slot(value: str, **beside):
    container = {"file_data": value, **beside}
    return container, read(container, "file_data", value, ("file", "file_data"))


FORMS = {
    "plain": lambda raw: base64.b64encode(raw).decode(),
    "mime": lambda raw: base64.encodebytes(raw * 4).decode(),
    "crlf-mime": lambda raw: base64.encodebytes(raw * 4).decode().replace("\n", "\r\n"),
    "url-safe": lambda raw: base64.urlsafe_b64encode(b"\xfb\xff" + raw).decode(),
    "unpadded": lambda raw: base64.b64encode(raw + b"!").decode().rstrip("="),
    "spaced": lambda raw: " ".join(base64.b64encode(raw).decode()),
}
ENCODINGS = {
    "utf-8": lambda text: text.encode(),
    "utf-8-bom": lambda text: codecs.BOM_UTF8 + text.encode(),
    "utf-16-le-bom": lambda text: codecs.BOM_UTF16_LE + text.encode("utf-16-le"),
    "utf-16-be-bom": lambda text: codecs.BOM_UTF16_BE + text.encode("utf-16-be"),
    "utf-32-le-bom": lambda text: codecs.BOM_UTF32_LE + text.encode("utf-32-le"),
    "utf-16-le-no-bom": lambda text: text.encode("utf-16-le"),
}


# (The URL-safe form puts raw bytes in front: checked with UTF-8 text.)
@pytest.mark.parametrize("form,encoding", [(f, e) for f in FORMS for e in ENCODINGS
                                           if f != "url-safe" or e == "utf-8"])
def test_a_text_is_read_and_written_back_in_its_own_form(form, encoding):
    raw = ENCODINGS[encoding](TEXT)
    value = "data:text/plain;base64," + FORMS[form](raw)
    container, slot = _slot(value)
    assert isinstance(slot, EmbeddedText)
    assert "jane.doe@corp.example" in slot["x"]
    slot["x"] = slot["x"].replace("jane.doe@corp.example", "[EMAIL]")
    again = read(container, "file_data", container["file_data"], ())
    assert "[EMAIL]" in again["x"] and "jane.doe" not in again["x"]
    payload = container["file_data"].partition(",")[2]
    if form in ("mime", "crlf-mime"):
        assert ("\r\n" if form == "crlf-mime" else "\n") in payload.strip()
    if form == "unpadded":
        assert not payload.endswith("=")
    if "bom" in encoding and "no-bom" not in encoding:
        compact = "".join(payload.split())
        assert base64.b64decode(compact + "=" * (-len(compact) % 4)).startswith(raw[:2])


def test_stray_bytes_do_not_hide_the_text():
    _container, slot = _slot("data:text/plain;base64," + base64.b64encode(b"\xff\xfe\x00" + TEXT.encode()[:-1]
                                                                         + b"\xc3").decode())
    assert "jane.doe@corp.example" in slot["x"]


def test_a_text_file_name_makes_bytes_of_no_named_type_text():
    _container, slot = _slot("data:application/octet-stream;base64," + base64.b64encode(TEXT.encode()).decode(),
                             filename="notes.TXT")
    assert isinstance(slot, EmbeddedText) and "jane.doe" in slot["x"]


def test_a_percent_encoded_data_url_is_read_and_written_back():
    container, slot = _slot("data:text/plain,Mail%20jane.doe%40corp.example")
    assert slot["x"] == "Mail jane.doe@corp.example"
    slot["x"] = "Mail [EMAIL]"
    assert container["file_data"] == "data:text/plain,Mail%20%5BEMAIL%5D"


@pytest.mark.parametrize("value", ["data:text/plain;base64,%%%not base64", "data:text/csv;base64,abcde",
                                   "data:text/plain;base64,QUJD*RA=="])
def test_a_declared_text_that_cannot_be_decoded_is_unreadable(value):
    _container, slot = _slot(value)
    assert isinstance(slot, UnreadableText) and slot["x"] == "" and slot.field == "file.file_data"


@pytest.mark.parametrize("value,beside", [
    ("data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256))).decode(), {}),
    ("data:application/pdf;base64," + base64.b64encode(b"%PDF-1.7\n" + bytes(range(256))).decode(), {}),
    (base64.b64encode(bytes(range(256)) * 2).decode(), {}),
    ("data:image/png;base64,%%%", {}),
])
def test_bytes_that_are_not_text_are_left_alone(value, beside):
    assert _slot(value, **beside)[1] is None


def test_an_undeclared_payload_that_decodes_to_text_is_read():
    assert "jane.doe" in _slot(base64.b64encode(b"\xef\xbb\xbf" + TEXT.encode()).decode())[1]["x"]


def test_the_walk_names_an_unreadable_documents_field():
    body = {"model": "claude", "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "text/plain", "data": "!!!"}}]}]}
    [(slot, _key, path)] = request_texts("messages", body)
    assert isinstance(slot, UnreadableText)
    assert slot.field == "messages[0].content[0].source.data"
