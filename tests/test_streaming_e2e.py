"""Streaming through real Envoy: streams flow as the provider produces them, and their
usage is always counted, whether the provider sends it or not."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
import yaml
from gateway_stack import FIXTURES

ALICE = {"authorization": "Bearer sk-demo-alice"}


def _rid() -> str:
    return f"test-{uuid.uuid4()}"


def _chat(content: str, **extra) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **extra}


def test_first_chunk_arrives_long_before_the_last(gateway):
    words = " ".join(f"w{i}" for i in range(6))
    arrivals = []
    started = time.perf_counter()
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", json=_chat(words, stream=True),
                      headers={**ALICE, "x-mock-chunk-delay-ms": "300"}, timeout=30) as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            if chunk.strip():
                arrivals.append(time.perf_counter() - started)
    # 8 events 300 ms apart: ~2.1 s from first to last. Buffering would bunch them at the end.
    assert arrivals[-1] - arrivals[0] > 1.5
    assert arrivals[0] < 1.0, arrivals


def test_client_without_include_usage_sees_none_but_gateway_records_it(gateway):
    rid = _rid()
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions",
                      json=_chat("count these tokens", stream=True),
                      headers={**ALICE, "x-request-id": rid}) as response:
        body = b"".join(response.iter_raw())
    assert b'"usage"' not in body
    assert body.rstrip().endswith(b"data: [DONE]")
    record = gateway.wait_for_record(rid)
    assert record["usage_estimated"] is False
    assert record["output_tokens"] == 3 and record["input_tokens"] > 0
    [received] = [r for r in gateway.received() if r["headers"].get("x-request-id") == record["request_id"]]
    assert '"include_usage":true' in received["body"]


def test_client_asking_for_usage_gets_it_unchanged(gateway):
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions",
                      json=_chat("hello", stream=True, stream_options={"include_usage": True}),
                      headers=ALICE) as response:
        body = b"".join(response.iter_raw())
    assert body.count(b'"usage":null') >= 2 and b'"completion_tokens":1' in body


def test_client_disconnect_is_recorded_with_estimated_usage(gateway):
    """A stream the service reads chunk by chunk (a virtual model's) is charged the output
    it saw before the client left; a stream passed through is charged what Envoy sent it
    (test_pass_through_e2e.py)."""
    rid = _rid()
    tracebacks = gateway.stderr_path.read_text().count("Traceback")
    words = " ".join(f"word{i}" for i in range(40))
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions",
                      json={**_chat(words, stream=True), "model": "smart"},
                      headers={**ALICE, "x-request-id": rid, "x-mock-chunk-delay-ms": "100"}) as response:
        seen = 0
        for chunk in response.iter_raw():
            seen += chunk.count(b"data: ")
            if seen >= 4:
                break
    record = gateway.wait_for_record(rid, timeout=15)
    assert record["outcome"] == "cancelled"
    assert record["usage_estimated"] is True
    assert 0 < record["output_tokens"] < 40 and record["input_tokens"] > 0
    time.sleep(0.3)              # the provider's next write finds the connection closed
    assert gateway.stderr_path.read_text().count("Traceback") == tracebacks, "a process complained"


def test_upstream_cut_is_recorded_with_estimated_usage(gateway):
    rid = _rid()
    words = " ".join(f"word{i}" for i in range(20))
    with pytest.raises(httpx.HTTPError):
        with httpx.stream("POST", f"{gateway.base_url}/chat/completions",
                          json=_chat(words, stream=True),
                          headers={**ALICE, "x-request-id": rid, "x-mock-cut-after": "5",
                                   "x-mock-chunk-delay-ms": "20"}) as response:
            b"".join(response.iter_raw())
    record = gateway.wait_for_record(rid, timeout=15)
    assert record["usage_estimated"] is True and record["output_tokens"] > 0


def test_usage_reaches_envoy_access_log_within_a_second(gateway, alice):
    """Each call's usage is in Envoy's own access log line, and the line is out within
    about a second: `extproc up` has Envoy flush it every second (its default, 10 s,
    could hold a quiet gateway's lines back for up to 10 s)."""
    import json
    for _ in range(3):
        rid = alice.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "metadata please"}]).headers["x-request-id"]
        deadline = time.time() + 2.5        # the flush interval, and room for a slow machine
        lines: list[str] = []
        while not lines and time.time() < deadline:
            lines = [line for line in gateway.stderr_path.read_text().splitlines()
                     if '"source":"envoy"' in line.replace(" ", "") and rid in line]
            time.sleep(0.05)
        assert len(lines) == 1, f"Envoy's access log line for {rid} did not appear within 2.5 s"
        entry = json.loads(lines[0])
        assert entry["output_tokens"] == 2 and entry["input_tokens"] > 0 and entry["backend"] == "mock"


def test_envoy_starts_without_a_wall_of_work_in_progress_notes(gateway, alice):
    """`extproc up` keeps Envoy's stderr for what matters: its access log and real
    warnings, not a note per work-in-progress proto at every start."""
    rid = alice.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]).headers["x-request-id"]
    deadline = time.time() + 2.5
    while rid not in gateway.stderr_path.read_text() and time.time() < deadline:
        time.sleep(0.05)
    stderr = gateway.stderr_path.read_text()
    assert rid in stderr                       # Envoy's stderr does land in this file
    assert "work-in-progress" not in stderr


# --- golden: recorded OpenAI traffic replayed by the mock --------------------------

def _recording(name: str) -> dict:
    return yaml.safe_load((FIXTURES / "openai-recordings" / f"{name}.yaml").read_text())["interactions"][0]


def _recorded_usage(response: dict) -> dict | None:
    body = response["body"]
    if "text/event-stream" in str(response["headers"].get("Content-Type")):
        import json
        usage = None
        for block in body.split("\n\n"):
            if block.startswith("data: {"):
                usage = json.loads(block[6:]).get("usage") or usage
        return usage
    import json
    return json.loads(body).get("usage")


GOLDEN = ["chat-basic", "chat-streaming", "chat-streaming-detailed-usage", "chat-tools",
          "embeddings-dimensions", "azure-chat-basic", "chat-bad-request", "chat-unknown-model"]


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_recordings(gateway, name):
    recording = _recording(name)
    request = yaml.safe_load(recording["request"]["body"]) if recording["request"].get("body") else {}
    path = "/embeddings" if "embeddings" in name else "/chat/completions"
    body = {**request, "model": "text-embedding-3-small" if "embeddings" in name else "gpt-4o-mini"}
    rid = _rid()
    response = httpx.post(f"{gateway.base_url}{path}", json=body,
                          headers={**ALICE, "x-request-id": rid, "x-mock-replay": name}, timeout=30)
    expected = recording["response"]
    assert response.status_code == expected["code"]
    # What the client receives is what the provider sent (the client asked for what it got).
    assert response.content == expected["body"].encode()
    record = gateway.wait_for_record(rid)
    usage = _recorded_usage(expected)
    if usage is None:
        if expected["code"] >= 400:
            assert record["input_tokens"] == 0 and record["outcome"] == "upstream_error"
        else:
            assert record["usage_estimated"] is True and record["output_tokens"] > 0
        return
    assert record["usage_estimated"] is False
    assert record["input_tokens"] == usage["prompt_tokens"]
    assert record["output_tokens"] == usage.get("completion_tokens", 0)
    assert record["cached_tokens"] == (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    assert record["reasoning_tokens"] == (usage.get("completion_tokens_details") or {}).get(
        "reasoning_tokens", 0)
