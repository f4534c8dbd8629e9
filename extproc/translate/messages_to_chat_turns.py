"""A Messages conversation (`system` and turns of blocks) as Chat Completions messages.

  system                   -> one leading system message (one text: a string; several: text parts)
  a system turn            -> a system message where it stands (Messages' mid-conversation system
                              instructions; text only)
  text                     -> text part (assistant: content, its text blocks joined)
  image base64 / url       -> image_url (a data: URL / the URL); a file source R
  document                 -> base64 PDF: a `file` part with file_data; text source: a text part (title and
                              context first); content source: its parts; url or file source R
  search_result            -> a text part (title, source, texts)
  tool_result              -> a tool message each, before the turn's other content; is_error: its text
                              starts "[tool error] " (noted); images in it: moved to the user message that
                              follows (tool messages take text only; noted)
  tool_use                 -> assistant tool_calls (arguments: the input as JSON)
  thinking, redacted_thinking in history  H (Chat Completions takes no reasoning back)
  cache_control anywhere   H
  server tool blocks, container_upload, unknown blocks  R
  a final assistant turn (prefill)  R: Chat Completions would write a new message, not continue it
"""

from __future__ import annotations

from typing import Any

from ..api import provider_json
from .base import Notes, Refused
from .vocabulary import note, openai_tool_name

_TOOL_ERROR = "[tool error] "


def chat_messages(system: Any, messages: Any, notes: Notes) -> list[dict[str, Any]]:
    """The Chat Completions `messages` for a Messages `system` and `messages`."""
    if not isinstance(messages, list) or not messages:
        raise Refused("messages", "messages must be a non-empty list.")
    out: list[dict[str, Any]] = []
    if system:
        out.append(_system_message(system, notes))
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise Refused(f"messages[{i}]", f"messages[{i}] must be an object.")
        role, content = message.get("role"), message.get("content")
        if role == "user":
            out.extend(_user_messages(content, f"messages[{i}].content", notes))
        elif role == "assistant":
            if i == len(messages) - 1:
                raise Refused(f"messages[{i}]", "A final assistant message (a prefill to continue) cannot be "
                                                "carried: this provider would write a new message instead.")
            assistant = _assistant_message(content, f"messages[{i}].content", notes)
            if assistant is not None:
                out.append(assistant)
        elif role == "system":
            out.append(_system_message(content, notes, f"messages[{i}].content"))
        else:
            raise Refused(f"messages[{i}].role", f"messages[{i}].role must be user, assistant or system.")
    return out


def _blocks(content: Any, where: str) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if isinstance(content, list):
        return content
    raise Refused(where, f"{where} must be a string or a list of blocks.")


def _text_of(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Parts as Chat Completions content: one text part as a plain string."""
    if len(parts) == 1 and parts[0]["type"] == "text":
        return parts[0]["text"]
    return parts


def _system_message(system: Any, notes: Notes, where: str = "system") -> dict[str, Any]:
    parts = []
    for j, block in enumerate(_blocks(system, where)):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise Refused(f"{where}[{j}]", f"{where}[{j}]: only text blocks can be carried.")
        if "cache_control" in block:
            note(notes.dropped, "cache_control")
        parts.append({"type": "text", "text": block["text"]})
    return {"role": "system", "content": _text_of(parts) if parts else ""}


def _user_messages(content: Any, where: str, notes: Notes) -> list[dict[str, Any]]:
    """A user turn: its tool results as tool messages, then a user message of the rest."""
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    moved: list[dict[str, Any]] = []          # images from tool results: only a user message takes them
    for j, block in enumerate(_blocks(content, where)):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind is not None and "cache_control" in block:
            note(notes.dropped, "cache_control")
        if kind == "tool_result":
            tools.append(_tool_message(block, f"{where}[{j}]", moved, notes))
        else:
            parts.extend(_content_parts(block, f"{where}[{j}]", notes))
    out = tools
    if moved or parts:
        out.append({"role": "user", "content": _text_of(moved + parts)})
    return out


def _content_parts(block: Any, where: str, notes: Notes) -> list[dict[str, Any]]:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "text" and isinstance(block.get("text"), str):
        return [{"type": "text", "text": block["text"]}] if block["text"] else []
    if kind == "image":
        return [_image_part(block, where)]
    if kind == "document":
        return _document_parts(block, where, notes)
    if kind == "search_result":
        return [{"type": "text", "text": _search_result_text(block)}]
    raise Refused(where, f"{where}: a block of type {kind!r} cannot be carried to this provider.")


def _image_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source") if isinstance(block.get("source"), dict) else {}
    if source.get("type") == "base64" and isinstance(source.get("data"), str):
        media_type = source.get("media_type") or "image/jpeg"
        return {"type": "image_url", "image_url": {"url": f"data:{media_type};base64,{source['data']}"}}
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise Refused(f"{where}.source", f"{where}: an image from a {source.get('type')!r} source cannot be carried "
                                     "(this provider takes base64 data and URLs).")


def _document_parts(block: dict[str, Any], where: str, notes: Notes) -> list[dict[str, Any]]:
    source = block.get("source") if isinstance(block.get("source"), dict) else {}
    kind = source.get("type")
    if isinstance(block.get("citations"), dict) and block["citations"].get("enabled"):
        note(notes.dropped, "document.citations")
    if kind == "base64" and source.get("media_type") == "application/pdf" and isinstance(source.get("data"), str):
        name = block.get("title") if isinstance(block.get("title"), str) and block["title"] else "document.pdf"
        return [{"type": "file", "file": {"filename": name,
                                          "file_data": f"data:application/pdf;base64,{source['data']}"}}]
    if kind == "text" and isinstance(source.get("data"), str):
        heading = [block[key] for key in ("title", "context") if isinstance(block.get(key), str) and block[key]]
        return [{"type": "text", "text": "\n\n".join([*heading, source["data"]])}]
    if kind == "content" and isinstance(source.get("content"), (str, list)):
        parts = []
        for j, inner in enumerate(_blocks(source["content"], f"{where}.source.content")):
            parts.extend(_content_parts(inner, f"{where}.source.content[{j}]", notes))
        return parts
    raise Refused(f"{where}.source", f"{where}: a document from a {kind!r} source cannot be carried "
                                     "(this provider takes base64 PDFs and text).")


def _search_result_text(block: dict[str, Any]) -> str:
    lines = [block[key] for key in ("title", "source") if isinstance(block.get(key), str) and block[key]]
    for inner in block.get("content") or ():
        if isinstance(inner, dict) and isinstance(inner.get("text"), str):
            lines.append(inner["text"])
    return "\n\n".join(lines)


def _tool_message(block: dict[str, Any], where: str, moved: list[dict[str, Any]], notes: Notes) -> dict[str, Any]:
    call_id = block.get("tool_use_id")
    texts: list[str] = []
    for j, inner in enumerate(_blocks(block.get("content") or "", f"{where}.content")):
        kind = inner.get("type") if isinstance(inner, dict) else None
        if kind == "text" and isinstance(inner.get("text"), str):
            texts.append(inner["text"])
        elif kind in ("image", "document", "search_result"):
            if kind == "image":
                note(notes.dropped, "tool_result.image:moved_to_user_message")
                moved.append({"type": "text", "text": f"(image from the result of tool call {call_id})"})
            parts = _content_parts(inner, f"{where}.content[{j}]", notes)
            if kind == "image":
                moved.extend(parts)
            else:
                texts.extend(part["text"] for part in parts if part["type"] == "text")
                moved.extend(part for part in parts if part["type"] != "text")
        else:
            raise Refused(f"{where}.content[{j}]", f"{where}.content[{j}]: a block of type {kind!r} cannot be "
                                                   "carried in a tool result.")
    text = "\n\n".join(texts)
    if block.get("is_error"):
        note(notes.dropped, "tool_result.is_error:as_text")
        text = _TOOL_ERROR + text
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _assistant_message(content: Any, where: str, notes: Notes) -> dict[str, Any] | None:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(_blocks(content, where)):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use":
            arguments = provider_json.dumps(block.get("input") or {}).decode()
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": openai_tool_name(str(block.get("name"))), "arguments": arguments}})
        elif kind in ("thinking", "redacted_thinking"):
            note(notes.dropped, "thinking_history")
        else:
            raise Refused(f"{where}[{j}]", f"{where}[{j}]: a block of type {kind!r} cannot be replayed to this "
                                           "provider.")
        if kind is not None and "cache_control" in block:
            note(notes.dropped, "cache_control")
    text = "".join(texts)
    if not text and not calls:
        return None
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return message
