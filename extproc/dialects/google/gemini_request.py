"""A Gemini generateContent request read into the conversation model (a Gemini caller's),
and the model written as one (for a Gemini provider). The model is named by the path, and
a stream by the path's method, so neither is in the body.

Read, field by field (C carried into the model, H a hint kept under its name, R refused):
  contents                        C  turns: role user, model (assistant), function (user);
                                     parts in gemini_parts (text, thought, inlineData, fileData,
                                     functionCall, functionResponse; thoughtSignature kept)
  systemInstruction               C  system text blocks
  tools[].functionDeclarations    C  tools: name, description, parametersJsonSchema or parameters
  tools[] of Google's own (googleSearch, codeExecution, urlContext, ...)  H  tools[].<name>
  toolConfig.functionCallingConfig  C  mode AUTO / ANY / NONE (ANY with one allowed name: that
                                     tool); other allowedFunctionNames R
  generationConfig: temperature, topP, topK, maxOutputTokens, stopSequences, candidateCount  C
  generationConfig.responseMimeType application/json, responseJsonSchema, or responseSchema
                                  C  (Gemini's Schema, read as JSON Schema as parameters are)
                                     answer_format (json_object without a schema)
  generationConfig.thinkingConfig  C  reasoning: thinkingBudget (0: off, -1: the model decides),
                                     thinkingLevel as an effort, includeThoughts false: hidden
  generationConfig: presencePenalty, frequencyPenalty, seed  H  (presence_penalty, ...)
  generationConfig.responseModalities with AUDIO or IMAGE  R
  safetySettings                  H  (Gemini providers only)
  labels                          C  metadata
  cachedContent                   R  a cache only Google keeps
  unknown fields                  H

Written (another dialect's conversation, for a Gemini provider): turns as contents (system
turns into systemInstruction, noted; one role's turns merged), tools as functionDeclarations
with parametersJsonSchema, the tool choice as functionCallingConfig, parallel_tool_calls H,
sampling and stop in generationConfig (more than 5 stop sequences R), reasoning as
thinkingConfig (an effort as a budget: vocabulary.THINKING_BUDGETS; includeThoughts when the
caller reads thinking), answer_format as responseMimeType and responseJsonSchema,
presence_penalty, frequency_penalty and seed carried, user and metadata H, other hints H.
"""

from __future__ import annotations

from typing import Any

from ..conversation import (AnswerFormat, Conversation, Notes, Reasoning, Refused, Target, Tool, ToolChoice, note,
                           read_fields)
from .gemini_parts import GEMINI, decode_turns, encode_turns
from ..vocabulary import THINKING_BUDGETS

MAX_STOP = 5
# Gemini's generationConfig names of OpenAI's hints, both ways.
_PENALTIES = {"presencePenalty": "presence_penalty", "frequencyPenalty": "frequency_penalty", "seed": "seed"}
_LEVELS = {"low": "low", "medium": "medium", "high": "high", "minimal": "minimal"}
_READ = frozenset({"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings",
                   "labels", "cachedContent", "model"})
_CONFIG = "generationConfig"
_NAMES = {"max_output": f"{_CONFIG}.maxOutputTokens", "temperature": f"{_CONFIG}.temperature",
          "top_p": f"{_CONFIG}.topP", "top_k": f"{_CONFIG}.topK", "stop": f"{_CONFIG}.stopSequences",
          "candidates": f"{_CONFIG}.candidateCount", "reasoning": f"{_CONFIG}.thinkingConfig",
          "reasoning.effort": f"{_CONFIG}.thinkingConfig", "answer_format": f"{_CONFIG}.responseJsonSchema",
          "answer_format.strict": f"{_CONFIG}.responseJsonSchema", "tool_choice": "toolConfig",
          "turns": "contents", "thinking_history": "contents[].parts[].thought", "metadata": "labels"}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --- read -----------------------------------------------------------------------------

def decode(body: dict, notes: Notes, whole: bool = True) -> Conversation:
    """A generateContent body as the conversation; raises Refused (not when `whole` is
    False: then all but the turns, each part the model cannot hold left at its default)."""
    conversation = Conversation(dialect=GEMINI, include_usage=True)   # Gemini's streams always carry usage
    conversation.names.update(_NAMES)
    read_fields((_config, _tools, _the_rest), whole, body, conversation)
    if whole:
        system = body.get("systemInstruction")
        conversation.system, conversation.turns = decode_turns(system, body.get("contents"), conversation)
    return conversation


def _config(body: dict, conversation: Conversation) -> None:
    config = body.get(_CONFIG)
    if config is None:
        return
    if not isinstance(config, dict):
        raise Refused(_CONFIG, f"{_CONFIG} must be an object.")
    cap = config.get("maxOutputTokens")
    if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0:
        conversation.max_output = cap
    for name, field_name in (("temperature", "temperature"), ("topP", "top_p")):
        if _number(config.get(name)):
            setattr(conversation, field_name, config[name])
    if isinstance(config.get("topK"), int) and not isinstance(config["topK"], bool):
        conversation.top_k = config["topK"]
    stop = config.get("stopSequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise Refused(f"{_CONFIG}.stopSequences", "stopSequences must be a list of strings.")
        conversation.stop = stop
    count = config.get("candidateCount")
    if count is not None:
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise Refused(f"{_CONFIG}.candidateCount", "candidateCount must be a positive integer.")
        conversation.candidates = count
    modalities = config.get("responseModalities")
    if isinstance(modalities, list) and any(m in ("AUDIO", "IMAGE") for m in modalities):
        raise Refused(f"{_CONFIG}.responseModalities", "Answers in audio or images cannot be carried to this "
                                                       "provider.")
    _answer_format(config, conversation)
    _thinking(config.get("thinkingConfig"), conversation)
    for name, hint in _PENALTIES.items():
        if config.get(name) is not None:
            conversation.hints[hint] = config[name]


def _answer_format(config: dict, conversation: Conversation) -> None:
    if config.get("responseMimeType") != "application/json":
        return
    schema = config.get("responseJsonSchema")
    if not isinstance(schema, dict) and isinstance(config.get("responseSchema"), dict):
        schema = json_schema_of(config["responseSchema"])
    conversation.answer_format = AnswerFormat("json_schema", schema=schema) if isinstance(schema, dict) \
        else AnswerFormat("json_object")


def _thinking(thinking: Any, conversation: Conversation) -> None:
    if not isinstance(thinking, dict):
        return
    reasoning = Reasoning(hidden=thinking.get("includeThoughts") is not True, raw=thinking)
    budget = thinking.get("thinkingBudget")
    if isinstance(budget, int) and not isinstance(budget, bool):
        if budget == 0:
            reasoning.enabled = False
        elif budget < 0:
            reasoning.adaptive = True
        else:
            reasoning.budget = budget
    level = thinking.get("thinkingLevel")
    if isinstance(level, str) and level.lower() in _LEVELS:
        reasoning.effort = _LEVELS[level.lower()]
    conversation.reasoning = reasoning


def _tools(body: dict, conversation: Conversation) -> None:
    for i, tool in enumerate(body.get("tools") or ()):
        if not isinstance(tool, dict):
            raise Refused(f"tools[{i}]", f"tools[{i}] must be an object.")
        for name, value in tool.items():
            if name != "functionDeclarations":
                conversation.hints[f"tools[].{name}"] = value      # Google's own tools: its servers run them
        for j, declaration in enumerate(tool.get("functionDeclarations") or ()):
            if not isinstance(declaration, dict) or not isinstance(declaration.get("name"), str):
                raise Refused(f"tools[{i}].functionDeclarations[{j}]", "A function declaration needs a name.")
            read: Tool = {"name": declaration["name"]}
            if isinstance(declaration.get("description"), str):
                read["description"] = declaration["description"]
            schema = declaration.get("parametersJsonSchema")
            if not isinstance(schema, dict) and isinstance(declaration.get("parameters"), dict):
                schema = json_schema_of(declaration["parameters"])
            read["input_schema"] = schema if isinstance(schema, dict) else {"type": "object", "properties": {}}
            conversation.tools.append(read)
    config = body.get("toolConfig")
    calling = config.get("functionCallingConfig") if isinstance(config, dict) else None
    if not isinstance(calling, dict):
        return
    mode = str(calling.get("mode", "AUTO")).upper()
    allowed = calling.get("allowedFunctionNames")
    if mode == "ANY" and isinstance(allowed, list) and len(allowed) == 1 and isinstance(allowed[0], str):
        conversation.tool_choice = ToolChoice("tool", allowed[0])
    elif allowed:
        raise Refused("toolConfig.functionCallingConfig.allowedFunctionNames",
                      "Only one allowed function (with mode ANY) can be carried to this provider.")
    elif mode in ("AUTO", "ANY", "NONE", "VALIDATED"):
        conversation.tool_choice = ToolChoice({"AUTO": "auto", "ANY": "any", "NONE": "none",
                                               "VALIDATED": "auto"}[mode])


def json_schema_of(schema: Any) -> Any:
    """Gemini's Schema (`parameters`: OpenAPI's subset, upper-case types, `nullable`) as the
    JSON Schema the other dialects read: types in lower case, nullable as a "null" type,
    Gemini's own `propertyOrdering` left out."""
    if isinstance(schema, list):
        return [json_schema_of(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            out["type"] = value.lower()
        elif key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            out[key] = {name: json_schema_of(inner) for name, inner in value.items()}
        elif key in ("items", "anyOf", "oneOf", "allOf", "not", "additionalProperties"):
            out[key] = json_schema_of(value)
        elif key not in ("nullable", "propertyOrdering"):
            out[key] = value
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _the_rest(body: dict, conversation: Conversation) -> None:
    if body.get("cachedContent"):
        raise Refused("cachedContent", "cachedContent names a cache only Google keeps; send its contents instead.")
    if isinstance(body.get("labels"), dict):
        conversation.metadata = body["labels"]
    if body.get("safetySettings") is not None:
        conversation.hints["safetySettings"] = body["safetySettings"]
    for name, value in body.items():
        if name not in _READ:
            conversation.hints[name] = value


# --- write ----------------------------------------------------------------------------

def encode(conversation: Conversation, target: Target, notes: Notes) -> dict:
    """The conversation as a generateContent body (the model goes in the path); raises Refused."""
    out: dict[str, Any] = {}
    system, contents = encode_turns(conversation, notes)
    out["contents"] = contents
    if system:
        out["systemInstruction"] = {"parts": system}
    config = _encode_config(conversation, notes)
    if config:
        out[_CONFIG] = config
    if conversation.tools:
        out["tools"] = [{"functionDeclarations": [_declaration(tool) for tool in conversation.tools]}]
        choice = conversation.tool_choice
        if choice is not None:
            calling: dict[str, Any] = {"mode": {"auto": "AUTO", "any": "ANY", "none": "NONE", "tool": "ANY"}[choice.mode]}
            if choice.mode == "tool" and choice.name:
                calling["allowedFunctionNames"] = [choice.name]
            out["toolConfig"] = {"functionCallingConfig": calling}
    if conversation.parallel_tool_calls is False:
        note(notes.dropped, conversation.field("parallel_tool_calls"))
    for name in ("user", "metadata"):
        if getattr(conversation, name):
            note(notes.dropped, conversation.field(name))
    if conversation.hints.get("safetySettings") is not None:
        out["safetySettings"] = conversation.hints["safetySettings"]
    for name in conversation.hints:
        if name not in _PENALTIES.values() and name != "safetySettings":
            note(notes.dropped, name)
    return out


def _declaration(tool: Tool) -> dict[str, Any]:
    written: dict[str, Any] = {"name": tool["name"]}
    if tool.get("description"):
        written["description"] = tool["description"]
    written["parametersJsonSchema"] = tool.get("input_schema") or {"type": "object", "properties": {}}
    return written


def _encode_config(conversation: Conversation, notes: Notes) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if conversation.max_output:
        config["maxOutputTokens"] = conversation.max_output
    for name, field_name in (("temperature", "temperature"), ("topP", "top_p"), ("topK", "top_k")):
        if getattr(conversation, field_name) is not None:
            config[name] = getattr(conversation, field_name)
    if conversation.stop:
        if len(conversation.stop) > MAX_STOP:
            raise Refused(conversation.field("stop"), f"This provider takes at most {MAX_STOP} stop sequences, "
                                                      f"not {len(conversation.stop)}.")
        config["stopSequences"] = conversation.stop
    if conversation.candidates > 1:
        config["candidateCount"] = conversation.candidates
    answer_format = conversation.answer_format
    if answer_format is not None:
        config["responseMimeType"] = "application/json"
        if answer_format.schema is not None:
            config["responseJsonSchema"] = answer_format.schema
    thinking = _thinking_config(conversation.reasoning)
    if thinking:
        config["thinkingConfig"] = thinking
    for name, hint in _PENALTIES.items():
        if conversation.hints.get(hint) is not None:
            config[name] = conversation.hints[hint]
    return config


def _thinking_config(reasoning: Reasoning | None) -> dict[str, Any]:
    if reasoning is None:
        return {}
    if not reasoning.enabled:
        return {"thinkingBudget": 0}
    written: dict[str, Any] = {"includeThoughts": not reasoning.hidden}
    if reasoning.budget:
        written["thinkingBudget"] = reasoning.budget
    elif reasoning.effort in THINKING_BUDGETS:
        written["thinkingBudget"] = THINKING_BUDGETS[reasoning.effort]
    elif reasoning.adaptive:
        written["thinkingBudget"] = -1
    return written
