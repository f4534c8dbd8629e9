"""Request bodies of the wrong shape are refused with a 400 that names the field, before
any stage reads them (extproc/api/openai_schema.py): never a 500, whatever JSON a
client sends. Table-driven rows, and a property over mutated bodies run through the
whole pipeline (no Envoy; through Envoy: test_request_handling_e2e.py)."""

from __future__ import annotations

import orjson
import pytest
from any_json import WRONG_TYPE, paths, quickstart_runtime, replaced, through_pipeline
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extproc.dialects import codec_of
from gateway_stack import quickstart_config


MALFORMED = [
    ("messages not a list", "chat", {"model": "m", "messages": 1}, "'messages' must be an array."),
    ("messages true", "chat", {"model": "m", "messages": True}, "'messages' must be an array."),
    ("a message not an object", "chat", {"model": "m", "messages": [3]}, "'messages[0]' must be an object."),
    ("a message without role", "chat", {"model": "m", "messages": [{"content": "hi"}]},
     "'messages[0]' must have 'role'."),
    ("content a number", "chat", {"model": "m", "messages": [{"role": "user", "content": 7}]},
     "'messages[0].content' must be a string, null, or an array of content parts."),
    ("a part's text an object", "chat", {"model": "m", "messages": [
        {"role": "user", "content": [{"type": "text", "text": {"value": "hidden"}}]}]},
     "'messages[0].content' must be a string, null, or an array of content parts."),
    ("a number in tool_calls", "chat", {"model": "m", "messages": [{"role": "assistant", "tool_calls": [1]}]},
     "'messages[0].tool_calls[0]' must be an object."),
    ("tool arguments not a string", "chat", {"model": "m", "messages": [
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                                              "function": {"name": "f", "arguments": {"a": 1}}}]}]},
     "'messages[0].tool_calls[0].function.arguments' must be a string."),
    ("n a word", "chat", {"model": "m", "messages": [], "n": "two"}, "'n' must be an integer or null."),
    ("stream a string", "chat", {"model": "m", "messages": [], "stream": "yes"},
     "'stream' must be true or false or null."),
    ("tools an object", "chat", {"model": "m", "messages": [], "tools": {"type": "function"}},
     "'tools' must be an array or null."),
    ("prompt mixed", "completions", {"model": "m", "prompt": [1, "a"]},
     "'prompt' must be a string, an array of strings, an array of token ids, or an array of them."),
    ("embeddings without input", "embeddings", {"model": "m"}, "The request body must have 'input'."),
    ("responses input a number", "responses", {"model": "m", "input": 5},
     "'input' must be a string or an array of input items."),
    ("a Gemini role a list", "generate_content", {"contents": [{"role": ["user"], "parts": [{"text": "hi"}]}]},
     "'contents[0].role' must be a string."),
    ("Gemini system parts a number", "generate_content", {"contents": [], "systemInstruction": {"parts": 5}},
     "'systemInstruction' must be an object of text parts or a string."),
    ("Gemini call args a list", "generate_content",
     {"contents": [{"role": "model", "parts": [{"functionCall": {"name": "f", "args": [1]}}]}]},
     "'contents[0].parts[0].functionCall.args' must be an object."),
    ("Gemini declarations an object", "generate_content", {"contents": [], "tools": [{"functionDeclarations": {}}]},
     "'tools[0].functionDeclarations' must be an array or null."),
    ("Gemini count of contents a number", "count_content_tokens", {"generateContentRequest": {"contents": 5}},
     "'generateContentRequest.contents' must be an array or null."),
]


@pytest.mark.parametrize("name,kind,body,expected", MALFORMED, ids=[row[0] for row in MALFORMED])
def test_a_malformed_body_is_named_field_by_field(name, kind, body, expected):
    assert codec_of(kind).shape_problem(body) == expected


@pytest.mark.parametrize("kind,body", [
    ("chat", {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url",
                                                                      "image_url": {"url": "https://x"}}]}],
              "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
              "tool_choice": "auto", "stream": True, "stream_options": {"include_usage": True},
              "a_field_the_provider_judges": {"x": [1, 2]}}),
    ("completions", {"model": "m", "prompt": [[1, 2], [3]]}),
    ("embeddings", {"model": "m", "input": ["a", "b"], "dimensions": 8}),
    ("responses", {"model": "m", "input": [{"role": "user", "content": "hi"},
                                           {"type": "function_call_output", "call_id": "c", "output": "{}"}]}),
    ("generate_content", {"contents": [{"role": "user", "parts": [{"text": "hi"}, {"inlineData": {
        "mimeType": "image/png", "data": "AAAA"}}]}, {"role": "model", "parts": [{"functionCall": {
            "name": "f", "args": {}}, "thoughtSignature": "c2ln"}]}, {"role": "user", "parts": [{"functionResponse": {
                "name": "f", "response": {"result": [1]}}}]}],
        "systemInstruction": {"parts": [{"text": "be brief"}]}, "generationConfig": {"maxOutputTokens": "64"},
        "tools": [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": {}}]}, {"googleSearch": {}}]}),
    ("count_content_tokens", {"generateContentRequest": {"model": "models/m", "contents": [
        {"role": "user", "parts": [{"text": "hi"}]}]}}),
])
def test_well_formed_bodies_pass(kind, body):
    assert codec_of(kind).shape_problem(body) is None


# --- any JSON, through the whole pipeline ---------------------------------------------

TEMPLATES = {
    "/v1/chat/completions": {"model": "gpt-4o-mini", "max_tokens": 5, "n": 1, "stream": False,
                             "messages": [{"role": "system", "content": "be brief"},
                                          {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                                          {"role": "assistant", "content": None, "tool_calls": [
                                              {"id": "c1", "type": "function",
                                               "function": {"name": "f", "arguments": "{}"}}]},
                                          {"role": "tool", "tool_call_id": "c1", "content": "ok"}],
                             "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
                             "tool_choice": {"type": "function", "function": {"name": "f"}},
                             "stream_options": {"include_usage": True}},
    "/v1/completions": {"model": "gpt-4o-mini", "prompt": ["a", "b"], "suffix": "c", "best_of": 2, "n": 1},
    "/v1/embeddings": {"model": "text-embedding-3-small", "input": [[1, 2], [3]]},
    "/v1/responses": {"model": "gpt-4o-mini", "instructions": "x", "max_output_tokens": 5,
                      "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}]},
}

@st.composite
def mutated_requests(draw):
    """A well-formed body with one to three of its values replaced by others."""
    endpoint = draw(st.sampled_from(sorted(TEMPLATES)))
    body = TEMPLATES[endpoint]
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(paths(body))))
        body = replaced(body, path, draw(WRONG_TYPE))
    return endpoint, body


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    return quickstart_runtime(tmp_path_factory.mktemp("state"), quickstart_config())


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutated_requests(), st.sampled_from(["sk-test-carol", "sk-demo-bob"]))
def test_no_json_body_makes_the_gateway_fail(runtime, request_and_body, key):
    """Whatever JSON sits wherever in a body, for a caller with guardrails, budget and
    allowlist (bob) or with a budget alone (carol), the answer is forwarding it or a 4xx
    OpenAI-style error, never a 500."""
    endpoint, body = request_and_body
    reply = through_pipeline(runtime, endpoint, body, key)
    if reply.HasField("immediate_response"):
        status = reply.immediate_response.status.code
        error = orjson.loads(reply.immediate_response.body)["error"]
        assert 400 <= status < 500, (status, error)
        assert error["message"] and error["code"]
    else:
        assert reply.HasField("request_body")


def test_the_fork_server_compiles_every_checker_so_that_no_worker_compiles_one(monkeypatch):
    """api/schemas.py's compile_all, which the fork server runs before it forks: a body
    checked afterwards on any endpoint compiles nothing."""
    import fastjsonschema

    from extproc.api import anthropic_schema, openai_schema, schemas
    from extproc.dialects.google import gemini_schema
    schemas.compile_all()
    assert len(schemas._MADE) >= 8

    def no_compiling(_schema):
        raise AssertionError("compiled in a call")
    monkeypatch.setattr(fastjsonschema, "compile", no_compiling)
    assert openai_schema.chat_shape_problem({"model": "m", "messages": []}) is None
    assert openai_schema.responses_shape_problem({"model": "m", "input": "hi"}) is None
    assert anthropic_schema.messages_shape_problem({"model": "m", "max_tokens": 5, "messages": 3}) is not None
    assert gemini_schema.count_tokens_shape_problem({"contents": []}) is None
