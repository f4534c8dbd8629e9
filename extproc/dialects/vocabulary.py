"""What several dialects' codecs share: the dialects' names, how an effort and a thinking
budget convert, how usage is written in OpenAI's and Anthropic's words, who the caller is
(an opaque user id), and the tool names OpenAI accepts. One copy, so a rule reads the
same in every codec that applies it.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from ..api import openai as openai_api
from ..api.usage import Usage

# The dialects' names (Dialect.name): what a block's `origin` and a Conversation's
# `dialect` hold, for a codec that asks whose a signature, a file id or a field is.
ANTHROPIC, OPENAI, OPENAI_RESPONSES = "anthropic", "openai", "openai-responses"

# reasoning_effort -> thinking.budget_tokens. Anthropic's least budget is 1024, so
# `minimal` gets that too; `none` turns thinking off.
MIN_THINKING_BUDGET = 1024
THINKING_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 2048, "high": 4096, "xhigh": 8192, "max": 16384}

# Anthropic output_config.effort -> reasoning_effort. `xhigh` and `max` exist on few
# OpenAI models and others refuse them, so they read as `high` (noted).
REASONING_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}


def effort_for_budget(budget: Any) -> str:
    """The reasoning_effort nearest a thinking budget (the inverse of THINKING_BUDGETS)."""
    if not isinstance(budget, int) or isinstance(budget, bool):
        return "medium"
    return "high" if budget >= 4096 else "medium" if budget >= 2048 else "low"


# --- usage ----------------------------------------------------------------------------

def openai_usage(usage: Usage) -> dict[str, Any]:
    """Usage as Chat Completions writes it: prompt_tokens counts cache reads and writes;
    cache writes also under prompt_tokens_details.cache_creation_tokens (LiteLLM's and
    Envoy AI Gateway's name) so a reader can price them."""
    prompt_details: dict[str, int] = {"cached_tokens": usage.cached_tokens}
    if usage.cache_write_tokens:
        prompt_details["cache_creation_tokens"] = usage.cache_write_tokens
    return {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens, "prompt_tokens_details": prompt_details,
            "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens}}


def anthropic_usage(usage: Usage) -> dict[str, Any]:
    """Usage as Messages writes it: input_tokens leaves out cache reads and writes."""
    fresh = usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens
    written: dict[str, Any] = {"input_tokens": max(0, fresh),
                               "cache_creation_input_tokens": usage.cache_write_tokens,
                               "cache_read_input_tokens": usage.cached_tokens, "output_tokens": usage.output_tokens}
    if usage.reasoning_tokens:
        written["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}
    return written


def with_cost(usage: dict[str, Any], cost_usd: float | None) -> dict[str, Any]:
    """A translated stream's usage with the call's cost (`cost_usd`, USD), as the gateway
    adds it to the usage of the streams it reads in the caller's own dialect."""
    if cost_usd is not None:
        usage["cost_usd"] = cost_usd
    return usage


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from_openai(obj: Any) -> Usage | None:
    """A Chat Completions `usage`, with the cache writes OpenAI-compatible servers report
    (prompt_tokens_details.cache_creation_tokens or cache_write_tokens, or LiteLLM's
    top-level cache_creation_input_tokens); OpenAI itself reports none."""
    usage = openai_api.usage_from(obj)
    if usage is None:
        return None
    details = obj.get("prompt_tokens_details")
    if isinstance(details, dict):
        usage.cache_write_tokens = _count(details.get("cache_creation_tokens")) or \
            _count(details.get("cache_write_tokens"))
    if not usage.cache_write_tokens:
        usage.cache_write_tokens = _count(obj.get("cache_creation_input_tokens"))
    return usage


# --- who the caller is ----------------------------------------------------------------

_PLAIN_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_PHONE_LIKE = re.compile(r"\+?[0-9]{7,15}")


def opaque_user_id(value: str) -> str:
    """A caller's user id as both providers ask for it: an opaque identifier. A plain
    short id passes as it is; anything else (an email, a phone number, Claude Code's
    JSON of device and session ids, a long value) is replaced by its SHA-256 in hex,
    which still tells the provider's abuse checks one user from another."""
    if _PLAIN_ID.fullmatch(value) and not _PHONE_LIKE.fullmatch(value):
        return value
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


# --- tool names -----------------------------------------------------------------------

MAX_OPENAI_TOOL_NAME = 64


def openai_tool_name(name: str) -> str:
    """A tool's name within OpenAI's 64 characters: a longer one is cut to 55 and ends
    with `_` and 8 hex digits of its SHA-256, so names sharing a prefix stay apart
    (`restored_tool_names` maps them back)."""
    if len(name) <= MAX_OPENAI_TOOL_NAME:
        return name
    return name[:55] + "_" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def restored_names(conversation: Any) -> dict[str, str]:
    """{name sent to OpenAI: the caller's name} for a Conversation's tools whose names
    were shortened (openai_tool_name); empty for most requests."""
    return {openai_tool_name(tool["name"]): tool["name"] for tool in conversation.tools
            if isinstance(tool.get("name"), str) and len(tool["name"]) > MAX_OPENAI_TOOL_NAME}
