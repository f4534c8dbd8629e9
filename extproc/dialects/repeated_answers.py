"""Loop stopping's other half (stages/runs/limits.py): the model answering the same text
over and over while the agent asks again. An agent resends its history every call, so the
request says it: its last assistant text answer, and how many of its latest assistant
turns in a row gave that same text (the turns between them the agent's or the user's).
An assistant turn that calls a tool, or gives another text, ends the count.

Each function returns (text, times), or ("", 0) when the last assistant turn is not a
plain text answer. At most MAX_TURNS turns are read, from the end."""

from __future__ import annotations

MAX_TURNS = 512
_NONE = ("", 0)


def _count(texts) -> tuple[str, int]:
    """`texts` yields, from the last turn back, the assistant turns' text (None: not a
    plain text answer) and skips the others."""
    first, times = "", 0
    for text in texts:
        if not text or (times and text != first):
            break
        first, times = text, times + 1
    return (first, times) if times else _NONE


_SKIPPED = ("thinking", "redacted_thinking", "reasoning")     # an answer's reasoning is not its text


def _joined(parts: list, kinds: tuple[str, ...]) -> str | None:
    """The text of an answer's parts when every part is text (or reasoning), else None."""
    texts = []
    for part in parts:
        if not isinstance(part, dict):
            return None
        kind = part.get("type")
        if kind in _SKIPPED:
            continue
        if kind not in kinds or not isinstance(part.get("text"), str):
            return None
        texts.append(part["text"])
    return "".join(texts)


def _chat_texts(messages: list):
    for message in messages[::-1][:MAX_TURNS]:
        if not isinstance(message, dict):
            return
        role = message.get("role")
        if role == "user":
            continue
        if role != "assistant" or message.get("tool_calls") or message.get("function_call"):
            yield None
            return
        content = message.get("content")
        yield content if isinstance(content, str) else _joined(content, ("text",)) \
            if isinstance(content, list) else None


def chat_repeated_answer(body: dict) -> tuple[str, int]:
    messages = body.get("messages")
    return _count(_chat_texts(messages)) if isinstance(messages, list) else _NONE


def _responses_texts(items: list):
    for item in items[::-1][:MAX_TURNS]:
        if isinstance(item, str):
            continue
        if not isinstance(item, dict):
            return
        role = item.get("role")
        if role == "user" and item.get("type", "message") == "message":
            continue
        if role != "assistant" or item.get("type", "message") != "message":
            yield None
            return
        content = item.get("content")
        yield content if isinstance(content, str) else _joined(content, ("output_text", "text")) \
            if isinstance(content, list) else None


def responses_repeated_answer(body: dict) -> tuple[str, int]:
    items = body.get("input")
    return _count(_responses_texts(items)) if isinstance(items, list) else _NONE


def messages_repeated_answer(body: dict) -> tuple[str, int]:
    messages = body.get("messages")
    return _count(_chat_texts(messages)) if isinstance(messages, list) else _NONE


def _gemini_texts(contents: list):
    for content in contents[::-1][:MAX_TURNS]:
        if not isinstance(content, dict):
            return
        role = content.get("role", "user")
        if role == "user":
            continue
        parts = content.get("parts")
        if role != "model" or not isinstance(parts, list) or not parts:
            yield None
            return
        texts = [part.get("text") for part in parts if isinstance(part, dict) and not part.get("thought")]
        yield "".join(texts) if texts and all(isinstance(text, str) for text in texts) else None


def gemini_repeated_answer(body: dict) -> tuple[str, int]:
    contents = body.get("contents")
    return _count(_gemini_texts(contents)) if isinstance(contents, list) else _NONE
