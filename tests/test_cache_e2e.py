"""The response cache through real Envoy: hits and misses for OpenAI's and Anthropic's
callers and across dialects, streams replayed to the SDKs, scopes never crossed, bypass
and refresh, TTL expiry, a Redis that is down, a stampede of identical calls, budgets
and metered usage on hits, the metrics, and `extproc cache stats|purge` (CLI and admin)."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import time
import uuid

import anthropic
import httpx
import openai
import pytest
from gateway_stack import GatewayStack, free_port, quickstart_config, settled_rows
from warm_start import run_extproc

from extproc.store.sqlite_store import SQLiteStore


ADMIN_TOKEN = "cache-admin-token-for-tests-0123456789"


def _config(store: dict | None = None) -> dict:
    config = quickstart_config(response_cache=True)
    config["cache"] = {"rules": [
        {"models": ["gpt-4o"], "ttl_s": 1},                                   # expires fast
        {"models": ["gpt-4o-mini", "claude-sonnet-4-6"], "scope": "team", "ttl_s": 600, "streams": True},
        {"models": ["gemini-2.5-flash"], "teams": ["research"], "scope": "key"},
        {"models": ["smart"], "teams": ["research"]},                          # a virtual model
    ], "stampede_wait_s": 10}
    if store is not None:
        config["store"] = store
    return config


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    config = _config()
    config.setdefault("identity", {})["admin_api"] = {"listen": f"127.0.0.1:{free_port()}",
                                                      "token": {"env": "LLMGW_ADMIN_TOKEN"}}
    stack = GatewayStack(tmp_path_factory.mktemp("cache"), config, workers=1,
                         env={"LLMGW_ADMIN_TOKEN": ADMIN_TOKEN}).start()
    yield stack
    stack.stop()


def _prompt() -> str:
    return f"say this back {uuid.uuid4().hex[:12]}"


def _calls_with(stack: GatewayStack, text: str, listener: str = "mock") -> int:
    """How many requests the provider got that carry `text`."""
    return sum(text in json.dumps(entry) for entry in stack.received(listener))


def _client(stack: GatewayStack, key: str = "sk-demo-alice") -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url, api_key=key, max_retries=0)


def _anthropic(stack: GatewayStack, key: str = "sk-demo-alice") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"http://127.0.0.1:{stack.port}", api_key=key, max_retries=0)


def _chat(client: openai.OpenAI, prompt: str, model: str = "gpt-4o-mini", **extra):
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=40, **extra)


def test_a_second_identical_chat_call_is_a_hit_without_the_provider(stack):
    prompt = _prompt()
    client = _client(stack)
    first = _chat(client, prompt)
    second = _chat(client, prompt, user="someone-else", metadata={"run": "2"})     # fields that cannot change it
    assert first.headers["x-gateway-cache"] == "miss"
    assert second.headers["x-gateway-cache"] == "hit"
    assert int(second.headers["age"]) >= 0
    assert second.parse().id == first.parse().id
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content == prompt
    assert second.parse().usage.total_tokens == first.parse().usage.total_tokens
    assert _calls_with(stack, prompt) == 1
    miss = stack.wait_for_record(first.headers["x-request-id"])
    hit = stack.wait_for_record(second.headers["x-request-id"])
    assert miss["cache"] == "miss" and miss["cache_stored"] is True and miss["cost_usd"] > 0
    assert hit["cache"] == "hit" and hit["backend"] is None
    assert hit["cost_usd"] == 0 and hit["input_tokens"] == 0 and hit["output_tokens"] == 0
    assert hit["cache_saved_usd"] == pytest.approx(miss["cost_usd"])


def test_a_different_request_is_a_miss(stack):
    prompt = _prompt()
    client = _client(stack)
    _chat(client, prompt)
    other = _chat(client, prompt + "!")
    capped = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}], max_tokens=41)
    assert other.headers["x-gateway-cache"] == "miss" and capped.headers["x-gateway-cache"] == "miss"
    assert _calls_with(stack, prompt) == 3


def test_anthropic_messages_on_anthropic_and_on_an_openai_backend(stack):
    client = _anthropic(stack)
    for model, listener in (("claude-sonnet-4-6", "mock-anthropic"), ("gpt-4o-mini", "mock")):
        prompt = _prompt()
        first = client.messages.with_raw_response.create(
            model=model, max_tokens=40, messages=[{"role": "user", "content": prompt}])
        second = client.messages.with_raw_response.create(
            model=model, max_tokens=40, messages=[{"role": "user", "content": prompt}],
            metadata={"user_id": "another"})
        assert (first.headers["x-gateway-cache"], second.headers["x-gateway-cache"]) == ("miss", "hit"), model
        assert second.parse().id == first.parse().id
        assert second.parse().content[0].text == first.parse().content[0].text
        assert second.parse().type == "message" and second.parse().role == "assistant"
        assert _calls_with(stack, prompt, listener) == 1


def test_a_stream_request_is_replayed_as_the_dialect_s_events(stack):
    prompt = _prompt()
    client = _client(stack)
    first = _chat(client, prompt).parse()
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}], max_tokens=40, stream=True,
        stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == prompt
    assert chunks[-1].usage.total_tokens == first.usage.total_tokens
    assert {c.id for c in chunks} == {first.id}
    assert _calls_with(stack, prompt) == 1
    # Anthropic's SDK reads its own events, replayed from a stored answer it never streamed.
    anthropic_client = _anthropic(stack)
    prompt = _prompt()
    anthropic_client.messages.create(model="claude-sonnet-4-6", max_tokens=40,
                                     messages=[{"role": "user", "content": prompt}])
    with anthropic_client.messages.stream(model="claude-sonnet-4-6", max_tokens=40,
                                          messages=[{"role": "user", "content": prompt}]) as stream:
        assert stream.response.headers["x-gateway-cache"] == "hit"
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        message = stream.get_final_message()
    assert message.content[0].text == prompt and message.stop_reason == "end_turn"
    assert _calls_with(stack, prompt, "mock-anthropic") == 1


def test_a_streamed_answer_is_kept_when_the_rule_keeps_streams(stack):
    prompt = _prompt()
    client = _client(stack)
    with client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}], max_tokens=40,
            stream=True) as response:
        assert response.headers["x-gateway-cache"] == "miss"
        streamed = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    record = stack.wait_for_record(response.headers["x-request-id"])
    assert record["cache_stored"] is True and record["output_tokens"] > 0
    hit = _chat(client, prompt)
    assert hit.headers["x-gateway-cache"] == "hit"
    assert hit.parse().choices[0].message.content == streamed == prompt
    assert hit.parse().usage.completion_tokens == record["output_tokens"]          # the usage it was charged
    again = list(client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}], max_tokens=40, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in again if c.choices) == prompt
    assert _calls_with(stack, prompt) == 1
    # Anthropic's caller on its own dialect: kept; on an OpenAI backend (translated): not kept.
    claude = _anthropic(stack)
    for model, listener, kept in (("claude-sonnet-4-6", "mock-anthropic", True), ("gpt-4o-mini", "mock", False)):
        prompt = _prompt()
        with claude.messages.stream(model=model, max_tokens=40,
                                    messages=[{"role": "user", "content": prompt}]) as stream:
            assert stream.response.headers["x-gateway-cache"] == "miss"
            assert stream.get_final_message().content[0].text == prompt
        after = claude.messages.with_raw_response.create(model=model, max_tokens=40,
                                                         messages=[{"role": "user", "content": prompt}])
        assert after.headers["x-gateway-cache"] == ("hit" if kept else "miss"), model
        assert after.parse().content[0].text == prompt
        assert _calls_with(stack, prompt, listener) == (1 if kept else 2)


def test_a_stream_the_caller_left_is_not_kept(stack):
    prompt = _prompt() + " with several more words to stream one by one"
    client = _client(stack)
    with client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}], max_tokens=40, stream=True,
            extra_headers={"x-mock-chunk-delay-ms": "150"}) as response:
        next(iter(response.iter_bytes()))              # the first bytes, then the caller leaves
    stack.wait_for_record(response.headers["x-request-id"], predicate=lambda r: r["outcome"] == "cancelled")
    assert _chat(client, prompt).headers["x-gateway-cache"] == "miss"


def test_a_stream_a_rule_does_not_keep_is_not_kept(stack):
    prompt = _prompt()
    url = f"http://127.0.0.1:{stack.port}/v1beta/models/gemini-2.5-flash"
    body = {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}
    key = {"x-goog-api-key": "sk-demo-alice"}
    streamed = httpx.post(f"{url}:streamGenerateContent?alt=sse", json=body, headers=key, timeout=30)
    assert streamed.headers["x-gateway-cache"] == "miss"
    assert httpx.post(f"{url}:generateContent", json=body, headers=key, timeout=30).headers["x-gateway-cache"] == "miss"
    assert _calls_with(stack, prompt, "mock-gemini") == 2


def test_gemini_callers_json_and_a_replayed_stream(stack):
    prompt = _prompt()
    url = f"http://127.0.0.1:{stack.port}/v1beta/models/gemini-2.5-flash"
    body = {"contents": [{"role": "user", "parts": [{"text": prompt}]}],
            "generationConfig": {"maxOutputTokens": 40, "temperature": 0}}
    key = {"x-goog-api-key": "sk-demo-alice"}
    first = httpx.post(f"{url}:generateContent", json=body, headers=key, timeout=30)
    second = httpx.post(f"{url}:generateContent", json=body, headers=key, timeout=30)
    assert (first.headers["x-gateway-cache"], second.headers["x-gateway-cache"]) == ("miss", "hit")
    assert second.json() == first.json()
    streamed = httpx.post(f"{url}:streamGenerateContent?alt=sse", json=body, headers=key, timeout=30)
    assert streamed.headers["x-gateway-cache"] == "hit"
    events = [json.loads(line[5:]) for line in streamed.text.splitlines() if line.startswith("data:")]
    text = "".join(part.get("text", "") for event in events for candidate in event.get("candidates", [])
                   for part in candidate.get("content", {}).get("parts", []))
    assert text == first.json()["candidates"][0]["content"]["parts"][0]["text"] == prompt
    warm = {**body, "generationConfig": {"maxOutputTokens": 40, "temperature": 0.9}}
    assert httpx.post(f"{url}:generateContent", json=warm, headers=key, timeout=30).headers["x-gateway-cache"] == "bypass"
    assert _calls_with(stack, prompt, "mock-gemini") == 2


def test_one_question_in_three_dialects_is_one_entry_told_in_each(stack):
    """The key is the conversation the provider would be asked: a chat call, a Messages
    call and a Gemini call asking gpt-4o-mini the same thing share its answer, each in its
    own dialect (JSON and stream)."""
    prompt, system = _prompt(), "You repeat what you are told."
    first = _client(stack).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=40,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": prompt}])
    assert first.headers["x-gateway-cache"] == "miss"
    messages = _anthropic(stack).messages.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=40, system=system, messages=[{"role": "user", "content": prompt}])
    assert messages.headers["x-gateway-cache"] == "hit"
    assert messages.parse().type == "message" and messages.parse().content[0].text == prompt
    assert messages.parse().usage.output_tokens == first.parse().usage.completion_tokens
    gemini = httpx.post(f"http://127.0.0.1:{stack.port}/v1beta/models/gpt-4o-mini:generateContent",
                        headers={"x-goog-api-key": "sk-demo-alice"}, timeout=30, json={
                            "systemInstruction": {"parts": [{"text": system}]},
                            "contents": [{"role": "user", "parts": [{"text": prompt}]}],
                            "generationConfig": {"maxOutputTokens": 40}})
    assert gemini.headers["x-gateway-cache"] == "hit"
    assert gemini.json()["candidates"][0]["content"]["parts"][0]["text"] == prompt
    with _anthropic(stack).messages.stream(model="gpt-4o-mini", max_tokens=40, system=system,
                                           messages=[{"role": "user", "content": prompt}]) as stream:
        assert stream.response.headers["x-gateway-cache"] == "hit"
        assert stream.get_final_message().content[0].text == prompt
    assert _calls_with(stack, prompt) == 1
    # Another cap is another question.
    capped = _anthropic(stack).messages.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=39, system=system, messages=[{"role": "user", "content": prompt}])
    assert capped.headers["x-gateway-cache"] == "miss"


def test_two_teams_with_the_same_prompt_never_share(stack):
    prompt = _prompt()
    alice, bob = _client(stack), _client(stack, "sk-demo-bob")
    first = _chat(alice, prompt)
    other_team = _chat(bob, prompt)
    assert other_team.headers["x-gateway-cache"] == "miss"
    assert other_team.parse().id != first.parse().id
    assert _chat(bob, prompt).headers["x-gateway-cache"] == "hit"
    assert _chat(alice, prompt).parse().id == first.parse().id
    assert _calls_with(stack, prompt) == 2


def test_bypass_and_refresh(stack):
    prompt = _prompt()
    client = _client(stack)
    first = _chat(client, prompt)
    bypass = _chat(client, prompt, extra_headers={"cache-control": "no-store"})
    assert bypass.headers["x-gateway-cache"] == "bypass" and bypass.parse().id != first.parse().id
    assert _chat(client, prompt).parse().id == first.parse().id       # no-store kept nothing
    refresh = _chat(client, prompt, extra_headers={"x-gateway-cache": "refresh"})
    assert refresh.headers["x-gateway-cache"] == "refresh" and refresh.parse().id != first.parse().id
    after = _chat(client, prompt)
    assert after.headers["x-gateway-cache"] == "hit" and after.parse().id == refresh.parse().id
    no_cache = _chat(client, prompt, extra_headers={"cache-control": "no-cache"})
    assert no_cache.headers["x-gateway-cache"] == "refresh"
    assert _calls_with(stack, prompt) == 4


def test_what_does_not_qualify_is_a_bypass(stack):
    prompt = _prompt()
    client = _client(stack)
    warm = [_chat(client, prompt, temperature=0.7) for _ in range(2)]
    assert [r.headers["x-gateway-cache"] for r in warm] == ["bypass", "bypass"]
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    with_tools = [_chat(client, prompt, tools=tools) for _ in range(2)]
    assert [r.headers["x-gateway-cache"] for r in with_tools] == ["bypass", "bypass"]
    cold = [_chat(client, prompt, temperature=0) for _ in range(2)]
    assert [r.headers["x-gateway-cache"] for r in cold] == ["miss", "hit"]
    record = stack.wait_for_record(warm[0].headers["x-request-id"])
    assert record["cache"] == "bypass" and record["cache_bypass_reason"] == "temperature"
    assert _calls_with(stack, prompt) == 5
    # A model no rule names is not the cache's at all.
    response = _chat(client, prompt, model="smart-claude")
    assert "x-gateway-cache" not in response.headers


def test_a_virtual_model_s_answer_after_failover_is_cached(stack):
    prompt = _prompt()
    client = _client(stack)
    first, second = _chat(client, prompt, model="smart"), _chat(client, prompt, model="smart")
    assert first.headers["x-gateway-backend"] == "mock-backup" and first.headers["x-gateway-cache"] == "miss"
    assert second.headers["x-gateway-cache"] == "hit" and second.parse().id == first.parse().id
    assert _calls_with(stack, prompt, "mock") == 1               # mock-backup is the mock listener


def test_an_entry_expires_after_its_ttl(stack):
    prompt = _prompt()
    client = _client(stack)
    first = _chat(client, prompt, model="gpt-4o")
    assert _chat(client, prompt, model="gpt-4o").headers["x-gateway-cache"] == "hit"
    time.sleep(1.2)
    expired = _chat(client, prompt, model="gpt-4o")
    assert expired.headers["x-gateway-cache"] == "miss" and expired.parse().id != first.parse().id
    assert _calls_with(stack, prompt) == 2


def test_a_stampede_of_identical_calls_makes_one_provider_call(stack):
    prompt = _prompt()
    client = _client(stack)

    def call(_):
        return _chat(client, prompt, extra_headers={"x-mock-delay-ms": "600"})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(call, range(8)))
    assert {a.parse().id for a in answers} != set() and len({a.parse().id for a in answers}) == 1
    assert sorted(a.headers["x-gateway-cache"] for a in answers) == ["hit"] * 7 + ["miss"]
    assert _calls_with(stack, prompt) == 1          # one worker: one provider call


def test_metrics_count_hits_and_what_they_saved(stack):
    prompt = _prompt()
    client = _client(stack)
    _chat(client, prompt)
    _chat(client, prompt)
    # Each metric reaches /metrics at its worker's next flush, showing 0 until then.
    assert stack.metric_reaches('gateway_cache_requests_total{result="hit"}', 1) >= 1
    assert stack.metric_reaches('gateway_cache_saved_usd_total{model="gpt-4o-mini",team="research"}', 1e-9) > 0


def test_hits_charge_no_tokens_to_budgets_and_are_metered_by_cache(stack):
    prompt = _prompt()
    bob = _client(stack, "sk-demo-bob")
    before = settled_rows(SQLiteStore(str(stack.state_dir / "budgets.sqlite3")))
    spent_before = before["bob-hourly-tokens|bob"].spent if "bob-hourly-tokens|bob" in before else 0
    miss = _chat(bob, prompt).parse()
    hits = [_chat(bob, prompt) for _ in range(3)]
    assert all(h.headers["x-gateway-cache"] == "hit" for h in hits)
    after = settled_rows(SQLiteStore(str(stack.state_dir / "budgets.sqlite3")))
    assert after["bob-hourly-tokens|bob"].spent - spent_before == miss.usage.total_tokens
    time.sleep(1.5)                                  # the meters reach the store every 0.5 s
    usage = run_extproc(["usage", "--config", str(stack.workdir / "gateway.yaml"),
                         "--state-dir", str(stack.state_dir), "--by", "team,cache", "--json"],
                        capture_output=True, text=True, timeout=60)
    assert usage.returncode == 0, usage.stderr
    rows = {(r["team"], r["cache"]): r for r in json.loads(usage.stdout)["rows"]}
    hit = rows[("support", "hit")]
    assert hit["requests"] >= 3 and hit["usd"] == 0 and hit["input_tokens"] == 0 and hit["saved_usd"] > 0
    assert rows[("support", "miss")]["usd"] > 0
    table = run_extproc(["usage", "--config", str(stack.workdir / "gateway.yaml"),
                         "--state-dir", str(stack.state_dir), "--by", "cache"], capture_output=True, text=True,
                        timeout=60)
    assert "SAVED USD" in table.stdout and "hit" in table.stdout


def test_cache_stats_and_purge_by_scope_and_model(stack):
    prompt = _prompt()
    _chat(_client(stack), prompt)
    _chat(_client(stack, "sk-demo-bob"), prompt)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return run_extproc(["cache", *args, "--config",
                            str(stack.workdir / "gateway.yaml"), "--state-dir", str(stack.state_dir)],
                           capture_output=True, text=True, timeout=60)

    stats = json.loads(cli("stats", "--json").stdout)
    scopes = {(g["scope"], g["model"]) for g in stats["groups"]}
    assert {("team:research", "gpt-4o-mini"), ("team:support", "gpt-4o-mini")} <= scopes
    assert "team:support" in cli("stats").stdout
    assert cli("purge", "--scope", "nonsense").returncode == 2
    purged = json.loads(cli("purge", "--scope", "team:support", "--model", "gpt-4o-mini", "--json").stdout)
    assert purged["purged"] >= 1
    assert _chat(_client(stack, "sk-demo-bob"), prompt).headers["x-gateway-cache"] == "miss"
    assert _chat(_client(stack), prompt).headers["x-gateway-cache"] == "hit"      # research's kept
    # The admin API (behind its token; the metrics endpoint serves neither): the same.
    admin_api = f"http://{stack.config['identity']['admin_api']['listen']}/admin"
    token = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    admin = httpx.get(f"{admin_api}/cache/stats", params={"scope": "team:research"}, headers=token).json()
    assert admin["groups"] and {g["scope"] for g in admin["groups"]} == {"team:research"}
    assert httpx.get(f"{admin_api}/cache/stats", params={"scope": "bad"}, headers=token).status_code == 400
    assert httpx.post(f"{admin_api}/cache/purge", params={"scope": "team:research"}).status_code == 401
    gone = httpx.post(f"{admin_api}/cache/purge", params={"scope": "team:research"}, headers=token).json()
    assert gone["purged"] >= 1
    assert _chat(_client(stack), prompt).headers["x-gateway-cache"] == "miss"


def test_on_redis_entries_are_shared_and_a_redis_that_is_down_is_a_miss(tmp_path):
    from test_budgets_e2e import RestartableRedis
    redis = RestartableRedis(tmp_path)
    (tmp_path / "gw").mkdir()
    stack = GatewayStack(tmp_path / "gw", _config({"kind": "redis", "url": redis.url}), workers=2).start()
    try:
        prompt = _prompt()
        client = _client(stack)
        first = _chat(client, prompt)
        assert first.headers["x-gateway-cache"] == "miss"
        hits = [_chat(client, prompt) for _ in range(4)]            # either worker: the same entry
        assert {h.headers["x-gateway-cache"] for h in hits} == {"hit"}
        assert {h.parse().id for h in hits} == {first.parse().id}
        redis.stop()
        down = [_chat(client, prompt) for _ in range(2)]
        assert [d.status_code for d in down] == [200, 200]
        assert {d.headers["x-gateway-cache"] for d in down} == {"miss"}
        assert {d.parse().id for d in down}.isdisjoint({first.parse().id})
        metrics = stack.metrics('gateway_store_errors_total{operation="cache_get"}')
        assert 'gateway_store_errors_total{operation="cache_get"}' in metrics
        assert _calls_with(stack, prompt) == 3
    finally:
        stack.stop()
        redis.stop()


def test_the_quickstart_caches_research_s_gpt_4o_mini_only(tmp_path):
    stack = GatewayStack(tmp_path, quickstart_config(response_cache=True), workers=1).start()
    try:
        prompt = _prompt()
        alice, bob = _client(stack), _client(stack, "sk-demo-bob")
        assert [_chat(alice, prompt).headers["x-gateway-cache"] for _ in range(2)] == ["miss", "hit"]
        assert all("x-gateway-cache" not in _chat(bob, prompt).headers for _ in range(2))      # team support
        assert "x-gateway-cache" not in _chat(alice, prompt, model="gpt-4o").headers
        assert _calls_with(stack, prompt) == 4          # alice's first, bob's two, gpt-4o's
        time.sleep(1.5)                                  # the meters reach the store every 0.5 s
        usage = run_extproc(["usage", "--config", str(tmp_path / "gateway.yaml"),
                             "--state-dir", str(stack.state_dir), "--by", "cache", "--json"],
                            capture_output=True, text=True, timeout=60)
        rows = {r["cache"]: r for r in json.loads(usage.stdout)["rows"]}
        assert rows["hit"]["requests"] == 1 and rows["hit"]["usd"] == 0
        assert rows["hit"]["saved_usd"] == pytest.approx(rows["miss"]["usd"]) and rows["miss"]["usd"] > 0
        assert rows[""]["requests"] == 3                 # the calls the cache does not take
    finally:
        stack.stop()
