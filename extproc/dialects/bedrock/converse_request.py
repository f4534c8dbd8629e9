"""The conversation model written as a Bedrock Converse request (for a Bedrock provider;
the model goes in the path, /model/{modelId}/converse, and a stream by the path too:
/converse-stream). Reading a Converse request (a Bedrock caller's) is not done: `decode`
refuses it. The system, turns and blocks: converse_content.py.

Written, field by field (C carried, H dropped and named in Notes.dropped, R refused naming
the caller's field):
  system, turns             system and messages (converse_content)
  max_output                inferenceConfig.maxTokens (none: the model's own default)
  temperature, top_p        inferenceConfig (outside 0..1 R)
  top_k                     Claude: top_k in additionalModelRequestFields; other models H
  stop                      inferenceConfig.stopSequences (blank ones H: Bedrock refuses them)
  candidates > 1            R
  tools                     toolConfig.tools[].toolSpec: name (over 64 characters shortened as for
                            OpenAI and read back in the answer; characters other than [A-Za-z0-9_-]
                            R), description, inputSchema.json (none: an empty object schema), a
                            cachePoint after a tool with cache_control; strict H
  tool_choice               auto, any, tool; none: the tools left out (when the history holds
                            calls they are sent, Bedrock needs toolConfig then, and the choice H)
  calls without tools       the called tools declared, each with an open schema (Bedrock refuses
                            toolUse blocks without a toolConfig; noted tools:declared_from_history)
  parallel_tool_calls false H
  reasoning                 Claude: additionalModelRequestFields.thinking: Anthropic's own object as
                            written, or an effort as a budget (vocabulary.THINKING_BUDGETS), adaptive,
                            display "omitted" when hidden; the budget within maxTokens (a cap not
                            given: default_max_tokens + budget, noted in defaulted); H when Claude
                            forbids thinking with the rest of the request (a forced tool, temperature
                            != 1, topP < 0.95, an assistant prefill, a tool loop whose calling turn
                            has no signed thinking) or the cap leaves less than the least budget;
                            other models H (each takes its own additionalModelRequestFields); summary H
  answer_format             outputConfig.textFormat {type json_schema, structure.jsonSchema: the
                            schema as a JSON string, a name}; json_object as any object
  metadata                  requestMetadata when every key and value is a string, else H
  user, verbosity, hints    H
"""

from __future__ import annotations

from typing import Any

from ...api.provider_json import dumps
from ..conversation import Conversation, Notes, Refused, Target, note
from .converse_content import ANY_OBJECT, NAME, Writer, vendor_of
from ..vocabulary import MIN_THINKING_BUDGET, THINKING_BUDGETS, openai_tool_name


def decode(body: dict, notes: Notes, whole: bool = True) -> Conversation:
    raise Refused("model", "A Bedrock Converse request cannot be translated to another dialect yet; "
                           "send it to a Bedrock provider.")


# --- the request ------------------------------------------------------------------------

def encode(conversation: Conversation, target: Target, notes: Notes) -> dict:
    """The Converse body for `conversation` (the model goes in the path); raises Refused."""
    if conversation.candidates != 1:
        name = conversation.field("candidates")
        raise Refused(name, f"This provider returns one answer per request: {name} must be 1.")
    vendor = vendor_of(target.model)
    writer = Writer(conversation, notes, vendor)
    system, messages = writer.turns()
    out: dict[str, Any] = {"messages": messages}
    if system:
        out["system"] = system
    config = _inference_config(conversation, notes)
    if config:
        out["inferenceConfig"] = config
    tools = _tool_config(conversation, messages, writer, notes)
    if tools:
        out["toolConfig"] = tools
    extra: dict[str, Any] = {}
    if conversation.top_k is not None:
        if writer.claude:
            extra["top_k"] = conversation.top_k
        else:
            note(notes.dropped, conversation.field("top_k"))
    _reasoning(conversation, out, extra, writer.claude, target, notes)
    if extra:
        out["additionalModelRequestFields"] = extra
    answer_format = conversation.answer_format
    if answer_format is not None:
        schema = answer_format.schema if answer_format.kind == "json_schema" and answer_format.schema else ANY_OBJECT
        given = answer_format.name or ""
        described = {"name": given if NAME.fullmatch(given) else "answer"}
        if answer_format.description:
            described["description"] = answer_format.description
        out["outputConfig"] = {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {
            "schema": dumps(schema).decode(), **described}}}}
    metadata = conversation.metadata
    if metadata and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        out["requestMetadata"] = dict(metadata)
    elif metadata:
        note(notes.dropped, conversation.field("metadata"))
    for name in ("user", "verbosity"):
        if getattr(conversation, name) is not None:
            note(notes.dropped, conversation.field(name))
    if conversation.parallel_tool_calls is False:
        note(notes.dropped, conversation.field("parallel_tool_calls"))
    for name in conversation.hints:
        note(notes.dropped, name)
    return out


def _unit(conversation: Conversation, name: str) -> float | None:
    value = getattr(conversation, name)
    if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1):
        field_name = conversation.field(name)
        raise Refused(field_name, f"{field_name} {value!r} is outside this provider's range (0 to 1).")
    return value


def _inference_config(conversation: Conversation, notes: Notes) -> dict[str, Any]:
    config: dict[str, Any] = {}
    cap = conversation.max_output
    if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0:
        config["maxTokens"] = cap
    for name, field_name in (("temperature", "temperature"), ("topP", "top_p")):
        value = _unit(conversation, field_name)
        if value is not None:
            config[name] = value
    kept = [sequence for sequence in conversation.stop if sequence.strip()]
    if len(kept) < len(conversation.stop):
        note(notes.dropped, f"{conversation.field('stop')}:whitespace_only")     # Bedrock refuses blank ones
    if kept:
        config["stopSequences"] = kept
    return config


def _tool_config(conversation: Conversation, messages: list[dict], writer: Writer, notes: Notes) -> dict | None:
    called = [block["toolUse"]["name"] for message in messages for block in message["content"] if "toolUse" in block]
    calls = bool(called) or any("toolResult" in block for message in messages for block in message["content"])
    choice = conversation.tool_choice
    if not conversation.tools:
        if not calls:
            return None
        note(notes.dropped, f"{conversation.field('tools')}:declared_from_history")
        return {"tools": [{"toolSpec": {"name": name, "inputSchema": {"json": dict(ANY_OBJECT)}}}
                          for name in dict.fromkeys(called or ["tool"])]}
    if choice is not None and choice.mode == "none" and not calls:
        return None                               # no tools: nothing the model can call
    tools: list[dict] = []
    for i, tool in enumerate(conversation.tools):
        name = openai_tool_name(str(tool.get("name", "")))
        if not NAME.fullmatch(name):
            where = f"{conversation.field('tools')}[{i}]"
            raise Refused(where, f"{where}: the tool name {name!r} holds characters Bedrock refuses "
                                 "(it takes letters, digits, _ and -).")
        spec: dict[str, Any] = {"name": name, "inputSchema": {"json": tool.get("input_schema") or dict(ANY_OBJECT)}}
        if tool.get("description"):
            spec["description"] = tool["description"]
        if tool.get("strict"):
            note(notes.dropped, conversation.field("tools.strict"))
        tools.extend(writer.cached(tool, [{"toolSpec": spec}]))
    written: dict[str, Any] = {"tools": tools}
    if choice is not None and choice.mode in ("auto", "any"):
        written["toolChoice"] = {choice.mode: {}}
    elif choice is not None and choice.mode == "tool":
        written["toolChoice"] = {"tool": {"name": openai_tool_name(str(choice.name))}}
    elif choice is not None:
        note(notes.dropped, f"{conversation.field('tool_choice')}=none")
    return written


def _reasoning(conversation: Conversation, out: dict[str, Any], extra: dict[str, Any], claude: bool,
               target: Target, notes: Notes) -> None:
    """Claude's thinking budget within maxTokens (a cap not given grows by the budget)."""
    reasoning = conversation.reasoning
    if reasoning is None or not reasoning.enabled:
        return                                    # thinking is off unless asked for
    name = conversation.field("reasoning")
    if not claude:
        note(notes.dropped, name)
        return
    if reasoning.summary is not None:
        note(notes.dropped, conversation.field("reasoning.summary"))
    raw = reasoning.raw
    thinking: dict[str, Any]
    if isinstance(raw, dict) and raw.get("type") in ("enabled", "adaptive"):      # Anthropic's own
        thinking = dict(raw)
        budget = raw.get("budget_tokens") if raw.get("type") == "enabled" else None
    else:
        budget = THINKING_BUDGETS.get(reasoning.effort) if reasoning.effort else reasoning.budget
        if budget is None and not reasoning.adaptive:
            note(notes.dropped, name)
            return
        thinking = {"type": "adaptive"} if budget is None else {"type": "enabled", "budget_tokens": budget}
        if reasoning.hidden:
            thinking["display"] = "omitted"
    conflict = _thinking_conflict(out)
    if conflict:
        note(notes.dropped, f"{name}:{conflict}")
        return
    config = out.setdefault("inferenceConfig", {})
    if isinstance(budget, int) and not isinstance(budget, bool) and budget > 0:
        if "maxTokens" not in config:
            notes.defaulted.append("inferenceConfig.maxTokens")
            config["maxTokens"] = target.default_max_tokens + budget
        elif budget >= config["maxTokens"]:
            if config["maxTokens"] - 1 < MIN_THINKING_BUDGET:
                note(notes.dropped, f"{name}:max_tokens_below_least_budget")
                return
            thinking["budget_tokens"] = config["maxTokens"] - 1
    extra["thinking"] = thinking


def _thinking_conflict(out: dict[str, Any]) -> str | None:
    """What of the request Claude refuses alongside thinking, if anything."""
    choice = (out.get("toolConfig") or {}).get("toolChoice") or {}
    if "any" in choice or "tool" in choice:
        return "forced_tool_choice"
    config = out.get("inferenceConfig") or {}
    if config.get("temperature", 1) != 1:
        return "temperature"
    if config.get("topP", 1) < 0.95:
        return "top_p"
    messages = out["messages"]
    if messages[-1]["role"] == "assistant":
        return "assistant_prefill"
    if any("toolResult" in block for block in messages[-1]["content"]):
        calling = messages[-2]["content"] if len(messages) > 1 else []
        if not any("reasoningContent" in block for block in calling):
            return "tool_loop_without_signed_thinking"      # Claude needs the calling turn's signed thinking
    return None
