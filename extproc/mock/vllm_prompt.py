"""What a simulated vLLM replica makes of a request's text: the prompt rendered as a chat
template would, its tokens, and the deterministic answer it streams.

The chat rendering follows Llama 3's template without its date lines:
    <|begin_of_text|>
    [<|start_header_id|>system<|end_header_id|>\\n\\nTools: {tools as JSON}<|eot_id|>]
    then per message: <|start_header_id|>{role}<|end_header_id|>\\n\\n{text}<|eot_id|>
    then <|start_header_id|>assistant<|end_header_id|>\\n\\n
where a message's text is its content's text parts joined, then its tool calls as JSON.
The tokens are o200k_base's (the gateway's own tokenizer, toktok: ~150 µs for 15 KB),
not Llama's: counts differ from a real Llama by some percent, prefixes behave the same
(a shared leading text gives the same leading tokens, so the same blocks).

The answer echoes the last user text (chat) or the prompt (completions) word by word,
cycled to exactly the output length; each word is one simulated token.
"""

from __future__ import annotations

import orjson

from ..api.tokens import token_ids
from .echo import words
from .openai import last_user_text

BEGIN, HEADER, END_HEADER, EOT = "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>"
FILLER = " ok"          # the answer's word when there is nothing to echo


def _text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content
                       if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def render_chat(body: dict) -> str:
    parts = [BEGIN]
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        parts.append(f"{HEADER}system{END_HEADER}Tools: {orjson.dumps(tools, option=orjson.OPT_SORT_KEYS).decode()}"
                     f"{EOT}")
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        role = message.get("role") if isinstance(message.get("role"), str) else "user"
        text = _text(message.get("content"))
        if message.get("tool_calls"):
            text += orjson.dumps(message["tool_calls"], option=orjson.OPT_SORT_KEYS).decode()
        parts.append(f"{HEADER}{role}{END_HEADER}{text}{EOT}")
    parts.append(f"{HEADER}assistant{END_HEADER}")
    return "".join(parts)


def prompt_token_ids(kind: str, body: dict) -> list[int] | None:
    """The prompt's tokens; None when the request has no prompt vLLM would take."""
    if kind == "chat":
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return None
        return token_ids(render_chat(body))
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and all(type(i) is int for i in prompt):
        return list(prompt)                     # token ids, as given
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        prompt = prompt[0]                      # (a batch: the first prompt only)
    if not isinstance(prompt, str) or not prompt:
        return None
    return token_ids(prompt)


def answer_pieces(kind: str, body: dict, count: int) -> list[str]:
    """`count` pieces (one a simulated token): the echo's words, cycled."""
    text = last_user_text(kind, body) if kind == "chat" else _text(body.get("prompt"))
    echo = [" " + word.strip() for word in words(text) if word.strip()] or [FILLER]
    pieces = [echo[i % len(echo)] for i in range(count)]
    if pieces:
        pieces[0] = pieces[0].lstrip()
    return pieces
