"""Agent runs, in process: the run identity (extproc/runs/identity.py), the tool calls a
request carries back in each dialect and their counts since the user's last turn
(dialects/tool_turns.py), the worker's ledger, the trace."""

from __future__ import annotations

import json

from extproc.dialects import codec_of
from extproc.runs import Run, recognise
from extproc.runs.identity import NAME_CHARS


def test_the_run_header_names_a_run_scoped_by_key():
    mine = recognise("alice", {"x-gateway-run": "task-1"})
    assert isinstance(mine, Run) and mine.name == "task-1" and mine.source == "x-gateway-run"
    assert len(mine.id) == 24 and all(c in "0123456789abcdef" for c in mine.id)
    assert recognise("alice", {"x-gateway-run": "task-1"}).id == mine.id
    assert recognise("bob", {"x-gateway-run": "task-1"}).id != mine.id      # never another key's run
    assert recognise("alice", {"x-gateway-run": "task-2"}).id != mine.id
    assert recognise("alice", {}) is None and recognise("", {"x-gateway-run": "t"}) is None


def test_agents_own_session_headers_and_body_fields():
    claude = recognise("k", {"user-agent": "claude-cli/2.1.197 (external, cli)", "x-claude-code-session-id": "s1"})
    assert claude.client == "claude-code" and claude.source == "x-claude-code-session-id"
    codex = recognise("k", {"user-agent": "codex_cli_rs/0.169.0 (Linux)", "session-id": "s2"})
    assert codex.client == "codex" and codex.name == "s2"
    by_body = recognise("k", {"user-agent": "codex_cli_rs/0.169.0"}, {"prompt_cache_key": "s2"})
    assert by_body.id == codex.id and by_body.source == "body:prompt_cache_key"
    # An unrecognised client's session header still counts; its body field does not.
    assert recognise("k", {"x-claude-code-session-id": "s1"}).id == claude.id
    assert recognise("k", {}, {"prompt_cache_key": "s2"}) is None
    # The run header wins over the agent's, and the same value is the same run.
    named = recognise("k", {"user-agent": "claude-cli/2", "x-claude-code-session-id": "other",
                            "x-gateway-run": "s1"})
    assert named.id == claude.id and named.source == "x-gateway-run"
    assert recognise("k", {}, mcp_session="abc").source == "mcp-session-id"


def test_any_bytes_or_length_gives_a_bounded_id_and_name():
    for value in ("x" * 100_000, "caf\u00e9 \udcff\x00|\n", "a|b|c"):
        run = recognise("k", {"x-gateway-run": value})
        assert len(run.id) == 24 and run.name.startswith("sha256:") and len(run.name) == 23
    assert recognise("k", {"x-gateway-run": "a" * NAME_CHARS}).name == "a" * NAME_CHARS


def _chat(tail):
    return {"model": "m", "messages": [{"role": "user", "content": "list files"}, *tail]}


def _chat_step(arguments: str, n: str = "1") -> list[dict]:
    return [{"role": "assistant", "tool_calls": [{"id": n, "type": "function",
                                                  "function": {"name": "shell", "arguments": arguments}}]},
            {"role": "tool", "tool_call_id": n, "content": "a b"}]


def test_chat_tool_calls_carried_back_counted_since_the_user_turn():
    codec = codec_of("chat")
    ls, pwd = '{"cmd":"ls"}', '{"cmd":"pwd"}'
    assert codec.last_tool_calls(_chat(_chat_step(ls))) == [("shell", ls, 1)]
    assert codec.last_tool_calls(_chat(_chat_step(ls) + _chat_step(pwd) + _chat_step(ls))) == [("shell", ls, 2)]
    assert codec.last_tool_calls(_chat(_chat_step(ls) * 3)) == [("shell", ls, 3)]
    # A user turn between: the repeats before it do not count.
    assert codec.last_tool_calls(_chat(_chat_step(ls) * 3 + [{"role": "user", "content": "again"}] + _chat_step(ls))
                                 ) == [("shell", ls, 1)]
    assert codec.last_tool_calls(_chat(_chat_step(ls)[:1])) == []          # no result yet: not carried back
    assert codec.last_tool_calls(_chat(_chat_step(ls) + [{"role": "user", "content": "now"}])) == []
    assert codec.last_tool_calls({"messages": "junk"}) == [] and codec.last_tool_calls({}) == []


def test_responses_messages_and_gemini_tool_calls_carried_back():
    step = [{"type": "reasoning", "summary": []},
            {"type": "function_call", "name": "exec_command", "arguments": "{\"cmd\":\"ls\"}", "call_id": "c"},
            {"type": "function_call_output", "call_id": "c", "output": "a"}]
    responses = {"input": [{"type": "message", "role": "user", "content": "hi"}, *step, *step]}
    assert codec_of("responses").last_tool_calls(responses) == [("exec_command", "{\"cmd\":\"ls\"}", 2)]
    assert codec_of("responses").last_tool_calls({"input": "hi"}) == []
    use = {"role": "assistant", "content": [{"type": "text", "text": "ok"},
                                            {"type": "tool_use", "id": "t", "name": "Bash", "input": {"b": 1, "a": 2}}]}
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"},
                                          {"type": "text", "text": "<system-reminder>"}]}
    messages = {"messages": [{"role": "user", "content": "hi"}, use, result, use, result]}
    assert codec_of("messages").last_tool_calls(messages) == [("Bash", json.dumps({"a": 2, "b": 1},
                                                                                   separators=(",", ":")), 2)]
    call = {"role": "model", "parts": [{"functionCall": {"name": "ls", "args": {"d": "."}}}]}
    answer = {"role": "user", "parts": [{"functionResponse": {"name": "ls", "response": {}}}]}
    gemini = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}, call, answer]}
    assert codec_of("generate_content").last_tool_calls(gemini) == [("ls", "{\"d\":\".\"}", 1)]


def test_the_ledger_admits_a_share_of_the_room_it_last_saw():
    from extproc.runs.ledger import SHARE, RunLedger
    ledger = RunLedger()
    state = ledger.counter("run.a.usd|r")
    assert ledger.admits_here(state, 2.0, 2.0 * SHARE) and not ledger.admits_here(state, 2.0, 2.0 * SHARE + 0.01)
    state.flying = 0.3
    assert not ledger.admits_here(state, 2.0, 0.3)        # calls in flight hold their estimates
    state.flying, state.synced = 0.0, 1.9                  # near the end: each call goes to the store
    assert not ledger.admits_here(state, 2.0, 0.05)
    assert ledger.counter("run.a.usd|r") is state


def test_the_trace_merges_workers_batches_and_reads_back_in_order(tmp_path):
    import asyncio

    from extproc.store.limits import StoreSettings
    from extproc.store.runs import RunLog, find_run, list_runs
    settings = StoreSettings(kind="sqlite", path=str(tmp_path / "s.sqlite3"), url=None, fail_mode="closed",
                             lease_seconds=60, default_output_tokens=512)

    def entry(ts, **more):
        return {"run": "r" * 24, "run_name": "task-1", "run_source": "x-gateway-run", "client": "codex",
                "key_id": "alice", "user": "alice", "team": "research", "ts": ts, "model": "gpt-4o-mini",
                "status": 200, "input_tokens": 10, "output_tokens": 2, "cost_usd": 0.001, **more}

    events = []
    first, second = RunLog(), RunLog()          # two workers
    first.on_runs = second.on_runs = events.extend

    async def write():
        first.add(entry(3.0), settings, 3600)
        second.add(entry(1.0), settings, 3600)
        second.add(entry(2.0, kind="mcp", tool="echo", model=None, cost_usd=0.0), settings, 3600)
        await first.flush(settings, 3600)
        await second.flush(settings, 3600)
        first.add(entry(4.0, status=429, error_code="agent_loop", stopped="stopped_loop"), settings, 3600)
        await first.flush(settings, 3600)

    asyncio.run(write())
    assert events == ["started", "stopped_loop"]
    [run] = list_runs(settings, since=0)
    assert (run["calls"], run["mcp_calls"], run["refused"], run["outcome"]) == (3, 1, 1, "stopped_loop")
    assert run["cost_usd"] == 0.003 and run["input_tokens"] == 40 and run["first_ts"] == 1.0
    shown = find_run(settings, "task-1")
    assert [call["ts"] for call in shown["calls"]] == [1.0, 2.0, 3.0, 4.0]
    assert shown["calls"][1]["tool"] == "echo" and shown["calls"][3]["error_code"] == "agent_loop"
    assert find_run(settings, "rrrrrr")["id"] == "r" * 24 and find_run(settings, "nothing") is None


def test_runs_list_flags_a_key_whose_runs_are_all_one_call_long():
    from extproc.runtime.runs_cli import _table
    run = {"id": "r" * 24, "name": "n", "key": "k", "client": "", "calls": 1, "mcp_calls": 0, "input_tokens": 1,
           "output_tokens": 1, "cost_usd": 0.0, "outcome": "ok", "last_ts": 0.0}
    assert "note: key k: 5 runs, each one call long" in _table([run] * 5)
    assert "note:" not in _table([run] * 4) and "note:" not in _table([run] * 4 + [{**run, "calls": 2}])


def test_a_runs_calls_are_one_trace_unless_the_caller_sends_its_own():
    import dataclasses
    from pathlib import Path

    from extproc.config.filter_config import load_config
    from extproc.observability.tracing import TracingSettings
    from extproc.pipeline.call import Call
    from extproc.stages.accounting.trace import span_attributes, trace_context
    config = load_config(str(Path(__file__).resolve().parent.parent / "config" / "quickstart.yaml"),
                         strict_credentials=False)
    config = dataclasses.replace(config, observability=dataclasses.replace(
        config.observability, tracing=TracingSettings(host="127.0.0.1", port=4317, sampling_percent=100)))

    def context(headers, run_value):
        call = Call(config)
        call.headers, call.run = headers, recognise("alice", {"x-gateway-run": run_value, "user-agent": "claude-cli/2"})
        return call, trace_context(call)

    (one, first), (_, second), (_, other) = context({}, "a"), context({}, "a"), context({}, "b")
    assert first.trace_id == second.trace_id != other.trace_id and first.span_id != second.span_id
    assert not first.parent_span_id and first.sampled
    caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert context({"traceparent": caller}, "a")[1].trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4736"
    attributes = span_attributes(one)
    assert attributes["gen_ai.conversation.id"] == one.run.id and attributes["gen_ai.agent.name"] == "claude-code"
    assert attributes["gateway.run"] == "a"


def test_a_call_added_while_the_store_is_written_is_written_next_without_another_call(tmp_path):
    """The call an agent's loop was stopped on is its last: the worker writes it in a batch
    of its own even when it came while the previous batch was being written."""
    import asyncio
    import time

    from extproc.store.limits import StoreSettings
    from extproc.store.runs import FLUSH_SECONDS, RunLog, list_runs
    settings = StoreSettings(kind="sqlite", path=str(tmp_path / "s.sqlite3"), url=None, fail_mode="closed",
                             lease_seconds=60, default_output_tokens=512)
    log = RunLog()
    real = log._to_sqlite

    def slow_write(path, by_run):
        time.sleep(0.3)                  # a store busy with the rest of the host's work
        return real(path, by_run)

    log._to_sqlite = slow_write

    def entry(ts, **more):
        return {"run": "s" * 24, "run_source": "session-id", "client": "codex", "key_id": "alice", "user": "alice",
                "team": "research", "ts": ts, "model": "gpt-4o-mini", "status": 200, **more}

    async def calls():
        log.add(entry(1.0), settings, 3600)
        await asyncio.sleep(FLUSH_SECONDS + 0.1)          # its batch is being written
        log.add(entry(2.0, status=429, error_code="agent_loop", stopped="stopped_loop"), settings, 3600)
        await asyncio.sleep(2 * FLUSH_SECONDS + 0.8)      # no call after it

    asyncio.run(calls())
    [run] = list_runs(settings, since=0)
    assert (run["calls"], run["refused"], run["outcome"]) == (2, 1, "stopped_loop")
