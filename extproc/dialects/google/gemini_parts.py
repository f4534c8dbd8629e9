"""Gemini's contents and parts, read as the conversation's turns and blocks and written
from them.

  text                      <-> text block
  text with thought: true   <-> thinking block (written back only to Gemini: origin "gemini")
  thoughtSignature          <-> the signature of the part's block, origin "gemini"
  inlineData (image/*, application/pdf, text/plain, audio/*)  <-> image, document, audio blocks
  fileData (a URI)          <-> an image or document from a URL
  functionCall              <-> tool_use (Gemini gives no id: one is made, and the function
                                responses that follow are paired with the calls by name, in order)
  functionResponse          <-> tool_result (its `response` object as JSON text; written back as
                                {"result": text}, or {"error": text} for a failed call)
  executableCode, codeExecutionResult, videoMetadata parts  R (Google runs the code)
A `function` role (older clients' tool results) reads as user; a `system` turn of
another dialect is written into systemInstruction (noted where it moved).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from ..conversation import Block, Conversation, Notes, Refused, Turn, note

GEMINI = "gemini"
_ROLES = {"user": "user", "model": "assistant", "function": "user"}
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/heic", "image/heif"})


# --- read -----------------------------------------------------------------------------

def decode_turns(system: Any, contents: Any, conversation: Conversation) -> tuple[list[Block], list[Turn]]:
    if not isinstance(contents, list) or not contents:
        raise Refused("contents", "contents must be a non-empty list.")
    system_blocks: list[Block] = []
    if isinstance(system, dict):
        parts = system.get("parts") or []
        if not isinstance(parts, list):
            raise Refused("systemInstruction.parts", "systemInstruction.parts must be a list.")
        for j, part in enumerate(parts):
            if not isinstance(part, dict) or not isinstance(part.get("text"), str):
                raise Refused(f"systemInstruction.parts[{j}]", "systemInstruction may hold text parts only.")
            system_blocks.append({"type": "text", "text": part["text"]})
    elif isinstance(system, str):
        system_blocks.append({"type": "text", "text": system})
    pending: dict[str, list[str]] = {}                 # a function's call ids not yet answered, in order
    turns: list[Turn] = []
    for i, content in enumerate(contents):
        if not isinstance(content, dict):
            raise Refused(f"contents[{i}]", f"contents[{i}] must be an object.")
        role = content.get("role", "user")
        role = _ROLES.get(role) if isinstance(role, str) else None
        if role is None:
            raise Refused(f"contents[{i}].role", f"contents[{i}].role must be user or model.")
        parts = content.get("parts")
        if not isinstance(parts, list):
            raise Refused(f"contents[{i}].parts", f"contents[{i}].parts must be a list.")
        blocks = [_block(part, f"contents[{i}].parts[{j}]", pending, conversation) for j, part in enumerate(parts)]
        turn: Turn = {"role": role, "content": blocks}
        conversation.places[id(turn)] = f"contents[{i}]"
        turns.append(turn)
    return system_blocks, turns


def _block(part: Any, where: str, pending: dict[str, list[str]], conversation: Conversation) -> Block:
    if not isinstance(part, dict):
        raise Refused(where, f"{where} must be an object.")
    block: Block
    if isinstance(part.get("functionCall"), dict):
        call = part["functionCall"]
        name = str(call.get("name", ""))
        call_id = call.get("id") if isinstance(call.get("id"), str) and call["id"] else f"call_{len(conversation.places)}_{name}"
        pending.setdefault(name, []).append(call_id)
        args = call.get("args")
        block = {"type": "tool_use", "id": call_id, "name": name, "input": args if isinstance(args, dict) else {}}
    elif isinstance(part.get("functionResponse"), dict):
        answer = part["functionResponse"]
        name = str(answer.get("name", ""))
        waiting = pending.get(name) or []
        call_id = answer.get("id") if isinstance(answer.get("id"), str) and answer["id"] else \
            (waiting.pop(0) if waiting else f"call_unpaired_{name}")
        response = answer.get("response")
        block = {"type": "tool_result", "tool_use_id": call_id, "name": name,
                 "content": orjson.dumps(response).decode() if response is not None else ""}
        if isinstance(response, dict):
            block["response"] = response          # for a Gemini provider, as the caller wrote it
        if isinstance(response, dict) and "error" in response and "output" not in response and "result" not in response:
            block["is_error"] = True
    elif isinstance(part.get("text"), str):
        block = {"type": "thinking", "thinking": part["text"], "signature": "", "origin": GEMINI} \
            if part.get("thought") else {"type": "text", "text": part["text"]}
    elif isinstance(part.get("inlineData"), dict):
        block = _inline(part["inlineData"], where)
    elif isinstance(part.get("fileData"), dict):
        data = part["fileData"]
        uri, media_type = data.get("fileUri"), str(data.get("mimeType", ""))
        if not isinstance(uri, str) or not uri.startswith(("https://", "http://")):
            raise Refused(where, f"{where}: a file Google keeps (fileData.fileUri {str(uri)[:80]!r}) means nothing to "
                                 "this provider; send its data inline.")
        kind = "image" if media_type.startswith("image/") else "document"
        block = {"type": kind, "source": {"type": "url", "url": uri}}
    else:
        names = ", ".join(sorted(name for name in part if name != "thoughtSignature")) or "nothing"
        raise Refused(where, f"{where}: a part holding {names} cannot be carried to this provider.")
    signature = part.get("thoughtSignature")
    if isinstance(signature, str) and signature:
        block["signature"] = signature
        block["origin"] = GEMINI
    conversation.places[id(block)] = where
    return block


def _inline(data: dict, where: str) -> Block:
    media_type, payload = str(data.get("mimeType", "")).lower(), data.get("data")
    if not isinstance(payload, str):
        raise Refused(f"{where}.inlineData.data", f"{where}: inlineData.data must be base64 text.")
    if media_type in _IMAGE_TYPES:
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": payload}}
    if media_type == "application/pdf":
        return {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": payload}}
    if media_type.startswith("text/"):
        try:
            text = base64.b64decode(payload, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise Refused(f"{where}.inlineData.data", f"{where}: inlineData.data is not base64 UTF-8 text.") from None
        return {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text}}
    if media_type.startswith("audio/"):
        return {"type": "audio", "format": media_type[len("audio/"):], "data": payload}
    raise Refused(where, f"{where}: inline data of type {media_type or 'unknown'} cannot be carried to this provider.")


# --- write ----------------------------------------------------------------------------

def encode_turns(conversation: Conversation, notes: Notes) -> tuple[list[dict], list[dict]]:
    """systemInstruction's parts and the contents of a conversation."""
    system = [{"text": block["text"]} for block in conversation.system if block.get("type") == "text"]
    names = {block["id"]: block["name"] for turn in conversation.turns for block in turn["content"]
             if block.get("type") == "tool_use"}
    contents: list[dict] = []
    for turn in conversation.turns:
        if turn["role"] in ("system", "developer"):
            if contents:
                note(notes.dropped, f"{conversation.field('turns')}[].role=system:moved_to_top")
            system.extend({"text": block["text"]} for block in turn["content"] if block.get("type") == "text")
            continue
        role = "model" if turn["role"] == "assistant" else "user"
        parts = [part for block in turn["content"] for part in _parts(block, names, conversation, notes)]
        if not parts:
            continue
        if role == "model" and conversation.dialect != GEMINI:
            _stand_in_signature(parts)
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    if not contents:
        raise Refused(conversation.field("turns"), "The conversation has no user or assistant content to send.")
    return system, contents


# Google's documented stand-in for a thought signature a call made elsewhere never had:
# Gemini 3 refuses a model turn whose first function call carries none.
STAND_IN_SIGNATURE = "skip_thought_signature_validator"


def _stand_in_signature(parts: list[dict]) -> None:
    """The first function call of a model turn another dialect's caller made gets the stand-in."""
    for part in parts:
        if "functionCall" in part:
            part.setdefault("thoughtSignature", STAND_IN_SIGNATURE)
            return


def _source_part(block: Block, conversation: Conversation) -> dict:
    source = block.get("source") or {}
    kind = source.get("type")
    if kind == "base64":
        return {"inlineData": {"mimeType": source.get("media_type", "application/octet-stream"),
                               "data": source.get("data", "")}}
    if kind == "url":
        url = str(source.get("url", ""))
        guessed = "application/pdf" if block.get("type") == "document" else "image/jpeg"
        return {"fileData": {"mimeType": guessed, "fileUri": url}}
    if kind == "text":
        return {"text": "\n\n".join(str(block[key]) for key in ("title", "context") if block.get(key)) +
                ("\n\n" if block.get("title") or block.get("context") else "") + str(source.get("data", ""))}
    raise Refused(conversation.place(block), f"{conversation.place(block)}: content from a {kind!r} source "
                                             "cannot be carried to this provider.")


def _parts(block: Block, names: dict[str, str], conversation: Conversation, notes: Notes) -> list[dict]:
    kind = block.get("type")
    if kind == "text":
        part = {"text": block.get("text", "")}
        if block.get("origin") == GEMINI and block.get("signature"):
            part["thoughtSignature"] = block["signature"]       # Gemini 3 signs an empty last part too
        return [part] if part["text"] or "thoughtSignature" in part else []
    if kind in ("image", "document"):
        return [_source_part(block, conversation)]
    if kind == "audio":
        return [{"inlineData": {"mimeType": f"audio/{block.get('format', 'wav')}", "data": block.get("data", "")}}]
    if kind == "tool_use":
        part: dict = {"functionCall": {"name": block.get("name", ""), "args": block.get("input") or {}}}
        if block.get("origin") == GEMINI and block.get("signature"):
            part["thoughtSignature"] = block["signature"]
        return [part]
    if kind == "tool_result":
        return _tool_result(block, names, conversation)
    if kind in ("thinking", "redacted_thinking"):
        if kind == "thinking" and block.get("origin") == GEMINI:
            part = {"text": block.get("thinking", ""), "thought": True}
            if block.get("signature"):
                part["thoughtSignature"] = block["signature"]
            return [part]
        note(notes.dropped, conversation.field("thinking_history"))
        return []
    raise Refused(conversation.place(block), f"{conversation.place(block)}: a block of type {kind!r} cannot be "
                                             "carried to this provider.")


def _tool_result(block: Block, names: dict[str, str], conversation: Conversation) -> list[dict]:
    content = block.get("content")
    texts: list[str] = []
    extra: list[dict] = []
    for inner in (content if isinstance(content, list) else [{"type": "text", "text": content or ""}]):
        if inner.get("type") == "text":
            texts.append(str(inner.get("text", "")))
        elif inner.get("type") in ("image", "document"):
            extra.append(_source_part(inner, conversation))        # Gemini reads them beside the response
    text = "\n\n".join(texts)
    name = block.get("name") or names.get(block.get("tool_use_id", ""), "")
    response = block.get("response")
    if not isinstance(response, dict):
        response = {"error": text} if block.get("is_error") else {"result": text}
    return [{"functionResponse": {"name": name, "response": response}}, *extra]
