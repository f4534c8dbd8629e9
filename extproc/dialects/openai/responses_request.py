"""A Responses request read into the conversation model (a Responses caller's, for a provider
of another dialect), and the model written as one (for a provider that speaks only the
Responses API). Input items: responses_request_items.

Read, field by field (C carried into the model, H a hint: kept in `hints` under its name,
for an encoder that takes it or names it dropped, R refused: the model has no place for it):
  input (a string, or items)     C  turns (responses_request_items); reasoning items H
  instructions                   C  system
  tools (function)               C  name, description, input_schema (parameters), strict; tools only
                                    OpenAI runs (web_search, file_search, code_interpreter, ...) and
                                    tool namespaces H, named: the model answers without them
  tool_choice                    C  auto/required/none/function; hosted tools' and allowed_tools R
  parallel_tool_calls, temperature, top_p, user, metadata  C
  max_output_tokens              C  max_output
  reasoning.effort, .summary     C  reasoning (an effort not OpenAI's R)
  text.format, text.verbosity    C  answer_format (json_schema, json_object), verbosity
  stream                         C  stream (its usage always comes)
  previous_response_id, conversation, background, prompt  R  (only a provider that keeps
                                    responses knows them: send the whole conversation in `input`)
  safety_identifier, store, include, prompt_cache_key, truncation, service_tier, max_tool_calls,
  stream_options, top_logprobs, client_metadata, unknown fields  H
The settings a Responses object repeats (instructions, tools, text, reasoning, ...) are kept
in `echo` as written.

Written (a chat or Messages caller's conversation), store false always (the provider keeps
nothing):
  system -> instructions (one plain text; else a leading system item); turns -> input items
  (responses_request_items)
  max_output -> max_output_tokens; temperature, top_p, parallel_tool_calls, metadata
  user -> user (an OpenAI caller's as written, another's opaque)
  tools -> function tools (names within 64 characters; strict as the caller set it, else false:
  the Responses API's own default is strict); tool_choice auto/required/none/function
  answer_format -> text.format (strict only when the schema already meets OpenAI's strict
  rules); verbosity -> text.verbosity
  reasoning -> reasoning.effort (as chat_request writes reasoning_effort), summary
  stream -> stream
  an OpenAI caller's safety_identifier, prompt_cache_key, service_tier  C
  stop, candidates > 1, presence_penalty, frequency_penalty  R (the Responses API has none of them)
  top_k, store (but false: as sent) and every other hint  H
"""

from __future__ import annotations

from typing import Any, Callable

from .chat_request import EFFORTS, openai_effort, openai_strict
from ..conversation import (AnswerFormat, Conversation, Notes, Reasoning, Refused, Target, Tool, ToolChoice, note,
                           read_fields)
from .responses_request_items import decode_input, encode_input, instructions
from ..vocabulary import OPENAI, opaque_user_id, openai_tool_name

_REFUSED = ("previous_response_id", "conversation", "background", "prompt")
_ECHOED = ("instructions", "max_output_tokens", "parallel_tool_calls", "temperature", "tool_choice", "tools",
           "top_p", "text", "reasoning", "metadata", "user")
_READ = frozenset({"model", "input", "instructions", "tools", "tool_choice", "max_output_tokens", "reasoning", "text",
                   "temperature", "top_p", "user", "parallel_tool_calls", "stream", "metadata", *_REFUSED})
_NAMES = {"max_output": "max_output_tokens", "reasoning": "reasoning.effort", "reasoning.effort": "reasoning.effort",
          "answer_format": "text.format", "answer_format.strict": "text.format.strict",
          "verbosity": "text.verbosity", "turns": "input", "tools.strict": "tools[].strict"}
# An OpenAI caller's hints the Responses API takes as they are.
_OPENAI_HINTS = ("safety_identifier", "prompt_cache_key", "service_tier")
_PENALTIES = ("frequency_penalty", "presence_penalty")


# --- read -----------------------------------------------------------------------------

def decode(body: dict, notes: Notes, whole: bool = True) -> Conversation:
    """A Responses body as the conversation; raises Refused (not when `whole` is False:
    then all but the turns, each part the model cannot hold left at its default)."""
    model = body.get("model")
    conversation = Conversation(dialect=OPENAI, model=model if isinstance(model, str) else None)
    conversation.names.update(_NAMES)
    conversation.echo.update((name, body[name]) for name in _ECHOED if name in body)
    parts: list[Callable[[dict, Conversation, Notes], None]] = [_refuse_what_has_no_place, _sampling, _tools,
                                                                 _reasoning, _text, _the_rest]
    read_fields(parts, whole, body, conversation, notes)
    if whole:
        instructions = body.get("instructions")
        if isinstance(instructions, str) and instructions:
            conversation.system.append({"type": "text", "text": instructions})
        decode_input(body.get("input"), conversation, notes)
    return conversation


def _refuse_what_has_no_place(body: dict, conversation: Conversation, notes: Notes) -> None:
    for name in _REFUSED:
        if body.get(name) not in (None, False):
            raise Refused(name, f"'{name}' needs a provider that keeps responses; this model's provider keeps "
                                "none: send the whole conversation in 'input'.")


def _sampling(body: dict, conversation: Conversation, notes: Notes) -> None:
    cap = body.get("max_output_tokens")
    if isinstance(cap, int) and not isinstance(cap, bool):
        conversation.max_output = cap
    conversation.temperature, conversation.top_p = body.get("temperature"), body.get("top_p")


def _tools(body: dict, conversation: Conversation, notes: Notes) -> None:
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise Refused("tools", "'tools' must be a list.")
    for i, tool in enumerate(tools or ()):
        if not isinstance(tool, dict):
            raise Refused(f"tools[{i}]", f"'tools[{i}]' must be an object.")
        if tool.get("type") != "function":
            note(notes.dropped, f"tools[].{str(tool.get('type'))[:40]}")
            continue
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise Refused(f"tools[{i}].name", f"'tools[{i}]' has no name.")
        read: Tool = {"name": tool["name"]}
        if isinstance(tool.get("description"), str):
            read["description"] = tool["description"]
        if isinstance(tool.get("parameters"), dict):
            read["input_schema"] = tool["parameters"]
        if isinstance(tool.get("strict"), bool):
            read["strict"] = tool["strict"]
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
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function") if isinstance(choice.get("function"), dict) else choice
        if isinstance(function.get("name"), str):
            return ToolChoice("tool", function["name"])
    raise Refused("tool_choice", f"tool_choice {choice!r} cannot be carried to this provider.")


def _reasoning(body: dict, conversation: Conversation, notes: Notes) -> None:
    reasoning = body.get("reasoning")
    if not isinstance(reasoning, dict):
        return
    effort, summary = reasoning.get("effort"), reasoning.get("summary")
    if effort is not None and effort not in EFFORTS:
        raise Refused("reasoning.effort", f"reasoning.effort {effort!r} is not one of {', '.join(EFFORTS)}.")
    if effort is not None or summary is not None:
        conversation.reasoning = Reasoning(enabled=effort != "none", effort=effort,
                                           summary=summary if isinstance(summary, str) else None)


def _text(body: dict, conversation: Conversation, notes: Notes) -> None:
    text = body.get("text")
    if not isinstance(text, dict):
        return
    form = text.get("format") if isinstance(text.get("format"), dict) else {}
    if form.get("type") == "json_schema":
        conversation.answer_format = AnswerFormat(
            "json_schema", schema=form.get("schema"), name=form.get("name"),
            strict=form["strict"] if isinstance(form.get("strict"), bool) else None,
            description=form.get("description"))
    elif form.get("type") == "json_object":
        conversation.answer_format = AnswerFormat("json_object")
    if isinstance(text.get("verbosity"), str):
        conversation.verbosity = text["verbosity"]


def _the_rest(body: dict, conversation: Conversation, notes: Notes) -> None:
    if isinstance(body.get("user"), str) and body["user"]:
        conversation.user = body["user"]
    if isinstance(body.get("metadata"), dict):
        conversation.metadata = body["metadata"]
    conversation.stream = conversation.include_usage = body.get("stream") is True
    conversation.hints.update((name, value) for name, value in body.items() if name not in _READ)


# --- write ----------------------------------------------------------------------------

def encode(conversation: Conversation, target: Target, notes: Notes) -> dict:
    """The Responses body for `conversation`, for `target.model`; raises Refused."""
    _refuse_what_cannot_be_carried(conversation)
    out: dict[str, Any] = {"model": target.model}
    if instructions(conversation) is not None:
        out["instructions"] = instructions(conversation)
    out["input"] = encode_input(conversation, notes)
    out["store"] = False                    # the provider keeps nothing
    if conversation.max_output is not None:
        out["max_output_tokens"] = conversation.max_output
    for name in ("temperature", "top_p", "parallel_tool_calls", "metadata"):
        if getattr(conversation, name) is not None:
            out[name] = getattr(conversation, name)
    if conversation.user:
        out["user"] = conversation.user if conversation.dialect == OPENAI else opaque_user_id(conversation.user)
    if conversation.tools:
        out["tools"] = [_function_tool(tool, notes) for tool in conversation.tools]
    if conversation.tool_choice is not None:
        out["tool_choice"] = _written_tool_choice(conversation.tool_choice)
    _write_text(conversation, out)
    _write_reasoning(conversation, out, notes)
    if conversation.stream:
        out["stream"] = True
    if conversation.top_k is not None:
        note(notes.dropped, conversation.field("top_k"))
    carried = _OPENAI_HINTS if conversation.dialect == OPENAI else ()
    for name, value in conversation.hints.items():
        if name in carried:
            out[name] = value
        elif name not in _PENALTIES and not (name == "store" and value is False):    # store false: as sent
            note(notes.dropped, name)
    return out


def _refuse_what_cannot_be_carried(conversation: Conversation) -> None:
    if conversation.candidates != 1:
        name = conversation.field("candidates")
        raise Refused(name, f"This provider answers once per request ('{name}' above 1 cannot be carried).")
    refused = [conversation.field("stop")] if conversation.stop else []
    refused.extend(name for name in _PENALTIES if conversation.hints.get(name))
    if refused:
        raise Refused(refused[0], f"'{refused[0]}' cannot be carried to this provider (it speaks the Responses "
                                  "API only).")


def _function_tool(tool: Tool, notes: Notes) -> dict[str, Any]:
    written: dict[str, Any] = {"type": "function", "name": openai_tool_name(tool["name"])}
    if isinstance(tool.get("description"), str):
        written["description"] = tool["description"]
    if isinstance(tool.get("input_schema"), dict):
        written["parameters"] = tool["input_schema"]
    # The Responses API holds a function's arguments to its schema unless told otherwise;
    # a caller that did not ask for that gets what its own dialect gives (not strict).
    written["strict"] = tool.get("strict", False)
    if "cache_control" in tool:
        note(notes.dropped, "cache_control")
    return written


def _written_tool_choice(choice: ToolChoice) -> Any:
    if choice.mode == "any":
        return "required"
    if choice.mode == "tool":
        return {"type": "function", "name": openai_tool_name(str(choice.name))}
    return choice.mode


def _write_text(conversation: Conversation, out: dict[str, Any]) -> None:
    text: dict[str, Any] = {}
    answer_format = conversation.answer_format
    if answer_format is not None and answer_format.kind == "json_object":
        text["format"] = {"type": "json_object"}
    elif answer_format is not None:
        form: dict[str, Any] = {"type": "json_schema", "name": answer_format.name or "structured_output"}
        if answer_format.schema is not None:
            form["schema"] = answer_format.schema
        strict = openai_strict(answer_format)
        if strict is not None:
            form["strict"] = strict
        if answer_format.description is not None:
            form["description"] = answer_format.description
        text["format"] = form
    if conversation.verbosity is not None:
        text["verbosity"] = conversation.verbosity
    if text:
        out["text"] = text


def _write_reasoning(conversation: Conversation, out: dict[str, Any], notes: Notes) -> None:
    reasoning = conversation.reasoning
    if reasoning is None:
        return
    written: dict[str, Any] = {}
    effort = openai_effort(conversation, reasoning, notes)
    if effort is not None:
        written["effort"] = effort
    if reasoning.summary is not None:
        written["summary"] = reasoning.summary
    if written:
        out["reasoning"] = written

