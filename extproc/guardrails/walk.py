"""Every string a model may read in a request body, with its path: one walk per body.

A guardrail cannot miss a field because nobody listed it: the walk visits every
string of the body (messages, parts, tool calls and their ids and names, tool and
function descriptions, parameter schemas, response formats, `user`, `metadata`, `stop`,
unknown fields...) and leaves out only what is listed in `_OPAQUE` as never read as
text (the model's name, roles and type tags, signed or encrypted reasoning, image and
audio bytes, credentials the provider reads for a tool server). Dict keys the model
reads as text (`metadata`'s and `logit_bias`'s keys, unknown top-level fields, JSON
schema property names) are visited too. tests/test_guardrails_walk.py holds the
OpenAI and Anthropic request fields as data and checks each one is walked.

Three kinds of value are text in another form, each decoded into a slot that writes
back in that form, so a redaction rewrites the value where it lies:
- a base64 payload or data URL of text (`file.file_data`, a document's base64 source,
  `input_file`): decoded however it is wrapped and encoded again in that form after a
  redaction (guardrails/embedded_text.py); one declared as text that cannot be decoded
  makes the text guardrails apply their fail mode; images, audio and other binary types
  are not decoded (what the guardrails do not cover: docs/guardrails.md);
- token ids (a completions `prompt`, an embeddings `input`): decoded with the
  request's encoding, encoded again after a redaction (the redacted text's ids);
  `logit_bias` keys, token ids too: read as their tokens' text in order, an entry
  whose token a finding covers removed.

Each slot is (container, key): `container[key]` reads the text, `container[key] = text`
writes it back.
"""

from __future__ import annotations

from typing import Any

from ..api.tokens import encoding_for_model, get_encoding
from ..dialects import codec_of
from . import embedded_text

Slot = tuple[Any, Any]
Path = tuple

# Fields whose string value no model reads as text (or that must reach the provider
# byte for byte): the walk does not enter them.
_OPAQUE = frozenset({
    "model", "role", "type",
    "signature", "encrypted_content",       # signed or encrypted reasoning: the provider checks them
    "authorization_token",                  # an MCP server's credential, read by the provider
    "service_tier", "reasoning_effort", "modalities", "include",
    "media_type", "mime_type", "detail", "format", "voice",
})
# Blocks whose every field is the model's own signed output, or bytes.
_OPAQUE_BLOCKS = frozenset({"thinking", "redacted_thinking", "reasoning", "input_audio"})
# Maps whose keys are free text the model (or the provider's log of the request) reads.
_KEYED = frozenset({"metadata", "logit_bias", "properties", "variables", "$defs", "definitions"})
_MAX_DEPTH = 64


class KeyText:
    """A dict's key as a slot: reading gives the key, writing renames it (order kept)."""

    __slots__ = ("mapping",)

    def __init__(self, mapping: dict) -> None:
        self.mapping = mapping

    def __getitem__(self, key: str) -> str:
        return key

    def __setitem__(self, key: str, new: str) -> None:
        items = [(new if k == key else k, v) for k, v in self.mapping.items()]
        self.mapping.clear()
        self.mapping.update(items)


class TokenText:
    """Token ids as a slot: decoded to read, the redacted text's ids written back."""

    __slots__ = ("container", "key", "encoding", "text")

    def __init__(self, container: Any, key: Any, encoding: str, text: str) -> None:
        self.container, self.key, self.encoding, self.text = container, key, encoding, text

    def __getitem__(self, _key: Any) -> str:
        return self.text

    def __setitem__(self, _key: Any, text: str) -> None:
        self.text = text
        self.container[self.key] = get_encoding(self.encoding).encode_ordinary(text)


class LogitBiasText:
    """`logit_bias` as a slot: its keys are token ids, read as the text of their tokens
    in order (each key's token decoded with the request's encoding: digits are not what
    they mean). A redaction removes the entries whose token a finding covers: a bias
    entry cannot be cut in part, and without it nothing of that token is sent."""

    __slots__ = ("mapping", "text", "spans")

    def __init__(self, mapping: dict, encoding: str) -> None:
        tokenizer = get_encoding(encoding)
        pieces, self.spans, position = [], [], 0
        for key in mapping:
            token = int(key)
            piece = tokenizer.decode([token]) if 0 <= token <= tokenizer.max_token_value else key
            pieces.append(piece)
            self.spans.append((key, position, position + len(piece)))
            position += len(piece)
        self.mapping, self.text = mapping, "".join(pieces)

    def __getitem__(self, _key: Any) -> str:
        return self.text

    def redact_findings(self, findings) -> None:
        """Remove the entries whose token lies (even in part) inside a finding."""
        for key, start, end in self.spans:
            if any(f.start < end and start < f.end for f in findings):
                self.mapping.pop(key, None)

    def __setitem__(self, _key: Any, text: str) -> None:
        """A replacement text (a plugin's): the entries whose token is no longer where
        it was, read in order, are removed."""
        position = 0
        for key, start, end in self.spans:
            piece = self.text[start:end]
            found = text.find(piece, position)
            if found < 0:
                self.mapping.pop(key, None)
            else:
                position = found + len(piece)
        self.text = text


def _is_token_bias(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(
        isinstance(k, str) and k.isascii() and k.isdigit() and len(k) <= 9 for k in value)


def _is_token_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(type(v) is int for v in value)


def _tokens(out: list, container: Any, key: Any, encoding: str, path: Path) -> None:
    ids = container[key]
    tokenizer = get_encoding(encoding)
    if any(i < 0 or i > tokenizer.max_token_value for i in ids):
        return                          # not ids of this encoding: the provider refuses them
    text = tokenizer.decode(ids)
    out.append((TokenText(container, key, encoding, text), key, path))


_ENCODED_KEYS = frozenset({"file_data", "data", "url"})


def _string(out: list, container: Any, key: Any, value: str, path: Path) -> None:
    if key == "file_data" or key == "data" and container.get("type") == "base64" or \
            key == "url" and value.startswith("data:"):
        slot = embedded_text.read(container, key, value, path)
        if slot is not None:            # None: image, audio, PDF bytes, not read as text
            out.append((slot, key, path))
        return
    out.append((container, key, path))


# (The walk appends to one list, without generators: a 101-message conversation is
# walked in ~40 µs.)
def _node(out: list, container: Any, key: Any, path: Path, encoding: str) -> None:
    value = container[key]
    if isinstance(value, str):
        _string(out, container, key, value, path)
    elif isinstance(value, dict):
        if key == "logit_bias" and _is_token_bias(value):
            out.append((LogitBiasText(value, encoding), key, path))
            return
        _object(out, value, path, encoding, key in _KEYED)
    elif isinstance(value, list) and len(path) < _MAX_DEPTH:
        if (path[-1:] in (("prompt",), ("input",)) or path[-2:-1] in (("prompt",), ("input",))) and \
                _is_token_ids(value):
            _tokens(out, container, key, encoding, path)
            return
        for index, item in enumerate(value):
            if type(item) is str:
                out.append((value, index, (*path, index)))
            elif type(item) is dict:        # a message, a part: straight to its fields
                _object(out, item, (*path, index), encoding)
            else:
                _node(out, value, index, (*path, index), encoding)


def _object(out: list, node: dict, path: Path, encoding: str, keyed: bool = False) -> None:
    if len(path) >= _MAX_DEPTH:
        return
    # A block's `type` is a string; elsewhere (a JSON schema's `"type": ["string", "null"]`,
    # any caller's data) it is whatever JSON the caller sent, and only read as data.
    kind = node.get("type")
    if not keyed and type(kind) is str and kind in _OPAQUE_BLOCKS:
        return
    for key in list(node):
        value = node[key]
        if type(value) is str:
            if keyed or key not in _OPAQUE:
                if key in _ENCODED_KEYS:
                    _string(out, node, key, value, (*path, key))
                else:
                    out.append((node, key, (*path, key)))
        elif isinstance(value, (dict, list)):
            _node(out, node, key, (*path, key), encoding)
        if keyed and isinstance(key, str):      # after its value: a rename must come last
            out.append((KeyText(node), key, (*path, "{key}", key)))


def request_texts(kind: str, body: dict) -> list[tuple[Any, Any, Path]]:
    """(container, key, path) of every string the model may read in a request body, in
    the body's order (a conversation's texts come in the order it was written)."""
    model = body.get("model")
    encoding = encoding_for_model(model) if isinstance(model, str) else "o200k_base"
    known = codec_of(kind).known_fields
    keys = KeyText(body)
    out: list = []
    for key in list(body):
        if key in _OPAQUE and isinstance(body[key], str):
            continue
        _node(out, body, key, (key,), encoding)
        if known is not None and key not in known and isinstance(key, str):
            out.append((keys, key, ("{key}", key)))     # an unknown field's name reaches the provider too
    return out


def request_slots(kind: str, body: dict) -> list[Slot]:
    return [(container, key) for container, key, _path in request_texts(kind, body)]
