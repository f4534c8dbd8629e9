"""Unusual requests through real Envoy: compressed bodies, gRPC content types, bodies of
the wrong shape, request ids and names the caller chooses, one model by its id, and the
Responses API's stored responses, each answered by the backend that made it."""

from __future__ import annotations

import gzip
import uuid

import httpx
import openai
import pytest

ALICE = {"authorization": "Bearer sk-demo-alice"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]}


def _post(gateway, path: str = "/chat/completions", **kwargs) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}{path}", timeout=30, **kwargs)


def test_a_gzip_body_is_read_decompressed(gateway):
    """Envoy decompresses it: guardrails and the provider read the JSON, not its bytes."""
    import orjson
    body = {**CHAT, "messages": [{"role": "user", "content": "mail me at jane.doe@example.com"}]}
    gateway.clear_received()
    response = _post(gateway, content=gzip.compress(orjson.dumps(body)),
                     headers={**ALICE, "content-type": "application/json", "content-encoding": "gzip"})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "mail me at [EMAIL]"
    [received] = gateway.received()
    assert "content-encoding" not in received["headers"]


def test_a_gzip_body_that_inflates_a_thousandfold_is_read_whole(gateway):
    """A tool result of one repeated line compresses ~1,000:1, past Envoy's default bound of
    100:1 (which cut it, and the gateway saw invalid JSON): read whole up to DEFLATE's limit."""
    import orjson
    text = "ok\n" * 200_000
    raw = orjson.dumps({**CHAT, "messages": [{"role": "user", "content": text}], "max_tokens": 5})
    compressed = gzip.compress(raw)
    assert len(raw) / len(compressed) > 500
    gateway.clear_received()
    response = _post(gateway, content=compressed,
                     headers={**ALICE, "content-type": "application/json", "content-encoding": "gzip"})
    assert response.status_code == 200, response.text
    [received] = gateway.received()
    assert orjson.loads(received["body"])["messages"][0]["content"] == text


def test_an_encoding_envoy_does_not_decompress_is_refused(gateway):
    gateway.clear_received()
    response = _post(gateway, content=b"\x78\x9c...", headers={**ALICE, "content-type": "application/json",
                                                              "content-encoding": "deflate"})
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_content_encoding"
    assert "'deflate'" in response.json()["error"]["message"]
    assert gateway.received() == []


def test_a_content_encoding_that_names_no_encoding_is_not_repeated(gateway):
    """The header's value is the caller's text: the refusal (and its log line) never repeats it."""
    response = _post(gateway, content=b"{}", headers={"content-type": "application/json",
                                                      "content-encoding": "Bearer sk-demo-alice"})
    assert response.status_code == 415 and "sk-demo" not in response.text
    records = [line for line in gateway.log_path.read_text().splitlines() if line.startswith("{")]
    assert records and not any("sk-demo" in line for line in records)     # (the banner names the demo keys)


@pytest.mark.parametrize("content_type", ["application/grpc", "application/grpc+proto", "application/GRPC-web"])
def test_a_grpc_content_type_gets_http_errors_not_grpc_statuses(gateway, content_type):
    """Envoy answers a gRPC request's local replies as HTTP 200 + grpc-status: a refusal
    on these paths must stay an HTTP error whatever the content type says."""
    refused = _post(gateway, json=CHAT, headers={"content-type": content_type})          # no key
    assert refused.status_code == 415 and "grpc-status" not in refused.headers
    assert refused.json()["error"]["code"] == "unsupported_content_type"
    answered = _post(gateway, json=CHAT, headers={**ALICE, "content-type": content_type})
    assert answered.status_code == 415 and "grpc-status" not in answered.headers


@pytest.mark.parametrize("body,field", [
    ({"model": "gpt-4o-mini", "messages": 1}, "'messages' must be an array."),
    ({"model": "gpt-4o-mini", "messages": [True]}, "'messages[0]' must be an object."),
    ({"model": "gpt-4o-mini", "messages": [{"role": "assistant", "tool_calls": [7]}]},
     "'messages[0].tool_calls[0]' must be an object."),
], ids=["messages a number", "a message true", "a number in tool_calls"])
def test_a_body_of_the_wrong_shape_is_a_400_naming_the_field(gateway, body, field):
    gateway.clear_received()
    response = _post(gateway, json=body, headers=ALICE)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and error["message"] == field
    assert gateway.received() == []


def test_the_gateway_owns_the_request_id_and_keeps_the_callers_beside_it(gateway):
    gateway.clear_received()
    response = _post(gateway, json=CHAT, headers={**ALICE, "x-request-id": "caller-chosen-id"})
    ours = response.headers["x-request-id"]
    assert ours != "caller-chosen-id" and str(uuid.UUID(ours)) == ours
    [received] = gateway.received()
    assert received["headers"]["x-request-id"] == ours               # the provider sees ours
    record = gateway.wait_for_record(ours)
    assert record["client_request_id"] == "caller-chosen-id"
    refused = _post(gateway, json={**CHAT, "model": "no-such-model"}, headers={**ALICE, "x-request-id": "x" * 5000})
    record = gateway.wait_for_record(refused.headers["x-request-id"])
    assert record["client_request_id"] == "x" * 128                  # bounded


def test_a_huge_model_name_makes_no_huge_log_line(gateway):
    name = "m" * 1_000_000
    response = _post(gateway, json={**CHAT, "model": name}, headers=ALICE)
    assert response.status_code == 404 and len(response.content) < 1000
    record = gateway.wait_for_record(response.headers["x-request-id"])
    assert record["model"] == "m" * 256
    line = next(line for line in gateway.log_path.read_text().splitlines()
                if response.headers["x-request-id"] in line)
    assert len(line) < 4096


def test_one_model_by_its_id(gateway):
    one = httpx.get(f"{gateway.base_url}/models/gpt-4o", headers=ALICE)
    assert one.status_code == 200 and one.json()["id"] == "gpt-4o" and one.json()["object"] == "model"
    bob = httpx.get(f"{gateway.base_url}/models/gpt-4o", headers={"authorization": "Bearer sk-demo-bob"})
    assert bob.status_code == 404 and bob.json()["error"]["code"] == "model_not_found"
    client = openai.OpenAI(base_url=gateway.base_url, api_key="sk-demo-alice", max_retries=0)
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_stored_response_is_found_at_the_backend_that_made_it_by_its_key_only(gateway, stream):
    """`smart` fails over to mock-backup: the response lives there, and the gateway sends
    each later call for it there, for the key that made it; to anyone else it does not exist."""
    alice = openai.OpenAI(base_url=gateway.base_url, api_key="sk-demo-alice", max_retries=0)
    if stream:
        with alice.responses.stream(model="smart", input="remember me") as events:
            created = events.get_final_response()
    else:
        created = alice.responses.create(model="smart", input="remember me")
    assert created.output_text == "remember me"
    found = alice.responses.retrieve(created.id)
    assert found.id == created.id and found.output_text == "remember me"
    items = alice.responses.input_items.list(created.id)
    assert items.data[0].content[0].text == "remember me"
    bob = openai.OpenAI(base_url=gateway.base_url, api_key="sk-demo-bob", max_retries=0)
    with pytest.raises(openai.NotFoundError) as refused:
        bob.responses.retrieve(created.id)
    assert refused.value.code == "response_not_found"
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve("resp_never_made_here")
    lookups = [r for r in gateway.received("mock") if r["path"].endswith(created.id)]
    assert lookups and all(r["headers"]["authorization"] == "Bearer mock-provider-key" for r in lookups)
    alice.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(created.id)


def test_an_embeddings_answer_too_large_to_buffer_still_arrives_counted(gateway):
    """1,000 inputs of 1,536 floats make a ~30 MB answer, past what Envoy buffers: it
    streams by unchanged, and its usage is read from its tail."""
    inputs = ["the same input, embedded once by the mock"] * 1000     # the model runs once: the size is the point
    response = httpx.post(f"{gateway.base_url}/embeddings", headers=ALICE, timeout=120,
                          json={"model": "text-embedding-3-small", "input": inputs})
    assert response.status_code == 200, response.text[:300]
    assert len(response.content) > 16 * 1024 * 1024
    answer = response.json()
    assert len(answer["data"]) == 1000 and len(answer["data"][-1]["embedding"]) == 1536
    record = gateway.wait_for_record(response.headers["x-request-id"])
    assert record["status"] == 200 and record["outcome"] == "ok"
    assert record["input_tokens"] == answer["usage"]["prompt_tokens"] and not record["usage_estimated"]
