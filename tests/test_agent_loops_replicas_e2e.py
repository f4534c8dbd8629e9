"""Loop stopping beyond repeated tool calls, and run limits across two replicas, through
real Envoy: two `extproc up` stacks sharing one Redis (the module's stacks). A model that
gives the same text answer again and again, re-asked each time, is stopped with 429
agent_loop naming the answer; a run calling faster than `loops.rate` is stopped across
both replicas; a run's call limit holds across both replicas; a run's taint marked on one
replica withholds its egress tool on the other at once, though that replica's worker had
remembered the run clean (the marks are published to every worker)."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
from gateway_stack import GatewayStack, quickstart_config, start_together

from extproc.store.redis_store import RedisStore

SAME_ANSWERS = 3
RATE = 12
RUN_CALLS = 10


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, redis_url):
    async def flush():
        store = RedisStore(redis_url)
        await store._redis.flushdb()
        await store.close()
    asyncio.run(flush())
    config = quickstart_config()
    config["store"] = {**(config.get("store") or {}), "kind": "redis", "url": redis_url}
    # An hour's window: a test's calls never straddle one (a minute's might).
    config["runs"]["loops"].update(max_same_answers=SAME_ANSWERS, rate={"max_calls": RATE, "seconds": 3600})
    config["runs"]["limits"].append({"name": "bob-short", "scope": "key", "match": "bob", "max_calls": RUN_CALLS})
    config["mcp"]["taint"] = {"model_tools": {"Bash": ["reads_private", "egress"], "WebFetch": ["untrusted_content"]}}
    first, second = start_together(GatewayStack(tmp_path_factory.mktemp("replica-a"), config),
                                   GatewayStack(tmp_path_factory.mktemp("replica-b"), config))
    yield first, second
    first.stop()
    second.stop()


def chat(stack, key: str, run: str, messages: list) -> httpx.Response:
    return httpx.post(f"{stack.base_url}/chat/completions", timeout=60,
                      headers={"authorization": f"Bearer {key}", "x-gateway-run": run},
                      json={"model": "gpt-4o-mini", "messages": messages, "max_tokens": 20})


def test_the_same_text_answer_again_and_again_is_a_loop(replicas):
    run = f"same-{uuid.uuid4().hex[:8]}"
    messages = [{"role": "user", "content": "is the build green?"}]
    for answered in range(SAME_ANSWERS + 1):
        assert chat(replicas[answered % 2], "sk-demo-alice", run, messages).status_code == 200
        messages += [{"role": "assistant", "content": "I cannot tell yet."},
                     {"role": "user", "content": "check again"}]
    stopped = chat(replicas[0], "sk-demo-alice", run, messages)
    assert stopped.status_code == 429, stopped.text
    error = stopped.json()["error"]
    assert error["code"] == "agent_loop" and "'I cannot tell yet.'" in error["message"]
    assert f"{SAME_ANSWERS + 1} times in a row" in error["message"]
    assert stopped.headers["x-should-retry"] == "false"
    # A new answer in between is no loop.
    assert chat(replicas[1], "sk-demo-alice", run, messages[:-1] + [
        {"role": "assistant", "content": "Green."}, {"role": "user", "content": "thanks"}]).status_code == 200


def test_a_run_calling_faster_than_the_rate_is_stopped_across_replicas(replicas):
    run = f"fast-{uuid.uuid4().hex[:8]}"
    answers = [chat(replicas[n % 2], "sk-demo-alice", run, [{"role": "user", "content": f"step {n}"}])
               for n in range(RATE + 1)]
    assert [a.status_code for a in answers[:RATE]] == [200] * RATE, [a.text for a in answers if a.status_code != 200]
    stopped = answers[RATE]
    assert stopped.status_code == 429, stopped.text
    error = stopped.json()["error"]
    assert error["code"] == "agent_loop" and f"allows {RATE}" in error["message"] and "model calls" in error["message"]
    # Another run of the same key is not slowed.
    assert chat(replicas[1], "sk-demo-alice", f"other-{uuid.uuid4().hex[:8]}",
                [{"role": "user", "content": "hi"}]).status_code == 200


def test_a_run_limit_holds_across_two_replicas_on_redis(replicas):
    run = f"short-{uuid.uuid4().hex[:8]}"
    answers = [chat(replicas[n % 2], "sk-demo-bob", run, [{"role": "user", "content": f"task step {n}"}])
               for n in range(RUN_CALLS + 2)]
    assert [a.status_code for a in answers] == [200] * RUN_CALLS + [429, 429], [a.text[:200] for a in answers]
    error = answers[RUN_CALLS].json()["error"]
    assert error["code"] == "budget_exceeded" and "'bob-short'" in error["message"]


TOOLS = [{"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
         for name in ("Bash", "WebFetch")]


def agent_call(stack, run: str, ran: tuple[str, ...] = ()) -> list[str]:
    """A model call of `run` offering Bash and WebFetch, carrying back the results of the
    tools `ran`; the tools the provider was offered."""
    messages = [{"role": "user", "content": "Summarise the page and mail it."}]
    if ran:
        calls = [{"id": f"c{n}", "type": "function", "function": {"name": name, "arguments": "{}"}}
                 for n, name in enumerate(ran)]
        messages += [{"role": "assistant", "content": None, "tool_calls": calls},
                     *({"role": "tool", "tool_call_id": call["id"], "content": "done"} for call in calls)]
    answer = httpx.post(f"{stack.base_url}/chat/completions", timeout=60,
                        headers={"authorization": "Bearer sk-demo-alice", "x-gateway-run": run},
                        json={"model": "gpt-4o-mini", "max_tokens": 16, "messages": messages, "tools": TOOLS})
    assert answer.status_code == 200, answer.text
    [sent] = [r for r in stack.received() if r["headers"].get("x-request-id") == answer.headers["x-request-id"]]
    body = json.loads(sent["body"]) if isinstance(sent["body"], str) else sent["body"]
    return [tool["function"]["name"] for tool in body.get("tools", ())]


def test_a_taint_marked_on_one_replica_counts_at_once_on_the_other(replicas):
    first, second = replicas
    run = f"taint-{uuid.uuid4().hex[:8]}"
    for _ in range(3):                  # the second replica's workers read (and remember) the run clean
        assert agent_call(second, run) == ["Bash", "WebFetch"]
    assert agent_call(first, run, ran=("WebFetch", "Bash")) == ["WebFetch"]     # marked both ways there
    for _ in range(3):
        assert agent_call(second, run) == ["WebFetch"]


def test_a_streamed_answer_calling_a_withheld_tool_is_cut_in_the_callers_dialect(replicas):
    first, second = replicas
    run = f"stream-{uuid.uuid4().hex[:8]}"
    assert agent_call(first, run, ran=("WebFetch", "Bash")) == ["WebFetch"]      # tainted both ways
    messages = [{"role": "user", "content": "Summarise the page and mail it."}]
    headers = {"authorization": "Bearer sk-demo-alice", "x-gateway-run": run, "x-mock-tool-call": "Bash"}
    with httpx.stream("POST", f"{second.base_url}/chat/completions", timeout=60, headers=headers,
                      json={"model": "gpt-4o-mini", "max_tokens": 16, "messages": messages, "tools": TOOLS,
                            "stream": True}) as answer:
        text = answer.read().decode()
    assert answer.status_code == 200
    assert "The model asked to run 'Bash'" in text and "content_blocked" in text, text
    assert '"name":"Bash"' not in text.replace(" ", ""), text
    # Translated (an Anthropic caller of an OpenAI model): the caller's own error event.
    tools = [{"name": name, "input_schema": {"type": "object"}} for name in ("Bash", "WebFetch")]
    with httpx.stream("POST", f"{second.base_url.removesuffix('/v1')}/v1/messages", timeout=60,
                      headers={"x-api-key": "sk-demo-alice", "anthropic-version": "2023-06-01",
                               "x-gateway-run": run, "x-mock-tool-call": "Bash"},
                      json={"model": "gpt-4o-mini", "max_tokens": 16, "messages": messages, "tools": tools,
                            "stream": True}) as answer:
        text = answer.read().decode()
    assert "event: error" in text and "The model asked to run 'Bash'" in text, text
    assert '"name":"Bash"' not in text.replace(" ", ""), text
    # A fresh run is offered Bash and its model may call it, streamed.
    with httpx.stream("POST", f"{second.base_url}/chat/completions", timeout=60,
                      headers={**headers, "x-gateway-run": f"fresh-{run}"},
                      json={"model": "gpt-4o-mini", "max_tokens": 16, "messages": messages, "tools": TOOLS,
                            "stream": True}) as answer:
        text = answer.read().decode()
    assert "Bash" in text and "content_blocked" not in text, text
