"""A Chat Completions request read into the conversation model (a chat caller's), and the
model written as one (for a chat provider). Its messages are read as turns in
chat_request_turns, and turns written as messages in chat_request_messages.

Read, field by field (C carried into the model, H a hint: kept in `hints` under its name,
for an encoder that takes it or names it dropped, R refused: the model has no place for it):
  messages                      C  turns (chat_request_turns)
  max_completion_tokens, max_tokens  C  max_output (the first positive one)
  temperature, top_p            C
  stop                          C  a string or a list of strings
  n                             C  candidates (an encoder that gives one answer refuses more)
  tools (function)              C  name, description, input_schema (parameters), strict; cache_control
                                   (extension) kept; other tool types R
  tool_choice                   C  auto/required/none/function -> auto/any/none/tool; allowed_tools R
  parallel_tool_calls           C
  reasoning_effort              C  reasoning: an effort, `none` off; another word R
  thinking (extension)          C  reasoning as Anthropic's `thinking` says it (kept whole in `raw`)
  response_format               C  answer_format (json_schema, json_object); text: none
  verbosity, user, metadata     C
  stream, stream_options        C  stream, include_usage
  logprobs, top_logprobs, logit_bias, audio, modalities with audio, functions, function_call,
  web_search_options            R
  presence_penalty, frequency_penalty, seed, service_tier, store, prediction, prompt_cache_key,
  prompt_cache_retention, safety_identifier, unknown fields  H

Written (a Messages or Responses caller's conversation):
  max_output -> max_completion_tokens; temperature, top_p; stop (more than 4: R, OpenAI takes 4);
  top_k H; candidates > 1 R; tools as function tools (names over 64 characters shortened,
  restored in the answer; cache_control H); tool_choice (without tools H: OpenAI refuses it);
  parallel_tool_calls false; reasoning -> reasoning_effort (a budget: the nearest effort; an
  effort in Anthropic's words: xhigh and max as high, noted; thinking disabled: none sent, an
  effort with it H); answer_format -> response_format (strict only when the schema already
  meets OpenAI's strict rules); user -> user (opaque); metadata H; stream -> stream and
  stream_options.include_usage always (the usage comes last); every hint H.
"""

from __future__ import annotations

from typing import Any, Callable

from .chat_request_messages import encode_messages
from .chat_request_turns import decode_turns
from ..anthropic.messages_request import thinking_reasoning
from ..conversation import (AnswerFormat, Conversation, Notes, Reasoning, Refused, Target, Tool, ToolChoice, note,
                           read_fields)
from ..vocabulary import (
    OPENAI,
    REASONING_EFFORTS,
    THINKING_BUDGETS,
    effort_for_budget,
    opaque_user_id,
    openai_tool_name,
)

MAX_STOP = 4
EFFORTS = ("none", *THINKING_BUDGETS)
# Hints, in the order an encoder names those it drops; unknown fields follow in the caller's order.
HINTS = ("presence_penalty", "frequency_penalty", "seed", "service_tier", "store", "prediction",
         "prompt_cache_key", "prompt_cache_retention", "safety_identifier")
_READ = frozenset({"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "n",
                   "stream", "stream_options", "tools", "tool_choice", "parallel_tool_calls", "reasoning_effort",
                   "thinking", "response_format", "verbosity", "user", "metadata", "logprobs", "top_logprobs",
                   "logit_bias", "audio", "modalities", "functions", "function_call", "web_search_options", *HINTS})
_NAMES = {"stop": "stop", "candidates": "n", "tools.strict": "tools[].function.strict",
          "reasoning.effort": "reasoning_effort", "answer_format": "response_format",
          "answer_format.strict": "response_format.json_schema.strict", "turns": "messages",
          "thinking_history": "messages[].reasoning_content"}


# --- read -----------------------------------------------------------------------------

def decode(body: dict, notes: Notes, whole: bool = True) -> Conversation:
    """A Chat Completions body as the conversation; raises Refused (not when `whole` is
    False: then all but the turns, each part the model cannot hold left at its default)."""
    conversation = Conversation(dialect=OPENAI, model=body.get("model") if isinstance(body.get("model"), str) else None)
    conversation.names.update(_NAMES)
    parts: list[Callable[[dict, Conversation], None]] = [_refuse_what_has_no_place, _sampling, _tools,
                                                          _reasoning, _answer_format, _the_rest]
    read_fields(parts, whole, body, conversation)
    if whole:
        decode_turns(body.get("messages"), conversation, notes)
    return conversation


def _refuse_what_has_no_place(body: dict, conversation: Conversation) -> None:
    n = body.get("n")
    if n is not None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise Refused("n", "n must be a positive integer.")
        conversation.candidates = n
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


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _sampling(body: dict, conversation: Conversation) -> None:
    for name in ("max_completion_tokens", "max_tokens"):
        if _positive(body.get(name)):
            conversation.max_output, conversation.names["max_output"] = body[name], name
            break
    conversation.temperature, conversation.top_p = body.get("temperature"), body.get("top_p")
    stop = body.get("stop")
    sequences = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    if stop is not None and (not isinstance(stop, (str, list)) or not all(isinstance(s, str) for s in sequences)):
        raise Refused("stop", "stop must be a string or a list of strings.")
    conversation.stop = sequences


def _tools(body: dict, conversation: Conversation) -> None:
    for i, tool in enumerate(body.get("tools") or ()):
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise Refused(f"tools[{i}]", f"tools[{i}]: only function tools can be carried to this provider "
                                         f"(not {kind!r}).")
        read: Tool = {"name": function["name"]}
        if isinstance(function.get("description"), str):
            read["description"] = function["description"]
        if isinstance(function.get("parameters"), dict):
            read["input_schema"] = function["parameters"]
        if isinstance(function.get("strict"), bool):
            read["strict"] = function["strict"]
        if isinstance(tool.get("cache_control"), dict):
            read["cache_control"] = tool["cache_control"]
        conversation.tools.append(read)
    conversation.tool_choice = _tool_choice(body.get("tool_choice"))
    if isinstance(body.get("parallel_tool_calls"), bool):
        conversation.parallel_tool_calls = body["parallel_tool_calls"]


def _tool_choice(choice: Any) -> ToolChoice | None:
    if choice is None:
        return None
    if choice in ("auto", "none"):
        return ToolChoice(choice)
    if choice == "required":
        return ToolChoice("any")
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("function"), dict):
        return ToolChoice("tool", choice["function"].get("name"))
    raise Refused("tool_choice", f"tool_choice {choice!r} cannot be carried to this provider.")


def _reasoning(body: dict, conversation: Conversation) -> None:
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in EFFORTS:
        raise Refused("reasoning_effort", f"reasoning_effort {effort!r} is not one of {', '.join(EFFORTS)}.")
    if isinstance(body.get("thinking"), dict):              # the caller wrote Anthropic's own field
        conversation.reasoning = thinking_reasoning(body["thinking"], effort)
        conversation.names["reasoning"] = "thinking"
    elif effort is not None:
        conversation.reasoning = Reasoning(enabled=effort != "none", effort=effort)
        conversation.names["reasoning"] = "reasoning_effort"


def _answer_format(body: dict, conversation: Conversation) -> None:
    response_format = body.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "json_object":
        conversation.answer_format = AnswerFormat("json_object")
    elif kind == "json_schema":
        spec = response_format.get("json_schema") if isinstance(response_format.get("json_schema"), dict) else {}
        conversation.answer_format = AnswerFormat(
            "json_schema", schema=spec.get("schema"), name=spec.get("name"),
            strict=spec["strict"] if isinstance(spec.get("strict"), bool) else None,
            description=spec.get("description"))


def _the_rest(body: dict, conversation: Conversation) -> None:
    if isinstance(body.get("verbosity"), str):
        conversation.verbosity = body["verbosity"]
    if isinstance(body.get("user"), str) and body["user"]:
        conversation.user = body["user"]
    if isinstance(body.get("metadata"), dict):
        conversation.metadata = body["metadata"]
    conversation.stream = body.get("stream") is True
    options = body.get("stream_options")
    conversation.include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    for name in HINTS:
        if body.get(name) is not None:
            conversation.hints[name] = body[name]
    conversation.hints.update((name, value) for name, value in body.items() if name not in _READ)


# --- write ----------------------------------------------------------------------------

def encode(conversation: Conversation, target: Target, notes: Notes) -> dict:
    """The Chat Completions body for `conversation`, for `target.model`; raises Refused."""
    if conversation.candidates != 1:
        raise Refused(conversation.field("candidates"), "This provider returns one answer per request: "
                                                        f"{conversation.field('candidates')} must be 1.")
    out: dict[str, Any] = {"model": target.model, "messages": encode_messages(conversation, notes)}
    if conversation.max_output is not None:
        out["max_completion_tokens"] = conversation.max_output
    for name in ("temperature", "top_p"):
        if getattr(conversation, name) is not None:
            out[name] = getattr(conversation, name)
    if conversation.stop:
        if len(conversation.stop) > MAX_STOP:
            raise Refused(conversation.field("stop"), f"This provider takes at most {MAX_STOP} stop sequences, "
                                                      f"not {len(conversation.stop)}.")
        out["stop"] = list(conversation.stop)
    _write_tools(conversation, out, notes)
    _write_reasoning(conversation, out, notes)
    _write_answer_format(conversation, out)
    if conversation.verbosity is not None:
        out["verbosity"] = conversation.verbosity
    if conversation.user:
        out["user"] = opaque_user_id(conversation.user)
    if conversation.metadata:
        note(notes.dropped, conversation.field("metadata"))
    if conversation.stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    if conversation.top_k is not None:
        note(notes.dropped, conversation.field("top_k"))
    for name in conversation.hints:
        note(notes.dropped, name)
    return out


def _write_tools(conversation: Conversation, out: dict[str, Any], notes: Notes) -> None:
    if conversation.tools:
        out["tools"] = [_function_tool(tool, notes) for tool in conversation.tools]
    choice = conversation.tool_choice
    if choice is not None and not conversation.tools:   # OpenAI refuses a tool_choice without tools
        note(notes.dropped, f"{conversation.field('tool_choice')}:no_tools")
        return
    if choice is not None:
        if choice.mode == "any":
            out["tool_choice"] = "required"
        elif choice.mode == "tool":
            out["tool_choice"] = {"type": "function", "function": {"name": openai_tool_name(str(choice.name))}}
        else:
            out["tool_choice"] = choice.mode
    if conversation.parallel_tool_calls is False and conversation.tools and \
            (choice is None or choice.mode != "none"):
        out["parallel_tool_calls"] = False


def _function_tool(tool: Tool, notes: Notes) -> dict[str, Any]:
    schema = tool.get("input_schema")
    function: dict[str, Any] = {"name": openai_tool_name(tool["name"])}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    function["parameters"] = schema if isinstance(schema, dict) else {"type": "object", "properties": {}}
    if isinstance(tool.get("strict"), bool):
        function["strict"] = tool["strict"]
    if "cache_control" in tool:
        note(notes.dropped, "cache_control")
    return {"type": "function", "function": function}


def openai_effort(conversation: Conversation, reasoning: Reasoning, notes: Notes) -> str | None:
    """The reasoning effort an OpenAI provider takes: an OpenAI caller's as it wrote it;
    Anthropic's xhigh and max as high (few OpenAI models take them; noted); a budget as
    the nearest effort; none when thinking is off (an effort with it noted) or adaptive."""
    effort = reasoning.effort
    if not reasoning.enabled:
        if effort == "none" and conversation.dialect == OPENAI:
            return "none"
        if effort is not None:
            note(notes.dropped, f"{conversation.field('reasoning.effort')}:thinking_disabled")
        return None
    if isinstance(effort, str):
        if conversation.dialect != OPENAI and REASONING_EFFORTS.get(effort, effort) != effort:
            note(notes.dropped, f"{conversation.field('reasoning.effort')}={effort}:as_high")
            return REASONING_EFFORTS[effort]
        return effort
    if reasoning.adaptive:
        return None                     # the model decides: its default effort
    return effort_for_budget(reasoning.budget)


def _write_reasoning(conversation: Conversation, out: dict[str, Any], notes: Notes) -> None:
    reasoning = conversation.reasoning
    if reasoning is None:
        return
    effort = openai_effort(conversation, reasoning, notes)
    if effort is not None:
        out["reasoning_effort"] = effort
    if reasoning.summary is not None:
        note(notes.dropped, conversation.field("reasoning.summary"))


def _write_answer_format(conversation: Conversation, out: dict[str, Any]) -> None:
    answer_format = conversation.answer_format
    if answer_format is None:
        return
    if answer_format.kind == "json_object":
        out["response_format"] = {"type": "json_object"}
        return
    spec: dict[str, Any] = {"name": answer_format.name or "structured_output"}
    if answer_format.description is not None:
        spec["description"] = answer_format.description
    if answer_format.schema is not None:
        spec["schema"] = answer_format.schema
    strict = openai_strict(answer_format)
    if strict is not None:
        spec["strict"] = strict
    out["response_format"] = {"type": "json_schema", "json_schema": spec}


def openai_strict(answer_format: AnswerFormat) -> bool | None:
    """Strict mode as OpenAI takes it: asked for, and only when the schema already meets
    its rules (OpenAI refuses strict mode with a schema that does not)."""
    if answer_format.strict is None:
        return None
    return answer_format.strict and meets_strict_rules(answer_format.schema)


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
