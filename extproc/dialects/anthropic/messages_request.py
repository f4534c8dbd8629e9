"""A Messages request read into the conversation model (an Anthropic caller's), and the model
written as one (for an Anthropic provider). System and turns: messages_request_turns.

Read, field by field (C carried into the model, H a hint: kept in `hints` under its name,
for an encoder that takes it or names it dropped, R refused: the model has no place for it):
  system, messages             C  system blocks and turns (messages_request_turns)
  max_tokens                   C  max_output
  temperature, top_p, top_k    C
  stop_sequences               C  stop (a list of strings, else R)
  stream                       C  stream (its usage always comes)
  metadata.user_id             C  user; the rest of metadata: metadata
  tools (custom)               C  name, description, input_schema, strict, cache_control; other tool
                                  options H (named); server tools (web_search_*, bash_*, ... any other
                                  `type`) R
  tool_choice                  C  auto/any/none/tool; disable_parallel_tool_use: parallel_tool_calls false
  thinking                     C  reasoning: enabled (a budget), adaptive, disabled; display "omitted":
                                  hidden; kept whole in `raw`
  output_config.effort         C  reasoning.effort (low, medium, high, xhigh, max; another R)
  output_config.format, output_format  C  answer_format: a json_schema (strict: Anthropic holds the
                                  answer to it); another format R; other output_config fields H (named)
  mcp_servers, container       R
  cache_control, context_management, service_tier, inference_geo, unknown fields  H

Written (a chat or Responses caller's conversation):
  max_output -> max_tokens; none: target.default_max_tokens (noted in defaulted)
  temperature 0..1 (outside R), top_p 0..1, top_k; stop -> stop_sequences (whitespace-only
  entries H: the provider refuses them); candidates > 1 R
  tools: name, description, input_schema (none: an empty object schema), cache_control; strict H
  tool_choice auto/any/none/tool; parallel_tool_calls false -> disable_parallel_tool_use (not with none)
  answer_format: the tool-forcing trick, a JSON_TOOL tool with the schema, forced (`any` when the
  caller's tools may be called instead; none when a choice already forces a call); its input comes
  back as the answer's content; a schema that is not an object R; strict H
  reasoning: Anthropic's own `thinking` as written (a defaulted cap grows by its budget); an effort
  as a thinking budget (vocabulary.THINKING_BUDGETS) within max_tokens, `none` or off: none;
  H when Anthropic forbids thinking with the rest of the request (forced tool choice, the JSON
  tool, temperature != 1, top_p < 0.95, an assistant prefill, a tool loop whose calling turn has
  no signed thinking) or the caller's cap leaves no room for the least budget; summary H
  user (or a safety_identifier hint) -> metadata.user_id (opaque: hashed when not a plain id)
  stream -> stream;  metadata, verbosity, every other hint H
"""

from __future__ import annotations

from typing import Any, Callable

from ..conversation import (AnswerFormat, Conversation, Notes, Reasoning, Refused, Target, Tool, ToolChoice, note,
                           read_fields)
from .messages_request_turns import decode_system, decode_turns, encode_turns, thinking_conflict
from ..vocabulary import ANTHROPIC, MIN_THINKING_BUDGET, REASONING_EFFORTS, THINKING_BUDGETS, opaque_user_id

JSON_TOOL = "json_tool_call"

# Hints, in the order an encoder names those it drops; unknown fields follow in the caller's order.
HINTS = ("cache_control", "context_management", "service_tier", "inference_geo")
_READ = frozenset({"model", "messages", "system", "max_tokens", "temperature", "top_p", "top_k", "stop_sequences",
                   "stream", "metadata", "tools", "tool_choice", "thinking", "output_config", "output_format",
                   "mcp_servers", "container", *HINTS})
_TOOL_FIELDS = frozenset({"name", "description", "input_schema", "type", "strict", "cache_control"})
_NAMES = {"stop": "stop_sequences", "max_output": "max_tokens", "turns": "messages", "user": "metadata.user_id",
          "reasoning.effort": "output_config.effort", "answer_format": "output_config.format",
          "tools.strict": "tools[].strict"}
_ANY_OBJECT = {"type": "object", "additionalProperties": True, "properties": {}}


def json_tool_in_use(conversation: Conversation) -> bool:
    """Whether the Messages request carries the conversation's answer format as the
    JSON_TOOL tool (the tool-forcing trick), so its call is the answer's content: asked
    for JSON, and no tool choice already forces a call of the caller's tools."""
    choice = conversation.tool_choice
    return conversation.answer_format is not None and not (choice is not None and choice.mode in ("any", "tool"))


# --- read -----------------------------------------------------------------------------

def thinking_reasoning(thinking: dict, effort: str | None = None) -> Reasoning:
    """Anthropic's `thinking` object (a chat caller may write it too) as the model's reasoning."""
    kind = thinking.get("type")
    budget = thinking.get("budget_tokens")
    positive = isinstance(budget, int) and not isinstance(budget, bool) and budget > 0
    return Reasoning(enabled=kind != "disabled", effort=effort, adaptive=kind == "adaptive",
                     budget=budget if kind == "enabled" and positive else None,
                     hidden=thinking.get("display") == "omitted", raw=thinking)


def decode(body: dict, notes: Notes, whole: bool = True) -> Conversation:
    """A Messages body as the conversation; raises Refused (not when `whole` is False: then
    all but the turns, each part the model cannot hold left at its default)."""
    model = body.get("model")
    conversation = Conversation(dialect=ANTHROPIC, model=model if isinstance(model, str) else None)
    conversation.names.update(_NAMES)
    parts: list[Callable[[dict, Conversation, Notes], None]] = [_refuse_what_has_no_place, _sampling, _tools,
                                                                 _reasoning, _answer_format, _the_rest]
    read_fields(parts, whole, body, conversation, notes)
    if whole:
        decode_system(body.get("system"), conversation)
        decode_turns(body.get("messages"), conversation)
    return conversation


def _refuse_what_has_no_place(body: dict, conversation: Conversation, notes: Notes) -> None:
    for name in ("mcp_servers", "container"):
        if body.get(name):
            raise Refused(name, f"{name} cannot be carried to this provider (it runs no Anthropic servers).")


def _sampling(body: dict, conversation: Conversation, notes: Notes) -> None:
    if isinstance(body.get("max_tokens"), int) and not isinstance(body["max_tokens"], bool):
        conversation.max_output = body["max_tokens"]
    conversation.temperature, conversation.top_p = body.get("temperature"), body.get("top_p")
    conversation.top_k = body.get("top_k")
    sequences = body.get("stop_sequences")
    if sequences:
        if not isinstance(sequences, list) or not all(isinstance(s, str) for s in sequences):
            raise Refused("stop_sequences", "stop_sequences must be a list of strings.")
        conversation.stop = list(sequences)


def _tools(body: dict, conversation: Conversation, notes: Notes) -> None:
    for i, tool in enumerate(body.get("tools") or ()):
        if not isinstance(tool, dict):
            raise Refused(f"tools[{i}]", f"tools[{i}] must be an object.")
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise Refused(f"tools[{i}].type", f"tools[{i}] is Anthropic's server tool {kind!r}, which this "
                                              "provider cannot run.")
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise Refused(f"tools[{i}].name", f"tools[{i}] has no name.")
        read: Tool = {"name": tool["name"]}
        if isinstance(tool.get("description"), str):
            read["description"] = tool["description"]
        if isinstance(tool.get("input_schema"), dict):
            read["input_schema"] = tool["input_schema"]
        if isinstance(tool.get("strict"), bool):
            read["strict"] = tool["strict"]
        if isinstance(tool.get("cache_control"), dict):
            read["cache_control"] = tool["cache_control"]
        for name in tool:
            if name not in _TOOL_FIELDS:
                note(notes.dropped, f"tools[].{name}")
        conversation.tools.append(read)
    choice = body.get("tool_choice")
    if not isinstance(choice, dict):
        return
    kind = choice.get("type")
    if kind in ("auto", "any", "none"):
        conversation.tool_choice = ToolChoice(kind)
    elif kind == "tool" and isinstance(choice.get("name"), str):
        conversation.tool_choice = ToolChoice("tool", choice["name"])
    else:
        raise Refused("tool_choice", f"tool_choice {choice!r} cannot be carried to this provider.")
    if choice.get("disable_parallel_tool_use"):
        conversation.parallel_tool_calls = False


def _reasoning(body: dict, conversation: Conversation, notes: Notes) -> None:
    thinking = body.get("thinking") if isinstance(body.get("thinking"), dict) else None
    config = body.get("output_config") if isinstance(body.get("output_config"), dict) else {}
    effort = config.get("effort") if isinstance(config.get("effort"), str) else None
    disabled = thinking is not None and thinking.get("type") == "disabled"
    if effort is not None and not disabled and effort not in REASONING_EFFORTS:
        raise Refused("output_config.effort", f"output_config.effort {effort!r} is not one of "
                                              f"{', '.join(REASONING_EFFORTS)}.")
    if thinking is not None:
        conversation.reasoning = thinking_reasoning(thinking, effort)
        conversation.names["reasoning"] = "thinking"
    elif effort is not None:
        conversation.reasoning = Reasoning(effort=effort)
        conversation.names["reasoning"] = "output_config.effort"


def _answer_format(body: dict, conversation: Conversation, notes: Notes) -> None:
    config = body.get("output_config") if isinstance(body.get("output_config"), dict) else {}
    for name in config:
        if name not in ("effort", "format"):
            note(notes.dropped, f"output_config.{name}")
    answer_format = config.get("format") or body.get("output_format")
    if answer_format is None:
        return
    if config.get("format") is None:
        conversation.names["answer_format"] = "output_format"
    if not isinstance(answer_format, dict) or answer_format.get("type") != "json_schema" or \
            not isinstance(answer_format.get("schema"), dict):
        raise Refused("output_config.format", "Only a json_schema output format (with its schema) can be carried.")
    # Anthropic holds the answer to the schema: strict, as OpenAI would say.
    conversation.answer_format = AnswerFormat("json_schema", schema=answer_format["schema"], strict=True)


def _the_rest(body: dict, conversation: Conversation, notes: Notes) -> None:
    conversation.stream = conversation.include_usage = body.get("stream") is True
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        user = metadata.get("user_id")
        if isinstance(user, str) and user:
            conversation.user = user
        rest = {key: value for key, value in metadata.items() if key != "user_id"}
        if rest:
            conversation.metadata = rest
    for name in HINTS:
        if body.get(name) is not None:
            conversation.hints[name] = body[name]
    conversation.hints.update((name, value) for name, value in body.items() if name not in _READ)


# --- write ----------------------------------------------------------------------------

def encode(conversation: Conversation, target: Target, notes: Notes) -> dict:
    """The Messages body for `conversation`, for `target.model`; raises Refused."""
    if conversation.candidates != 1:
        raise Refused(conversation.field("candidates"), "This provider returns one answer per request: "
                                                        f"{conversation.field('candidates')} must be 1.")
    system, turns = encode_turns(conversation, notes)
    out: dict[str, Any] = {"model": target.model}
    if system:
        out["system"] = system
    out["messages"] = turns
    cap = conversation.max_output
    capped = isinstance(cap, int) and not isinstance(cap, bool) and cap > 0
    if not capped:
        notes.defaulted.append("max_tokens")
    out["max_tokens"] = cap if capped else target.default_max_tokens
    _write_sampling(conversation, out, notes)
    _write_tools(conversation, out, notes)
    _write_json_answer(conversation, out, notes)
    _write_reasoning(conversation, out, capped, notes)
    user = conversation.user or conversation.hints.get("safety_identifier")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": opaque_user_id(user)}
    if conversation.stream:
        out["stream"] = True
    for name in ("metadata", "verbosity"):
        if getattr(conversation, name) is not None:
            note(notes.dropped, conversation.field(name))
    for name in conversation.hints:
        if name != "safety_identifier":
            note(notes.dropped, name)
    return out


def _in_unit_range(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


def _write_sampling(conversation: Conversation, out: dict[str, Any], notes: Notes) -> None:
    temperature, top_p = conversation.temperature, conversation.top_p
    if temperature is not None:
        if not _in_unit_range(temperature):
            name = conversation.field("temperature")
            raise Refused(name, f"{name} {temperature!r} is outside this provider's range (0 to 1).")
        out["temperature"] = temperature
    if top_p is not None:
        if not _in_unit_range(top_p):
            name = conversation.field("top_p")
            raise Refused(name, f"{name} {top_p!r} is outside the range 0 to 1.")
        out["top_p"] = top_p
    if conversation.top_k is not None:
        out["top_k"] = conversation.top_k
    kept = [sequence for sequence in conversation.stop if sequence.strip()]
    if len(kept) < len(conversation.stop):
        note(notes.dropped, f"{conversation.field('stop')}:whitespace_only")     # the provider refuses them
    if kept:
        out["stop_sequences"] = kept


def _write_tools(conversation: Conversation, out: dict[str, Any], notes: Notes) -> None:
    if conversation.tools:
        out["tools"] = [_tool(tool, conversation, notes) for tool in conversation.tools]
    choice = conversation.tool_choice
    written: dict[str, Any] | None = None
    if choice is not None:
        written = {"type": choice.mode, "name": choice.name} if choice.mode == "tool" else {"type": choice.mode}
    if conversation.parallel_tool_calls is False and conversation.tools:
        written = written or {"type": "auto"}
        if written["type"] != "none":
            written["disable_parallel_tool_use"] = True
    if written is not None:
        out["tool_choice"] = written


def _tool(tool: Tool, conversation: Conversation, notes: Notes) -> dict[str, Any]:
    schema = tool.get("input_schema")
    written: dict[str, Any] = {"name": tool["name"]}
    if isinstance(tool.get("description"), str):
        written["description"] = tool["description"]
    written["input_schema"] = schema if isinstance(schema, dict) else {"type": "object", "properties": {}}
    if tool.get("strict"):
        note(notes.dropped, conversation.field("tools.strict"))
    if isinstance(tool.get("cache_control"), dict):
        written["cache_control"] = tool["cache_control"]
    return written


def _write_json_answer(conversation: Conversation, out: dict[str, Any], notes: Notes) -> None:
    """The answer format by the tool-forcing trick: one more tool whose input schema is the
    answer's, forced (or `any` when the caller's tools may be called instead); the answer
    decoders make its input the answer's content."""
    if not json_tool_in_use(conversation):
        return
    schema = _answer_schema(conversation, notes)
    tools = out.setdefault("tools", [])
    if any(tool.get("name") == JSON_TOOL for tool in tools):
        name = conversation.field("tools")
        raise Refused(name, f"A tool named {JSON_TOOL} clashes with how "
                            f"{conversation.field('answer_format')} is carried.")
    tools.append({"name": JSON_TOOL, "description": "Give the answer as this tool's input.", "input_schema": schema})
    choice = out.get("tool_choice")
    forced: dict[str, Any] = {"type": "any"} if len(tools) > 1 and (choice is None or choice["type"] == "auto") \
        else {"type": "tool", "name": JSON_TOOL}
    if choice is not None and choice.get("disable_parallel_tool_use"):
        forced["disable_parallel_tool_use"] = True
    out["tool_choice"] = forced


def _answer_schema(conversation: Conversation, notes: Notes) -> dict[str, Any]:
    answer_format = conversation.answer_format
    assert answer_format is not None
    if answer_format.kind == "json_object" or answer_format.schema is None:
        return dict(_ANY_OBJECT)
    schema = answer_format.schema
    if not isinstance(schema, dict) or schema.get("type") != "object":
        name = conversation.field("answer_format")
        raise Refused(name, f"{name}: the schema must describe an object to be carried to this provider "
                            "(it is sent as a tool's input schema).")
    if answer_format.strict:
        note(notes.dropped, conversation.field("answer_format.strict"))
    return schema


def _write_reasoning(conversation: Conversation, out: dict[str, Any], capped: bool, notes: Notes) -> None:
    """Reasoning as a thinking budget within max_tokens (the caller's cap counts reasoning,
    as OpenAI's does; a defaulted cap grows by the budget)."""
    reasoning = conversation.reasoning
    if reasoning is None:
        return
    if reasoning.summary is not None:
        note(notes.dropped, conversation.field("reasoning.summary"))
    raw = reasoning.raw
    if isinstance(raw, dict) and raw.get("type") in ("enabled", "adaptive", "disabled"):    # Anthropic's own
        out["thinking"] = raw
        budget = raw.get("budget_tokens")
        if not capped and isinstance(budget, int) and not isinstance(budget, bool) and budget > 0:
            out["max_tokens"] += budget
        return
    if not reasoning.enabled:
        return
    name = conversation.field("reasoning")
    budget = reasoning.budget
    if reasoning.effort is not None:
        budget = THINKING_BUDGETS.get(reasoning.effort)
        if budget is None:
            raise Refused(name, f"{name} {reasoning.effort!r} is not one of none, {', '.join(THINKING_BUDGETS)}.")
    elif budget is None and not reasoning.adaptive:
        return
    conflict = thinking_conflict(out, JSON_TOOL)
    if conflict:
        note(notes.dropped, f"{name}:{conflict}")
        return
    thinking: dict[str, Any]
    if budget is None:
        thinking = {"type": "adaptive"}
    elif capped:
        budget = min(budget, out["max_tokens"] - 1)
        if budget < MIN_THINKING_BUDGET:
            note(notes.dropped, f"{name}:max_tokens_below_least_budget")
            return
        thinking = {"type": "enabled", "budget_tokens": budget}
    else:
        out["max_tokens"] += budget
        thinking = {"type": "enabled", "budget_tokens": budget}
    if reasoning.hidden:
        thinking["display"] = "omitted"
    out["thinking"] = thinking
