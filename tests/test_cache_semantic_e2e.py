"""The semantic response cache through real Envoy: a question asked another way is
answered from the cache (in the caller's dialect, JSON and stream), questions that differ
by a number, a negation or a direction word never are, nor are other scopes or other
conversations; the embedding is a call of the caller's through the gateway (logged,
priced, refused like any), and a failed embedding is a miss, never a failed call."""

from __future__ import annotations

import json
import time
import uuid

import anthropic
import openai
import pytest
from gateway_stack import GatewayStack, quickstart_config, start_together


def _config() -> dict:
    config = quickstart_config(response_cache=True)
    config["keys"] += [
        {"id": "carol", "key": "sk-sem-carol", "user": "carol", "team": "research", "models": "*"},
        {"id": "dave", "key": "sk-sem-dave", "user": "dave", "team": "ops", "models": "*"},
    ]
    # An embedding model slower than its rule's bound: the mock answers it after 3 s.
    config["mock_provider"]["listeners"].append(
        {"name": "mock-slow", "port": 10131, "api_key": "mock-provider-key", "failure": {"delay-ms": 3000}})
    config["providers"]["mock-slow"] = {"url": "http://127.0.0.1:10131", "api_key": {"value": "mock-provider-key"}}
    config["models"]["slow-embedding"] = {"backends": [{"provider": "mock-slow", "model": "text-embedding-3-small"}],
                                          "price": {"input": 0.02, "output": 0}}
    config["cache"] = {"rules": [
        {"models": ["gpt-4o-mini"], "scope": "team", "ttl_s": 600,
         # The longest bound allowed: a loaded test host is slower than a deployed gateway.
         "semantic": {"embedding_model": "text-embedding-3-small", "min_similarity": 0.9, "timeout_s": 1.5}},
        {"models": ["gpt-4o"], "scope": "team", "ttl_s": 600,
         "semantic": {"embedding_model": "slow-embedding", "min_similarity": 0.9, "timeout_s": 0.5}}]}
    return config


def _warmed(stack: GatewayStack) -> GatewayStack:
    """The stack once its mock's embedding model is loaded (~0.3 s on its first call, which
    a deployed provider's endpoint never makes its callers wait) and its first search made
    (a replica's first reads its copy of the vectors from the store): one question answered
    within the bound. A slow first embedding or search on a loaded host is a miss, tried again."""
    for _ in range(5):
        warm = _ask(stack, "Is the service warm?", _system())
        record = stack.wait_for_record(warm.headers["x-request-id"])
        assert warm.status_code == 200 and record.get("cache_semantic") in (
            None, "no embedding: timeout", "timeout"), record
        if "cache_semantic" not in record:
            return stack
    raise AssertionError(f"the embedding model never answered in time: {record}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = GatewayStack(tmp_path_factory.mktemp("semantic"), _config(), workers=1).start()
    try:
        yield _warmed(stack)
    finally:
        stack.stop()


def _system() -> str:
    """A conversation of the test's own: its partition is no other test's."""
    return f"You answer support questions. Conversation {uuid.uuid4().hex[:10]}."


def _ask(stack, question: str, system: str, key: str = "sk-demo-alice"):
    client = openai.OpenAI(base_url=stack.base_url, api_key=key, max_retries=0)
    return client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=40,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": question}])


def _chat_calls_with(stack, text: str) -> int:
    return sum(text in json.dumps(entry) for entry in stack.received() if "/chat/completions" in json.dumps(entry))


def test_a_question_asked_another_way_is_answered_from_the_cache(stack):
    system = _system()
    first = _ask(stack, "How do I reset my password?", system)
    second = _ask(stack, "What is the way to reset my password?", system)
    assert first.headers["x-gateway-cache"] == "miss"
    assert second.headers["x-gateway-cache"] == "hit"
    assert 0.9 <= float(second.headers["x-gateway-cache-similarity"]) <= 1.0
    # The answer kept for the first question (the mock echoes the question it got).
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content \
        == "How do I reset my password?"
    assert _chat_calls_with(stack, "reset my password") == 1 and _chat_calls_with(stack, "the way to") == 0
    hit = stack.wait_for_record(second.headers["x-request-id"])
    assert hit["cache"] == "hit" and hit["cache_match"] == "semantic" and hit["cost_usd"] == 0
    assert hit["cache_similarity"] >= 0.9
    # The embedding was the caller's own call through the gateway: logged, priced, its key.
    embedding = stack.wait_for_record(hit["cache_embedding_request"])
    assert embedding["path"] == "/v1/embeddings" and embedding["model"] == "text-embedding-3-small"
    assert embedding["key_id"] == "alice" and embedding["status"] == 200 and embedding["cost_usd"] > 0


def test_an_exact_repeat_needs_no_embedding(stack):
    system = _system()
    _ask(stack, "Explain what a Python decorator is.", system)
    again = _ask(stack, "Explain what a Python decorator is.", system)
    record = stack.wait_for_record(again.headers["x-request-id"])
    assert record["cache"] == "hit" and record["cache_match"] == "exact"
    assert "cache_embedding_request" not in record and "x-gateway-cache-similarity" not in again.headers


@pytest.mark.parametrize("first, then", [
    ("Convert 10 miles to kilometers.", "Convert 20 miles to kilometers."),                     # 0.93 apart
    ("Is it safe to run this migration on production?",
     "Is it not safe to run this migration on production?"),                                    # 0.995
    ("How do I increase the font size in VS Code?", "How do I decrease the font size in VS Code?"),   # 0.94
], ids=["number", "negation", "direction"])
def test_near_misses_are_never_matched(stack, first, then):
    """Their embeddings are closer than the rule's 0.9: only the anchors keep them apart."""
    system = _system()
    _ask(stack, first, system)
    second = _ask(stack, then, system)
    assert second.headers["x-gateway-cache"] == "miss"
    assert second.parse().choices[0].message.content == then
    record = stack.wait_for_record(second.headers["x-request-id"])
    assert "cache_similarity" not in record           # another partition: nothing to compare with


def test_another_conversation_or_scope_is_another_partition(stack):
    system = _system()
    _ask(stack, "How can I undo my last git commit?", system)
    same_team = _ask(stack, "How do I undo the last git commit?", system, key="sk-sem-carol")
    other_system = _ask(stack, "How do I undo the last git commit?", _system())
    other_team = _ask(stack, "How do I undo the last git commit?", system, key="sk-sem-dave")
    assert same_team.headers["x-gateway-cache"] == "hit"          # scope: team research
    assert other_system.headers["x-gateway-cache"] == "miss"
    assert other_team.headers["x-gateway-cache"] == "miss"        # team ops never reads research's
    assert other_team.parse().choices[0].message.content == "How do I undo the last git commit?"


def test_an_anthropic_caller_gets_its_hit_in_its_own_dialect_json_and_stream(stack):
    system = _system()
    client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{stack.port}", api_key="sk-demo-alice", max_retries=0)
    first = client.messages.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=40, system=system,
        messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert first.headers["x-gateway-cache"] == "miss"
    second = client.messages.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=40, system=system,
        messages=[{"role": "user", "content": "Which city is the capital of France?"}])
    assert second.headers["x-gateway-cache"] == "hit"
    assert second.parse().content[0].text == "What is the capital of France?"
    with client.messages.stream(model="gpt-4o-mini", max_tokens=40, system=system,
                                messages=[{"role": "user", "content": "Which city is France's capital?"}]) as stream:
        streamed = stream.get_final_message()
        assert stream.response.headers["x-gateway-cache"] == "hit"
    assert streamed.content[0].text == "What is the capital of France?"


def test_a_document_in_the_last_turn_is_matched_exactly_only(stack):
    """Past 8,192 characters a last turn is not embedded (nor sent to the embedding model)."""
    document = "Summarize this log: " + "GET /index.html 200 " * 500
    answer = _ask(stack, document, _system())
    record = stack.wait_for_record(answer.headers["x-request-id"])
    assert answer.headers["x-gateway-cache"] == "miss" and record["cache_semantic"] == "no question"
    assert "cache_embedding_request" not in record


def test_a_key_not_allowed_the_embedding_model_gets_its_answer_as_a_miss(stack):
    """bob may call gpt-4o-mini only: his embedding call is refused (403), his call is not."""
    system = _system()
    answer = _ask(stack, "How do I rotate my API key?", system, key="sk-demo-bob")
    assert answer.headers["x-gateway-cache"] == "miss"
    assert answer.parse().choices[0].message.content == "How do I rotate my API key?"
    record = stack.wait_for_record(answer.headers["x-request-id"])
    assert record["cache_semantic"] == "no embedding: status 403" and record["status"] == 200
    refused = stack.wait_for_record(record["cache_embedding_request"])
    assert refused["status"] == 403 and refused["key_id"] == "bob"


def test_an_embedding_slower_than_the_bound_is_a_miss_in_its_time_not_a_504(stack):
    """The lookup's bound (timeout_s) keeps it within the 2 s Envoy gives one ext_proc
    message: a 3 s embedding model costs the call 0.5 s and a miss, never a 504."""
    client = openai.OpenAI(base_url=stack.base_url, api_key="sk-demo-alice", max_retries=0)
    started = time.monotonic()
    answer = client.chat.completions.with_raw_response.create(
        model="gpt-4o", max_tokens=40,
        messages=[{"role": "system", "content": _system()}, {"role": "user", "content": "How do I reset my password?"}])
    elapsed = time.monotonic() - started
    assert answer.status_code == 200 and answer.headers["x-gateway-cache"] == "miss"
    assert answer.parse().choices[0].message.content == "How do I reset my password?"
    assert 0.5 <= elapsed < 3.0, elapsed         # it did not wait for the embedding
    record = stack.wait_for_record(answer.headers["x-request-id"])
    assert record["status"] == 200 and record["cache_semantic"] == "no embedding: timeout"


def test_two_replicas_on_redis_share_their_questions_and_a_redis_down_is_a_miss(tmp_path):
    """Replicas each search their own copy of the vectors Redis holds: what one answered,
    the other finds; with the store gone the call goes on as a miss."""
    from test_budgets_e2e import RestartableRedis
    redis = RestartableRedis(tmp_path)
    config = _config()
    config["store"] = {"kind": "redis", "url": redis.url}
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
    replicas = ()
    try:
        replicas = start_together(*(GatewayStack(tmp_path / name, config, workers=1) for name in ("one", "two")))
        for replica in replicas:
            _warmed(replica)
        for _ in range(3):              # a new conversation when an embedding outlived its bound
            system = _system()
            first = _ask(replicas[0], "How do I reset my password?", system)
            # Its answer and vector are in Redis once its log line is written (the store's
            # done hook runs before the record's): the other replica finds them from then on.
            stored = replicas[0].wait_for_record(first.headers["x-request-id"])
            if "timeout" in stored.get("cache_semantic", ""):
                continue
            assert stored.get("cache_stored") is True and "cache_semantic" not in stored, stored
            second = _ask(replicas[1], "What is the way to reset my password?", system)
            found = replicas[1].wait_for_record(second.headers["x-request-id"])
            if "timeout" not in found.get("cache_semantic", ""):
                break
        else:
            raise AssertionError("every embedding outlived its bound: the host is too loaded for this test")
        assert (first.headers["x-gateway-cache"], second.headers["x-gateway-cache"]) == ("miss", "hit"), found
        assert second.parse().choices[0].message.content == "How do I reset my password?"
        redis.stop()
        down = _ask(replicas[1], "What's the way to reset my password?", system)
        assert down.status_code == 200 and down.headers["x-gateway-cache"] == "miss"
        assert down.parse().choices[0].message.content == "What's the way to reset my password?"
    finally:
        for replica in replicas:
            replica.stop()
        redis.stop()
