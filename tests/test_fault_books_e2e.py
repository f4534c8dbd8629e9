"""The books under faults, through real Envoy: after a worker hangs under load, a provider
resets and Envoy retries, or a provider cuts its answer, the store's spend equals the
tokens of what the callers received, to the token; each call's log line names what
happened (docs/observability.md#outcomes) and counts every attempt Envoy made."""

from __future__ import annotations

import concurrent.futures
import copy
import itertools
import json
import os
import signal
import threading
import time

import httpx
import pytest
from gateway_stack import GatewayStack, quickstart_config, settled_rows

from extproc.api.tokens import count_text
from extproc.store.sqlite_store import SQLiteStore

KEY = "sk-fault-books-carol"
PROMPT = " ".join(f"w{n}" for n in range(40))        # 40 words: an answer of ~80 tokens
MODELS = {"json": "gpt-4o-mini", "passed": "gpt-4o-mini", "translated": "claude-sonnet-4-6",
          "translated_json": "claude-sonnet-4-6"}
STREAMS = ("passed", "translated")
DEAD_SERVICE = "extproc_unreachable"
HUNG_S = 5.0                     # longer than Envoy's message timeout (2 s): callers get 504


def _config() -> dict:
    """The quickstart with its OpenAI and Anthropic mocks only (a quicker start), a key with a
    token budget of its own, and its spend metered by key."""
    config = quickstart_config()
    kept = {"mock", "anthropic", "mock-failing", "mock-backup"}
    config["providers"] = {name: p for name, p in config["providers"].items() if name in kept}
    config["models"] = {name: m for name, m in config["models"].items()
                        if all(b["provider"] in kept for b in m.get("backends", []))}
    config["mock_provider"]["listeners"] = [listener for listener in config["mock_provider"]["listeners"]
                                            if listener["name"] in ("mock", "mock-anthropic", "mock-failing")]
    config["mock_provider"].pop("mcp_listeners", None)
    for section in ("mcp", "console", "runs"):
        config.pop(section, None)
    config["identity"].pop("jwt", None)
    config["keys"].append({"id": "carol", "key": KEY, "user": "carol", "team": "research", "models": "*"})
    config["budgets"] = [{"name": "carol-tokens", "scope": "key", "match": "carol", "unit": "tokens",
                          "limit": 10**9, "window": "hour"}]
    config["metering"] = {"dimensions": [["key"]]}
    return config


class FaultStack(GatewayStack):
    """Where the gateway fails itself: the ext_proc filter of the virtual models' backends
    (once per attempt) and of the MCP routes asks on a socket no worker listens on, as when
    the worker that would serve them died."""

    def edit_envoy(self, envoy: dict) -> None:
        clusters = envoy["static_resources"]["clusters"]
        [service] = [cluster for cluster in clusters if cluster["name"] == "extproc"]
        dead = copy.deepcopy(service)
        dead["name"] = DEAD_SERVICE
        dead.pop("health_checks", None)
        for endpoint in dead["load_assignment"]["endpoints"][0]["lb_endpoints"]:
            endpoint["endpoint"]["address"]["pipe"]["path"] = str(self.workdir / "no-worker.sock")
        clusters.append(dead)
        for cluster in clusters:
            options = json.dumps(cluster.get("typed_extension_protocol_options") or {})
            if '"upstream"' not in options:
                continue
            for protocol in cluster["typed_extension_protocol_options"].values():
                for http_filter in protocol.get("http_filters") or ():
                    # (wrapped in a match_delegate: it runs for requests with a failover plan)
                    http_filter = http_filter["typed_config"].get("extension_config", http_filter)
                    if http_filter["name"] == "envoy.filters.http.ext_proc":
                        http_filter["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] = DEAD_SERVICE
        [manager] = [f["typed_config"] for f in envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]]
        for route in manager["route_config"]["virtual_hosts"][0]["routes"]:
            if route["match"].get("prefix") == "/mcp/":
                route["typed_per_filter_config"]["envoy.filters.http.ext_proc"]["overrides"]["grpc_service"] = {
                    "envoy_grpc": {"cluster_name": DEAD_SERVICE}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    gateway = FaultStack(tmp_path_factory.mktemp("fault-books"), _config(), workers=2).start()
    yield gateway
    gateway.stop()


class Received:
    """What one caller got: the status, the usage its answer reported (None when it got no
    whole answer), the streamed text it got, and whether its answer was cut."""

    def __init__(self, request_id: str, kind: str) -> None:
        self.request_id, self.kind = request_id, kind
        self.status, self.usage, self.text, self.cut = 0, None, "", False


def call(client: httpx.Client, stack: GatewayStack, request_id: str, kind: str,
         headers: dict[str, str] | None = None) -> Received:
    """A JSON call (in one message, or translated), or a stream (passed through, or
    translated and read chunk by chunk)."""
    got = Received(request_id, kind)
    body = {"model": MODELS[kind], "messages": [{"role": "user", "content": PROMPT}]}
    if kind in STREAMS:
        body.update(stream=True, stream_options={"include_usage": True})
    sent = {"authorization": f"Bearer {KEY}", "x-request-id": request_id, **(headers or {})}
    try:
        with client.stream("POST", f"{stack.base_url}/chat/completions", headers=sent, json=body,
                           timeout=30) as response:
            got.status = response.status_code
            if kind not in STREAMS:
                answer = json.loads(response.read())
                got.usage = answer.get("usage") if got.status == 200 else None
                return got
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    event = json.loads(line[6:])
                    for choice in event.get("choices") or ():
                        got.text += (choice.get("delta") or {}).get("content") or ""
                    if event.get("usage"):
                        got.usage = event["usage"]
    except httpx.HTTPError:
        got.cut = True                  # the answer stopped short (Envoy reset the stream)
    return got


def records_by_request(stack: GatewayStack, request_ids: set[str], timeout: float = 30) -> dict[str, dict]:
    """The log line of each call (by the x-request-id its caller sent), once all are written."""
    deadline = time.monotonic() + timeout
    while True:
        found = {record.get("client_request_id") or record["request_id"]: record for record in stack.log_records()}
        missing = request_ids - found.keys()
        if not missing:
            return {rid: found[rid] for rid in request_ids}
        assert time.monotonic() < deadline, f"no log line for {sorted(missing)[:5]}"
        time.sleep(0.1)


def spend(stack: GatewayStack) -> tuple[float, float]:
    """The key's token budget spent, and its metered input and output tokens, all settled.
    A worker's meters reach the store at its allotments' next exchange, a moment after the
    budget's settle: read again (for at most 5 s) while the two differ."""
    deadline = time.monotonic() + 5
    while True:
        rows = settled_rows(SQLiteStore(str(stack.state_dir / "budgets.sqlite3")), timeout=30)
        metered = sum(rows[name].spent for name in ("meter:key.input_tokens|key=carol",
                                                    "meter:key.output_tokens|key=carol") if name in rows)
        budget = rows["carol-tokens|carol"].spent if "carol-tokens|carol" in rows else 0.0
        if time.monotonic() > deadline or _meters_caught_up(stack, budget, metered):
            return budget, metered
        time.sleep(0.1)


_first_spend: dict[int, float] = {}


def _meters_caught_up(stack: GatewayStack, budget: float, metered: float) -> bool:
    """Both count the same calls: once the meters have caught up, they differ from the
    budget by what they differed when the module started (nothing, on a fresh store)."""
    return metered - budget == _first_spend.setdefault(id(stack), metered - budget)


def encoding(stack: GatewayStack, model: str) -> str:
    from extproc.config.filter_config import load_config
    return load_config(str(stack.workdir / "gateway.yaml"), strict_credentials=False).models[model].encoding


# The most tokens of one of the mock's text events (a word or two).
EVENT_TOKENS = 4


def test_a_hung_worker_charges_callers_only_what_reached_them(stack):
    """One worker of two stopped for 5 s under load (JSON, passed-through and translated
    streams): its callers get Envoy's 504 or a stream cut where it stood; once it resumes,
    those calls are logged as the gateway's timeout and charged only what reached them.
    Two rounds: the second stop catches the worker with Envoy's ends of the first round's
    streams read and its own new ones in flight."""
    _hung_round(stack, "hung")
    _hung_round(stack, "hung-again")


def _hung_round(stack, prefix: str) -> None:
    before_budget, before_metered = spend(stack)
    [stopped, _] = stack.worker_pids()
    results: list[Received] = []
    lock = threading.Lock()
    numbers = itertools.count()
    stop_at = time.monotonic() + 2.0 + HUNG_S + 2.0

    def client_loop() -> None:
        with httpx.Client() as client:
            while time.monotonic() < stop_at:
                n = next(numbers)
                kind = ("json", "passed", "translated")[n % 3]
                got = call(client, stack, f"{prefix}-{n}", kind, {"x-mock-chunk-delay-ms": "40"})
                with lock:
                    results.append(got)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(client_loop) for _ in range(8)]
        time.sleep(2.0)
        os.kill(stopped, signal.SIGSTOP)
        try:
            time.sleep(HUNG_S)
        finally:
            os.kill(stopped, signal.SIGCONT)
        for future in futures:
            future.result()

    records = records_by_request(stack, {got.request_id for got in results})
    hit = [got for got in results if got.status != 200 or got.usage is None]
    assert hit, "no call was caught by the hung worker"
    owed = 0
    for got in results:
        record = records[got.request_id]
        charged = record["input_tokens"] + record["output_tokens"]
        where = f"{vars(got)} {record}"
        if got.usage is not None:                   # a whole answer: charged exactly its usage
            assert charged == got.usage["total_tokens"], where
            owed += charged
        elif got.status != 200:                     # Envoy's 504: nothing reached the caller
            assert (record["status"], record["outcome"], charged) == (got.status, "gateway_timeout", 0), where
        else:                                       # a stream cut where it stood: the text it got
            assert record["outcome"] == "gateway_timeout" and record["usage_estimated"], where
            # ...and at most the event in flight at the reset (Envoy took it; the reset
            # lost it on the way: docs/budgets-and-rate-limits.md#what-a-call-is-charged).
            got_tokens = count_text(got.text, encoding(stack, MODELS[got.kind]))
            assert got_tokens <= record["output_tokens"] <= got_tokens + EVENT_TOKENS, where
            owed += charged
        if record["outcome"] == "gateway_timeout" and record.get("provider_usage"):
            assert record["provider_usage"]["output_tokens"] >= record["output_tokens"], where
    budget, metered = spend(stack)
    assert (budget - before_budget, metered - before_metered) == (owed, owed)


@pytest.mark.parametrize("kind", ["json", "passed", "translated"])
def test_every_attempt_envoy_made_is_counted(stack, kind):
    """The provider resets the first attempt; Envoy retries and the second answers: the
    log line says 2 attempts (one JSON message, a stream passed through, and a translated
    answer whose headers the service reads), and the call is charged once."""
    request_id = f"retried-{kind}"
    before_budget, _ = spend(stack)
    with httpx.Client() as client:
        got = call(client, stack, request_id, kind, {"x-mock-reset-times": "1"})
    assert got.status == 200 and got.usage is not None, vars(got)
    listener = "mock-anthropic" if kind == "translated" else "mock"
    provider_saw = [r for r in stack.received(listener) if r["headers"].get("x-request-id") ==
                    records_by_request(stack, {request_id})[request_id]["request_id"]]
    record = records_by_request(stack, {request_id})[request_id]
    assert (len(provider_saw), record["attempts"], record["outcome"]) == (2, 2, "ok")
    budget, _ = spend(stack)
    assert budget - before_budget == got.usage["total_tokens"]


@pytest.mark.parametrize("kind,fault", [
    ("json", {"x-mock-truncate": "30"}),
    ("translated_json", {"x-mock-truncate": "30"}),
    ("translated", {"x-mock-cut-after": "10", "x-mock-chunk-delay-ms": "20"}),
    ("passed", {"x-mock-cut-after": "10", "x-mock-chunk-delay-ms": "20"}),
], ids=["json-truncated", "translated-json-truncated", "translated-stream-reset", "passed-stream-reset"])
def test_a_provider_that_cuts_its_answer_is_named_and_charged_what_reached_the_caller(stack, kind, fault):
    """The provider truncates a JSON body (the caller gets Envoy's 502) or resets a stream
    mid-way (the caller gets part of it): the log line says `provider_cut` with the status
    the caller got, and the call is charged what reached the caller: nothing for the 502,
    the prompt and the text received for a stream read chunk by chunk."""
    request_id = f"cut-{kind}"
    before_budget, before_metered = spend(stack)
    with httpx.Client() as client:
        got = call(client, stack, request_id, kind, fault)
    record = records_by_request(stack, {request_id})[request_id]
    where = (vars(got), {k: record[k] for k in ("status", "outcome", "input_tokens", "output_tokens",
                                                "usage_estimated")})
    charged = record["input_tokens"] + record["output_tokens"]
    assert (record["outcome"], record["status"]) == ("provider_cut", got.status), where
    if got.status >= 400:
        assert charged == 0, where
    elif kind == "translated":
        assert got.cut and got.text, where
        assert record["output_tokens"] == count_text(got.text, encoding(stack, MODELS[kind])), where
        assert record["input_tokens"] > 0 and record["usage_estimated"], where
    else:                       # passed through: what Envoy sent, in tokens (stages/accounting/cut_stream.py)
        assert got.cut and 0 < record["output_tokens"] < 80, where
    budget, metered = spend(stack)
    assert (budget - before_budget, metered - before_metered) == (charged, charged), where


def test_the_gateway_s_own_failure_is_not_logged_as_the_provider_s(stack):
    """The ext_proc service an attempt needs cannot be reached (the worker died): Envoy
    answers 500 itself and no provider is called. The log line says the gateway failed
    (`error`, `gateway_error`, no backend), nothing is charged; an MCP caller is told the
    gateway failed, not that its MCP server could not be reached."""
    request_id = "gateway-failed"
    before_budget, _ = spend(stack)
    stack.clear_received()
    with httpx.Client() as client:
        answer = client.post(f"{stack.base_url}/chat/completions", timeout=30,
                             headers={"authorization": f"Bearer {KEY}", "x-request-id": request_id},
                             json={"model": "smart", "messages": [{"role": "user", "content": "hello"}]})
        mcp = client.post(f"http://127.0.0.1:{stack.port}/mcp/demo", timeout=30,
                          headers={"authorization": f"Bearer {KEY}", "accept": "application/json, text/event-stream"},
                          json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert answer.status_code == 500 and answer.json()["error"]["code"] == "gateway_error", answer.text
    record = records_by_request(stack, {request_id})[request_id]
    assert (record["outcome"], record["error_code"], record["backend"], record["input_tokens"],
            record["output_tokens"]) == ("error", "gateway_error", None, 0, 0), record
    assert stack.received("mock") == [] and stack.received("mock-failing") == []
    budget, _ = spend(stack)
    assert budget == before_budget
    assert mcp.status_code == 500, mcp.text
    message = mcp.json()["error"]["message"]
    assert message.startswith("The gateway failed") and "MCP server" not in message, message
