"""Runs of calls that name none, through real Envoy on the suite's shared quickstart: a
Responses call that continues a stored response (`previous_response_id`) joins the run
of the call that made it, for its key only; an agent that sends no run id (Gemini CLI,
Qwen Code) has its calls grouped into an inferred run while its conversation grows, and
a new first user turn starts a new one."""

from __future__ import annotations

import time
import uuid

import httpx
from test_agent_runs_e2e import runs_cli, wait_for_run


def responses(gateway, key: str, body: dict, run: str | None = None) -> httpx.Response:
    answer = httpx.post(f"{gateway.base_url}/responses", timeout=30, json={"model": "gpt-4o-mini", **body},
                        headers={"authorization": f"Bearer {key}", **({"x-gateway-run": run} if run else {})})
    assert answer.status_code == 200, answer.text
    return answer


def test_a_responses_chain_continues_the_run_of_the_response_it_continues(gateway):
    run = f"chain-{uuid.uuid4().hex[:8]}"
    first = responses(gateway, "sk-demo-alice", {"input": "plan the task"}, run).json()["id"]
    second = responses(gateway, "sk-demo-alice", {"input": "step two", "previous_response_id": first}).json()["id"]
    responses(gateway, "sk-demo-alice", {"input": "step three", "previous_response_id": second})
    named = wait_for_run(gateway, run, "alice", lambda found: found["calls"] == 3)
    assert named["source"] == "x-gateway-run"
    # A chain whose first response had no run is a run from its first continuation on.
    alone = responses(gateway, "sk-demo-alice", {"input": "no run named"}).json()["id"]
    then = responses(gateway, "sk-demo-alice", {"input": "go on", "previous_response_id": alone}).json()["id"]
    responses(gateway, "sk-demo-alice", {"input": "and on", "previous_response_id": then})
    chained = wait_for_run(gateway, alone, "alice", lambda found: found["calls"] == 2)
    assert chained["source"] == "previous_response_id" and chained["id"] != named["id"]
    # Another key's response id joins nothing (and is not found).
    refused = httpx.post(f"{gateway.base_url}/responses", timeout=30, headers={"authorization": "Bearer sk-demo-bob"},
                         json={"model": "gpt-4o-mini", "input": "x", "previous_response_id": second})
    assert refused.status_code == 404
    assert not [found for found in runs_cli(gateway, "list", "--key", "bob") if found["name"] in (run, alone)]


GEMINI = "/v1beta/models/gemini-2.5-flash:generateContent"
GEMINI_CLI = {"user-agent": "GeminiCLI/0.61.0 (linux; x64)", "x-gemini-api-privileged-user-id": "same-every-run"}
TOOLS = [{"functionDeclarations": [{"name": "list_directory", "description": "ls",
                                    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}]}]


def gemini(gateway, key: str, system: str, contents: list) -> None:
    answer = httpx.post(f"{gateway.base_url.removesuffix('/v1')}{GEMINI}", timeout=30,
                        headers={"x-goog-api-key": key, **GEMINI_CLI},
                        json={"systemInstruction": {"parts": [{"text": system}]}, "tools": TOOLS,
                              "contents": contents})
    assert answer.status_code == 200, answer.text


def _new_runs(gateway, key: str, before: set[str], count: int) -> list[dict]:
    deadline = time.monotonic() + 10
    while True:
        found = [run for run in runs_cli(gateway, "list", "--key", key) if run["id"] not in before]
        if len(found) >= count and all(run["calls"] >= 1 for run in found):
            time.sleep(0.8)             # the trace's batch: let every call of them land
            return sorted((run for run in runs_cli(gateway, "list", "--key", key) if run["id"] not in before),
                          key=lambda run: run["first_ts"])
        assert time.monotonic() < deadline, found
        time.sleep(0.2)


def test_an_agent_that_names_no_run_has_its_growing_conversation_inferred_as_one(gateway):
    system = f"You are Gemini CLI {uuid.uuid4().hex}"
    user = {"role": "user", "parts": [{"text": "list the files"}]}
    step = [{"role": "model", "parts": [{"functionCall": {"name": "list_directory", "args": {"path": "."}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "list_directory", "response": {"r": "a b"}}}]}]
    before = {run["id"] for run in runs_cli(gateway, "list", "--key", "alice")}
    for turns in range(3):                      # one task: the history grows
        gemini(gateway, "sk-demo-alice", system, [user] + step * turns)
    gemini(gateway, "sk-demo-alice", system, [{"role": "user", "parts": [{"text": "a new task"}]}])
    task, new_task = _new_runs(gateway, "alice", before, 2)
    assert task["calls"] == 3 and task["inferred"] is True and task["client"] == "gemini-cli"
    assert new_task["calls"] == 1 and new_task["inferred"] is True
