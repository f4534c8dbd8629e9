"""A Chat Completions conversation as Messages' `system` blocks and turns.

system and developer messages, wherever they stand, become `system` text blocks in
order (a later one's position is lost: noted). Consecutive messages of one role merge
into one turn, as Anthropic would merge them anyway; tool messages are `tool_result`
blocks of the user turn that follows the assistant's calls, always before that turn's
other blocks (Anthropic's rule). Content that has no Messages form (audio, OpenAI file
ids, images of other types) refuses the request rather than vanish.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from ..api import provider_json
from .base import Notes, Refused
from .vocabulary import note

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


class _Turn:
    """One Messages turn being built: tool results are kept apart so they lead it."""
    __slots__ = ("blocks", "results", "role")

    def __init__(self, role: str) -> None:
        self.role = role
        self.results: list[dict[str, Any]] = []
        self.blocks: list[dict[str, Any]] = []

    def written(self) -> dict[str, Any]:
        content = self.results + self.blocks
        if len(content) == 1 and content[0]["type"] == "text" and len(content[0]) == 2:
            return {"role": self.role, "content": content[0]["text"]}      # a lone plain text: a string
        return {"role": self.role, "content": content}


def system_and_turns(messages: Any, notes: Notes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The `system` blocks and the `messages` turns of a Chat Completions `messages` list."""
    if not isinstance(messages, list) or not messages:
        raise Refused("messages", "messages must be a non-empty list.")
    system: list[dict[str, Any]] = []
    turns: list[_Turn] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise Refused(f"messages[{i}]", f"messages[{i}] must be an object.")
        role = message.get("role")
        if "name" in message:
            note(notes.dropped, "messages[].name")
        if role in ("system", "developer"):
            if turns:
                note(notes.dropped, "messages[].role=system:moved_to_top")
            system.extend(_text_blocks(message.get("content"), f"messages[{i}].content"))
        elif role == "user":
            blocks = _user_blocks(message.get("content"), f"messages[{i}].content")
            if blocks:
                _turn(turns, "user").blocks.extend(blocks)
        elif role == "tool":
            _turn(turns, "user").results.append(_tool_result(message, i))
        elif role == "assistant":
            blocks = _assistant_blocks(message, i, notes)
            if blocks:
                _turn(turns, "assistant").blocks.extend(blocks)
        elif role == "function":
            raise Refused(f"messages[{i}].role", "Messages with role `function` (deprecated function calling) "
                                                  "cannot be carried to this provider; use tools and tool messages.")
        else:
            raise Refused(f"messages[{i}].role", f"Unknown role {role!r} in messages[{i}].")
    return system, [turn.written() for turn in turns]


def _turn(turns: list[_Turn], role: str) -> _Turn:
    if turns and turns[-1].role == role:
        return turns[-1]
    turns.append(_Turn(role))
    return turns[-1]


def _text_block(text: str, part: dict[str, Any] | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": text}
    if part is not None and isinstance(part.get("cache_control"), dict):    # an extension LiteLLM clients send
        block["cache_control"] = part["cache_control"]
    return block


def _text_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """Content that may only hold text (system messages): its text blocks, empty ones left out."""
    if isinstance(content, str):
        return [_text_block(content)] if content else []
    if not isinstance(content, list):
        if content is None:
            return []
        raise Refused(where, f"{where} must be a string or a list of parts.")
    blocks = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise Refused(f"{where}[{j}]", f"{where}[{j}]: only text parts can be carried here.")
        if part["text"]:
            blocks.append(_text_block(part["text"], part))
    return blocks


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str) or content is None:
        return [_text_block(content)] if content else []
    if not isinstance(content, list):
        raise Refused(where, f"{where} must be a string or a list of parts.")
    blocks = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            if part["text"]:
                blocks.append(_text_block(part["text"], part))
        elif kind == "image_url":
            blocks.append(_image_block(part, f"{where}[{j}]"))
        elif kind == "file":
            blocks.append(_file_block(part, f"{where}[{j}]"))
        elif kind == "input_audio":
            raise Refused(f"{where}[{j}]", "Audio input cannot be carried to this provider (it takes no audio).")
        else:
            raise Refused(f"{where}[{j}]", f"{where}[{j}]: a part of type {kind!r} cannot be carried to this provider.")
    return blocks


def _data_url(url: str, where: str) -> tuple[str, str]:
    """The media type and base64 data of a `data:<type>;base64,<data>` URL."""
    head, comma, data = url.partition(",")
    if not comma or not head.startswith("data:") or not head.endswith(";base64"):
        raise Refused(where, f"{where}: a data URL must be base64 (data:<media type>;base64,<data>).")
    return head[5:-7].lower(), data


def _image_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise Refused(where, f"{where}: image_url.url must be a string.")
    block: dict[str, Any]
    if url.startswith("data:"):
        media_type, data = _data_url(url, where)
        if media_type == "application/pdf":
            block = {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}
        elif media_type in IMAGE_TYPES:
            block = {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
        else:
            raise Refused(where, f"{where}: images of type {media_type} cannot be carried to this provider "
                                 f"(it takes {', '.join(sorted(IMAGE_TYPES))} and application/pdf).")
    elif url.startswith(("https://", "http://")):
        is_pdf = url.split("?", 1)[0].lower().endswith(".pdf")
        block = {"type": "document" if is_pdf else "image", "source": {"type": "url", "url": url}}
    else:
        raise Refused(where, f"{where}: image_url.url must be an http(s) URL or a base64 data URL.")
    if isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return block


def _file_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    """A `file` part holding its data: a PDF as a document, plain text as a text document."""
    file = part.get("file") if isinstance(part.get("file"), dict) else {}
    if file.get("file_id"):
        raise Refused(where, f"{where}: OpenAI file ids mean nothing to this provider; send the file's data "
                             "(file.file_data) instead.")
    data = file.get("file_data")
    if not isinstance(data, str) or not data:
        raise Refused(where, f"{where}: a file part needs file.file_data.")
    # Bare base64 without a media type: PDF, the one file type Chat Completions takes.
    media_type, payload = _data_url(data, where) if data.startswith("data:") else ("application/pdf", data)
    block: dict[str, Any]
    if media_type == "application/pdf":
        block = {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": payload}}
    elif media_type == "text/plain":
        try:
            text = base64.b64decode(payload, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise Refused(where, f"{where}: file.file_data is not base64 UTF-8 text.") from None
        block = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text}}
    else:
        raise Refused(where, f"{where}: files of type {media_type} cannot be carried to this provider "
                             "(it takes PDF and plain text).")
    if isinstance(file.get("filename"), str) and file["filename"]:
        block["title"] = file["filename"]
    return block


def _assistant_blocks(message: dict[str, Any], i: int, notes: Notes) -> list[dict[str, Any]]:
    """An assistant message's text (refusals included) then its tool calls as tool_use blocks."""
    where = f"messages[{i}]"
    if message.get("function_call") is not None:
        raise Refused(f"{where}.function_call", "function_call (deprecated) cannot be carried; use tool_calls.")
    if message.get("audio") is not None:
        raise Refused(f"{where}.audio", "Audio answers cannot be carried to this provider.")
    if message.get("reasoning_content"):
        note(notes.dropped, "messages[].reasoning_content")    # unsigned: Anthropic takes back only signed thinking
    content = message.get("content")
    blocks: list[dict[str, Any]] = []
    if isinstance(content, str):
        if content:
            blocks.append(_text_block(content))
    elif isinstance(content, list):
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            text = part.get(kind) if kind in ("text", "refusal") else None
            if not isinstance(text, str):
                raise Refused(f"{where}.content[{j}]", f"{where}.content[{j}]: only text and refusal parts can be "
                                                       "carried in an assistant message.")
            if text:
                blocks.append(_text_block(text, part))
    elif content is not None:
        raise Refused(f"{where}.content", f"{where}.content must be a string or a list of parts.")
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        blocks.append(_text_block(message["refusal"]))
    for j, call in enumerate(message.get("tool_calls") or ()):
        blocks.append(_tool_use(call, f"{where}.tool_calls[{j}]"))
    return blocks


def _tool_use(call: Any, where: str) -> dict[str, Any]:
    if not isinstance(call, dict) or call.get("type", "function") != "function" or \
            not isinstance(call.get("function"), dict):
        raise Refused(where, f"{where}: only function tool calls can be carried to this provider.")
    call_id, function = call.get("id"), call["function"]
    if not isinstance(call_id, str) or not call_id:
        raise Refused(f"{where}.id", f"{where} has no id; the provider needs it to pair the call with its result.")
    arguments = function.get("arguments")
    if arguments in (None, ""):
        tool_input: Any = {}
    elif isinstance(arguments, str):
        tool_input = provider_json.loads(arguments.encode("utf-8", "surrogatepass"))
    else:
        tool_input = None
    if not isinstance(tool_input, dict):
        raise Refused(f"{where}.function.arguments",
                      f"{where}.function.arguments is not a JSON object; the provider takes tool input as one.")
    return {"type": "tool_use", "id": call_id, "name": function.get("name"), "input": tool_input}


def _tool_result(message: dict[str, Any], i: int) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise Refused(f"messages[{i}].tool_call_id", f"messages[{i}] (a tool message) has no tool_call_id.")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif isinstance(content, list):
        parts = _text_blocks(content, f"messages[{i}].content")
        if parts:
            block["content"] = parts
    elif content is not None:
        raise Refused(f"messages[{i}].content", f"messages[{i}].content must be a string or a list of text parts.")
    if isinstance(message.get("cache_control"), dict):
        block["cache_control"] = message["cache_control"]
    return block
