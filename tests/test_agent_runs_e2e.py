"""Agent runs through real Envoy, on the suite's shared quickstart (its `runs:` section:
run limits for both demo keys, loops stopped past 8 repeats): calls naming the same run
are one run, two concurrent runs stay apart, a forced tool loop is stopped with 429
agent_loop in each caller's dialect, a run limit's refusal names the run and the limit,
and `extproc runs list|show --json` shows it all."""

from __future__ import annotations

import json
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
from warm_start import run_extproc

QUICKSTART_REPEATS = 8          # config/quickstart.yaml: runs.loops.max_repeats


def runs_cli(gateway, *args: str) -> object:
    done = run_extproc(["runs", *args, "--config",
                        str(gateway.workdir / "gateway.yaml"), "--state-dir", str(gateway.state_dir), "--json"],
                       capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def wait_for_run(gateway, name: str, key: str, predicate, timeout: float = 10.0) -> dict:
    """The run of `key` named `name` once `predicate(run)` holds (the trace is written in batches)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [run for run in runs_cli(gateway, "list", "--key", key) if run["name"] == name]
        if found and predicate(found[0]):
            return found[0]
        assert time.monotonic() < deadline, f"run {name!r}: {found}"
        time.sleep(0.2)


def chat(gateway, key: str, run: str | None, messages: list, headers: dict | None = None) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}/chat/completions", timeout=30,
                      headers={"authorization": f"Bearer {key}", **({"x-gateway-run": run} if run else {}),
                               **(headers or {})},
                      json={"model": "gpt-4o-mini", "messages": messages, "max_tokens": 50})


MCP_ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def mcp_echo(gateway, key: str, run: str) -> None:
    """An MCP session on the demo profile and one tools/call of `echo`, all naming `run`."""
    url = f"{gateway.base_url.removesuffix('/v1')}/mcp/demo"
    headers = {**MCP_ACCEPT, "authorization": f"Bearer {key}", "x-gateway-run": run}
    started = httpx.post(url, headers=headers, timeout=30, json={
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}})
    assert started.status_code == 200, started.text
    headers["mcp-session-id"] = started.headers["mcp-session-id"]
    httpx.post(url, headers=headers, timeout=30, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    answer = httpx.post(url, headers=headers, timeout=30, json={
        "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "hi"}}})
    assert answer.status_code == 200 and "hi" in answer.text, answer.text


def test_calls_naming_a_run_are_one_run_and_concurrent_runs_stay_apart(gateway):
    a, b = f"task-a-{uuid.uuid4().hex[:8]}", f"task-b-{uuid.uuid4().hex[:8]}"
    jobs = [(run, i) for i in range(3) for run in (a, b)]
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda job: chat(gateway, "sk-demo-alice", job[0],
                                                 [{"role": "user", "content": f"step {job[1]} of {job[0]}"}]), jobs))
    assert [answer.status_code for answer in answers] == [200] * 6
    mcp_echo(gateway, "sk-demo-alice", a)          # a tool call of the same run, on the MCP profile
    # Bob naming alice's run starts a run of his own: runs are scoped by key.
    assert chat(gateway, "sk-demo-bob", a, [{"role": "user", "content": "not alice's"}]).status_code == 200
    run_a = wait_for_run(gateway, a, "alice", lambda run: run["calls"] == 3 and run["mcp_calls"] == 1)
    run_b = wait_for_run(gateway, b, "alice", lambda run: run["calls"] == 3)
    bobs = wait_for_run(gateway, a, "bob", lambda run: run["calls"] == 1)
    assert len({run_a["id"], run_b["id"], bobs["id"]}) == 3
    assert run_a["key"] == "alice" and run_a["team"] == "research" and run_a["outcome"] == "ok"
    assert run_a["models"] == ["gpt-4o-mini"] and run_a["cost_usd"] > 0 and run_a["input_tokens"] > 0
    shown = runs_cli(gateway, "show", run_a["id"])
    model_calls = [call for call in shown["calls"] if call.get("kind") != "mcp"]
    assert shown["id"] == run_a["id"] and [call["status"] for call in model_calls] == [200, 200, 200]
    assert [call["ts"] for call in shown["calls"]] == sorted(call["ts"] for call in shown["calls"])
    assert all(call["model"] == "gpt-4o-mini" and call["cost_usd"] > 0 for call in model_calls)
    [tool_call] = [call for call in shown["calls"] if call.get("kind") == "mcp"]
    assert tool_call["tool"] == "echo" and tool_call["method"] == "tools/call" and tool_call["profile"] == "demo"
    spent = run_extproc(["usage", "--by", "run", "--json", "--config",
                         str(gateway.workdir / "gateway.yaml"), "--state-dir", str(gateway.state_dir)],
                        capture_output=True, text=True, timeout=60)
    rows = {row["run"]: row for row in json.loads(spent.stdout)["rows"]}
    assert rows[run_a["id"]]["requests"] == 4 and rows[run_a["id"]]["usd"] == run_a["cost_usd"]   # 3 model calls, 1 tool call
    assert rows[run_a["id"]]["key"] == "alice" and rows[bobs["id"]]["key"] == "bob"


def test_a_forced_tool_loop_is_stopped_within_the_configured_count(gateway):
    """The mock calls the same tool forever (x-mock-tool-call); the caller plays the agent,
    running the tool and sending the result back each time."""
    run = f"loop-{uuid.uuid4().hex[:8]}"
    messages = [{"role": "user", "content": "list the files"}]
    for made in range(1, 21):
        answer = chat(gateway, "sk-demo-alice", run, messages, {"x-mock-tool-call": "shell"})
        if answer.status_code != 200:
            break
        call = answer.json()["choices"][0]["message"]["tool_calls"][0]
        messages += [{"role": "assistant", "content": None, "tool_calls": [call]},
                     {"role": "tool", "tool_call_id": call["id"], "content": "a.txt b.txt"}]
    assert answer.status_code == 429, answer.text
    # The first call carries no tool call back; the next 8 carry it 1..8 times; the 10th, 9 times.
    assert made == QUICKSTART_REPEATS + 2
    error = answer.json()["error"]
    assert error["code"] == "agent_loop" and error["type"] == "rate_limit_error"
    times = int(re.search(r"with the same arguments (\d+) times", error["message"]).group(1))
    assert "'shell'" in error["message"] and times == QUICKSTART_REPEATS + 1
    assert answer.headers["x-should-retry"] == "false"
    # Sent again, it is refused again; a new user turn goes on.
    assert chat(gateway, "sk-demo-alice", run, messages).status_code == 429
    assert chat(gateway, "sk-demo-alice", run, messages + [{"role": "user", "content": "try another way"}]
                ).status_code == 200
    # (a run's calls reach its record in batches: both refusals, once written)
    stopped = wait_for_run(gateway, run, "alice",
                           lambda found: found["outcome"] == "stopped_loop" and found["refused"] >= 2)
    assert stopped["refused"] == 2
    assert 'gateway_runs_total{outcome="stopped_loop"}' in gateway.metrics('gateway_runs_total{outcome="stopped_loop"}')


def _repeat(gateway, path: str, first: list, step: list, field: str, body: dict, headers: dict) -> httpx.Response:
    """The agent's requests of a loop: its history grows by the same step each time."""
    for n in range(1, QUICKSTART_REPEATS + 2):
        answer = httpx.post(f"{gateway.base_url.removesuffix('/v1')}{path}", json={**body, field: first + step * n},
                            headers=headers, timeout=30)
        if answer.status_code != 200:
            return answer
    return answer


def test_a_loop_is_stopped_in_anthropic_and_gemini_shapes(gateway):
    run = f"loop-{uuid.uuid4().hex[:8]}"
    step = [{"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read",
                                               "input": {"file_path": "/tmp/a"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "same"}]}]
    answer = _repeat(gateway, "/v1/messages", [{"role": "user", "content": "read the file"}], step, "messages",
                     {"model": "claude-sonnet-4-6", "max_tokens": 30},
                     {"x-api-key": "sk-demo-alice", "anthropic-version": "2023-06-01", "x-gateway-run": run})
    assert answer.status_code == 429, answer.text
    body = answer.json()
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert "'Read'" in body["error"]["message"] and "loop" in body["error"]["message"]
    step = [{"role": "model", "parts": [{"functionCall": {"name": "ls", "args": {"d": "."}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "ls", "response": {"r": "x"}}}]}]
    answer = _repeat(gateway, "/v1beta/models/gemini-2.5-flash:generateContent",
                     [{"role": "user", "parts": [{"text": "list"}]}], step, "contents", {},
                     {"x-goog-api-key": "sk-demo-alice", "x-gateway-run": run})
    assert answer.status_code == 429, answer.text
    assert answer.json()["error"]["status"] == "RESOURCE_EXHAUSTED" and "'ls'" in answer.json()["error"]["message"]


def test_a_run_limit_refusal_names_the_run_and_the_limit(gateway):
    """alice-run allows $2 per run: a call that may cost more (its output cap at gpt-4o's
    price) is refused before it reaches the provider."""
    run = f"big-{uuid.uuid4().hex[:8]}"
    gateway.clear_received()
    answer = httpx.post(f"{gateway.base_url}/chat/completions", timeout=30,
                        headers={"authorization": "Bearer sk-demo-alice", "x-gateway-run": run},
                        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "write a lot"}],
                              "max_tokens": 250_000})
    assert answer.status_code == 429, answer.text
    error = answer.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert f"'{run}'" in error["message"] and "'alice-run'" in error["message"] and "$2 per run" in error["message"]
    assert "run is over" in error["message"]
    assert not [r for r in gateway.received() if "write a lot" in r["body"]]


def test_the_console_shows_runs_and_a_runs_calls(gateway):
    run = f"console-{uuid.uuid4().hex[:8]}"
    assert chat(gateway, "sk-demo-alice", run, [{"role": "user", "content": "hello"}]).status_code == 200
    found = wait_for_run(gateway, run, "alice", lambda found: found["calls"] == 1)
    with httpx.Client(base_url=f"http://127.0.0.1:{gateway.console_port}", timeout=30) as console:
        assert console.get("/runs").status_code in (302, 303, 401)           # signed in only
        console.post("/sign-in", data={"token": "console-demo-viewer-token"})
        listing = console.get("/runs", params={"key": "alice"})
        assert listing.status_code == 200 and run in listing.text and f"/runs/{found['id']}" in listing.text
        page = console.get(f"/runs/{found['id']}")
        assert page.status_code == 200 and "gpt-4o-mini" in page.text and "sk-demo" not in page.text
        assert console.get("/runs/nothing-like-it").status_code == 404
