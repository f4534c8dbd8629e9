"""A Chat Completions `messages` list read as the conversation's turns (written as one:
chat_request_messages), and the parts OpenAI's dialects share (Responses reads them too).

Each message is one turn where it stands:
  system, developer        a system turn (role kept) of text blocks; other parts R
  user                     text (empty parts left out), image_url (a base64 data URL or a URL;
                           a PDF, by data or by a URL ending .pdf, is a document), file (its
                           data as a base64 document, its filename the title; an OpenAI file id
                           as a `file` source), input_audio as audio; cache_control kept
  assistant                reasoning_content as unsigned thinking (origin openai), text and
                           refusal parts as text, tool_calls as tool_use (arguments parsed: a
                           JSON object or R); function_call, audio R
  tool                     a user turn holding one tool_result (tool_call_id required)
  name on a message        H (messages[].name);  function and unknown roles R
A message with nothing in it makes no turn.
"""

from __future__ import annotations

from typing import Any

from ...api import provider_json
from ..conversation import Block, Conversation, Notes, Refused, Turn, note
from ..vocabulary import OPENAI

SYSTEM_ROLES = ("system", "developer")


# --- parts OpenAI's dialects share (Responses reads them too) -------------------------

def data_url(url: str, where: str) -> tuple[str, str]:
    """The media type and base64 data of a `data:<type>;base64,<data>` URL."""
    head, comma, data = url.partition(",")
    if not comma or not head.startswith("data:") or not head.endswith(";base64"):
        raise Refused(where, f"{where}: a data URL must be base64 (data:<media type>;base64,<data>).")
    return head[5:-7].lower(), data


def image_block(url: Any, detail: Any, where: str) -> Block:
    """An image given by URL (a base64 data URL or a link); a PDF so given is a document."""
    if not isinstance(url, str):
        raise Refused(where, f"{where}: image_url.url must be a string.")
    block: Block
    if url.startswith("data:"):
        media_type, data = data_url(url, where)
        kind = "document" if media_type == "application/pdf" else "image"
        block = {"type": kind, "source": {"type": "base64", "media_type": media_type, "data": data}}
    else:
        is_pdf = url.startswith(("https://", "http://")) and url.split("?", 1)[0].lower().endswith(".pdf")
        block = {"type": "document" if is_pdf else "image", "source": {"type": "url", "url": url}}
    if block["type"] == "image" and isinstance(detail, str):
        block["detail"] = detail
    return block


def file_block(file: Any, where: str) -> Block:
    """A file part: its data as a base64 document (bare base64 is a PDF, the one type
    Chat Completions takes so), or an OpenAI file id."""
    file = file if isinstance(file, dict) else {}
    block: Block
    if isinstance(file.get("file_id"), str) and file["file_id"]:
        block = {"type": "document", "source": {"type": "file", "file_id": file["file_id"]}}
    else:
        data = file.get("file_data")
        if not isinstance(data, str) or not data:
            raise Refused(where, f"{where}: a file part needs file.file_data.")
        media_type, payload = data_url(data, where) if data.startswith("data:") else ("application/pdf", data)
        block = {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": payload}}
    if isinstance(file.get("filename"), str) and file["filename"]:
        block["title"] = file["filename"]
    return block


def tool_input(arguments: Any, where: str) -> dict:
    """A tool call's JSON arguments as the object the model holds; R when they are not one."""
    if arguments in (None, ""):
        return {}
    parsed = provider_json.loads(arguments.encode("utf-8", "surrogatepass")) if isinstance(arguments, str) else None
    if not isinstance(parsed, dict):
        raise Refused(where, f"{where} is not a JSON object; the provider takes tool input as one.")
    return parsed


# --- read -----------------------------------------------------------------------------

def decode_turns(messages: Any, conversation: Conversation, notes: Notes) -> None:
    """The turns of a Chat Completions `messages` list, each placed for refusals."""
    if not isinstance(messages, list):
        raise Refused("messages", "messages must be a non-empty list.")
    places = conversation.places
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise Refused(where, f"{where} must be an object.")
        role = message.get("role")
        if "name" in message:
            note(notes.dropped, "messages[].name")
        if role in SYSTEM_ROLES:
            blocks = _text_blocks(message.get("content"), f"{where}.content", places)
        elif role == "user":
            blocks = _user_blocks(message.get("content"), f"{where}.content", places)
        elif role == "tool":
            role, blocks = "user", [_tool_result(message, where, places)]
        elif role == "assistant":
            blocks = _assistant_blocks(message, where, places)
        elif role == "function":
            raise Refused(f"{where}.role", "Messages with role `function` (deprecated function calling) "
                                           "cannot be carried to this provider; use tools and tool messages.")
        else:
            raise Refused(f"{where}.role", f"Unknown role {role!r} in {where}.")
        if blocks:
            turn: Turn = {"role": role, "content": blocks}
            places[id(turn)] = where
            conversation.turns.append(turn)


def _text_block(text: str, part: dict | None = None) -> Block:
    block: Block = {"type": "text", "text": text}
    if part is not None and isinstance(part.get("cache_control"), dict):     # an extension LiteLLM clients send
        block["cache_control"] = part["cache_control"]
    return block


def _text_blocks(content: Any, where: str, places: dict[int, str]) -> list[Block]:
    """Content that may only hold text (system and tool messages): its text blocks, empty ones left out."""
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
            places[id(blocks[-1])] = f"{where}[{j}]"
    return blocks


def _user_blocks(content: Any, where: str, places: dict[int, str]) -> list[Block]:
    if isinstance(content, str) or content is None:
        return [_text_block(content)] if content else []
    if not isinstance(content, list):
        raise Refused(where, f"{where} must be a string or a list of parts.")
    blocks = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            if not part["text"]:
                continue
            block = _text_block(part["text"], part)
        elif kind == "image_url":
            image = part.get("image_url")
            url, detail = (image.get("url"), image.get("detail")) if isinstance(image, dict) else (image, None)
            block = image_block(url, detail, at)
        elif kind == "file":
            block = file_block(part.get("file"), at)
        elif kind == "input_audio":
            audio = part.get("input_audio") if isinstance(part.get("input_audio"), dict) else {}
            block = {"type": "audio", "format": audio.get("format"), "data": audio.get("data")}
        else:
            raise Refused(at, f"{at}: a part of type {kind!r} cannot be carried to this provider.")
        if kind != "text" and isinstance(part.get("cache_control"), dict):
            block["cache_control"] = part["cache_control"]
        places[id(block)] = at
        blocks.append(block)
    return blocks


def _assistant_blocks(message: dict, where: str, places: dict[int, str]) -> list[Block]:
    """An assistant message's reasoning, its text (refusals included), then its tool calls."""
    if message.get("function_call") is not None:
        raise Refused(f"{where}.function_call", "function_call (deprecated) cannot be carried; use tool_calls.")
    if message.get("audio") is not None:
        raise Refused(f"{where}.audio", "Audio answers cannot be carried to this provider.")
    blocks: list[Block] = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:     # unsigned: only an OpenAI-style provider takes it back
        blocks.append({"type": "thinking", "thinking": reasoning, "signature": "", "origin": OPENAI})
    content = message.get("content")
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
        places[id(blocks[-1])] = f"{where}.tool_calls[{j}]"
    return blocks


def _tool_use(call: Any, where: str) -> Block:
    if not isinstance(call, dict) or call.get("type", "function") != "function" or \
            not isinstance(call.get("function"), dict):
        raise Refused(where, f"{where}: only function tool calls can be carried to this provider.")
    call_id, function = call.get("id"), call["function"]
    if not isinstance(call_id, str) or not call_id:
        raise Refused(f"{where}.id", f"{where} has no id; the provider needs it to pair the call with its result.")
    return {"type": "tool_use", "id": call_id, "name": function.get("name"),
            "input": tool_input(function.get("arguments"), f"{where}.function.arguments")}


def _tool_result(message: dict, where: str, places: dict[int, str]) -> Block:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise Refused(f"{where}.tool_call_id", f"{where} (a tool message) has no tool_call_id.")
    block: Block = {"type": "tool_result", "tool_use_id": call_id}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif isinstance(content, list):
        parts = _text_blocks(content, f"{where}.content", places)
        if parts:
            block["content"] = parts
    elif content is not None:
        raise Refused(f"{where}.content", f"{where}.content must be a string or a list of text parts.")
    if isinstance(message.get("cache_control"), dict):
        block["cache_control"] = message["cache_control"]
    places[id(block)] = where
    return block
