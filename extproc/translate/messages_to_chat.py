"""An Anthropic Messages caller, an OpenAI Chat Completions provider.

The request, field by field (C carried, H dropped and named in Notes.dropped, R refused):
  system, messages             C  leading system message + messages (messages_to_chat_turns)
  max_tokens                   C  max_completion_tokens
  temperature, top_p           C
  top_k                        H
  stop_sequences               C  stop (more than 4: R, OpenAI takes 4)
  stream                       C  stream, and stream_options.include_usage always (the usage comes last)
  metadata.user_id             C  user (opaque: hashed unless a plain id of up to 64 characters)
  tools (custom)               C  function tools: name (over 64 characters: shortened, restored in the
                                  answer), description, parameters, strict; cache_control and other tool
                                  options H; server tools (web_search_*, bash_*, ... any other `type`) R
  tool_choice                  C  auto/any/none/tool -> auto/required/none/function;
                                  disable_parallel_tool_use -> parallel_tool_calls false; without tools H
  output_config.effort         C  reasoning_effort (xhigh, max: high, noted); dropped with thinking disabled
  thinking                     C  enabled: reasoning_effort from its budget; adaptive: the model's default;
                                  disabled: none sent. display "omitted": the answer shows no thinking
  output_config.format, output_format  C  response_format json_schema (strict when the schema already
                                  meets OpenAI's strict rules)
  mcp_servers, container       R
  cache_control, context_management, service_tier, inference_geo, unknown fields  H
"""

from __future__ import annotations

from typing import Any

from .base import ANTHROPIC, OPENAI, Notes, Refused, StreamTranslation, Target
from .messages_to_chat_answer import anthropic_error, message_from
from .messages_to_chat_stream import ChatStreamAsMessages
from .messages_to_chat_turns import chat_messages
from .vocabulary import (
    REASONING_EFFORTS,
    effort_for_budget,
    note,
    opaque_user_id,
    openai_tool_name,
)

MAX_STOP = 4
_HINTS = ("top_k", "cache_control", "context_management", "service_tier", "inference_geo")
_HANDLED = frozenset({"model", "messages", "system", "max_tokens", "temperature", "top_p", "stop_sequences",
                      "stream", "metadata", "tools", "tool_choice", "thinking", "output_config", "output_format",
                      "mcp_servers", "container", *_HINTS})
_TOOL_FIELDS = frozenset({"name", "description", "input_schema", "type", "strict"})


class MessagesToChat:
    """Anthropic Messages callers, OpenAI Chat Completions providers (the module's table)."""
    caller = ANTHROPIC
    provider = OPENAI
    provider_kind = "chat"

    def request(self, body: dict, target: Target, notes: Notes) -> dict:
        return chat_request(body, target, notes)

    def response(self, body: dict, request: dict, notes: Notes | None = None) -> dict:
        return message_from(body, request, notes)

    def stream(self, request: dict, notes: Notes | None = None) -> StreamTranslation:
        return ChatStreamAsMessages(request, notes)

    def error(self, status: int, body: Any) -> tuple[int, bytes]:
        return anthropic_error(status, body)


def chat_request(body: dict, target: Target, notes: Notes) -> dict:
    """A Messages body as a Chat Completions body for `target.model`; raises Refused."""
    for name in ("mcp_servers", "container"):
        if body.get(name):
            raise Refused(name, f"{name} cannot be carried to this provider (it runs no Anthropic servers).")
    out: dict[str, Any] = {"model": target.model,
                           "messages": chat_messages(body.get("system"), body.get("messages"), notes)}
    if isinstance(body.get("max_tokens"), int):
        out["max_completion_tokens"] = body["max_tokens"]
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    _stop(body, out)
    _tools(body, out, notes)
    _reasoning(body, out, notes)
    _answer_format(body, out, notes)
    _user(body, out, notes)
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    for name in _HINTS:
        if body.get(name) is not None:
            note(notes.dropped, name)
    notes.dropped.extend(name for name in body if name not in _HANDLED)
    return out


def _stop(body: dict, out: dict[str, Any]) -> None:
    sequences = body.get("stop_sequences")
    if not sequences:
        return
    if not isinstance(sequences, list) or not all(isinstance(s, str) for s in sequences):
        raise Refused("stop_sequences", "stop_sequences must be a list of strings.")
    if len(sequences) > MAX_STOP:
        raise Refused("stop_sequences", f"This provider takes at most {MAX_STOP} stop sequences, "
                                        f"not {len(sequences)}.")
    out["stop"] = sequences


def _tools(body: dict, out: dict[str, Any], notes: Notes) -> None:
    tools = body.get("tools")
    if tools:
        out["tools"] = [_function_tool(tool, i, notes) for i, tool in enumerate(tools)]
    choice = body.get("tool_choice")
    if not isinstance(choice, dict):
        return
    if not tools:                          # OpenAI refuses a tool_choice without tools; there is none to call
        note(notes.dropped, "tool_choice:no_tools")
        return
    kind = choice.get("type")
    if kind in ("auto", "none"):
        out["tool_choice"] = kind
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "tool" and isinstance(choice.get("name"), str):
        out["tool_choice"] = {"type": "function", "function": {"name": openai_tool_name(choice["name"])}}
    else:
        raise Refused("tool_choice", f"tool_choice {choice!r} cannot be carried to this provider.")
    if choice.get("disable_parallel_tool_use") and kind != "none":
        out["parallel_tool_calls"] = False


def _function_tool(tool: Any, i: int, notes: Notes) -> dict[str, Any]:
    if not isinstance(tool, dict):
        raise Refused(f"tools[{i}]", f"tools[{i}] must be an object.")
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise Refused(f"tools[{i}].type", f"tools[{i}] is Anthropic's server tool {kind!r}, which this "
                                          "provider cannot run.")
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise Refused(f"tools[{i}].name", f"tools[{i}] has no name.")
    schema = tool.get("input_schema")
    function: dict[str, Any] = {"name": openai_tool_name(name)}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    function["parameters"] = schema if isinstance(schema, dict) else {"type": "object", "properties": {}}
    if isinstance(tool.get("strict"), bool):
        function["strict"] = tool["strict"]
    for field in tool:
        if field not in _TOOL_FIELDS:
            note(notes.dropped, "cache_control" if field == "cache_control" else f"tools[].{field}")
    return {"type": "function", "function": function}


def _reasoning(body: dict, out: dict[str, Any], notes: Notes) -> None:
    thinking = body.get("thinking") if isinstance(body.get("thinking"), dict) else {}
    config = body.get("output_config") if isinstance(body.get("output_config"), dict) else {}
    effort = config.get("effort")
    if thinking.get("type") == "disabled":
        if effort is not None:
            note(notes.dropped, "output_config.effort:thinking_disabled")
        return
    if isinstance(effort, str):
        if effort not in REASONING_EFFORTS:
            raise Refused("output_config.effort", f"output_config.effort {effort!r} is not one of "
                                                  f"{', '.join(REASONING_EFFORTS)}.")
        if REASONING_EFFORTS[effort] != effort:
            note(notes.dropped, f"output_config.effort={effort}:as_high")
        out["reasoning_effort"] = REASONING_EFFORTS[effort]
    elif thinking.get("type") == "enabled":
        out["reasoning_effort"] = effort_for_budget(thinking.get("budget_tokens"))


def _answer_format(body: dict, out: dict[str, Any], notes: Notes) -> None:
    config = body.get("output_config") if isinstance(body.get("output_config"), dict) else {}
    for field in config:
        if field not in ("effort", "format"):
            note(notes.dropped, f"output_config.{field}")
    answer_format = config.get("format") or body.get("output_format")
    if answer_format is None:
        return
    if not isinstance(answer_format, dict) or answer_format.get("type") != "json_schema" or \
            not isinstance(answer_format.get("schema"), dict):
        raise Refused("output_config.format", "Only a json_schema output format (with its schema) can be carried.")
    schema = answer_format["schema"]
    out["response_format"] = {"type": "json_schema", "json_schema": {
        "name": "structured_output", "schema": schema, "strict": meets_strict_rules(schema)}}


def meets_strict_rules(schema: Any) -> bool:
    """Whether a JSON schema already meets OpenAI's strict structured outputs (every
    object closed, every property required), so strict mode changes nothing in it."""
    if isinstance(schema, list):
        return all(meets_strict_rules(item) for item in schema)
    if not isinstance(schema, dict):
        return True
    properties = schema.get("properties")
    if schema.get("type") == "object" or isinstance(properties, dict):
        if schema.get("additionalProperties") is not False:
            return False
        if isinstance(properties, dict) and set(schema.get("required") or ()) != set(properties):
            return False
    inner: list[Any] = [schema.get("items"), schema.get("anyOf")]
    for key in ("properties", "$defs", "definitions"):
        if isinstance(schema.get(key), dict):
            inner.extend(schema[key].values())
    return all(meets_strict_rules(item) for item in inner)


def _user(body: dict, out: dict[str, Any], notes: Notes) -> None:
    metadata = body.get("metadata")
    if not isinstance(metadata, dict):
        return
    user = metadata.get("user_id")
    if isinstance(user, str) and user:
        out["user"] = opaque_user_id(user)
    if any(key != "user_id" for key in metadata):
        note(notes.dropped, "metadata")
