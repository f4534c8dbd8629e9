"""A conversation's system, turns and content blocks written as Converse's `system` and
`messages`, and what they depend on: whose model a Bedrock id names (the vendor), and the
names and ids Bedrock takes.

  system, system turns      system [{text}] (a later system turn's place is lost: noted)
  turns                     messages, one role's consecutive turns merged (Bedrock wants them to
                            alternate, from a user turn: one that starts with the assistant R);
                            tool results lead their user turn; blank texts left out (Bedrock
                            refuses them)
  image                     {image: {format, source: {bytes}}} from base64 png, jpeg, gif, webp;
                            by URL R (Bedrock takes bytes only), other types R
  document                  {document: {format, name, source: {bytes}}} from base64 (pdf, csv, doc,
                            docx, xls, xlsx, html, txt, md) or text; its name from its title, made
                            unique; URL, file id and content sources R; citations H
  audio, unknown blocks     R
  tool_use, tool_result     toolUse (a name over 64 characters shortened as for OpenAI), toolResult
                            (text, json: a Gemini caller's response object, image, document);
                            is_error as status "error" for Claude and Nova, H for other models; ids
                            outside Bedrock's pattern replaced by a stable hash, calls and results alike
  thinking                  Anthropic's signed thinking (origin "anthropic") as reasoningContent
                            with its signature, redacted thinking as redactedContent, for Claude
                            only; all other thinking H (thinking_history)
  cache_control             a cachePoint (its ttl, 5m or 1h, kept) after the block, system text or
                            tool (Claude and Nova); H for other models
(C carried, H dropped and named in Notes.dropped, R refused naming the caller's field.)
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any, Mapping

from ..conversation import Block, Conversation, Notes, Refused, note
from ..vocabulary import ANTHROPIC, openai_tool_name

# A Bedrock model id: an optional geography of a cross-region profile, the vendor, its model.
_MODEL_ID = re.compile(r"(?:(?:us|eu|apac|ap|jp|au|ca|us-gov|global)\.)?(?P<vendor>[a-z][a-z0-9]*)\.[a-z0-9][\w.:-]*")
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")              # a tool's name
_TOOL_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")        # a call's id
_DOC_NAME_OFF = re.compile(r"[^A-Za-z0-9\-()\[\]]+")
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}
DOCUMENT_FORMATS = {"application/pdf": "pdf", "text/csv": "csv", "application/msword": "doc", "text/html": "html",
                    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
                    "application/vnd.ms-excel": "xls", "text/plain": "txt", "text/markdown": "md",
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx"}
_STATUS_VENDORS = frozenset({"anthropic", "amazon"})      # models that read a toolResult's status
_CACHING_VENDORS = frozenset({"anthropic", "amazon"})     # models that take cachePoint blocks
ANY_OBJECT = {"type": "object", "properties": {}}


def vendor_of(model: str) -> str:
    """Whose model a Bedrock id (or an inference profile's ARN) names: "anthropic", "amazon", ..."""
    match = _MODEL_ID.fullmatch(model.rsplit("/", 1)[-1])
    return match["vendor"] if match else ""


def tool_id(value: Any) -> str:
    """A call's id as Bedrock takes it ([A-Za-z0-9_.:-], at most 64): another one by a stable hash."""
    text = str(value or "")
    return text if _TOOL_ID.fullmatch(text) else "tooluse_" + hashlib.sha256(text.encode()).hexdigest()[:32]


class Writer:
    """One request's turns and blocks being written for `vendor`'s model."""

    def __init__(self, conversation: Conversation, notes: Notes, vendor: str) -> None:
        self.conversation, self.notes, self.vendor = conversation, notes, vendor
        self.claude = vendor == ANTHROPIC
        self.documents: set[str] = set()

    def turns(self) -> tuple[list[dict], list[dict]]:
        conversation = self.conversation
        system = [part for block in conversation.system for part in self.cached(block, self.text(block))]
        turns: list[list] = []                    # [role, tool results, other blocks]
        for turn in conversation.turns:
            role = turn["role"]
            if role in ("system", "developer"):
                if turns:
                    note(self.notes.dropped, f"{conversation.field('turns')}[].role=system:moved_to_top")
                system.extend(part for block in turn["content"] for part in self.cached(block, self.text(block)))
                continue
            written = [(block, self.block(block)) for block in turn["content"]]
            if not any(parts for _, parts in written):
                continue
            if not turns or turns[-1][0] != role:
                turns.append([role, [], []])
            for block, parts in written:
                turns[-1][1 if block.get("type") == "tool_result" else 2].extend(self.cached(block, parts))
        if not turns or turns[0][0] != "user":
            name = conversation.field("turns")
            raise Refused(name, f"{name} must begin with a user message: Bedrock takes no conversation that "
                                "starts with the assistant.")
        return system, [{"role": role, "content": results + blocks} for role, results, blocks in turns]

    def cached(self, block: Mapping[str, Any], parts: list[dict]) -> list[dict]:
        """The block's parts, and a cache point after them when it is a cache breakpoint."""
        if not parts or not isinstance(block.get("cache_control"), dict):
            return parts
        if self.vendor not in _CACHING_VENDORS:
            note(self.notes.dropped, "cache_control")
            return parts
        point: dict[str, Any] = {"type": "default"}
        if block["cache_control"].get("ttl") in ("5m", "1h"):
            point["ttl"] = block["cache_control"]["ttl"]
        return [*parts, {"cachePoint": point}]

    def text(self, block: Block) -> list[dict]:
        text = block.get("text")
        return [{"text": text}] if block.get("type") == "text" and isinstance(text, str) and text.strip() else []

    def block(self, block: Block) -> list[dict]:
        kind, where = block.get("type"), self.conversation.place(block)
        if kind == "text":
            return self.text(block)
        if kind == "image":
            return [{"image": self.image(block, where)}]
        if kind == "document":
            return [{"document": self.document(block, where)}]
        if kind == "tool_use":
            return [{"toolUse": {"toolUseId": tool_id(block.get("id")), "name": openai_tool_name(str(block.get("name"))),
                                 "input": block.get("input") if isinstance(block.get("input"), dict) else {}}}]
        if kind == "tool_result":
            return [{"toolResult": self.tool_result(block, where)}]
        if kind in ("thinking", "redacted_thinking"):
            return self.reasoning(block)
        what = "Audio" if kind == "audio" else f"A block of type {kind!r}"
        raise Refused(where, f"{where}: {what} cannot be carried to this provider.")

    def image(self, block: Block, where: str) -> dict:
        source = block.get("source")
        source = source if isinstance(source, dict) else {}
        if source.get("type") == "url":
            raise Refused(where, f"{where}: Bedrock takes images as bytes only, not by URL "
                                 f"({str(source.get('url'))[:80]}); send the image as base64 data.")
        image_format = IMAGE_FORMATS.get(str(source.get("media_type")))
        if source.get("type") != "base64" or image_format is None:
            raise Refused(where, f"{where}: only base64 images of type {', '.join(IMAGE_FORMATS)} can be "
                                 "carried to this provider.")
        return {"format": image_format, "source": {"bytes": source.get("data", "")}}

    def document(self, block: Block, where: str) -> dict:
        source = block.get("source")
        source = source if isinstance(source, dict) else {}
        kind, media_type = source.get("type"), str(source.get("media_type", "text/plain"))
        if kind == "text":
            data, doc_format = base64.b64encode(str(source.get("data", "")).encode()).decode(), "txt"
        elif kind == "base64" and media_type in DOCUMENT_FORMATS:
            data, doc_format = str(source.get("data", "")), DOCUMENT_FORMATS[media_type]
        else:
            what = f"a {media_type} file" if kind == "base64" else f"a document from a {kind!r} source"
            raise Refused(where, f"{where}: {what} cannot be carried to this provider (Bedrock takes a "
                                 "document's bytes, of type " + ", ".join(sorted(set(DOCUMENT_FORMATS.values()))) + ").")
        if block.get("citations"):
            note(self.notes.dropped, "citations")
        # Bedrock's names: letters, digits, single spaces, hyphens, brackets; unique in a request.
        name = _DOC_NAME_OFF.sub(" ", str(block.get("title") or "")).strip()[:100].strip() or "document"
        base, number = name, 1
        while name in self.documents:
            number += 1
            name = f"{base} {number}"
        self.documents.add(name)
        return {"format": doc_format, "name": name, "source": {"bytes": data}}

    def tool_result(self, block: Block, where: str) -> dict:
        content, parts = block.get("content"), []
        if isinstance(block.get("response"), dict):
            parts.append({"json": block["response"]})          # a Gemini caller's response object, as written
        elif isinstance(content, str) and content.strip():
            parts.append({"text": content})
        elif isinstance(content, list):
            for k, inner in enumerate(content):
                at = self.conversation.places.get(id(inner)) or f"{where}.content[{k}]"
                kind = inner.get("type") if isinstance(inner, dict) else None
                if kind == "text":
                    parts.extend(self.text(inner))
                elif kind in ("image", "document"):
                    parts.append({kind: self.image(inner, at) if kind == "image" else self.document(inner, at)})
                else:
                    raise Refused(at, f"{at}: a tool result holding {kind!r} cannot be carried to this provider.")
        result: dict[str, Any] = {"toolUseId": tool_id(block.get("tool_use_id")), "content": parts}
        if block.get("is_error"):
            if self.vendor in _STATUS_VENDORS:
                result["status"] = "error"
            else:
                note(self.notes.dropped, "tool_result.is_error")
        return result

    def reasoning(self, block: Block) -> list[dict]:
        """Claude's own thinking back to Claude, signed; any other thinking noted dropped."""
        if self.claude and block.get("origin") == ANTHROPIC:
            if block.get("type") == "redacted_thinking" and block.get("data"):
                return [{"reasoningContent": {"redactedContent": block["data"]}}]
            if block.get("type") == "thinking" and block.get("signature"):
                return [{"reasoningContent": {"reasoningText": {"text": block.get("thinking") or "",
                                                                "signature": block["signature"]}}}]
        note(self.notes.dropped, self.conversation.field("thinking_history"))
        return []
