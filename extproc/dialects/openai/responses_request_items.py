"""A Responses `input` read as the conversation's turns, and turns written as input items.

Read (a caller's), each item in order:
  a string                       one user turn of its text
  message (user, assistant, system, developer)  a turn: input_text, output_text, text and
                                 refusal parts as text; input_image (by URL or data, or an
                                 OpenAI file id); input_file (its data as a base64 document,
                                 an OpenAI file id, or a URL); a system turn takes text only (R)
  function_call                  a tool_use block of the assistant turn it follows (a call
                                 after another item opens an assistant turn); arguments
                                 parsed: a JSON object, else R
  function_call_output           a user turn of one tool_result (its output: a text or parts)
  reasoning                      H (input[].reasoning: an encrypted summary of another
                                 provider's thinking, which no other provider reads)
  other item types, other parts  R

Written (a provider's):
  system                         `instructions` (responses_request) when one plain text, else
                                 one leading system message item
  a system turn                  a message item of its role (system or developer), where it stands
  user turns                     its tool results as function_call_output items (output: a text,
                                 or input parts when it holds images or files; is_error: its
                                 text starts "[tool error] ", noted), then a user message item:
                                 input_text, input_image (detail: the caller's or auto),
                                 input_file (base64 data as a data URL, an OpenAI file id, a
                                 URL); a text document as input_text (title and context first);
                                 search_result as input_text; audio and another's file ids R
  assistant turns                its text as one message item of output_text, then its calls as
                                 function_call items (names within 64 characters); thinking H
  cache_control anywhere         H
  a final assistant turn of a caller whose dialect continues it (a prefill)  R
"""

from __future__ import annotations

from typing import Any

from ...api import provider_json
from .chat_request_messages import TOOL_ERROR, final_prefill, search_result_text, tool_result_blocks
from .chat_request_turns import SYSTEM_ROLES, file_block, image_block, tool_input
from ..conversation import Block, Conversation, Notes, Refused, Turn, note
from ..vocabulary import OPENAI, openai_tool_name

_TEXT_PARTS = ("input_text", "output_text", "text")
_ROLES = ("user", "assistant", *SYSTEM_ROLES)


# --- read -----------------------------------------------------------------------------

def decode_input(items: Any, conversation: Conversation, notes: Notes) -> None:
    if isinstance(items, str):
        if items:
            conversation.turns.append({"role": "user", "content": [{"type": "text", "text": items}]})
        return
    if not isinstance(items, list):
        raise Refused("input", "'input' must be a string or a list of items.")
    places = conversation.places
    turns = conversation.turns
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise Refused(where, f"'{where}' must be an object.")
        kind = item.get("type", "message" if "role" in item else None)
        turn: Turn | None = None
        if kind == "message":
            role = item.get("role")
            if role not in _ROLES:
                raise Refused(f"{where}.role", f"'{where}.role' must be user, assistant, system or developer.")
            blocks = _blocks(item.get("content"), where, role in SYSTEM_ROLES, places)
            if blocks:
                turn = {"role": role, "content": blocks}
        elif kind == "function_call":
            call = _tool_use(item, where)
            places[id(call)] = where
            if turns and turns[-1]["role"] == "assistant":
                turns[-1]["content"].append(call)              # one turn: its text and its calls
            else:
                turn = {"role": "assistant", "content": [call]}
        elif kind == "function_call_output":
            turn = {"role": "user", "content": [_tool_result(item, where, places)]}
        elif kind == "reasoning":
            note(notes.dropped, "input[].reasoning")
        else:
            raise Refused(f"{where}.type", f"'{where}.type' {str(kind)[:40]!r} cannot be carried to this provider.")
        if turn is not None:
            places[id(turn)] = where
            turns.append(turn)


def _blocks(content: Any, where: str, text_only: bool, places: dict[int, str]) -> list[Block]:
    if content is None or isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise Refused(f"{where}.content", f"'{where}.content' must be a string or a list of parts.")
    blocks = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        block: Block | None = None
        if kind in _TEXT_PARTS or kind == "refusal":
            text = part.get("refusal" if kind == "refusal" else "text")
            if isinstance(text, str):
                if not text:
                    continue
                block = {"type": "text", "text": text}
        elif text_only:
            block = None
        elif kind == "input_image" and part.get("image_url"):
            block = image_block(part["image_url"], part.get("detail"), at)
        elif kind == "input_image" and isinstance(part.get("file_id"), str):
            block = {"type": "image", "source": {"type": "file", "file_id": part["file_id"]}}
            if isinstance(part.get("detail"), str):
                block["detail"] = part["detail"]
        elif kind == "input_file" and isinstance(part.get("file_url"), str) and part["file_url"]:
            block = {"type": "document", "source": {"type": "url", "url": part["file_url"]}}
            if isinstance(part.get("filename"), str) and part["filename"]:
                block["title"] = part["filename"]
        elif kind == "input_file":
            block = file_block(part, at)
        if block is None:
            raise Refused(at, f"'{at}' ({str(kind)[:40]!r}) cannot be carried to this provider; "
                              "send its text or its data.")
        places[id(block)] = at
        blocks.append(block)
    return blocks


def _tool_use(item: dict, where: str) -> Block:
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise Refused(f"{where}.call_id", f"'{where}' has no call_id; the provider needs it to pair the call "
                                          "with its result.")
    return {"type": "tool_use", "id": call_id, "name": item.get("name"),
            "input": tool_input(item.get("arguments"), f"{where}.arguments")}


def _tool_result(item: dict, where: str, places: dict[int, str]) -> Block:
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise Refused(f"{where}.call_id", f"'{where}' (a function_call_output) has no call_id.")
    block: Block = {"type": "tool_result", "tool_use_id": call_id}
    output = item.get("output")
    if isinstance(output, str):
        if output:
            block["content"] = output
    else:
        parts = _blocks(output, where, False, places)
        if parts:
            block["content"] = parts
    places[id(block)] = where
    return block


# --- write ----------------------------------------------------------------------------

def instructions(conversation: Conversation) -> str | None:
    """The system as Responses' `instructions`, when it is one plain text (else a system
    message item leads the input)."""
    system = conversation.system
    return system[0]["text"] if len(system) == 1 and set(system[0]) == {"type", "text"} else None


def encode_input(conversation: Conversation, notes: Notes) -> list[dict]:
    prefill = final_prefill(conversation)
    if prefill is not None:
        raise Refused(conversation.place(prefill), "A final assistant message (a prefill to continue) cannot be "
                                                   "carried: this provider would write a new message instead.")
    items: list[dict] = []
    if conversation.system and instructions(conversation) is None:
        items.append(_message("system", conversation.system, conversation, notes))
    for turn in conversation.turns:
        role, blocks = turn["role"], turn["content"]
        if role == "assistant":
            items.extend(_assistant_items(blocks, conversation, notes))
        elif role == "user":
            results = [block for block in blocks if block.get("type") == "tool_result"]
            items.extend(_output_item(block, conversation, notes) for block in results)
            rest = [block for block in blocks if block.get("type") != "tool_result"]
            if rest:
                items.append(_message("user", rest, conversation, notes))
        else:
            items.append(_message(role, blocks, conversation, notes))
    return items


def _where(block: Any, conversation: Conversation, outer: str | None = None) -> str:
    return conversation.places.get(id(block)) or outer or conversation.field("turns")


def _message(role: str, blocks: list[Block], conversation: Conversation, notes: Notes) -> dict:
    parts = _parts(blocks, conversation, notes)
    if len(parts) == 1 and parts[0]["type"] == "input_text":
        return {"type": "message", "role": role, "content": parts[0]["text"]}     # a lone text: a string
    return {"type": "message", "role": role, "content": parts}


def _parts(blocks: list[Any], conversation: Conversation, notes: Notes, outer: str | None = None) -> list[dict]:
    parts: list[dict] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        where = _where(block, conversation, outer)
        if "cache_control" in block:
            note(notes.dropped, "cache_control")
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append({"type": "input_text", "text": block["text"]})
        elif kind == "image":
            parts.append(_image_part(block, where, conversation))
        elif kind == "document":
            parts.extend(_document_parts(block, where, conversation, notes))
        elif kind == "search_result":
            parts.append({"type": "input_text", "text": search_result_text(block)})
        elif kind == "audio":
            raise Refused(where, "Audio input cannot be carried to this provider.")
        else:
            raise Refused(where, f"{where}: a block of type {kind!r} cannot be carried to this provider.")
    return parts


def _image_part(block: Block, where: str, conversation: Conversation) -> dict:
    source = block.get("source") if isinstance(block.get("source"), dict) else {}
    part: dict[str, Any] = {"type": "input_image"}
    if source.get("type") == "base64" and isinstance(source.get("data"), str):
        part["image_url"] = f"data:{source.get('media_type') or 'image/jpeg'};base64,{source['data']}"
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        part["image_url"] = source["url"]
    elif source.get("type") == "file" and conversation.dialect == OPENAI:
        part["file_id"] = source.get("file_id")
    else:
        raise Refused(where, f"{where}: an image from a {source.get('type')!r} source cannot be carried to this "
                             "provider (it takes base64 data, URLs and its own file ids).")
    part["detail"] = block["detail"] if isinstance(block.get("detail"), str) else "auto"
    return part


def _document_parts(block: Block, where: str, conversation: Conversation, notes: Notes) -> list[dict]:
    source = block.get("source") if isinstance(block.get("source"), dict) else {}
    kind = source.get("type")
    if isinstance(block.get("citations"), dict) and block["citations"].get("enabled"):
        note(notes.dropped, "document.citations")
    title = block.get("title") if isinstance(block.get("title"), str) and block["title"] else None
    part: dict[str, Any] = {"type": "input_file"}
    if kind == "base64" and isinstance(source.get("data"), str):
        media_type = source.get("media_type") or "application/pdf"
        part["file_data"] = f"data:{media_type};base64,{source['data']}"
        title = title or ("document.pdf" if media_type == "application/pdf" else None)
    elif kind == "url" and isinstance(source.get("url"), str):
        part["file_url"] = source["url"]
    elif kind == "file" and conversation.dialect == OPENAI:
        part["file_id"] = source.get("file_id")
    elif kind == "text" and isinstance(source.get("data"), str):
        heading = [block[key] for key in ("title", "context") if isinstance(block.get(key), str) and block[key]]
        return [{"type": "input_text", "text": "\n\n".join([*heading, source["data"]])}]
    elif kind == "content" and isinstance(source.get("content"), (str, list)):
        inner = source["content"]
        return _parts([{"type": "text", "text": inner}] if isinstance(inner, str) else inner, conversation, notes,
                      where)
    else:
        raise Refused(where, f"{where}: a document from a {kind!r} source cannot be carried to this provider.")
    if title:
        part["filename"] = title
    return [part]


def _output_item(block: Block, conversation: Conversation, notes: Notes) -> dict:
    """A tool result as a function_call_output: a text, or parts when it holds more."""
    where = _where(block, conversation)
    if "cache_control" in block:
        note(notes.dropped, "cache_control")
    parts = _parts(tool_result_blocks(block), conversation, notes, f"{where}.content")
    error = TOOL_ERROR if block.get("is_error") else ""
    if error:
        note(notes.dropped, "tool_result.is_error:as_text")
    output: str | list[dict]
    if all(part["type"] == "input_text" for part in parts):
        output = error + "\n\n".join(part["text"] for part in parts)
    else:
        output = [{"type": "input_text", "text": error}, *parts] if error else parts
    return {"type": "function_call_output", "call_id": block.get("tool_use_id"), "output": output}


def _assistant_items(blocks: list[Block], conversation: Conversation, notes: Notes) -> list[dict]:
    texts: list[str] = []
    calls: list[dict] = []
    for block in blocks:
        kind = block.get("type")
        if "cache_control" in block:
            note(notes.dropped, "cache_control")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use":
            calls.append({"type": "function_call", "call_id": block.get("id"),
                          "name": openai_tool_name(str(block.get("name"))),
                          "arguments": provider_json.dumps(block.get("input") or {}).decode()})
        elif kind in ("thinking", "redacted_thinking"):
            note(notes.dropped, conversation.field("thinking_history"))
        else:
            where = _where(block, conversation)
            raise Refused(where, f"{where}: a block of type {kind!r} cannot be replayed to this provider.")
    items: list[dict] = []
    if "".join(texts):
        items.append({"type": "message", "role": "assistant",
                      "content": [{"type": "output_text", "text": "".join(texts)}]})
    return items + calls
