"""The conversation's system and turns written as a Chat Completions `messages` list (read
from one: chat_request_turns).

  system                   one leading system message (one text: a string; several: text parts)
  a system turn            a system (or developer) message where it stands; text only
  text, image, audio       text, image_url (a data URL or the URL), input_audio parts
  document                 base64: a `file` part with file_data (a data URL); an OpenAI file id:
                           a `file` part with file_id; text source: a text part (title and context
                           first); content source: its parts; url source, another's file id R
  search_result            a text part (title, source, texts)
  tool_result              a tool message each, before the turn's other content; is_error: its text
                           starts "[tool error] " (noted); images in it: moved to the user message
                           that follows (tool messages take text only; noted)
  tool_use                 assistant tool_calls (name within 64 characters, arguments: the input as JSON)
  thinking                 OpenAI's own (origin openai): reasoning_content; others H (thinking_history)
  cache_control anywhere   H
  blocks of another dialect's own types R;  a final assistant turn of a caller whose dialect
  continues it (a prefill) R: Chat Completions would write a new message, not continue it
"""

from __future__ import annotations

from typing import Any

from ...api import provider_json
from ..conversation import Block, Conversation, Notes, Refused, Turn, note
from ..vocabulary import ANTHROPIC, OPENAI, openai_tool_name

TOOL_ERROR = "[tool error] "


def final_prefill(conversation: Conversation) -> Turn | None:
    """The last turn, when it is the assistant's and the caller's dialect continues such a
    turn (Anthropic's prefill): an OpenAI provider would write a new message instead."""
    last = conversation.turns[-1] if conversation.turns else None
    if last is not None and last["role"] == "assistant" and conversation.dialect == ANTHROPIC:
        return last
    return None


def encode_messages(conversation: Conversation, notes: Notes) -> list[dict]:
    """The Chat Completions `messages` for the conversation's system and turns."""
    if not conversation.turns:
        turns = conversation.field("turns")
        raise Refused(turns, f"{turns} must be a non-empty list.")
    prefill = final_prefill(conversation)
    if prefill is not None:
        raise Refused(conversation.place(prefill), "A final assistant message (a prefill to continue) cannot be "
                                                   "carried: this provider would write a new message instead.")
    out: list[dict] = []
    if conversation.system:
        out.append(_system_message("system", conversation.system, conversation, notes))
    for turn in conversation.turns:
        role, content = turn["role"], turn["content"]
        if role == "user":
            out.extend(_user_messages(content, conversation, notes))
        elif role == "assistant":
            assistant = _assistant_message(content, conversation, notes)
            if assistant is not None:
                out.append(assistant)
        else:
            out.append(_system_message(role, content, conversation, notes))
    return out


def _text_of(parts: list[dict]) -> str | list[dict]:
    """Parts as Chat Completions content: one text part as a plain string."""
    if len(parts) == 1 and parts[0]["type"] == "text":
        return parts[0]["text"]
    return parts


def _at(block: Any, conversation: Conversation, outer: str) -> str:
    """Where the caller wrote a block: its own place, or the place of what holds it."""
    return conversation.places.get(id(block)) or outer


def _system_message(role: str, blocks: list[Block], conversation: Conversation, notes: Notes) -> dict:
    parts = []
    for block in blocks:
        if block.get("type") != "text" or not isinstance(block.get("text"), str):
            where = _at(block, conversation, "system")
            raise Refused(where, f"{where}: only text blocks can be carried.")
        if "cache_control" in block:
            note(notes.dropped, "cache_control")
        parts.append({"type": "text", "text": block["text"]})
    return {"role": role, "content": _text_of(parts) if parts else ""}


def _user_messages(blocks: list[Block], conversation: Conversation, notes: Notes) -> list[dict]:
    """A user turn: its tool results as tool messages, then a user message of the rest."""
    tools: list[dict] = []
    parts: list[dict] = []
    moved: list[dict] = []          # images from tool results: only a user message takes them
    outer = conversation.field("turns")
    for block in blocks:
        if "cache_control" in block:
            note(notes.dropped, "cache_control")
        if block.get("type") == "tool_result":
            tools.append(_tool_message(block, conversation, moved, notes))
        else:
            parts.extend(_content_parts(block, _at(block, conversation, outer), conversation, notes))
    out = tools
    if moved or parts:
        out.append({"role": "user", "content": _text_of(moved + parts)})
    return out


def _content_parts(block: Block, where: str, conversation: Conversation, notes: Notes) -> list[dict]:
    kind = block.get("type")
    if kind == "text" and isinstance(block.get("text"), str):
        return [{"type": "text", "text": block["text"]}] if block["text"] else []
    if kind == "image":
        return [_image_part(block, where)]
    if kind == "document":
        return _document_parts(block, where, conversation, notes)
    if kind == "audio":
        return [{"type": "input_audio", "input_audio": {"data": block.get("data"), "format": block.get("format")}}]
    if kind == "search_result":
        return [{"type": "text", "text": search_result_text(block)}]
    raise Refused(where, f"{where}: a block of type {kind!r} cannot be carried to this provider.")


def _image_part(block: Block, where: str) -> dict:
    source = block.get("source") if isinstance(block.get("source"), dict) else {}
    image: dict[str, Any]
    if source.get("type") == "base64" and isinstance(source.get("data"), str):
        image = {"url": f"data:{source.get('media_type') or 'image/jpeg'};base64,{source['data']}"}
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        image = {"url": source["url"]}
    else:
        raise Refused(f"{where}.source", f"{where}: an image from a {source.get('type')!r} source cannot be "
                                         "carried (this provider takes base64 data and URLs).")
    if isinstance(block.get("detail"), str):
        image["detail"] = block["detail"]
    return {"type": "image_url", "image_url": image}


def _document_parts(block: Block, where: str, conversation: Conversation, notes: Notes) -> list[dict]:
    source = block.get("source") if isinstance(block.get("source"), dict) else {}
    kind = source.get("type")
    if isinstance(block.get("citations"), dict) and block["citations"].get("enabled"):
        note(notes.dropped, "document.citations")
    title = block.get("title") if isinstance(block.get("title"), str) and block["title"] else None
    if kind == "base64" and isinstance(source.get("data"), str):
        media_type = source.get("media_type") or "application/pdf"
        return [{"type": "file", "file": {"filename": title or "document.pdf",
                                          "file_data": f"data:{media_type};base64,{source['data']}"}}]
    if kind == "file" and isinstance(source.get("file_id"), str) and conversation.dialect == OPENAI:
        file: dict[str, Any] = {"file_id": source["file_id"]}
        if title:
            file["filename"] = title
        return [{"type": "file", "file": file}]
    if kind == "text" and isinstance(source.get("data"), str):
        heading = [block[key] for key in ("title", "context") if isinstance(block.get(key), str) and block[key]]
        return [{"type": "text", "text": "\n\n".join([*heading, source["data"]])}]
    if kind == "content" and isinstance(source.get("content"), (str, list)):
        inner = source["content"]
        parts = []
        for inner_block in [{"type": "text", "text": inner}] if isinstance(inner, str) else inner:
            if not isinstance(inner_block, dict):
                raise Refused(f"{where}.source.content", f"{where}.source.content must hold blocks.")
            parts.extend(_content_parts(inner_block, _at(inner_block, conversation, where), conversation, notes))
        return parts
    raise Refused(f"{where}.source", f"{where}: a document from a {kind!r} source cannot be carried "
                                     "(this provider takes base64 PDFs and text).")


def search_result_text(block: Block) -> str:
    """Anthropic's search result as one text: its title, its source, its texts."""
    lines = [block[key] for key in ("title", "source") if isinstance(block.get(key), str) and block[key]]
    for inner in block.get("content") or ():
        if isinstance(inner, dict) and isinstance(inner.get("text"), str):
            lines.append(inner["text"])
    return "\n\n".join(lines)


def tool_result_blocks(block: Block) -> list[Any]:
    """A tool result's content as blocks (a text is one text block)."""
    content = block.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return content if isinstance(content, list) else []


def _tool_message(block: Block, conversation: Conversation, moved: list[dict], notes: Notes) -> dict:
    call_id = block.get("tool_use_id")
    where = _at(block, conversation, conversation.field("turns"))
    texts: list[str] = []
    for j, inner in enumerate(tool_result_blocks(block)):
        kind = inner.get("type") if isinstance(inner, dict) else None
        at = _at(inner, conversation, f"{where}.content[{j}]")
        if kind == "text" and isinstance(inner.get("text"), str):
            texts.append(inner["text"])
        elif kind in ("image", "document", "search_result"):
            if kind == "image":
                note(notes.dropped, "tool_result.image:moved_to_user_message")
                moved.append({"type": "text", "text": f"(image from the result of tool call {call_id})"})
            parts = _content_parts(inner, at, conversation, notes)
            if kind == "image":
                moved.extend(parts)
            else:
                texts.extend(part["text"] for part in parts if part["type"] == "text")
                moved.extend(part for part in parts if part["type"] != "text")
        else:
            raise Refused(at, f"{at}: a block of type {kind!r} cannot be carried in a tool result.")
    text = "\n\n".join(texts)
    if block.get("is_error"):
        note(notes.dropped, "tool_result.is_error:as_text")
        text = TOOL_ERROR + text
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _assistant_message(blocks: list[Block], conversation: Conversation, notes: Notes) -> dict | None:
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use":
            arguments = provider_json.dumps(block.get("input") or {}).decode()
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": openai_tool_name(str(block.get("name"))), "arguments": arguments}})
        elif kind == "thinking" and block.get("origin") == OPENAI:
            reasoning.append(str(block.get("thinking") or ""))
        elif kind in ("thinking", "redacted_thinking"):
            note(notes.dropped, conversation.field("thinking_history"))
        else:
            where = _at(block, conversation, conversation.field("turns"))
            raise Refused(where, f"{where}: a block of type {kind!r} cannot be replayed to this provider.")
        if "cache_control" in block:
            note(notes.dropped, "cache_control")
    text = "".join(texts)
    if not text and not calls:
        return None
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    return message
