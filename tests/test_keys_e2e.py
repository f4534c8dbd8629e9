"""Keys managed at run time, through real Envoy: `extproc keys` makes, revokes and rotates
them in the store a running gateway uses, and every worker (and every replica sharing a
Redis) follows within a second, with no restart; their budgets hold under concurrency;
no key ever shows in a log line, a metric or an error."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest
from gateway_stack import GatewayStack, quickstart_config, settled_rows, start_together
from warm_start import run_extproc

from extproc.store.keys import KeyBook
from extproc.store.redis_store import RedisStore
from extproc.store.sqlite_store import SQLiteStore

WITHIN = 1.0        # seconds: what the contract promises for creation and revocation


def keys_cli(stack: GatewayStack, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_extproc(["keys", *args, "--config", str(stack.workdir / "gateway.yaml"),
      "--state-dir", str(stack.state_dir)],
     capture_output=True, text=True, timeout=60, check=check)


def create_key(stack: GatewayStack, *args: str) -> dict:
    made = keys_cli(stack, "create", "--json", *args)
    return json.loads(made.stdout)


def chat(stack: GatewayStack, key: str, model: str = "gpt-4o-mini", content: str = "hello") -> httpx.Response:
    return httpx.post(f"{stack.base_url}/chat/completions", timeout=30,
                      headers={"authorization": f"Bearer {key}"},
                      json={"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": content}]})


def status_within(stack: GatewayStack, key: str, status: int, seconds: float = WITHIN) -> float:
    """How long, from now, until a call with `key` gets `status` (fails past `seconds`)."""
    start = time.monotonic()
    while True:
        got = chat(stack, key).status_code
        elapsed = time.monotonic() - start
        if got == status:
            return elapsed
        assert elapsed < seconds, f"still {got} after {elapsed:.2f} s (wanted {status})"
        time.sleep(0.02)


def refused_everywhere_within_a_second(stack: GatewayStack, key: str, since: float) -> list[httpx.Response]:
    """A second after `since` (monotonic), every call with `key`, whichever worker Envoy
    gives it to, is refused."""
    time.sleep(max(0.0, since + WITHIN - time.monotonic()))
    answers = [chat(stack, key) for _ in range(10)]
    assert [a.status_code for a in answers] == [401] * 10
    return answers


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    gateway = GatewayStack(tmp_path_factory.mktemp("keys"), workers=2).start()
    yield gateway
    gateway.stop()


def test_a_created_key_works_on_the_very_next_call_on_every_worker(stack):
    """No wait between `extproc keys create` and the first call: a worker that does not
    know the key looks in the store before refusing it."""
    for round_ in range(4):
        made = create_key(stack, "--user", f"next-{round_}", "--team", "research", "--models", "gpt-4o-mini")
        answers = [chat(stack, made["key"]).status_code for _ in range(4)]     # both workers, at once
        assert answers == [200] * 4, answers
    # A wrong key is still refused, and asking again costs no store read per call (cached).
    assert [chat(stack, "sk-never-made-" + "x" * 30).status_code for _ in range(3)] == [401] * 3


def test_a_created_key_works_with_the_openai_sdk_within_a_second(stack):
    made = keys_cli(stack, "create", "--user", "carol", "--team", "research", "--models", "gpt-4o-mini")
    key = made.stdout.strip().splitlines()[-1]          # printed once, as the last line
    assert key.startswith("sk-") and len(key) > 40
    start = time.monotonic()
    client = openai.OpenAI(base_url=stack.base_url, api_key=key, max_retries=0)
    while True:
        try:
            reply = client.chat.completions.create(
                model="gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": "hi there"}])
            break
        except openai.AuthenticationError:
            assert time.monotonic() - start < WITHIN, "the new key was refused for more than a second"
            time.sleep(0.02)
    assert reply.choices[0].message.content == "hi there"
    # A second on, every worker knows it (the first answer may have come from one only).
    time.sleep(max(0.0, start + WITHIN - time.monotonic()))
    with pytest.raises(openai.PermissionDeniedError) as refused:     # its allowlist holds
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert refused.value.code == "model_not_allowed"
    record = stack.wait_for_record(predicate=lambda r: (r.get("key_id") or "").startswith("key-")
                                   and r.get("status") == 200)
    assert record["team"] == "research"


def test_list_never_shows_a_key_and_revocation_takes_effect_within_a_second(stack):
    made = create_key(stack, "--user", "erin", "--team", "support")
    status_within(stack, made["key"], 200)
    listed = keys_cli(stack, "list").stdout + keys_cli(stack, "list", "--json").stdout
    assert made["id"] in listed and made["key"] not in listed and "sk-" not in listed
    assert "sha256" not in listed
    keys_cli(stack, "revoke", made["id"])
    revoked_at = time.monotonic()
    assert status_within(stack, made["key"], 401) < WITHIN
    for refused in refused_everywhere_within_a_second(stack, made["key"], revoked_at):
        assert refused.json()["error"]["code"] == "invalid_api_key" and made["key"] not in refused.text
    listed = json.loads(keys_cli(stack, "list", "--json").stdout)
    assert {k["id"]: k["state"] for k in listed}[made["id"]] == "revoked"


def test_an_expired_key_is_refused(stack):
    made = create_key(stack, "--user", "fay", "--team", "research", "--expires", "2s")
    status_within(stack, made["key"], 200)
    time.sleep(2.1)
    assert [chat(stack, made["key"]).status_code for _ in range(4)] == [401] * 4
    assert {k["id"]: k["state"] for k in json.loads(keys_cli(stack, "list", "--json").stdout)}[made["id"]] == "expired"


def test_rotation_keeps_the_old_key_valid_for_the_overlap_only(stack):
    made = create_key(stack, "--user", "gil", "--team", "research")
    status_within(stack, made["key"], 200)
    rotated = json.loads(keys_cli(stack, "rotate", made["id"], "--overlap", "3s", "--json").stdout)
    assert rotated["id"] == made["id"] and rotated["key"] != made["key"]
    status_within(stack, rotated["key"], 200)
    assert chat(stack, made["key"]).status_code == 200          # inside the overlap
    time.sleep(3.1)
    assert [chat(stack, made["key"]).status_code for _ in range(4)] == [401] * 4
    assert chat(stack, rotated["key"]).status_code == 200
    # Without an overlap the old key stops at once (within a second).
    again = json.loads(keys_cli(stack, "rotate", made["id"], "--json").stdout)
    rotated_at = time.monotonic()
    status_within(stack, again["key"], 200)
    refused_everywhere_within_a_second(stack, rotated["key"], rotated_at)


def test_concurrent_creations_all_work(stack):
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        made = list(pool.map(lambda i: create_key(stack, "--user", f"batch-{i}", "--team", "research"), range(8)))
    assert len({m["id"] for m in made}) == 8 and len({m["key"] for m in made}) == 8
    for one in made:
        status_within(stack, one["key"], 200)


def test_bad_input_is_refused_with_a_clear_error(stack):
    clash = keys_cli(stack, "create", "--user", "x", "--team", "y", "--id", "alice", check=False)
    assert clash.returncode == 2 and "already a key of the config file" in clash.stderr
    for flags, says in ((("--budget-usd", "5/week"), "N/WINDOW"), (("--budget-tokens", "lots/day"), "not a number"),
                        (("--expires", "yesterday"), "neither a duration"), (("--expires", "2001-01-01"), "past")):
        bad = keys_cli(stack, "create", "--user", "x", "--team", "y", *flags, check=False)
        assert bad.returncode == 2 and says in bad.stderr, bad.stderr
    missing = keys_cli(stack, "revoke", "no-such-key", check=False)
    assert missing.returncode == 2 and "no key 'no-such-key'" in missing.stderr


def test_a_stored_key_whose_id_is_in_the_config_file_is_refused(stack):
    """Written past the CLI's check (another tool, an older config): the config's key wins,
    the stored one is refused, and the service says why."""
    async def sneak() -> str:
        store = SQLiteStore(str(stack.state_dir / "budgets.sqlite3"), patient=True)
        try:
            stored, secret = await KeyBook(store).create(user="mallory", team="research", key_id="bob")
            return secret
        finally:
            store.close()
    secret = asyncio.run(sneak())
    time.sleep(0.6)
    assert chat(stack, secret).status_code == 401
    assert chat(stack, "sk-demo-bob").status_code == 200
    deadline = time.monotonic() + 5
    while "is both in the config file and in the store" not in stack.stderr_path.read_text() + \
            stack.log_path.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_nothing_secret_in_logs_metrics_or_errors(stack):
    made = create_key(stack, "--user", "hal", "--team", "research")
    status_within(stack, made["key"], 200)
    near_miss = made["key"][:-1] + ("A" if made["key"][-1] != "A" else "B")
    refused = chat(stack, near_miss)
    assert refused.status_code == 401 and near_miss not in refused.text
    time.sleep(0.5)
    metrics = httpx.get(f"{stack.admin_url}/metrics").text
    logs = stack.log_path.read_text() + stack.stderr_path.read_text()
    for secret in (made["key"], near_miss, made["key"][3:20]):
        assert secret not in logs and secret not in metrics


BUDGET = 600


def test_a_run_time_keys_budget_holds_under_80_concurrent_calls(stack):
    made = create_key(stack, "--user", "ivy", "--team", "budget-test", "--budget-tokens", f"{BUDGET}/hour",
                      "--id", "ivy-key")
    status_within(stack, made["key"], 200)
    time.sleep(WITHIN)   # one worker knows the key; within a second every worker does
    first = chat(stack, made["key"]).json()["usage"]["total_tokens"]   # (status_within spent one too)

    def one(i: int) -> httpx.Response:
        return httpx.post(f"{stack.base_url}/chat/completions", timeout=60,
                          headers={"authorization": f"Bearer {made['key']}"},
                          json={"model": "gpt-4o-mini", "max_tokens": 20,
                                "messages": [{"role": "user", "content": f"concurrent budget request {i}"}]})
    with concurrent.futures.ThreadPoolExecutor(max_workers=80) as pool:
        responses = list(pool.map(one, range(80)))
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert ok and refused and len(ok) + len(refused) == 80
    for response in refused:
        error = response.json()["error"]
        assert error["code"] == "budget_exceeded" and "key:ivy-key.tokens" in error["message"]
        assert response.headers["x-ratelimit-limit-tokens"] == str(BUDGET)
    counter = settled_rows(SQLiteStore(str(stack.state_dir / "budgets.sqlite3")))["key:ivy-key.tokens|ivy-key"]
    assert counter.held == 0 and counter.spent <= BUDGET
    assert counter.spent == 2 * first + sum(r.json()["usage"]["total_tokens"] for r in ok)


async def _flush(url: str) -> None:
    store = RedisStore(url)
    await store._redis.flushdb()
    await store.close()


def test_two_replicas_on_one_redis_follow_creation_and_revocation_within_a_second(tmp_path: Path, redis_url):
    asyncio.run(_flush(redis_url))
    config = quickstart_config()
    config["store"] = {"kind": "redis", "url": redis_url}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = start_together(GatewayStack(tmp_path / "a", config, workers=2),
                                   GatewayStack(tmp_path / "b", config, workers=2))
    try:
        made = create_key(first, "--user", "jo", "--team", "research")
        for replica in (first, second):
            status_within(replica, made["key"], 200)
        keys_cli(second, "revoke", made["id"])
        revoked_at = time.monotonic()
        for replica in (first, second):
            refused_everywhere_within_a_second(replica, made["key"], revoked_at)
    finally:
        first.stop()
        second.stop()


def test_usage_shows_a_run_time_keys_own_budget(stack):
    made = create_key(stack, "--user", "uma", "--team", "research", "--budget-tokens", "5000/hour")
    assert chat(stack, made["key"]).status_code == 200
    shown = run_extproc(["usage", "--config", str(stack.workdir / "gateway.yaml"),
                         "--state-dir", str(stack.state_dir)], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    rows = [line.split() for line in shown.stdout.splitlines() if line.startswith(f"key:{made['id']}.tokens")]
    assert len(rows) == 1, shown.stdout
    name, scope, who, window, used, held, limit, remaining = rows[0][:8]
    assert (scope, who, window, limit) == ("key", made["id"], "hour", "5,000")
    assert int(used.replace(",", "")) > 0 and made["key"] not in shown.stdout
