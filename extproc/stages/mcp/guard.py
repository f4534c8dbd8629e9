"""Guardrails over MCP traffic: every string and every object key of a tool call's
`params`, and of everything a server answers.

A JSON-RPC value is read whole (`read_json`): each string, each key (a redaction renames
it in place, the object's order kept), and base64 payloads of a text type (an embedded
resource's `blob`, a block's `data` beside a text `mimeType`) decoded and written back
in their form after a redaction. What cannot be read (nesting past MAX_DEPTH, a payload
declared as text that does not decode) is not passed unread: each rule applies its fail
mode (closed by default: a block).

The same rules as model traffic (extproc/guardrails), applied through the request
guard's helpers so verdicts land on the same metrics and log line. A block is returned
rather than raised: the caller decides what a blocked message becomes (a JSON-RPC
error for arguments; a quarantined result or an error for answers, per profile).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from ...guardrails.embedded_text import TEXT_TYPES, EmbeddedText, Undecodable, decode
from ...pipeline.call import Call
from ...pipeline.errors import GatewayError
from ..guard.request import check_texts, could_not_run, run_plugin

# Nesting read (objects and lists); a value nested deeper is not read, and each rule's
# fail mode decides (JSON from orjson nests up to 1024 levels).
MAX_DEPTH = 64
# More texts than this in one message are read without the known-findings cache.
MANY_TEXTS = 64
# Base64 as encoders write it (one or several lines): a payload of another shape is
# read as the text it is, whatever type it claims.
_BASE64 = re.compile(r"[A-Za-z0-9+/\-_=\r\n]*")
# Media types that name no kind of bytes: a payload of one is read when it decodes to text.
_UNNAMED_TYPES = ("", "application/octet-stream", "binary/octet-stream", "application/unknown")


class KeyNames:
    """An object's keys as slots: reading gives a key as it is now, writing renames it in
    place (order kept; a name another key holds gets a suffix, so no entry is lost)."""

    __slots__ = ("mapping", "now")

    def __init__(self, mapping: dict) -> None:
        self.mapping = mapping
        self.now: dict[str, str] = {}       # a key as read -> its name after renames

    def __getitem__(self, key: str) -> str:
        return self.now.get(key, key)

    def __setitem__(self, key: str, new: str) -> None:
        old = self.now.get(key, key)
        if new == old:
            return
        unique, n = new, 1
        while unique in self.mapping:
            n += 1
            unique = f"{new} #{n}"
        items = [(unique if k == old else k, v) for k, v in self.mapping.items()]
        self.mapping.clear()
        self.mapping.update(items)
        self.now[key] = unique


class Entry:
    """A string value of an object as a slot, found under its key's name after a rename."""

    __slots__ = ("keys",)

    def __init__(self, keys: KeyNames) -> None:
        self.keys = keys

    def __getitem__(self, key: str) -> str:
        return self.keys.mapping[self.keys[key]]

    def __setitem__(self, key: str, text: str) -> None:
        self.keys.mapping[self.keys[key]] = text


class Reading:
    """What a walk found: the slots (container, key) of every text, and why some of the
    value could not be read ("" when all of it was)."""

    __slots__ = ("slots", "unread")

    def __init__(self) -> None:
        self.slots: list[tuple[Any, Any]] = []
        self.unread = ""


def read_json(container: Any, key: Any, reading: Reading, depth: int = 0) -> Reading:
    """Every string and key under container[key], as slots a redaction writes back into."""
    value = container[key]
    if isinstance(value, str):
        reading.slots.append((container, key))
    elif isinstance(value, (dict, list)) and value and depth >= MAX_DEPTH:
        reading.unread = f"nested deeper than {MAX_DEPTH} levels"
    elif isinstance(value, dict):
        _read_object(value, reading, depth)
    elif isinstance(value, list):
        for index in range(len(value)):
            read_json(value, index, reading, depth + 1)
    return reading


def _read_object(value: dict, reading: Reading, depth: int) -> None:
    keys, entry = KeyNames(value), None
    media = value.get("mimeType")
    media = media.strip().lower() if isinstance(media, str) else None
    for name in list(value):
        reading.slots.append((keys, name))
        inner = value[name]
        if isinstance(inner, str):
            if name == "blob" or (name == "data" and media is not None):
                _read_payload(value, name, media or "", reading)
            else:
                entry = entry or Entry(keys)
                reading.slots.append((entry, name))
        else:
            read_json(value, name, reading, depth + 1)


def _read_payload(container: dict, name: str, media: str, reading: Reading) -> None:
    """A base64 payload (an embedded resource's `blob`, a block's `data`): decoded when its
    type is text (or names none and it decodes to text), left alone when it is bytes of an
    image, audio or other binary type, read as it is when it is no base64 at all."""
    value = container[name]
    if not _BASE64.fullmatch(value):
        reading.slots.append((container, name))
        return
    declared = media.startswith(TEXT_TYPES)
    if not declared and media not in _UNNAMED_TYPES:
        return
    try:
        form, text = decode(value, declared_text=declared)
    except Undecodable:
        if declared:
            reading.unread = "a payload declared as text that does not decode"
        return
    reading.slots.append((EmbeddedText(container, name, form, text), name))


def read_message(message: dict, skipped: frozenset = frozenset()) -> Reading:
    """Every string and key of a JSON-RPC message but the fields `skipped` names (the id:
    the caller's own, which a redaction must not change)."""
    reading = Reading()
    keys = KeyNames(message)
    entry = Entry(keys)
    for name in list(message):
        if name in skipped:
            continue
        reading.slots.append((keys, name))
        if isinstance(message[name], str):
            reading.slots.append((entry, name))
        else:
            read_json(message, name, reading, 1)
    return reading


async def guard_strings(call: Call, rules, slots: list, direction: str, unread: str = "") -> tuple[str, bool]:
    """Runs `rules` over `slots`, redacting in place: (the guardrail that blocked, or "";
    whether anything changed). `unread`: why part of the value could not be read; each
    rule then applies its fail mode."""
    changed = False
    if not rules or not (slots or unread):
        return "", False
    # Many short texts (a tool list's names, keys and schema words) are read as one
    # conversation each time: the known-findings cache (guardrails/known.py) would hash
    # each seam of them with its neighbours, costing twice the read itself.
    many = len(slots) > MANY_TEXTS
    too_large = sum(len(container[key]) for container, key in slots) > call.config.guardrails.max_scan_chars
    for guardrail in rules:
        try:
            if too_large:
                could_not_run(call, guardrail, direction, "input larger than max_scan_chars")
                continue
            if unread:          # closed: a block; open: what could be read is still checked
                could_not_run(call, guardrail, direction, unread)
            if not slots:
                continue
            if guardrail.type == "plugin":
                changed |= await run_plugin(call, guardrail, slots, direction)
            else:
                changed |= check_texts(call, replace(guardrail, digest="") if many else guardrail, slots, direction)
        except GatewayError:
            return guardrail.name, changed
        except Exception as error:   # noqa: BLE001 - the fail mode decides (plugin down, bug)
            try:
                could_not_run(call, guardrail, direction, type(error).__name__)
            except GatewayError:
                return guardrail.name, changed
    return "", changed

