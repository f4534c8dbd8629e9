"""A Messages `system` and `messages` read as the conversation's system and turns, and the
conversation written as them.

Read (a caller's): blocks are the model's own vocabulary and stay as written, each placed
for refusals; thinking and redacted thinking get origin anthropic (their signatures are
Anthropic's); a system turn (Claude Code's mid-conversation instructions) holds text only (R).
A message with nothing in it makes no turn.

Written (a provider's):
  system and system turns  `system` text blocks in order (a later system turn's position is
                           lost: noted), cache_control kept
  turns                    consecutive turns of one role merged into one, as Anthropic would;
                           tool_result blocks lead their user turn (Anthropic's rule); a lone
                           plain text as a string
  image                    base64 (jpeg, png, gif, webp) or an http(s) URL; other types and
                           URLs R; OpenAI's detail left out
  document                 base64 PDF; base64 plain text as a text source; URL, text and
                           content sources; a caller's own file ids; other file types and
                           another provider's file ids R
  audio                    R (this provider takes no audio)
  thinking, redacted_thinking  Anthropic's own (origin anthropic) with their signatures;
                           others H (Anthropic takes back only its own signed thinking)
  tool_use, tool_result    as the model holds them (another provider's signature left out)
  blocks only Messages knows (search_result, ...)  as written
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from ..conversation import Block, Conversation, Notes, Refused, Turn, note
from ..vocabulary import ANTHROPIC, OPENAI

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
SYSTEM_ROLES = ("system", "developer")
_THINKING = ("thinking", "redacted_thinking")


# --- read -----------------------------------------------------------------------------

def decode_system(system: Any, conversation: Conversation) -> None:
    """Messages' `system`: a string or text blocks."""
    if system is None or system == "":
        return
    if isinstance(system, str):
        conversation.system.append({"type": "text", "text": system})
        return
    if not isinstance(system, list):
        raise Refused("system", "system must be a string or a list of text blocks.")
    for j, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise Refused(f"system[{j}]", f"system[{j}]: only text blocks can be carried.")
        conversation.places[id(block)] = f"system[{j}]"
        conversation.system.append(block)


def decode_turns(messages: Any, conversation: Conversation) -> None:
    if not isinstance(messages, list):
        raise Refused("messages", "messages must be a non-empty list.")
    places = conversation.places
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise Refused(where, f"{where} must be an object.")
        role, content = message.get("role"), message.get("content")
        if role not in ("user", "assistant", "system"):
            raise Refused(f"{where}.role", f"{where}.role must be user, assistant or system.")
        if isinstance(content, str):
            blocks: list[Block] = [{"type": "text", "text": content}] if content else []
        elif isinstance(content, list):
            blocks = [_block(block, f"{where}.content[{j}]", role, places) for j, block in enumerate(content)]
        else:
            raise Refused(f"{where}.content", f"{where}.content must be a string or a list of blocks.")
        if blocks:
            turn: Turn = {"role": role, "content": blocks}
            places[id(turn)] = where
            conversation.turns.append(turn)


def _block(block: Any, where: str, role: str, places: dict[int, str]) -> Block:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise Refused(where, f"{where} must be a block with a type.")
    kind = block["type"]
    if role == "system" and (kind != "text" or not isinstance(block.get("text"), str)):
        raise Refused(where, f"{where}: only text blocks can be carried.")
    if kind in _THINKING:
        block = {**block, "origin": ANTHROPIC}          # its signature is Anthropic's
    elif kind == "tool_result" and isinstance(block.get("content"), list):
        for k, inner in enumerate(block["content"]):
            places[id(inner)] = f"{where}.content[{k}]"
    places[id(block)] = where
    return block


# --- write ----------------------------------------------------------------------------

class _Turn:
    """One Messages turn being built: tool results are kept apart so they lead it."""
    __slots__ = ("blocks", "results", "role")

    def __init__(self, role: str) -> None:
        self.role = role
        self.results: list[Block] = []
        self.blocks: list[Block] = []

    def written(self) -> dict[str, Any]:
        content = self.results + self.blocks
        if len(content) == 1 and content[0]["type"] == "text" and len(content[0]) == 2:
            return {"role": self.role, "content": content[0]["text"]}      # a lone plain text: a string
        return {"role": self.role, "content": content}


def encode_turns(conversation: Conversation, notes: Notes) -> tuple[list[Block], list[dict[str, Any]]]:
    """The `system` blocks and the `messages` turns of the conversation."""
    system: list[Block] = list(conversation.system)
    turns: list[_Turn] = []
    for turn in conversation.turns:
        role = turn["role"]
        if role in SYSTEM_ROLES:
            if turns:
                note(notes.dropped, f"{conversation.field('turns')}[].role=system:moved_to_top")
            system.extend(turn["content"])
            continue
        written = [block for block in (_written(block, conversation, notes) for block in turn["content"]) if block]
        if not written:
            continue
        if not turns or turns[-1].role != role:
            turns.append(_Turn(role))
        for block in written:
            (turns[-1].results if block["type"] == "tool_result" else turns[-1].blocks).append(block)
    if not turns:
        field = conversation.field("turns")
        raise Refused(field, f"{field} must hold at least one user or assistant message.")
    return system, [turn.written() for turn in turns]


def _written(block: Block, conversation: Conversation, notes: Notes, outer: str | None = None) -> Block | None:
    """A block as Anthropic takes it; None for thinking it cannot take back (noted)."""
    where = conversation.places.get(id(block)) or outer or conversation.field("turns")
    kind = block.get("type")
    if kind in _THINKING:
        if block.get("origin") != ANTHROPIC:
            note(notes.dropped, conversation.field("thinking_history"))
            return None
        return {key: value for key, value in block.items() if key != "origin"}
    if kind == "image":
        return _image(block, where, conversation)
    if kind == "document":
        return _document(block, where, conversation)
    if kind == "audio":
        raise Refused(where, "Audio input cannot be carried to this provider (it takes no audio).")
    if kind == "tool_use":
        return {key: value for key, value in block.items() if key not in ("signature", "origin")}
    if kind == "tool_result":
        # Gemini's pairing name and its own response object: Anthropic takes neither.
        written = {key: value for key, value in block.items() if key not in ("name", "response")}
        if isinstance(block.get("content"), list):
            written["content"] = [_written(inner, conversation, notes, f"{where}.content[{k}]")
                                  for k, inner in enumerate(block["content"]) if isinstance(inner, dict)]
        return written
    if kind == "text" and "origin" in block:
        return {key: value for key, value in block.items() if key not in ("signature", "origin")}
    return block                    # text, and blocks only Messages knows, as written


def _image(block: Block, where: str, conversation: Conversation) -> Block:
    source = block.get("source") if isinstance(block.get("source"), dict) else {}
    kind = source.get("type")
    if kind == "base64":
        media_type = source.get("media_type")
        if media_type not in IMAGE_TYPES:
            raise Refused(where, f"{where}: images of type {media_type} cannot be carried to this provider "
                                 f"(it takes {', '.join(sorted(IMAGE_TYPES))} and application/pdf).")
    elif kind == "url":
        if not str(source.get("url")).startswith(("https://", "http://")):
            raise Refused(where, f"{where}: an image's URL must be an http(s) URL or a base64 data URL.")
    elif kind != "file" or conversation.dialect != ANTHROPIC:
        raise Refused(where, f"{where}: an image from a {kind!r} source cannot be carried to this provider "
                             "(it takes base64 data and URLs).")
    return {key: value for key, value in block.items() if key != "detail"}


def _document(block: Block, where: str, conversation: Conversation) -> Block:
    source = block.get("source") if isinstance(block.get("source"), dict) else {}
    kind = source.get("type")
    if kind == "base64":
        media_type = source.get("media_type")
        if media_type == "text/plain":
            try:
                text = base64.b64decode(str(source.get("data")), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise Refused(where, f"{where}: the file's data is not base64 UTF-8 text.") from None
            return {**block, "source": {"type": "text", "media_type": "text/plain", "data": text}}
        if media_type != "application/pdf":
            raise Refused(where, f"{where}: files of type {media_type} cannot be carried to this provider "
                                 "(it takes PDF and plain text).")
    elif kind == "file" and conversation.dialect != ANTHROPIC:
        whose = "OpenAI file ids" if conversation.dialect == OPENAI else "Another provider's file ids"
        raise Refused(where, f"{where}: {whose} mean nothing to this provider; send the file's data "
                             "(file.file_data) instead.")
    elif kind not in ("url", "text", "content", "file"):
        raise Refused(where, f"{where}: a document from a {kind!r} source cannot be carried to this provider.")
    return block


def thinking_conflict(out: dict[str, Any], json_tool: str) -> str | None:
    """What in the written request Anthropic refuses alongside thinking, if anything."""
    choice = out.get("tool_choice")
    if choice is not None and choice["type"] in ("any", "tool"):
        return "response_format" if any(t.get("name") == json_tool for t in out.get("tools", ())) \
            else "forced_tool_choice"
    if out.get("temperature", 1) != 1:
        return "temperature"
    if out.get("top_p", 1) < 0.95:
        return "top_p"
    turns = out["messages"]
    last = turns[-1] if turns else None
    if last is not None and last["role"] == "assistant":
        return "assistant_prefill"
    if last is not None and isinstance(last["content"], list) and \
            any(block["type"] == "tool_result" for block in last["content"]):
        calling = turns[-2] if len(turns) > 1 else None
        signed = calling is not None and isinstance(calling["content"], list) and \
            any(block["type"] in _THINKING for block in calling["content"])
        if not signed:                 # Anthropic needs the calling turn's own signed thinking back
            return "tool_loop_without_signed_thinking"
    return None
