"""Spend by any dimension through real Envoy, on both stores: calls from two teams'
agents (tags `x-gateway-tag-agent`, `-task`), both dialects, reported by
`extproc usage --by ...` (table and --json) and the admin API's /admin/usage, the totals
exactly those of the log lines; a hostile tag cannot grow the store past the cap."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections import defaultdict

import anthropic
import httpx
import openai
import pytest
from gateway_stack import GatewayStack, free_port, quickstart_config
from warm_start import run_extproc

CHAT = [{"role": "user", "content": "count the tokens of this"}]


def _config(kind: str, redis_url: str | None) -> dict:
    config = quickstart_config()
    config["metering"] = {"dimensions": [["key", "user", "team", "model", "backend", "tag:agent", "tag:task"],
                                         ["tag:session"]],
                          "max_values_per_dimension": 3}
    if kind == "redis":
        config["store"] = {"kind": "redis", "url": redis_url}
    # Spend by dimension over HTTP: the admin API's, behind its token.
    config.setdefault("identity", {})["admin_api"] = {"listen": "127.0.0.1:0", "token": {"env": "LLMGW_ADMIN_TOKEN"}}
    return config


ADMIN_TOKEN = "admin-token-of-the-usage-tests-0123456789"


def _stack(tmp_path, config: dict, **options) -> GatewayStack:
    config["identity"]["admin_api"]["listen"] = f"127.0.0.1:{free_port()}"
    stack = GatewayStack(tmp_path, config, env={"LLMGW_ADMIN_TOKEN": ADMIN_TOKEN}, **options)
    stack.admin_api = f"http://{config['identity']['admin_api']['listen']}/admin"
    return stack.start()


def _admin_usage(stack: GatewayStack, params: dict) -> httpx.Response:
    return httpx.get(f"{stack.admin_api}/usage", params=params, timeout=30,
                     headers={"authorization": f"Bearer {ADMIN_TOKEN}"})


async def _flush(url: str) -> None:
    from extproc.store.redis_store import RedisStore
    store = RedisStore(url)
    await store._redis.flushdb()
    await store.close()


def _usage(stack: GatewayStack, *args: str) -> subprocess.CompletedProcess:
    return run_extproc(["usage", "--config", str(stack.workdir / "gateway.yaml"),
                        "--state-dir", str(stack.state_dir), *args], capture_output=True, text=True, timeout=60)


def _calls(stack: GatewayStack) -> list[str]:
    """An agent run of each team, in both dialects; the request ids of the calls."""
    ids = []
    alice = openai.OpenAI(base_url=stack.base_url, api_key="sk-demo-alice", max_retries=0)
    bob = openai.OpenAI(base_url=stack.base_url, api_key="sk-demo-bob", max_retries=0)
    for client, agent, task, model in ((alice, "planner", "t-1", "gpt-4o"), (alice, "planner", "t-2", "gpt-4o-mini"),
                                       (alice, "coder", "t-1", "gpt-4o-mini"), (bob, "triage", "t-9", "gpt-4o-mini")):
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=CHAT, max_tokens=30,
            extra_headers={"x-gateway-tag-agent": agent, "x-gateway-tag-task": task})
        ids.append(raw.headers["x-request-id"])
    # A stream (passed through) and an Anthropic caller count the same way.
    with alice.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=CHAT, stream=True, stream_options={"include_usage": True},
            extra_headers={"x-gateway-tag-agent": "coder", "x-gateway-tag-task": "t-1"}) as response:
        for _ in response.iter_lines():
            pass
        ids.append(response.headers["x-request-id"])
    claude = anthropic.Anthropic(base_url=stack.base_url.removesuffix("/v1"), api_key="sk-demo-alice", max_retries=0)
    raw = claude.messages.with_raw_response.create(
        model="claude-sonnet-4-6", max_tokens=40, messages=CHAT,
        extra_headers={"x-gateway-tag-agent": "planner", "x-gateway-tag-task": "t-2"})
    ids.append(raw.headers["x-request-id"])
    # A refusal never reached a provider: not metered.
    with pytest.raises(openai.NotFoundError):
        bob.chat.completions.create(model="no-such-model", messages=CHAT,
                                    extra_headers={"x-gateway-tag-agent": "triage"})
    return ids


def _expected(records: list[dict], by: tuple[str, ...]) -> dict[tuple, dict]:
    totals: dict[tuple, dict] = defaultdict(lambda: {"requests": 0, "input_tokens": 0, "output_tokens": 0, "usd": 0.0})
    for record in records:
        tags = record.get("tags", {})
        values = {"team": record["team"], "model": record["model"], "key": record["key_id"]}
        group = tuple(tags.get(d[4:], "") if d.startswith("tag:") else values[d] for d in by)
        entry = totals[group]
        entry["requests"] += 1
        entry["input_tokens"] += record["input_tokens"]
        entry["output_tokens"] += record["output_tokens"]
        entry["usd"] += record["cost_usd"]
    return dict(totals)


def _reported(result: dict) -> dict[tuple, dict]:
    by = result["by"]
    return {tuple(row[d] for d in by): {k: row[k] for k in ("requests", "input_tokens", "output_tokens", "usd")}
            for row in result["rows"]}


def _wait_for(stack: GatewayStack, by: str, expected: dict, timeout: float = 20) -> dict:
    """The report once the workers' allotments have reached the store (every 0.5 s): its
    requests and tokens all there, or the time is up (the caller's asserts then say what
    is missing)."""
    deadline = time.monotonic() + timeout
    while True:
        made = _usage(stack, "--by", by, "--json")
        assert made.returncode == 0, made.stderr
        result = json.loads(made.stdout)
        reported = _reported(result)
        if set(reported) == set(expected) and all(
                reported[g][count] == e[count] for g, e in expected.items()
                for count in ("requests", "input_tokens", "output_tokens")) \
                or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_spend_by_team_and_agent_is_what_the_log_lines_say(tmp_path, redis_url, kind):
    if kind == "redis":
        asyncio.run(_flush(redis_url))
    stack = _stack(tmp_path, _config(kind, redis_url), workers=2)
    try:
        ids = _calls(stack)
        records = [stack.wait_for_record(rid) for rid in ids]
        assert all(r["cost_usd"] > 0 for r in records)
        for by in (("team", "tag:agent"), ("tag:agent", "tag:task"), ("model",), ("key",)):
            expected = _expected(records, by)
            result = _wait_for(stack, ",".join(by), expected)
            reported = _reported(result)
            assert set(reported) == set(expected), (by, reported)
            for group, totals in expected.items():
                got = reported[group]
                assert (got["requests"], got["input_tokens"], got["output_tokens"]) == \
                       (totals["requests"], totals["input_tokens"], totals["output_tokens"]), (by, group)
                assert got["usd"] == pytest.approx(totals["usd"], abs=1e-6)
        # research's planner spent on two tasks, in both dialects: one row for it.
        planner = _reported(_wait_for(stack, "team,tag:agent", _expected(records, ("team", "tag:agent"))))
        assert planner[("research", "planner")]["requests"] == 3
        # The table, and the admin endpoint's JSON, say the same.
        table = _usage(stack, "--by", "team,tag:agent")
        assert table.returncode == 0 and "research" in table.stdout and "planner" in table.stdout
        admin = _admin_usage(stack, {"by": "team,tag:agent", "window": "day"}).json()
        assert _reported(admin) == planner
        month = _usage(stack, "--by", "team", "--window", "month", "--json")
        assert sum(r["requests"] for r in json.loads(month.stdout)["rows"]) == len(ids)
    finally:
        stack.stop()


def test_a_hostile_tag_lands_in_other_and_unmetered_dimensions_are_refused(tmp_path, redis_url):
    stack = _stack(tmp_path, _config("sqlite", None))
    try:
        alice = openai.OpenAI(base_url=stack.base_url, api_key="sk-demo-alice", max_retries=0)
        for index in range(8):                              # the cap is 3 distinct values
            alice.chat.completions.create(model="gpt-4o-mini", messages=CHAT, max_tokens=5,
                                          extra_headers={"x-gateway-tag-session": f"s-{index}|;="})
        deadline = time.monotonic() + 10
        while True:
            result = json.loads(_usage(stack, "--by", "tag:session", "--json").stdout)
            rows = {r["tag:session"]: r["requests"] for r in result["rows"]}
            if sum(rows.values()) == 8 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert rows == {"s-0___": 1, "s-1___": 1, "s-2___": 1, "other": 5}
        # A dimension no configured set holds: a clear error, on the command and the endpoint.
        refused = _usage(stack, "--by", "team,tag:session")
        assert refused.returncode == 2 and "metering.dimensions" in refused.stderr
        bad = _usage(stack, "--by", "colour")
        assert bad.returncode == 2 and "Unknown dimension 'colour'" in bad.stderr
        answer = _admin_usage(stack, {"by": "colour"})
        assert answer.status_code == 400 and "colour" in answer.json()["error"]["message"]
    finally:
        stack.stop()
