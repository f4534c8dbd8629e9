"""Every string a model may read in a request body, with its path: one walk per body.

A guardrail cannot miss a field because nobody listed it: the walk visits every
string of the body (messages, parts, tool calls and their ids and names, tool and
function descriptions, parameter schemas, response formats, `user`, `metadata`, `stop`,
unknown fields...) and leaves out only what is listed in `_OPAQUE` as never read as
text (the model's name, roles and type tags, signed or encrypted reasoning, image and
audio bytes, credentials the provider reads for a tool server). tests/test_guardrails_walk.py
holds the OpenAI and Anthropic request fields as data and checks each one is walked.

Object keys are text too, read by one rule:
- every key of caller data is read: the objects under a key of `_CALLER_DATA` (an
  Anthropic `tool_use.input`, Gemini's `functionCall.args` and `functionResponse.response`,
  tool-call `arguments` sent as an object, a JSON schema's `default`, `const`, `enum` and
  `examples`), however deep, and the maps whose keys are the caller's names (`_KEYED`:
  `metadata`, `properties`, `$defs`, `variables`, `labels`...); inside caller data the
  values of `_OPAQUE` names and the blocks of `_OPAQUE_BLOCKS` are read as well;
- in every other object (the dialects' own messages, parts, tools, configs), every key
  but the field names the APIs fix (guardrails/structural_keys.py: the dialects' request
  fields and JSON Schema's keywords) is read: a fixed word hides nothing a caller wrote,
  and an unknown key reaches the provider as written.
A key is read after its value (a redaction that renames it must come last).

The walk goes 64 levels deep (`MAX_DEPTH`: path steps, keys and indices). A value it
would have to enter below that is not passed unread: it becomes a `TooDeep` slot, and
each text guardrail applies its fail mode to it (stages/guard/request.py: closed refuses the
request, 400 naming the guardrail and the depth).

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
from . import embedded_text
from .embedded_text import field_name
from .structural_keys import STRUCTURAL_KEYS

Slot = tuple[Any, Any]
Path = tuple
# A path's step naming a key rather than entering its value: the key's own name is read
# (a model reads an unknown field's name too).
KEY_NAME = "{key}"

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
_KEYED = frozenset({"metadata", "logit_bias", "properties", "variables", "$defs", "definitions",
                    "patternProperties", "dependentSchemas", "dependentRequired", "labels", "headers"})
# Keys whose object value is the caller's own data, to its last leaf: every key and every
# string in it is read (a tool call's input or arguments, a function's response)...
_CALLER_DATA = frozenset({"input", "args", "response", "arguments", "json", "default", "const", "enum",
                          "examples", "example"})
# ... and those whose list value is too (JSON Schema's values: `enum`, `examples`...).
_CALLER_LISTS = frozenset({"default", "const", "enum", "examples", "example"})
MAX_DEPTH = 64


class TooDeep:
    """A value below MAX_DEPTH, not walked: reads as no text, and says where it lies for
    the refusal (each text guardrail applies its fail mode to it)."""

    __slots__ = ("field",)

    def __init__(self, path: tuple) -> None:
        self.field = field_name(path)

    @property
    def detail(self) -> str:
        return f"'{self.field}' is nested deeper than {MAX_DEPTH} levels"

    def __getitem__(self, _key: Any) -> str:
        return ""

    def __setitem__(self, _key: Any, _text: str) -> None:
        """Nothing was read, so nothing is written back."""


class Renames:
    """An object whose keys the walk reads, as its slots' container: a slot names a value by
    its key as walked, which a redaction of the key may have renamed since (the next
    guardrail reads the value under its new name)."""

    __slots__ = ("mapping", "names")

    def __init__(self, mapping: dict) -> None:
        self.mapping: dict = mapping
        self.names: dict = {}

    def __getitem__(self, key: Any) -> Any:
        return self.mapping[self.names.get(key, key)]

    def __setitem__(self, key: Any, value: Any) -> None:
        self.mapping[self.names.get(key, key)] = value

    def get(self, key: Any, default: Any = None) -> Any:
        return self.mapping.get(self.names.get(key, key), default)

    def rename(self, key: str, new: str) -> None:
        """`key` (as walked) renamed `new`, in its place; a name another key holds gets a
        number, so no value is lost."""
        current = self.names.get(key, key)
        if new == current:
            return
        taken, unique, number = self.mapping, new, 1
        while unique in taken:
            number += 1
            unique = f"{new} {number}"
        items = [(unique if k == current else k, v) for k, v in taken.items()]
        taken.clear()
        taken.update(items)
        self.names[key] = unique


class KeyText:
    """An object's key as a slot: reading gives the key (as renamed), writing renames it."""

    __slots__ = ("renames",)

    def __init__(self, renames: Renames) -> None:
        self.renames = renames

    def __getitem__(self, key: str) -> str:
        return self.renames.names.get(key, key)

    def __setitem__(self, key: str, new: str) -> None:
        self.renames.rename(key, new)


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
        renames = container if isinstance(container, Renames) else None
        slot = embedded_text.read(renames.mapping if renames else container, key, value, path)
        if isinstance(slot, embedded_text.EmbeddedText) and renames is not None:
            slot.container = renames    # written back under the key's name at that time
        if slot is not None:            # None: image, audio, PDF bytes, not read as text
            out.append((slot, key, path))
        return
    out.append((container, key, path))


# (The walk appends to one list, without generators: a 101-message conversation is
# walked in ~40 µs.) `data`: inside caller data, where every key and string is read;
# `named`: `key` is a caller's name in a map (a schema's property named "input" holds a
# schema, not data).
def _node(out: list, container: Any, key: Any, path: Path, encoding: str, data: bool = False,
          named: bool = False) -> None:
    value = container[key]
    if isinstance(value, str):
        _string(out, container, key, value, path)
    elif isinstance(value, dict):
        if data or named:
            _object(out, value, path, encoding, False, data)
        elif key == "logit_bias" and _is_token_bias(value):
            out.append((LogitBiasText(value, encoding), key, path))
        else:
            _object(out, value, path, encoding, key in _KEYED, key in _CALLER_DATA)
    elif isinstance(value, list):
        if len(path) >= MAX_DEPTH:
            if value:
                out.append((TooDeep(path), key, path))
            return
        if (path[-1:] in (("prompt",), ("input",)) or path[-2:-1] in (("prompt",), ("input",))) and \
                _is_token_ids(value):
            _tokens(out, container, key, encoding, path)
            return
        data = data or (not named and key in _CALLER_LISTS)
        for index, item in enumerate(value):
            if type(item) is str:
                out.append((value, index, (*path, index)))
            elif type(item) is dict:        # a message, a part: straight to its fields
                if not data and len(item) == 2 and type(item.get("content")) is str and \
                        type(item.get("role")) is str and len(path) + 1 < MAX_DEPTH:
                    # A role and a text (most of a history): its text, as _object finds it
                    # (a role is opaque), at a fifth of the cost.
                    out.append((item, "content", (*path, index, "content")))
                else:
                    _object(out, item, (*path, index), encoding, False, data)
            else:
                _node(out, value, index, (*path, index), encoding, data)


def _object(out: list, node: dict, path: Path, encoding: str, keyed: bool = False, data: bool = False) -> None:
    if len(path) >= MAX_DEPTH:
        if node:
            out.append((TooDeep(path), None, path))
        return
    every_key = keyed or data
    # A block's `type` is a string; elsewhere (a JSON schema's `"type": ["string", "null"]`,
    # any caller's data) it is whatever JSON the caller sent, and only read as data.
    if not every_key:
        kind = node.get("type")
        if type(kind) is str and kind in _OPAQUE_BLOCKS:
            return
    # One set operation says whether any key is not a fixed field name (most objects:
    # none is), so a message or a part costs no lookup per key.
    some_keys = every_key or not STRUCTURAL_KEYS.issuperset(node)
    holder = Renames(node) if some_keys else node
    keys = KeyText(holder) if some_keys else None
    for key in list(node):
        value = node[key]
        if type(value) is str:
            if every_key or key not in _OPAQUE:
                if key in _ENCODED_KEYS:
                    _string(out, holder, key, value, (*path, key))
                else:
                    out.append((holder, key, (*path, key)))
        elif isinstance(value, (dict, list)):
            _node(out, holder, key, (*path, key), encoding, data, keyed)
        if keys is not None and isinstance(key, str) and (every_key or key not in STRUCTURAL_KEYS):
            out.append((keys, key, (*path, KEY_NAME, key)))    # after its value: a rename must come last


def request_texts(kind: str, body: dict) -> list[tuple[Any, Any, Path]]:
    """(container, key, path) of every string the model may read in a request body, in
    the body's order (a conversation's texts come in the order it was written)."""
    model = body.get("model")
    encoding = encoding_for_model(model) if isinstance(model, str) else "o200k_base"
    holder = Renames(body)
    keys = KeyText(holder)
    out: list = []
    for key in list(body):
        if key in _OPAQUE and isinstance(body[key], str):
            continue
        _node(out, holder, key, (key,), encoding)
        if key not in STRUCTURAL_KEYS and isinstance(key, str):
            out.append((keys, key, (KEY_NAME, key)))    # an unknown field's name reaches the provider too
    return out


def request_slots(kind: str, body: dict) -> list[Slot]:
    return [(container, key) for container, key, _path in request_texts(kind, body)]
