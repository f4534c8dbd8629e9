"""The mock provider speaks Google's Gemini API as Google does: the official `google-genai`
SDK, as a client of `extproc mock-provider`, reads its answers, streams (SSE and the JSON
array), thoughts, function calls, token counts, model lists and errors; its usage is the
gateway's own count; its bodies have the recorded shapes, and every Gemini recording
replays byte for byte."""

from __future__ import annotations

import subprocess
import time

import httpx
import orjson
import pytest
import yaml
from gateway_stack import FIXTURES, free_port, wait_for_port
from warm_start import launch_extproc
from google import genai
from google.genai import errors, types

from extproc.api.tokens import count_prompt, count_text, get_encoding, token_ids

KEY = "mock-gemini-key"
MODEL = "gemini-2.5-flash"
RECORDINGS = FIXTURES / "provider-recordings"
GEMINI_RECORDINGS = ("gemini-generate-content", "gemini-stream-sse", "gemini-function-calling", "gemini-error-400")
ECHO = "Hello, mock! Ünïcödé and an emoji 😀, then <more> words & signs."


@pytest.fixture(scope="module")
def mock(tmp_path_factory) -> dict[str, str]:
    """`extproc mock-provider` serving two listeners: `mock`, and `unavailable`, whose
    `failure:` defaults answer every call 503. Their base URLs, by name."""
    ports = {"mock": free_port(), "unavailable": free_port()}
    config = tmp_path_factory.mktemp("mock") / "mock.yaml"
    config.write_text(yaml.safe_dump({"mock_provider": {"listeners": [
        {"name": "mock", "port": ports["mock"], "api_key": KEY},
        {"name": "unavailable", "port": ports["unavailable"], "api_key": KEY, "failure": {"status": 503}}]}}))
    process = launch_extproc(["mock-provider", "--config", str(config),
                              "--fixtures", str(FIXTURES)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for port in ports.values():
            wait_for_port(port, process=process)
        yield {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    finally:
        process.terminate()
        process.wait(timeout=10)


def sdk(base: str, key: str = KEY, **options) -> genai.Client:
    return genai.Client(api_key=key, http_options={"base_url": base, **options})


@pytest.fixture(scope="module")
def client(mock) -> genai.Client:
    return sdk(mock["mock"])


def user(*texts: str) -> dict:
    return {"role": "user", "parts": [{"text": text} for text in texts]}


def config(headers: dict | None = None, **settings) -> types.GenerateContentConfig:
    """Generation settings, and x-mock-* headers sent with the call."""
    return types.GenerateContentConfig(**settings, http_options=types.HttpOptions(headers=headers) if headers else None)


def post(mock: dict, method: str, body: dict, headers: dict | None = None, query: str = "",
         listener: str = "mock") -> httpx.Response:
    return httpx.post(f"{mock[listener]}/v1beta/models/{MODEL}:{method}{query}", json=body, timeout=10,
                      headers={"x-goog-api-key": KEY, **(headers or {})})


def sse_chunks(raw: bytes) -> list[dict]:
    """The chunks of a Gemini SSE body, checking Google's framing on the way: every event
    one `data: ` line ended by CRLF CRLF, no event names, no [DONE]."""
    assert raw.endswith(b"\r\n\r\n")
    frames = raw.split(b"\r\n\r\n")[:-1]
    assert all(frame.startswith(b"data: ") and b"\n" not in frame for frame in frames)
    return [orjson.loads(frame[6:]) for frame in frames]


def chunk_text(chunk: dict) -> str:
    return "".join(part.get("text", "") for part in chunk["candidates"][0]["content"]["parts"])


# --- answers ------------------------------------------------------------------------------

def test_an_answer_echoes_the_last_user_turn_with_the_gateways_usage(client, mock):
    system = "You are terse."
    contents = [user("first turn"), {"role": "model", "parts": [{"text": "ok"}]}, user(ECHO[:20], ECHO[20:])]
    response = client.models.generate_content(model=MODEL, contents=contents,
                                              config=config(system_instruction=system))
    [candidate] = response.candidates
    assert response.text == ECHO and [p.text for p in candidate.content.parts] == [ECHO]   # joined, as received
    assert (candidate.content.role, candidate.finish_reason, candidate.index) == ("model", "STOP", 0)
    assert response.model_version == MODEL and len(response.response_id) == 23
    prompt = count_prompt([system, "first turn", "ok", ECHO[:20], ECHO[20:]], 3)
    usage = response.usage_metadata
    assert (usage.prompt_token_count, usage.candidates_token_count) == (prompt, count_text(ECHO))
    assert usage.total_token_count == prompt + count_text(ECHO)
    assert usage.thoughts_token_count is None and usage.cached_content_token_count is None
    assert [(d.modality, d.token_count) for d in usage.prompt_tokens_details] == [("TEXT", prompt)]
    [entry] = [e for e in httpx.get(f"{mock['mock']}/_mock/requests").json() if "You are terse." in e["body"]]
    assert entry["path"].endswith(f"/models/{MODEL}:generateContent")
    assert entry["usage"] == {"prompt_tokens": prompt, "completion_tokens": count_text(ECHO), "cached_tokens": 0}


def test_the_json_is_written_as_google_writes_it(mock):
    response = post(mock, "generateContent", {"contents": [user(ECHO)]})
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    assert response.content.startswith(b'{\n  "candidates": [\n    {\n      "content": {')
    assert response.content.endswith(b"}\n")
    # Non-ASCII as it is; <, > and & as \u escapes, as Google's recorded streams have them.
    assert "Ünïcödé and an emoji 😀".encode() in response.content
    assert b"\\u003cmore\\u003e words \\u0026 signs" in response.content
    assert response.json()["candidates"][0]["content"]["parts"][0]["text"] == ECHO


def test_max_output_tokens_cuts_the_answer(client):
    response = client.models.generate_content(model=MODEL, contents=ECHO, config=config(max_output_tokens=4))
    assert response.candidates[0].finish_reason == "MAX_TOKENS"
    assert response.text == get_encoding("o200k_base").decode(token_ids(ECHO)[:4])
    assert response.usage_metadata.candidates_token_count == 4


def test_a_stop_sequence_ends_the_answer_before_it(client):
    response = client.models.generate_content(model=MODEL, contents=ECHO, config=config(stop_sequences=["x", "emoji"]))
    assert response.candidates[0].finish_reason == "STOP"
    assert response.text == ECHO[:ECHO.index("emoji")]


@pytest.mark.parametrize("version", ["v1beta", "v1"])
def test_both_versions_and_a_key_in_the_query_are_served_alike(mock, version):
    versioned = sdk(mock["mock"], api_version=version)
    assert versioned.models.generate_content(model=MODEL, contents=f"hi from {version}").text == f"hi from {version}"
    [entry] = [e for e in httpx.get(f"{mock['mock']}/_mock/requests").json() if f"hi from {version}\"" in e["body"]]
    assert entry["path"] == f"/{version}/models/{MODEL}:generateContent"
    by_query = httpx.post(f"{mock['mock']}/{version}/models/{MODEL}:generateContent?key={KEY}",
                          json={"contents": [user("q")]})
    assert by_query.status_code == 200 and by_query.json()["candidates"][0]["content"]["parts"] == [{"text": "q"}]


def test_google_refuses_what_it_cannot_read(mock):
    for body, message in (({"contents": [user("hi")], "generation_config": {}, "stream": True},
                           'Invalid JSON payload received. Unknown name "stream": Cannot find field.'),
                          ({"contents": []}, "* GenerateContentRequest.contents: contents is not specified\n"),
                          ({"contents": [{"role": "assistant", "parts": [{"text": "hi"}]}]},
                           "Please use a valid role: user, model.")):
        response = post(mock, "generateContent", body)
        assert response.status_code == 400
        assert response.json()["error"]["message"] == message and response.json()["error"]["status"] == "INVALID_ARGUMENT"


# --- streams ---------------------------------------------------------------------------

def test_a_stream_rebuilds_through_the_sdk_into_the_echo(client):
    chunks = list(client.models.generate_content_stream(model=MODEL, contents=ECHO))
    assert len(chunks) > 3 and "".join(chunk.text for chunk in chunks) == ECHO
    assert [c.candidates[0].finish_reason for c in chunks] == [None] * (len(chunks) - 1) + ["STOP"]
    assert len({c.response_id for c in chunks}) == 1
    counts = [c.usage_metadata.candidates_token_count for c in chunks]
    assert counts == sorted(counts) and counts[-1] == count_text(ECHO)      # running totals, as recorded
    assert {c.usage_metadata.prompt_token_count for c in chunks} == {count_prompt([ECHO], 1)}


def test_an_sse_stream_is_framed_as_googles(mock):
    response = post(mock, "streamGenerateContent", {"contents": [user(ECHO)]}, {"x-mock-chunk-chars": "5"}, "?alt=sse")
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["content-disposition"] == "attachment"
    assert b"event:" not in response.content and b"[DONE]" not in response.content
    chunks = sse_chunks(response.content)
    assert [chunk_text(c) for c in chunks] == [ECHO[i:i + 5] for i in range(0, len(ECHO), 5)]
    assert ["finishReason" in c["candidates"][0] for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert response.content.startswith(b'data: {"candidates": [{"content": {"parts": [{"text": "Hello"}],"role": "model"}')


def test_without_alt_sse_the_chunks_come_as_one_json_array(mock):
    sse = sse_chunks(post(mock, "streamGenerateContent", {"contents": [user(ECHO)]}, query="?alt=sse").content)
    response = post(mock, "streamGenerateContent", {"contents": [user(ECHO)]})
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    assert response.content.startswith(b"[{\n") and response.content.endswith(b"}\n]")
    array = response.json()
    assert [chunk_text(c) for c in array] == [chunk_text(c) for c in sse] and len(array) > 3
    assert array[-1]["candidates"][0]["finishReason"] == "STOP"


def test_stream_faults_apply_to_gemini_streams(client, mock):
    body = {"contents": [user(ECHO)]}
    whole = post(mock, "streamGenerateContent", body, query="?alt=sse").content
    in_bytes = post(mock, "streamGenerateContent", body, {"x-mock-write-bytes": "3"}, "?alt=sse").content
    assert len(in_bytes) == len(whole)
    assert post(mock, "streamGenerateContent", body, {"x-mock-unended": "1"}, "?alt=sse").content.endswith(b"}")
    with pytest.raises(httpx.HTTPError):
        post(mock, "streamGenerateContent", body, {"x-mock-cut-after": "2"}, "?alt=sse")
    chunks = client.models.generate_content_stream(model=MODEL, contents=ECHO,
                                                   config=config({"x-mock-write-bytes": "7"}))
    assert "".join(chunk.text for chunk in chunks) == ECHO
    started = time.monotonic()
    assert post(mock, "generateContent", body, {"x-mock-delay-ms": "300"}).status_code == 200
    assert time.monotonic() - started >= 0.3
    with pytest.raises(httpx.HTTPError):
        post(mock, "generateContent", body, {"x-mock-truncate": "20"})
    with pytest.raises(httpx.HTTPError):
        post(mock, "generateContent", body, {"x-mock-reset": "1"})


# --- thinking and function calls -----------------------------------------------------------

def test_thoughts_come_first_when_asked_for_and_count_apart(client):
    thinking = types.ThinkingConfig(include_thoughts=True)
    response = client.models.generate_content(model=MODEL, contents=ECHO, config=config(thinking_config=thinking))
    thought, answer = response.candidates[0].content.parts
    assert thought.thought is True and thought.text.startswith("Thinking about: Hello")
    assert answer.text == ECHO and not answer.thought and answer.thought_signature is None   # no functions: unsigned
    usage = response.usage_metadata
    assert usage.thoughts_token_count == count_text(thought.text)
    assert usage.total_token_count == usage.prompt_token_count + count_text(ECHO) + usage.thoughts_token_count
    streamed = list(client.models.generate_content_stream(model=MODEL, contents=ECHO,
                                                          config=config(thinking_config=thinking)))
    parts = [part for chunk in streamed for part in chunk.candidates[0].content.parts]
    assert "".join(p.text for p in parts if p.thought) == thought.text
    assert "".join(p.text for p in parts if not p.thought) == ECHO
    assert [p.thought or False for p in parts] == sorted((p.thought or False for p in parts), reverse=True)


def test_hidden_thinking_is_counted_and_spends_the_output_budget(client):
    hidden = config(thinking_config=types.ThinkingConfig(thinking_budget=1024), max_output_tokens=20)
    response = client.models.generate_content(model=MODEL, contents=ECHO, config=hidden)
    [part] = response.candidates[0].content.parts
    thoughts = response.usage_metadata.thoughts_token_count
    assert 0 < thoughts < 20 and not part.thought
    assert response.usage_metadata.candidates_token_count == 20 - thoughts
    assert part.text == get_encoding("o200k_base").decode(token_ids(ECHO)[:20 - thoughts])
    assert response.candidates[0].finish_reason == "MAX_TOKENS"
    off = client.models.generate_content(model=MODEL, contents=ECHO,
                                         config=config(thinking_config=types.ThinkingConfig(thinking_budget=0)))
    assert off.usage_metadata.thoughts_token_count is None and off.text == ECHO


def test_a_function_call_carries_the_echo_as_its_args(client, mock):
    tools = [types.Tool(function_declarations=[types.FunctionDeclaration(
        name="lookup", description="Looks up.", parameters={"type": "OBJECT", "properties": {"text": {"type": "STRING"}}})])]
    settings = dict(tools=tools, thinking_config=types.ThinkingConfig(thinking_budget=512),
                    automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
    response = client.models.generate_content(model=MODEL, contents=ECHO,
                                              config=config({"x-mock-tool-call": "lookup"}, **settings))
    [call] = response.function_calls
    assert (call.name, call.args, call.id) == ("lookup", {"text": ECHO}, None)      # the Gemini API sends no id
    assert response.candidates[0].finish_reason == "STOP"
    assert response.candidates[0].content.parts[0].thought_signature           # signed, as recorded
    assert response.usage_metadata.candidates_token_count == count_text(orjson.dumps({"text": ECHO}).decode())
    raw = post(mock, "generateContent", {"contents": [user(ECHO)]}, {"x-mock-tool-call": "lookup"})
    assert raw.json()["candidates"][0]["finishMessage"] == "Model generated function call(s)."   # (the SDK drops it)
    raw = post(mock, "streamGenerateContent", {"contents": [user(ECHO)]}, {"x-mock-tool-call": "lookup"}, "?alt=sse")
    [chunk] = sse_chunks(raw.content)                                         # a call comes whole, in one chunk
    assert chunk["candidates"][0]["content"]["parts"] == [{"functionCall": {"name": "lookup", "args": {"text": ECHO}}}]


# --- caching, counting, models ---------------------------------------------------------------

def test_cached_tokens_are_reported_within_the_prompts_count(client):
    response = client.models.generate_content(model=MODEL, contents=ECHO, config=config({"x-mock-cached-tokens": "5"}))
    usage, prompt = response.usage_metadata, count_prompt([ECHO], 1)
    assert (usage.prompt_token_count, usage.cached_content_token_count) == (prompt, 5)
    assert [(d.modality, d.token_count) for d in usage.cache_tokens_details] == [("TEXT", 5)]
    everything = client.models.generate_content(model=MODEL, contents=ECHO,
                                                config=config({"x-mock-cached-tokens": "100000"}))
    assert everything.usage_metadata.cached_content_token_count == prompt


def test_count_tokens_counts_the_prompt_as_generate_content_does(client, mock):
    contents = [user("first"), {"role": "model", "parts": [{"text": "ok"}]}, user(ECHO)]
    counted = client.models.count_tokens(model=MODEL, contents=contents)
    assert counted.total_tokens == count_prompt(["first", "ok", ECHO], 3)
    raw = post(mock, "countTokens", {"contents": contents})
    assert raw.json() == {"totalTokens": counted.total_tokens,
                          "promptTokensDetails": [{"modality": "TEXT", "tokenCount": counted.total_tokens}]}
    wrapped = post(mock, "countTokens", {"generateContentRequest": {"model": f"models/{MODEL}", "contents": contents}})
    assert wrapped.json()["totalTokens"] == counted.total_tokens


def test_models_are_listed_paged_and_described_as_google_does(client, mock):
    models = list(client.models.list())
    names = [m.name for m in models]
    assert f"models/{MODEL}" in names and all(name.startswith("models/gemini-") for name in names)
    flash = next(m for m in models if m.name == f"models/{MODEL}")
    assert (flash.display_name, flash.input_token_limit, flash.output_token_limit) == ("Gemini 2.5 Flash", 1_048_576,
                                                                                       65_536)
    assert "generateContent" in flash.supported_actions and "countTokens" in flash.supported_actions
    assert [m.name for m in client.models.list(config={"page_size": 2})] == names      # follows nextPageToken
    first_page = httpx.get(f"{mock['mock']}/v1beta/models?pageSize=2", headers={"x-goog-api-key": KEY}).json()
    assert len(first_page["models"]) == 2 and first_page["nextPageToken"]
    assert client.models.get(model=MODEL).display_name == "Gemini 2.5 Flash"
    with pytest.raises(errors.ClientError) as missing:
        client.models.get(model="gemini-0-nonesuch")
    assert (missing.value.code, missing.value.status) == (404, "NOT_FOUND")
    google = httpx.get(f"{mock['mock']}/v1/models", headers={"x-goog-api-key": KEY}).json()     # the shared path
    assert [m["name"] for m in google["models"]] == names
    assert httpx.get(f"{mock['mock']}/v1/models").json()["object"] == "list"                 # an OpenAI client's


# --- errors -----------------------------------------------------------------------------------

def test_a_wrong_key_gets_the_recorded_answer_and_a_missing_one_403(mock):
    wrong_key = sdk(mock["mock"], key="wrong")
    with pytest.raises(errors.ClientError) as wrong:
        wrong_key.models.generate_content(model=MODEL, contents="hi")
    assert (wrong.value.code, wrong.value.status) == (400, "INVALID_ARGUMENT")
    assert wrong.value.message == "API key not valid. Please pass a valid API key."
    recorded = yaml.safe_load((RECORDINGS / "gemini-error-400.yaml").read_text())["interactions"][0]["response"]
    raw = post(mock, "generateContent", {"contents": [user("hi")]}, {"x-goog-api-key": "wrong"})
    assert raw.content == recorded["body"].encode()                               # byte for byte
    missing = httpx.post(f"{mock['mock']}/v1beta/models/{MODEL}:generateContent", json={"contents": [user("hi")]})
    assert missing.status_code == 403 and missing.json()["error"]["status"] == "PERMISSION_DENIED"


@pytest.mark.parametrize("status, error_class, name", [
    (429, errors.ClientError, "RESOURCE_EXHAUSTED"), (404, errors.ClientError, "NOT_FOUND"),
    (403, errors.ClientError, "PERMISSION_DENIED"), (500, errors.ServerError, "INTERNAL"),
    (503, errors.ServerError, "UNAVAILABLE"), (504, errors.ServerError, "DEADLINE_EXCEEDED")])
def test_a_failure_status_gets_googles_error(client, status, error_class, name):
    with pytest.raises(error_class) as raised:
        client.models.generate_content(model=MODEL, contents="hi",
                                       config=config({"x-mock-status": str(status), "x-mock-retry-after": "3"}))
    assert (raised.value.code, raised.value.status) == (status, name) and raised.value.message
    assert raised.value.response.headers["retry-after"] == "3"
    details = raised.value.details["error"].get("details", [])
    assert (details == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}]) == (status == 429)


def test_a_listeners_failure_defaults_apply_to_gemini_calls(mock):
    unavailable = sdk(mock["unavailable"])
    with pytest.raises(errors.ServerError) as raised:
        unavailable.models.generate_content(model=MODEL, contents="hi")
    assert raised.value.status == "UNAVAILABLE"
    with pytest.raises(errors.ServerError):
        unavailable.models.count_tokens(model=MODEL, contents="hi")
    aimed_elsewhere = {"x-mock-only": "unavailable", "x-mock-status": "500"}
    answering = sdk(mock["mock"])
    assert answering.models.generate_content(model=MODEL, contents="hi", config=config(aimed_elsewhere)).text == "hi"


# --- golden: the recordings' shapes, and the recordings replayed ----------------------------------

def _recorded(name: str, interaction: int = 0) -> tuple[dict, dict]:
    recorded = yaml.safe_load((RECORDINGS / f"{name}.yaml").read_text())["interactions"][interaction]
    return recorded["request"], recorded["response"]


def key_sets(body: dict) -> dict[str, set[str]]:
    """The keys at each level of a generateContent answer the gateway reads."""
    candidate = body["candidates"][0]
    usage = body["usageMetadata"]
    return {"response": set(body), "candidate": set(candidate), "content": set(candidate["content"]),
            "part": set(candidate["content"]["parts"][0]), "usage": set(usage),
            "prompt details": set(usage["promptTokensDetails"][0])}


def test_answers_have_the_recorded_shapes(mock):
    thinking = {"generationConfig": {"thinkingConfig": {"thinkingBudget": 1024}}}     # 2.5 Flash thinks by default
    _, recorded = _recorded("gemini-generate-content")
    answer = post(mock, "generateContent", {"contents": [user(ECHO)], **thinking}).json()
    assert key_sets(answer) == key_sets(orjson.loads(recorded["body"]))
    _, recorded = _recorded("gemini-stream-sse")
    streamed = sse_chunks(post(mock, "streamGenerateContent", {"contents": [user(ECHO)], **thinking},
                               query="?alt=sse").content)
    frames = sse_chunks(recorded["body"].encode())
    assert key_sets(streamed[0]) == key_sets(frames[0]) and key_sets(streamed[-1]) == key_sets(frames[-1])
    request, recorded = _recorded("gemini-function-calling")
    called = post(mock, "generateContent", {**orjson.loads(request["body"]), **thinking},
                  {"x-mock-tool-call": "secret_retrieval_tool"}).json()
    recorded_call = orjson.loads(recorded["body"])
    assert key_sets(called) == key_sets(recorded_call)
    assert set(called["candidates"][0]["content"]["parts"][0]["functionCall"]) == \
        set(recorded_call["candidates"][0]["content"]["parts"][0]["functionCall"])


@pytest.mark.parametrize("name", GEMINI_RECORDINGS)
def test_each_gemini_recording_replays_byte_for_byte(mock, name):
    request, recorded = _recorded(name)
    url = httpx.URL(request["url"])
    response = httpx.post(f"{mock['mock']}{url.raw_path.decode()}", content=request["body"].encode(), timeout=10,
                          headers={"x-goog-api-key": KEY, "x-mock-replay": name})
    assert response.status_code == recorded["code"]
    assert response.content == recorded["body"].encode()
    recorded_type = {k.lower(): v for k, v in recorded["headers"].items()}["content-type"][0]
    assert response.headers["content-type"] == recorded_type


def test_a_replayed_crlf_stream_reads_through_the_sdk_and_keeps_the_stream_faults(client, mock):
    _, recorded = _recorded("gemini-stream-sse")
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="What is 4200 + 42?",
                                                        config=config({"x-mock-replay": "gemini-stream-sse"})))
    assert "".join(c.text for c in chunks) == "".join(chunk_text(f) for f in sse_chunks(recorded["body"].encode()))
    assert chunks[-1].usage_metadata.thoughts_token_count == 75
    slow = post(mock, "streamGenerateContent", {"contents": [user("x")]},
                {"x-mock-replay": "gemini-stream-sse", "x-mock-write-bytes": "9"}, "?alt=sse")
    assert slow.content == recorded["body"].encode()
    with pytest.raises(httpx.HTTPError):
        post(mock, "streamGenerateContent", {"contents": [user("x")]},
             {"x-mock-replay": "gemini-stream-sse", "x-mock-cut-after": "1"}, "?alt=sse")
    unknown = post(mock, "generateContent", {"contents": [user("x")]}, {"x-mock-replay": "no-such-recording"})
    assert unknown.status_code == 400 and unknown.json()["error"]["status"] == "INVALID_ARGUMENT"


@pytest.mark.parametrize("path, body", [
    (f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse", {"contents": [{"parts": [{"text": "hi"}]}]}),
    ("/v1/chat/completions", {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}),
])
@pytest.mark.parametrize("control, value", [("end-delay-ms", "soon"), ("status", "²"), ("truncate", "9" * 5000)])
def test_a_numeric_control_that_is_no_number_is_a_400_naming_it(mock, path, body, control, value):
    """On every route of every listener, before anything is answered (it reset streams halfway)."""
    answer = httpx.post(mock["mock"] + path, json=body, headers={"x-goog-api-key": KEY, "authorization": f"Bearer {KEY}",
                                                                 f"x-mock-{control}": value.encode()})
    assert answer.status_code == 400 and answer.json()["error"]["message"] == f"x-mock-{control} must be a whole number"
