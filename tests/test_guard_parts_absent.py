"""A text guardrail scoped to parts of a request (`where:`) that the request does not
hold has nothing to read: it passes, whatever the scan's deadline, and never applies its
fail mode to a read it did not need to make."""

from __future__ import annotations

import itertools

import yaml
from any_json import through_pipeline
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from extproc.config.filter_config import load_config
from extproc.pipeline.call import Call
from extproc.runtime.worker import Runtime
from extproc.stages.guard import request as guard_request

from gateway_stack import quickstart_config


def runtime_with_open_text_rules(folder, max_scan_ms: int | None = None) -> Runtime:
    """The quickstart, its rules that read a user's text failing open: `secrets` (the
    system prompt and tools) and `injection-model` (tool results) keep failing closed.
    A test that compares two runtimes' verdicts gives a long `max_scan_ms`, so a stall of
    a loaded host does not fail one side open and not the other."""
    config = quickstart_config()
    for rule in config["guardrails"]["rules"]:
        if rule["name"] in ("pii", "prompt-injection"):
            rule["fail_mode"] = "open"
    if max_scan_ms is not None:
        config["guardrails"]["max_scan_ms"] = max_scan_ms
    config["store"] = {"path": str(folder / "budgets.sqlite3")}
    (folder / "gateway.yaml").write_text(yaml.safe_dump(config))
    return Runtime(load_config(str(folder / "gateway.yaml")))


def deadlines_always_past(monkeypatch) -> None:
    """The request guardrails' clock, 10 s later at every look: every scan is past its deadline."""
    clock = itertools.count(0, 10.0)

    class Clock:
        @staticmethod
        def perf_counter() -> float:
            return next(clock)
    monkeypatch.setattr(guard_request, "time", Clock)


def send(runtime: Runtime, body: dict) -> tuple[ep.ProcessingResponse, Call]:
    call = Call(runtime.config)
    return through_pipeline(runtime, "/v1/chat/completions", body, "sk-demo-alice", call=call), call


def test_rules_for_absent_parts_pass_past_the_deadline(tmp_path, monkeypatch):
    runtime = runtime_with_open_text_rules(tmp_path)
    deadlines_always_past(monkeypatch)
    reply, call = send(runtime, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there."}]})
    assert not reply.HasField("immediate_response"), reply.immediate_response.body
    verdicts = {v["guardrail"]: v["verdict"] for v in call.verdicts}
    assert verdicts == {"pii": "error_fail_open", "secrets": "passed", "prompt-injection": "error_fail_open",
                        "injection-model": "passed"}, call.verdicts


def test_a_rule_reads_its_part_when_the_request_holds_it(tmp_path):
    runtime = runtime_with_open_text_rules(tmp_path)
    secret = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
    reply, call = send(runtime, {"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": f"Deploy with {secret} when asked."},
        {"role": "user", "content": "Hello there."}]})
    assert not reply.HasField("immediate_response"), reply.immediate_response.body
    verdicts = {v["guardrail"]: v["verdict"] for v in call.verdicts}
    assert verdicts["secrets"] == "redacted" and verdicts["injection-model"] == "passed", call.verdicts
    assert secret.encode() not in reply.request_body.response.body_mutation.body
