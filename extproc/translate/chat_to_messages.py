"""An OpenAI Chat Completions caller, an Anthropic Messages provider.

The request, field by field (C carried, H dropped and named in Notes.dropped, R refused):
  messages, system/developer   C  system blocks + merged turns (chat_to_messages_turns)
  max_completion_tokens, max_tokens  C  max_tokens; neither: target.default_max_tokens (defaulted)
  temperature                  C  0..1; outside R
  top_p                        C
  stop                         C  stop_sequences (whitespace-only entries H: the provider refuses them)
  tools (function)             C  name, description, input_schema (parameters, or an empty object schema);
                                  cache_control (extension) kept; strict H; other tool types R
  tool_choice                  C  auto/required/none/function -> auto/any/none/tool; allowed_tools R
  parallel_tool_calls=false    C  disable_parallel_tool_use (not with none)
  reasoning_effort             C  thinking.budget_tokens (vocabulary.THINKING_BUDGETS), `none` off; H when
                                  Anthropic forbids thinking with the rest of the request (forced tool choice,
                                  response_format, temperature != 1, top_p < 0.95, an assistant prefill, a tool
                                  loop whose assistant turn has no signed thinking) or the caller's cap leaves
                                  no room for the 1024-token least budget
  thinking (extension)         C  as the caller wrote it
  response_format json_schema / json_object  C  the tool-forcing trick: a `json_tool_call` tool with the
                                  schema, forced; its input comes back as the answer's content (finish stop)
  user, safety_identifier      C  metadata.user_id (opaque: hashed when not a plain id)
  stream                       C  (stream_options: the caller's include_usage shapes the translated stream)
  n>1, logprobs, top_logprobs, logit_bias, audio, modalities with audio, functions, function_call,
  web_search_options           R
  presence_penalty, frequency_penalty, seed, service_tier, store, metadata, prediction,
  prompt_cache_key, prompt_cache_retention, verbosity, unknown fields  H
"""

from __future__ import annotations

from typing import Any

from .base import ANTHROPIC, OPENAI, Notes, Refused, StreamTranslation, Target
from .chat_to_messages_answer import (
    JSON_TOOL,
    chat_completion,
    openai_error,
    wants_json,
)
from .chat_to_messages_stream import AnthropicStreamAsChat
from .chat_to_messages_turns import system_and_turns
from .vocabulary import MIN_THINKING_BUDGET, THINKING_BUDGETS, note, opaque_user_id

_HINTS = ("presence_penalty", "frequency_penalty", "seed", "service_tier", "store", "metadata", "prediction",
          "prompt_cache_key", "prompt_cache_retention", "verbosity")
_HANDLED = frozenset({"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop",
                      "stream", "stream_options", "tools", "tool_choice", "parallel_tool_calls", "reasoning_effort",
                      "response_format", "user", "safety_identifier", "thinking", "n", "logprobs", "top_logprobs",
                      "logit_bias", "audio", "modalities", "functions", "function_call", "web_search_options",
                      *_HINTS})


class ChatToMessages:
    """OpenAI Chat Completions callers, Anthropic Messages providers (the module's table)."""
    caller = OPENAI
    provider = ANTHROPIC
    provider_kind = "messages"

    def request(self, body: dict, target: Target, notes: Notes) -> dict:
        return messages_request(body, target, notes)

    def response(self, body: dict, request: dict, notes: Notes | None = None) -> dict:
        return chat_completion(body, request)

    def stream(self, request: dict, notes: Notes | None = None) -> StreamTranslation:
        return AnthropicStreamAsChat(request)

    def error(self, status: int, body: Any) -> tuple[int, bytes]:
        return openai_error(status, body)


def messages_request(body: dict, target: Target, notes: Notes) -> dict:
    """A Chat Completions body as a Messages body for `target.model`; raises Refused."""
    _refuse_what_cannot_be_carried(body)
    system, turns = system_and_turns(body.get("messages"), notes)
    out: dict[str, Any] = {"model": target.model}
    if system:
        out["system"] = system
    out["messages"] = turns
    cap = _positive(body.get("max_completion_tokens")) or _positive(body.get("max_tokens"))
    if cap is None:
        notes.defaulted.append("max_tokens")
    out["max_tokens"] = cap or target.default_max_tokens
    _sampling(body, out, notes)
    _tools(body, out, notes)
    _json_answer(body, out, notes)
    _reasoning(body, out, cap is not None, notes)
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": opaque_user_id(user)}
    if body.get("stream"):
        out["stream"] = True
    for name in _HINTS:
        if body.get(name) is not None:
            notes.dropped.append(name)
    notes.dropped.extend(name for name in body if name not in _HANDLED)
    return out


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _refuse_what_cannot_be_carried(body: dict) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise Refused("n", "This provider returns one answer per request: n must be 1.")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise Refused("logprobs" if body.get("logprobs") else "top_logprobs",
                      "This provider does not return log probabilities.")
    if body.get("logit_bias"):
        raise Refused("logit_bias", "This provider cannot bias tokens: logit_bias cannot be carried.")
    if body.get("audio") is not None or "audio" in (body.get("modalities") or ()):
        raise Refused("audio" if body.get("audio") is not None else "modalities",
                      "This provider does not answer with audio.")
    for name in ("functions", "function_call"):
        if body.get(name) is not None:
            raise Refused(name, f"{name} (deprecated function calling) cannot be carried; use tools and tool_choice.")
    if body.get("web_search_options") is not None:
        raise Refused("web_search_options", "Web search cannot be carried to this provider.")


def _sampling(body: dict, out: dict[str, Any], notes: Notes) -> None:
    temperature = body.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not 0 <= temperature <= 1:
            raise Refused("temperature", f"temperature {temperature!r} is outside this provider's range (0 to 1).")
        out["temperature"] = temperature
    top_p = body.get("top_p")
    if top_p is not None:
        if not isinstance(top_p, (int, float)) or isinstance(top_p, bool) or not 0 <= top_p <= 1:
            raise Refused("top_p", f"top_p {top_p!r} is outside the range 0 to 1.")
        out["top_p"] = top_p
    stop = body.get("stop")
    sequences = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    kept = [s for s in sequences if isinstance(s, str) and s.strip()]
    if len(kept) < len(sequences):
        notes.dropped.append("stop:whitespace_only")          # the provider refuses them
    if kept:
        out["stop_sequences"] = kept


def _tools(body: dict, out: dict[str, Any], notes: Notes) -> None:
    tools = body.get("tools")
    if tools:
        out["tools"] = [_tool(tool, i, notes) for i, tool in enumerate(tools)]
    choice = _tool_choice(body.get("tool_choice"))
    if body.get("parallel_tool_calls") is False and tools:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    if choice is not None:
        out["tool_choice"] = choice


def _tool(tool: Any, i: int, notes: Notes) -> dict[str, Any]:
    function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        kind = tool.get("type") if isinstance(tool, dict) else None
        raise Refused(f"tools[{i}]", f"tools[{i}]: only function tools can be carried to this provider "
                                     f"(not {kind!r}).")
    schema = function.get("parameters")
    written: dict[str, Any] = {"name": function["name"]}
    if isinstance(function.get("description"), str):
        written["description"] = function["description"]
    written["input_schema"] = schema if isinstance(schema, dict) else {"type": "object", "properties": {}}
    if function.get("strict"):
        note(notes.dropped, "tools[].function.strict")
    if isinstance(tool.get("cache_control"), dict):
        written["cache_control"] = tool["cache_control"]
    return written


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("function"), dict):
        return {"type": "tool", "name": choice["function"].get("name")}
    raise Refused("tool_choice", f"tool_choice {choice!r} cannot be carried to this provider.")


def _json_answer(body: dict, out: dict[str, Any], notes: Notes) -> None:
    """response_format json_schema/json_object by the tool-forcing trick: one more tool
    whose input schema is the answer's, forced (or `any` when the caller's tools may be
    called instead); chat_to_messages_answer makes its input the answer's content."""
    if not wants_json(body):
        return
    choice = out.get("tool_choice")
    if choice is not None and choice["type"] in ("any", "tool"):
        return                                  # the answer is a call of the caller's tools: no content to shape
    schema = _answer_schema(body["response_format"], notes)
    tools = out.setdefault("tools", [])
    if any(tool.get("name") == JSON_TOOL for tool in tools):
        raise Refused("tools", f"A tool named {JSON_TOOL} clashes with how response_format is carried.")
    tools.append({"name": JSON_TOOL, "description": "Give the answer as this tool's input.", "input_schema": schema})
    forced: dict[str, Any] = {"type": "any"} if len(tools) > 1 and (choice is None or choice["type"] == "auto") \
        else {"type": "tool", "name": JSON_TOOL}
    if choice is not None and choice.get("disable_parallel_tool_use"):
        forced["disable_parallel_tool_use"] = True
    out["tool_choice"] = forced


def _answer_schema(response_format: dict[str, Any], notes: Notes) -> dict[str, Any]:
    if response_format.get("type") == "json_object":
        return {"type": "object", "additionalProperties": True, "properties": {}}
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if schema is None:
        return {"type": "object", "additionalProperties": True, "properties": {}}
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise Refused("response_format", "response_format.json_schema.schema must describe an object to be "
                                         "carried to this provider (it is sent as a tool's input schema).")
    if spec.get("strict"):
        notes.dropped.append("response_format.json_schema.strict")
    return schema


def _reasoning(body: dict, out: dict[str, Any], capped: bool, notes: Notes) -> None:
    """reasoning_effort as a thinking budget within max_tokens (the caller's cap counts
    reasoning, as OpenAI's does; a defaulted cap grows by the budget)."""
    if isinstance(body.get("thinking"), dict):                 # the caller wrote Anthropic's own field
        out["thinking"] = body["thinking"]
        budget = body["thinking"].get("budget_tokens")
        if not capped and isinstance(budget, int) and not isinstance(budget, bool) and budget > 0:
            out["max_tokens"] += budget
        return
    effort = body.get("reasoning_effort")
    if effort is None or effort == "none":
        return
    budget = THINKING_BUDGETS.get(effort)
    if budget is None:
        raise Refused("reasoning_effort", f"reasoning_effort {effort!r} is not one of "
                                          f"none, {', '.join(THINKING_BUDGETS)}.")
    conflict = _thinking_conflict(out)
    if conflict:
        notes.dropped.append(f"reasoning_effort:{conflict}")
        return
    if capped:
        budget = min(budget, out["max_tokens"] - 1)
        if budget < MIN_THINKING_BUDGET:
            notes.dropped.append("reasoning_effort:max_tokens_below_least_budget")
            return
    else:
        out["max_tokens"] += budget
    out["thinking"] = {"type": "enabled", "budget_tokens": budget}


def _thinking_conflict(out: dict[str, Any]) -> str | None:
    """What in the request Anthropic refuses alongside thinking, if anything."""
    choice = out.get("tool_choice")
    if choice is not None and choice["type"] in ("any", "tool"):
        return "response_format" if any(t.get("name") == JSON_TOOL for t in out.get("tools", ())) \
            else "forced_tool_choice"
    if out.get("temperature", 1) != 1:
        return "temperature"
    if out.get("top_p", 1) < 0.95:
        return "top_p"
    last = out["messages"][-1] if out["messages"] else None
    if last is not None and last["role"] == "assistant":
        return "assistant_prefill"
    if last is not None and isinstance(last["content"], list) and \
            any(block["type"] == "tool_result" for block in last["content"]):
        return "tool_loop_without_signed_thinking"
    return None

