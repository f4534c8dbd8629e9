"""Coverage by construction, answers side: every string field a client reads in a JSON
response (OpenAI Chat Completions, Completions, Responses; Anthropic Messages) is
walked (guardrails/response_walk.py) and a redaction rewrites it where it lies, while
what the provider writes about the answer (ids, types, roles, reasons) and signed
reasoning stay byte for byte.

RESPONSE_FIELDS lists the response fields that carry text, per endpoint, as the API
references give them; each row is a body with a planted value ("$V")."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import orjson
import pytest

from extproc.guardrails.config import Guardrail
from extproc.guardrails.fold import FoldingDetector
from extproc.guardrails.pii import PIIDetector
from extproc.guardrails.response_walk import response_slots, response_texts
from extproc.stages.guard.request import check_texts
from bare_call import bare_call

V = "jane.doe@example.com"


def _chat(message: dict, **choice) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": "stop", **choice}]}


def _responses(*output: dict, **top) -> dict:
    return {"id": "resp_1", "object": "response", "model": "gpt-4o", "status": "completed", "output": list(output), **top}


def _messages(*content: dict, **top) -> dict:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": list(content), "stop_reason": "end_turn", **top}


RESPONSE_FIELDS = [
    ("chat", "choices[].message.content", _chat({"content": "mail $V"})),
    ("chat", "choices[].message.content[].text (list of parts)", _chat({"content": [{"type": "text", "text": "$V"}]})),
    ("chat", "choices[].message.refusal", _chat({"content": None, "refusal": "not $V"})),
    ("chat", "choices[].message.reasoning_content", _chat({"content": "ok", "reasoning_content": "$V"})),
    ("chat", "choices[].message.reasoning", _chat({"content": "ok", "reasoning": "$V"})),
    ("chat", "choices[].message.tool_calls[].function.arguments", _chat({"content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "send", "arguments": '{"to": "$V"}'}}]})),
    ("chat", "choices[].message.tool_calls[].function.name", _chat({"content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "$V", "arguments": "{}"}}]})),
    ("chat", "choices[].message.tool_calls[].custom.input", _chat({"content": None, "tool_calls": [
        {"id": "call_1", "type": "custom", "custom": {"name": "run", "input": "to $V"}}]})),
    ("chat", "choices[].message.function_call.arguments", _chat({"content": None, "function_call": {
        "name": "send", "arguments": '{"to": "$V"}'}})),
    ("chat", "choices[].message.annotations[].url_citation.title", _chat({"content": "ok", "annotations": [
        {"type": "url_citation", "url_citation": {"url": "https://e.example", "title": "$V", "start_index": 0,
                                                  "end_index": 2}}]})),
    ("chat", "choices[].message.annotations[].url_citation.url", _chat({"content": "ok", "annotations": [
        {"type": "url_citation", "url_citation": {"url": "https://e.example/?who=$V", "title": "t"}}]})),
    ("chat", "choices[].message.audio.transcript", _chat({"content": None, "audio": {
        "id": "audio_1", "data": "UklGRg==", "expires_at": 1, "transcript": "mail $V"}})),
    ("chat", "choices[].logprobs.content[].token", _chat({"content": "ok"}, logprobs={"content": [
        {"token": "$V", "logprob": -0.1, "bytes": [1], "top_logprobs": []}]})),
    ("chat", "choices[].logprobs.content[].top_logprobs[].token", _chat({"content": "ok"}, logprobs={"content": [
        {"token": "ok", "logprob": -0.1, "top_logprobs": [{"token": "$V", "logprob": -2.0}]}]})),
    ("completions", "choices[].text", {"id": "cmpl-1", "object": "text_completion", "model": "gpt-3.5-turbo-instruct",
                                      "choices": [{"index": 0, "text": "mail $V", "finish_reason": "stop"}]}),
    ("completions", "choices[].logprobs.tokens[]", {"id": "cmpl-1", "object": "text_completion", "choices": [
        {"index": 0, "text": "ok", "logprobs": {"tokens": ["$V"], "token_logprobs": [-0.1]}}]}),
    ("responses", "output[].content[].text (output_text)", _responses(
        {"type": "message", "id": "msg_1", "role": "assistant", "content": [{"type": "output_text", "text": "$V"}]})),
    ("responses", "output[].content[].refusal", _responses(
        {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "not $V"}]})),
    ("responses", "output[].content[].annotations[].title", _responses(
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok", "annotations": [
            {"type": "url_citation", "url": "https://e.example", "title": "$V"}]}]})),
    ("responses", "output[].summary[].text (reasoning)", _responses(
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "$V"}],
         "encrypted_content": "gAAAA"})),
    ("responses", "output[].arguments (function_call)", _responses(
        {"type": "function_call", "call_id": "call_1", "name": "send", "arguments": '{"to": "$V"}'})),
    ("responses", "output[].input (custom_tool_call)", _responses(
        {"type": "custom_tool_call", "call_id": "call_1", "name": "run", "input": "$V"})),
    ("responses", "output[].arguments and .output (mcp_call)", _responses(
        {"type": "mcp_call", "id": "mcp_1", "server_label": "s", "name": "lookup", "arguments": "{}", "output": "$V"})),
    ("responses", "output[].action.query (web_search_call)", _responses(
        {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search", "query": "$V"}})),
    ("responses", "output[].code (code_interpreter_call)", _responses(
        {"type": "code_interpreter_call", "id": "ci_1", "code": "print('$V')", "outputs": [{"type": "logs", "logs": "$V"}]})),
    ("responses", "instructions (echoed)", _responses(instructions="$V")),
    ("responses", "metadata (echoed)", _responses(metadata={"owner": "$V"})),
    ("messages", "content[].text", _messages({"type": "text", "text": "mail $V"})),
    ("messages", "content[].citations[].cited_text", _messages({"type": "text", "text": "ok", "citations": [
        {"type": "char_location", "cited_text": "$V", "document_index": 0, "start_char_index": 0}]})),
    ("messages", "content[].input.* (tool_use)", _messages({"type": "tool_use", "id": "toolu_1", "name": "send",
                                                           "input": {"to": {"address": "$V"}}})),
    ("messages", "content[].input.* (server_tool_use)", _messages({"type": "server_tool_use", "id": "srvtoolu_1",
                                                                  "name": "web_search", "input": {"query": "$V"}})),
    ("messages", "content[].content[].title (web_search_tool_result)", _messages(
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [
            {"type": "web_search_result", "url": "https://e.example", "title": "$V", "encrypted_content": "Eq"}]})),
    ("messages", "content[].name (tool_use)", _messages({"type": "tool_use", "id": "toolu_1", "name": "$V", "input": {}})),
    ("messages", "stop_sequence", _messages({"type": "text", "text": "ok"}, stop_sequence="$V")),
]

PII = Guardrail("pii", "pii", "redact", frozenset({"response"}), "closed", FoldingDetector(PIIDetector()))


def _planted(body: dict) -> dict:
    return orjson.loads(orjson.dumps(body).replace(b"$V", V.encode()))


def _redacted(kind: str, body: dict) -> dict:
    body = copy.deepcopy(body)
    check_texts(bare_call(), PII, response_slots(kind, body), "response")
    return body


@pytest.mark.parametrize("kind,field,template", RESPONSE_FIELDS, ids=[f"{k}:{f}" for k, f, _ in RESPONSE_FIELDS])
def test_every_response_field_is_walked_and_redacted_in_place(kind, field, template):
    body = _planted(template)
    assert any(V in container[key] for container, key, _ in response_texts(kind, body)), f"{field} is not walked"
    redacted = _redacted(kind, body)
    assert V.encode() not in orjson.dumps(redacted), f"{field} keeps the value"
    assert b"[EMAIL]" in orjson.dumps(redacted)
    for meta in ("id", "object", "model", "type", "role", "status", "stop_reason"):
        assert redacted.get(meta) == body.get(meta)


def test_the_table_covers_every_json_endpoint():
    assert {kind for kind, _, _ in RESPONSE_FIELDS} == {"chat", "completions", "responses", "messages"}


def test_an_address_cut_across_log_probability_tokens_is_redacted_in_each():
    tokens = ["mail ", "jane", ".doe", "@", "example", ".com"]
    body = _chat({"content": "mail " + V}, logprobs={"content": [{"token": t, "logprob": -0.1} for t in tokens]})
    redacted = _redacted("chat", body)
    assert V not in "".join(t["token"] for t in redacted["choices"][0]["logprobs"]["content"])
    assert redacted["choices"][0]["message"]["content"] == "mail [EMAIL]"


@pytest.mark.parametrize("kind,body", [
    ("messages", _messages({"type": "thinking", "thinking": f"mail {V}", "signature": "EqQBCkYI"},
                           {"type": "redacted_thinking", "data": "EmwKAhgB" + V})),
    ("responses", _responses({"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": V})),
    ("responses", _responses({"type": "image_generation_call", "id": "ig_1", "result": "iVBORw0KGgo" + V})),
    ("chat", _chat({"content": None, "audio": {"id": "audio_1", "data": V, "expires_at": 1, "transcript": "hi"}})),
    ("chat", {"id": V, "object": "chat.completion", "model": V, "system_fingerprint": V,
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}),
])
def test_signed_reasoning_bytes_and_the_providers_own_fields_are_not_rewritten(kind, body):
    assert _redacted(kind, body) == body


def test_walk_order_is_the_answer_order():
    body = _responses(*({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": f"p{i}"}]}
                        for i in range(4)))
    assert [c[k] for c, k, _ in response_texts("responses", body)] == [f"p{i}" for i in range(4)]
