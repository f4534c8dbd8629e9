"""Calls whose policy reads nothing of their body (stages/body_unread.py) through real
Envoy: routed at their headers, their body and answer never sent to the service (two
ext_proc messages: request headers, response trailers), the body reaching the provider
as the client wrote it, and the usage Envoy read from the answer recorded and priced.
Every call a part of the policy would read keeps the path with every message; a team
whose calls are not agent runs (`runs.teams`) is not held to it by the runs' loop stopping."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
from gateway_stack import GatewayStack, free_port, quickstart_config, settled_rows

from extproc.store.sqlite_store import SQLiteStore

CHAT = [{"role": "user", "content": "one two three"}]
# Phases whose counts say which path a call took.
PHASES = ("request_headers", "request_body", "response_headers", "response_body", "response_trailers")


def _config() -> dict:
    """The quickstart with its run limits and loop stopping for support's calls only (bob's:
    `runs.teams`), and alice's guardrail policy empty: alice's calls (research) qualify,
    bob's (guardrails, a budget, runs) do not."""
    config = quickstart_config()
    config["runs"]["teams"] = ["support"]
    config["guardrails"]["policies"] = {"default": [rule["name"] for rule in config["guardrails"]["rules"]],
                                        "keys": {"alice": [], "metered": [], "tight": []}}
    # Keys with budgets and no guardrails: their calls go unread while the bound fits.
    config["keys"] += [{"id": name, "key": f"sk-unread-{name}", "user": name, "team": "metered", "models": "*"}
                       for name in ("metered", "tight")]
    config["budgets"] = [*config["budgets"],
                         {"name": "metered-tokens", "scope": "key", "match": "metered", "unit": "tokens",
                          "limit": 10**8, "window": "month"},
                         {"name": "metered-usd", "scope": "team", "match": "metered", "unit": "usd",
                          "limit": 1000, "window": "month"},
                         {"name": "tight-tokens", "scope": "key", "match": "tight", "unit": "tokens",
                          "limit": 3000, "window": "month"}]
    config["rate_limits"] = [{"name": "metered-rpm", "scope": "key", "match": "metered",
                              "requests_per_minute": 10000, "concurrent": 50}]
    config["cache"] = {"rules": [{"models": ["gpt-4o"], "teams": ["research"], "scope": "team", "ttl_s": 60}]}
    # A provider nobody listens on (a port of the stack's, taken and let go).
    config["providers"]["gone"] = {"url": f"http://127.0.0.1:{free_port()}", "api_key": {"value": "gone-key"}}
    config["models"]["gone-model"] = {"backends": [{"provider": "gone"}], "price": {"input": 1, "output": 1}}
    return config


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    gateway = GatewayStack(tmp_path_factory.mktemp("body-unread"), _config()).start()
    yield gateway
    gateway.stop()


def _headers(key: str, rid: str, **extra) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", "content-type": "application/json", "x-request-id": rid, **extra}


def _moved(stack: GatewayStack, before: dict) -> dict[str, int]:
    """Each phase's message count since `before`, once one more trailers or body message
    has been flushed (the call's last)."""
    after = stack.phase_counts(flushed=True)
    return {phase: int(after[phase] - before[phase]) for phase in PHASES}


def test_a_call_no_policy_reads_takes_two_messages_and_is_recorded_whole(stack):
    rid = f"unread-{uuid.uuid4()}"
    stack.clear_received()
    before = stack.phase_counts(flushed=True)
    # Spacing, key order and a field the gateway never reads: the provider gets these bytes.
    sent = b'{ "messages": [{"role": "user", "content": "one two three"}],\n  "model": "gpt-4o-mini", "seed": 7 }'
    response = httpx.post(f"{stack.base_url}/chat/completions", content=sent, timeout=30,
                          headers=_headers("sk-demo-alice", rid, **{"x-mock-cached-tokens": "2"}))
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prompt_tokens"] > 0
    assert response.headers["x-gateway-backend"] == "mock"          # added by Envoy from metadata
    record = stack.wait_for_record(rid)
    assert (record["outcome"], record["status"], record["model"], record["backend"]) == ("ok", 200, "gpt-4o-mini",
                                                                                           "mock")
    answered = response.json()["usage"]
    assert (record["input_tokens"], record["output_tokens"], record["cached_tokens"]) == (
        answered["prompt_tokens"], answered["completion_tokens"], 2)
    assert not record["usage_estimated"] and record["body_unread"] is True
    assert record["cost_usd"] == pytest.approx(stack.expected_cost(record)) and record["cost_usd"] > 0
    # Envoy holds the answer's headers until the trailers' reply: the cost as charged.
    assert float(response.headers["x-gateway-cost-usd"]) == pytest.approx(record["cost_usd"], abs=1e-8)
    stack.phases_moved(before, {"request_headers": 1, "response_trailers": 1})
    assert _moved(stack, before) == {"request_headers": 1, "request_body": 0, "response_headers": 0,
                                     "response_body": 0, "response_trailers": 1}
    [received] = stack.received()
    assert received["body"] == sent.decode() and received["path"] == "/v1/chat/completions"
    # The provider's credential, not the caller's key.
    assert received["headers"]["authorization"] == "Bearer mock-provider-key"
    assert "sk-demo-alice" not in json.dumps(received["headers"])


def _looping(stack: GatewayStack, key: str, run: str, rid: str, times: int) -> httpx.Response:
    """A call that carries the same tool call back `times` times, as a looping agent's does."""
    messages = [{"role": "user", "content": "list the files"}]
    for n in range(times):
        messages += [{"role": "assistant", "content": None, "tool_calls": [{
                         "id": f"c{n}", "type": "function", "function": {"name": "shell", "arguments": "{}"}}]},
                     {"role": "tool", "tool_call_id": f"c{n}", "content": "a.txt b.txt"}]
    return httpx.post(f"{stack.base_url}/chat/completions", timeout=30, json={"model": "gpt-4o-mini", "messages": messages},
                      headers=_headers(key, rid, **{"x-gateway-run": run}))


def test_runs_govern_only_the_teams_named_and_the_others_calls_go_unread(stack):
    """`runs.teams: [support]`: bob's looping call (support) is stopped, 429 agent_loop;
    alice's (research) belongs to no run, though it names one, and goes unread."""
    repeats = quickstart_config()["runs"]["loops"]["max_repeats"]
    stopped = _looping(stack, "sk-demo-bob", "bob-task", f"loop-{uuid.uuid4()}", repeats + 1)
    assert stopped.status_code == 429 and stopped.json()["error"]["code"] == "agent_loop", stopped.text
    rid = f"loop-{uuid.uuid4()}"
    before = stack.phase_counts(flushed=True)
    passed = _looping(stack, "sk-demo-alice", "alice-task", rid, repeats + 1)
    assert passed.status_code == 200, passed.text
    record = stack.wait_for_record(rid)
    assert record["body_unread"] is True and "run" not in record
    assert _moved(stack, before)["request_body"] == 0



def _spent(stack: GatewayStack, counter: str) -> float:
    rows = settled_rows(SQLiteStore(str(stack.state_dir / "budgets.sqlite3")), timeout=10)
    return rows[counter].spent if counter in rows else 0.0


BUDGETED = [
    ("JSON", "/chat/completions", {}, {"model": "gpt-4o-mini", "max_completion_tokens": 40, "n": 2,
                                       "messages": CHAT}),
    ("a stream", "/chat/completions", {}, {"model": "gpt-4o-mini", "stream": True,
                                           "stream_options": {"include_usage": True}, "messages": CHAT}),
    ("Anthropic's", "/messages", {"anthropic-version": "2023-06-01"},
     {"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": CHAT}),
]


@pytest.mark.parametrize("what,path,extra,body", BUDGETED, ids=[c[0] for c in BUDGETED])
def test_a_budgeted_call_goes_unread_and_is_charged_its_usage(stack, what, path, extra, body):
    """Reserved at its headers from what Envoy read, settled from the usage Envoy read: the
    budget is charged the call's tokens and cost exactly, and its answer has the budget's
    headers."""
    rid = f"metered-{uuid.uuid4()}"
    tokens_before = _spent(stack, "metered-tokens|metered")
    usd_before = _spent(stack, "metered-usd|metered")
    before = stack.phase_counts(flushed=True)
    with httpx.stream("POST", f"{stack.base_url}{path}", json=body, timeout=30,
                      headers=_headers("sk-unread-metered", rid, **extra)) as response:
        response.read()
    assert response.status_code == 200, response.text
    assert int(response.headers["x-ratelimit-limit-tokens"]) == 10**8
    assert int(response.headers["x-ratelimit-limit-requests"]) == 10000
    record = stack.wait_for_record(rid)
    assert record["body_unread"] is True and not record["usage_estimated"]
    assert _moved(stack, before)["request_body"] == 0
    assert _spent(stack, "metered-tokens|metered") - tokens_before == record["input_tokens"] + record["output_tokens"]
    assert _spent(stack, "metered-usd|metered") - usd_before == pytest.approx(record["cost_usd"], abs=1e-9)


def test_a_compressed_body_is_bounded_by_its_size_decompressed(stack):
    """Envoy decompresses a gzip body before anything reads it and drops its
    `content-length`, which would bound only the compressed bytes: such a call is not
    reserved from the compressed size (the path that reads the body counts it), and is
    charged its usage."""
    rid = f"metered-{uuid.uuid4()}"
    before = _spent(stack, "metered-tokens|metered")
    # ~26 KB of text, a third of it compressed (Envoy refuses a body that inflates 100 times).
    text = " ".join(f"spend{index * 7919 % 10007}" for index in range(3000))
    body = json.dumps({"model": "gpt-4o-mini", "max_completion_tokens": 20,
                       "messages": [{"role": "user", "content": text}]}).encode()
    response = httpx.post(f"{stack.base_url}/chat/completions", content=gzip.compress(body), timeout=30,
                          headers=_headers("sk-unread-metered", rid, **{"content-encoding": "gzip"}))
    assert response.status_code == 200, response.text
    record = stack.wait_for_record(rid)
    assert "body_unread" not in record and record["input_tokens"] > len(gzip.compress(body))
    assert _spent(stack, "metered-tokens|metered") - before == record["input_tokens"] + record["output_tokens"]


def test_a_call_its_bound_does_not_fit_reads_its_body_and_is_capped(stack):
    """3,000 tokens left, a call with no cap: the bound (the body's bytes and the model's
    whole output) is far over a sixteenth of the limit, so the path that reads the body
    counts it exactly and caps its output to what is left, as for any call."""
    rid = f"tight-{uuid.uuid4()}"
    before = stack.phase_counts(flushed=True)
    response = httpx.post(f"{stack.base_url}/chat/completions", timeout=30,
                          headers=_headers("sk-unread-tight", rid), json={"model": "gpt-4o-mini", "messages": CHAT})
    assert response.status_code == 200, response.text
    assert 0 < int(response.headers["x-gateway-output-capped"]) < 3000
    record = stack.wait_for_record(rid)
    assert "body_unread" not in record
    assert stack.phase_moved(before, "request_body", 1) >= 1
    assert _spent(stack, "tight-tokens|tight") == record["input_tokens"] + record["output_tokens"]


def test_a_caller_s_own_routing_headers_route_nothing(stack):
    """The headers the gateway routes by are the caller's to send on no path: removed in
    the same reply that sets them, the call still goes to its model's backend."""
    stack.clear_received()
    rid = f"unread-{uuid.uuid4()}"
    response = httpx.post(f"{stack.base_url}/chat/completions", timeout=30,
                          headers=_headers("sk-demo-alice", rid, **{"x-gateway-cluster": "anthropic",
                                                                    "x-gateway-route": "failover-2"}),
                          json={"model": "gpt-4o-mini", "messages": CHAT})
    assert response.status_code == 200, response.text
    assert stack.wait_for_record(rid)["body_unread"] is True
    [received] = stack.received()
    assert not any(name.startswith("x-gateway-") for name in received["headers"])
    assert stack.received("mock-anthropic") == []


def test_an_anthropic_call_is_read_in_its_own_dialect(stack):
    rid = f"unread-{uuid.uuid4()}"
    before = stack.phase_counts(flushed=True)
    response = httpx.post(f"{stack.base_url}/messages", timeout=30,
                          headers=_headers("sk-demo-alice", rid, **{"anthropic-version": "2023-06-01",
                                                                    "x-mock-cached-tokens": "3"}),
                          json={"model": "claude-sonnet-4-6", "max_tokens": 50, "messages": CHAT})
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    record = stack.wait_for_record(rid)
    # Anthropic's input_tokens leave the cache reads out; the record counts the whole prompt.
    assert record["input_tokens"] == usage["input_tokens"] + usage.get("cache_read_input_tokens", 0) \
        + usage.get("cache_creation_input_tokens", 0)
    assert record["cached_tokens"] == usage.get("cache_read_input_tokens", 0) == 3
    assert record["output_tokens"] == usage["output_tokens"] and not record["usage_estimated"]
    assert _moved(stack, before)["request_body"] == 0


def test_a_provider_error_passes_as_the_provider_wrote_it_and_charges_nothing(stack):
    rid = f"unread-{uuid.uuid4()}"
    before = stack.phase_counts(flushed=True)
    response = httpx.post(f"{stack.base_url}/chat/completions", timeout=30,
                          headers=_headers("sk-demo-alice", rid, **{"x-mock-status": "429"}),
                          json={"model": "gpt-4o-mini", "messages": CHAT})
    assert response.status_code == 429
    assert response.json()["error"]           # OpenAI's shape: the provider's own, in the caller's dialect
    record = stack.wait_for_record(rid)
    assert record["status"] == 429 and record["outcome"] != "ok"
    assert record["input_tokens"] == 0 and record["cost_usd"] == 0
    assert _moved(stack, before)["request_body"] == 0


def test_broken_json_that_envoy_read_a_model_from_is_the_provider_s_to_refuse(stack):
    """Envoy's reader reads strings and brackets only: a body broken between them still
    names its model, goes unread, and the provider refuses it (400, in its dialect, the
    caller's); nothing is charged."""
    rid = f"unread-{uuid.uuid4()}"
    response = httpx.post(f"{stack.base_url}/chat/completions", content=b'{"model":"gpt-4o-mini","messages":[1,,2]}',
                          timeout=30, headers=_headers("sk-demo-alice", rid))
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    record = stack.wait_for_record(rid)
    assert (record["status"], record["body_unread"], record["cost_usd"], record["input_tokens"]) == (400, True, 0, 0)


def test_a_provider_out_of_reach_is_envoys_error_in_the_callers_dialect(stack):
    rid = f"unread-{uuid.uuid4()}"
    before = stack.phase_counts(flushed=True)
    response = httpx.post(f"{stack.base_url}/chat/completions", timeout=30, headers=_headers("sk-demo-alice", rid),
                          json={"model": "gone-model", "messages": CHAT})
    assert response.status_code == 503
    assert response.json()["error"]["message"].startswith("No provider could serve the request")
    record = stack.wait_for_record(rid)
    assert (record["status"], record["backend"]) == (503, "gone") and record["outcome"] != "ok"
    assert record["input_tokens"] == 0 and record["cost_usd"] == 0
    assert _moved(stack, before)["request_body"] == 0


STREAMS = [
    ("openai, usage asked", "/chat/completions", {},
     {"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True}, "messages": CHAT}),
    ("anthropic", "/messages", {"anthropic-version": "2023-06-01"},
     {"model": "claude-sonnet-4-6", "stream": True, "max_tokens": 50, "messages": CHAT}),
]


@pytest.mark.parametrize("what,path,extra,body", STREAMS, ids=[s[0] for s in STREAMS])
def test_a_stream_that_brings_its_usage_goes_unread_too(stack, what, path, extra, body):
    rid = f"unread-{uuid.uuid4()}"
    before = stack.phase_counts(flushed=True)
    with httpx.stream("POST", f"{stack.base_url}{path}", json=body, timeout=30,
                      headers=_headers("sk-demo-alice", rid, **extra)) as response:
        text = response.read().decode()
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-gateway-backend"] in ("mock", "anthropic")
    assert text.count("data: ") > 2
    record = stack.wait_for_record(rid)
    assert record["outcome"] == "ok" and record["stream"] is True and not record["usage_estimated"]
    assert record["input_tokens"] > 0 and record["output_tokens"] > 0 and record["cost_usd"] > 0
    assert record["ttft_ms"] is not None                      # stamped by Envoy as the first event passed
    # Its headers leave before its usage exists: an upper bound (its body's length, its output cap).
    assert float(response.headers["x-gateway-cost-usd"]) >= record["cost_usd"]
    assert _moved(stack, before) == {"request_headers": 1, "request_body": 0, "response_headers": 0,
                                     "response_body": 0, "response_trailers": 1}


@pytest.mark.parametrize("method", ["generateContent", "streamGenerateContent?alt=sse"])
def test_a_gemini_call_goes_unread_by_its_path(stack, method):
    """Google's Gemini API names the model (and the stream) in the path: nothing to read."""
    rid = f"unread-{uuid.uuid4()}"
    before = stack.phase_counts(flushed=True)
    response = httpx.post(f"http://127.0.0.1:{stack.port}/v1beta/models/gemini-2.5-flash:{method}", timeout=30,
                          headers={"x-goog-api-key": "sk-demo-alice", "x-request-id": rid},
                          json={"contents": [{"role": "user", "parts": [{"text": "one two three"}]}]})
    assert response.status_code == 200, response.text
    assert response.headers["x-gateway-backend"] == "gemini"
    record = stack.wait_for_record(rid)
    assert record["outcome"] == "ok" and record["model"] == "gemini-2.5-flash" and not record["usage_estimated"]
    assert record["input_tokens"] > 0 and record["output_tokens"] > 0
    assert float(response.headers["x-gateway-cost-usd"]) >= record["cost_usd"] > 0
    if method == "generateContent":
        assert float(response.headers["x-gateway-cost-usd"]) == pytest.approx(record["cost_usd"], abs=1e-8)
        usage = response.json()["usageMetadata"]
        assert (record["input_tokens"], record["output_tokens"]) == (usage["promptTokenCount"],
                                                                     usage["candidatesTokenCount"])
    assert _moved(stack, before) == {"request_headers": 1, "request_body": 0, "response_headers": 0,
                                     "response_body": 0, "response_trailers": 1}


def test_a_stream_the_client_leaves_is_charged_what_envoy_sent(stack):
    """Its trailers never come: Envoy's access log brings the bytes it sent, read as
    tokens (accounting/cut_stream.py), and the prompt's count if the provider's events
    gave one on the way (the service never saw the prompt)."""
    body = {"model": "gpt-4o", "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 500,
            "messages": [{"role": "user", "content": " ".join(f"word{i}" for i in range(150))}]}
    rid = f"unread-cut-{uuid.uuid4()}"
    received = b""
    with httpx.stream("POST", f"{stack.base_url}/chat/completions", json=body, timeout=30,
                      headers=_headers("sk-demo-alice", rid, **{"x-mock-chunk-delay-ms": "30"})) as response:
        for chunk in response.iter_raw():
            received += chunk
            if received.count(b"data: {") >= 12:
                break
    record = stack.wait_for_record(rid, timeout=10)
    assert record["outcome"] == "cancelled" and record["status"] == 200 and record["usage_estimated"] is True
    assert 10 <= record["output_tokens"] <= 500, record
    assert record["input_tokens"] in (0, answered_prompt(stack, body)), record


CLAUDE = Path(__file__).resolve().parent.parent / ".venv" / "claude-code" / "node_modules" / ".bin" / "claude"


def test_claude_code_s_turn_goes_unread_to_anthropic(stack, tmp_path):
    """Claude Code itself (print mode) on a key no policy applies to: its streamed Messages
    call, tools, betas and thinking, reaches the provider as sent, in two messages, and the
    usage it reports is the one recorded."""
    if not CLAUDE.exists():
        pytest.fail(f"Claude Code is not installed at {CLAUDE}: tests/run.sh installs it (npm)")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "ANTHROPIC_API_KEY": "sk-demo-alice",
           "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{stack.port}",
           "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1", "DISABLE_AUTOUPDATER": "1",
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    stack.clear_received()
    earlier = len(stack.log_records())
    before = stack.phase_counts(flushed=True)
    prompt = "Reply with the word pelican"
    done = subprocess.run([str(CLAUDE), "-p", prompt, "--model", "claude-sonnet-4-6", "--output-format", "json"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert not result["is_error"] and prompt in result["result"]
    [sent] = [r for r in stack.received("mock-anthropic") if r["path"] == "/v1/messages"]
    body = json.loads(sent["body"])
    assert body["stream"] is True and len(body["tools"]) >= 10 and body["thinking"]
    assert sent["query"] == {"beta": "true"} and sent["headers"]["x-api-key"] == "mock-anthropic-key"
    record = stack.wait_for_record(predicate=lambda r: r["model"] == "claude-sonnet-4-6" and r["stream"]
                                   and r["user"] == "alice", after=earlier)
    assert (record["input_tokens"], record["output_tokens"]) == (
        result["usage"]["input_tokens"] + result["usage"].get("cache_read_input_tokens", 0)
        + result["usage"].get("cache_creation_input_tokens", 0), result["usage"]["output_tokens"])
    moved = _moved(stack, before)
    assert moved["request_body"] == moved["response_headers"] == moved["response_body"] == 0, moved


GEMINI_CLI = Path(__file__).resolve().parent.parent / ".venv" / "gemini-cli" / "node_modules" / ".bin" / "gemini"


def test_gemini_cli_s_turn_goes_unread_to_gemini(stack, tmp_path):
    """Gemini CLI itself on a key no policy applies to: its streamed generateContent calls
    reach the Gemini backend by their path, unread, and each is recorded with its usage."""
    if not GEMINI_CLI.exists():
        pytest.fail(f"Gemini CLI is not installed at {GEMINI_CLI}: tests/run.sh installs it (npm)")
    home, work = tmp_path / "home", tmp_path / "work"
    (home / ".gemini").mkdir(parents=True)
    work.mkdir()
    (home / ".gemini" / "settings.json").write_text(json.dumps({
        "security": {"auth": {"selectedType": "gemini-api-key"}}, "privacy": {"usageStatisticsEnabled": False},
        "general": {"disableAutoUpdate": True, "disableUpdateNag": True}, "telemetry": {"enabled": False}}))
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "GEMINI_API_KEY": "sk-demo-alice",
           "GOOGLE_GEMINI_BASE_URL": f"http://127.0.0.1:{stack.port}", "NO_COLOR": "1",
           "GEMINI_CLI_NO_RELAUNCH": "true", "GEMINI_CLI_TRUST_WORKSPACE": "true"}
    stack.clear_received()
    earlier = len(stack.log_records())
    prompt = "Reply with the word avocet"
    done = subprocess.run([str(GEMINI_CLI), "-p", prompt, "-m", "gemini-2.5-flash"], env=env, cwd=work,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert prompt in done.stdout
    sent = [r for r in stack.received("mock-gemini") if r["path"].endswith(":streamGenerateContent")]
    assert sent and "sk-demo-alice" not in json.dumps(sent[-1]["headers"]) + json.dumps(sent[-1]["query"])
    record = stack.wait_for_record(predicate=lambda r: r["model"] == "gemini-2.5-flash" and r["user"] == "alice"
                                   and r["stream"], after=earlier)
    assert record["body_unread"] is True and record["output_tokens"] > 0 and not record["usage_estimated"]


def answered_prompt(stack: GatewayStack, body: dict) -> int:
    """The prompt tokens the provider counts for `body` (the same call, whole, to the mock)."""
    whole = httpx.post(f"{stack.mock_url('mock')}/v1/chat/completions", timeout=30,
                       headers={"authorization": "Bearer mock-provider-key"}, json={**body, "stream": False})
    return whole.json()["usage"]["prompt_tokens"]


CALLS_READ = [
    ("a guardrail policy", "sk-demo-bob", "/chat/completions", {"model": "gpt-4o-mini", "messages": CHAT}),
    # (the service would ask the provider for the usage, and take it out for the client)
    ("a stream whose usage the client did not ask for", "sk-demo-alice", "/chat/completions",
     {"model": "gpt-4o-mini", "stream": True, "messages": CHAT}),
    ("a virtual model", "sk-demo-alice", "/chat/completions", {"model": "smart", "messages": CHAT}),
    ("a cached model", "sk-demo-alice", "/chat/completions", {"model": "gpt-4o", "messages": CHAT}),
    ("a translated backend", "sk-demo-alice", "/chat/completions",
     {"model": "claude-sonnet-4-6", "messages": CHAT}),
    ("the Responses API (stored responses)", "sk-demo-alice", "/responses",
     {"model": "gpt-4o-mini", "input": "hello"}),
    ("a pool", "sk-demo-alice", "/chat/completions", {"model": "local-llama", "messages": CHAT}),
]


@pytest.mark.parametrize("what,key,path,body", CALLS_READ, ids=[c[0] for c in CALLS_READ])
def test_calls_a_policy_reads_keep_every_message(stack, what, key, path, body):
    rid = f"read-{uuid.uuid4()}"
    before = stack.phase_counts(flushed=True)
    with httpx.stream("POST", f"{stack.base_url}{path}", json=body, timeout=30,
                      headers=_headers(key, rid)) as response:
        response.read()
    assert response.status_code == 200, response.text
    assert "body_unread" not in stack.wait_for_record(rid)
    assert stack.phase_moved(before, "request_body", 1) >= 1       # (a virtual model: each attempt too)


REFUSED = [
    ("an unknown model", {"model": "no-such-model", "messages": CHAT}, 404, "model_not_found"),
    ("a repeated model key", b'{"model":"gpt-4o-mini","messages":[],"model":"gpt-4o"}', 400, "invalid_request"),
    ("a body that is not JSON", b'{"model": "gpt-4o-mini", "messages": [', 400, "invalid_request"),
]


@pytest.mark.parametrize("what,body,status,code", REFUSED, ids=[c[0] for c in REFUSED])
def test_what_the_gateway_refuses_it_still_refuses(stack, what, body, status, code):
    """Envoy's reader names no model it cannot read plainly, and the service routes only a
    model it knows the key may use: the rest take the path that reads the body."""
    stack.clear_received()
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(f"{stack.base_url}/chat/completions", content=content, timeout=30,
                          headers=_headers("sk-demo-alice", f"refused-{uuid.uuid4()}"))
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert stack.received() == []
