"""The service's own work per request, without gRPC or Envoy: runs the quickstart
pipeline over the ext_proc messages of a chat request in a loop, as Envoy sends them
with envoy/quickstart.yaml: request headers (with what json_to_metadata read from the
body), request body, and the response body alone (its headers skipped, its status as
an attribute; docs/architecture.md).

    .venv/bin/python bench/pipeline.py [--profile] [--prompt-kb N] [--history-kb N] [--code-kb N]

By default it runs the bench's short chat message (~370 bytes) and a 4 KB prompt (prose
with a few non-ASCII words, clean of PII: bench/guardrails.py's, as bench/run.py sends).
`--code-kb N`: calls whose last turn is a tool result of N KB of this repository's source
code, a different piece each time, as an agent sends after reading a file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson
import yaml

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("LLMGW_STATE_DIR", tempfile.mkdtemp(prefix="llmgw-pipe-"))
metrics_dir = tempfile.mkdtemp(prefix="llmgw-metrics-")
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics_dir)

from envoy.config.core.v3 import base_pb2  # noqa: E402
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep  # noqa: E402
from google.protobuf import struct_pb2  # noqa: E402

from extproc.config.envoy_features import EXT_PROC, announced_features  # noqa: E402
from extproc.config.filter_config import load_config  # noqa: E402
from extproc.credentials.google import DEMO_SERVICE_ACCOUNT_ENV, demo_service_account  # noqa: E402
from extproc.observability import metrics  # noqa: E402
from extproc.pipeline.call import Call  # noqa: E402
from extproc.pipeline.protocol import read_message  # noqa: E402
from extproc.runtime.worker import Runtime  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(ROOT / "tests"))
import guardrails as guardrails_bench  # noqa: E402  (bench/guardrails.py: its prose generator)
from gateway_stack import quickstart_config  # noqa: E402

os.environ.setdefault(DEMO_SERVICE_ACCOUNT_ENV, demo_service_account())    # the quickstart's Vertex AI provider

PROMPT = ("Summarize the following note for the weekly report: the gateway team finished the "
          "streaming work, measured the overhead against Envoy alone, and plans the rollout. " * 2)


def long_prompt(kb: int) -> str:
    return guardrails_bench.message(size=kb * 1024, planted=False, non_ascii=True)


# What the openai Python SDK sends besides the call's own headers, and what Envoy adds
# before ext_proc (bench/instructions.py --sdk-headers): the bench's calls carry 6.
SDK_HEADERS = {"accept": "application/json", "accept-encoding": "gzip, deflate", "user-agent": "OpenAI/Python 1.99.0",
               "x-stainless-arch": "x64", "x-stainless-async": "false", "x-stainless-lang": "python",
               "x-stainless-os": "Linux", "x-stainless-package-version": "1.99.0", "x-stainless-runtime": "CPython",
               "x-stainless-runtime-version": "3.11.7", "x-stainless-retry-count": "0",
               "x-stainless-read-timeout": "600", "x-forwarded-proto": "http",
               "x-envoy-expected-rq-timeout-ms": "600000", "content-length": "380"}
EXTRA_HEADERS: dict[str, str] = {}      # added to each call's request headers (SDK_HEADERS, or none)


def headers(pairs: dict, eos: bool = False) -> ep.HttpHeaders:
    return ep.HttpHeaders(headers=base_pb2.HeaderMap(headers=[
        base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs.items()]), end_of_stream=eos)


def _struct(fields: dict) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(fields)
    return struct


def messages(prompt: str | list) -> list[bytes]:
    """The ext_proc messages of a call whose prompt is one user message, or a history, as
    Envoy sends them (each read from its bytes per call, as a worker reads it)."""
    turns = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": turns})
    reply = orjson.dumps({"id": "x", "object": "chat.completion", "model": "gpt-4o-mini", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": PROMPT}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 60, "completion_tokens": 55, "total_tokens": 115}})
    key = "sk-demo-alice"
    first = ep.ProcessingRequest(request_headers=headers({
        ":method": "POST", ":path": "/v1/chat/completions", ":authority": "gw",
        "authorization": f"Bearer {key}", "content-type": "application/json",
        "x-request-id": "bench", **EXTRA_HEADERS}))
    first.metadata_context.filter_metadata["llm_gateway.request"].CopyFrom(
        _struct({"stream": False, "model": "gpt-4o-mini"}))
    last = ep.ProcessingRequest(response_body=ep.HttpBody(body=reply, end_of_stream=True))
    last.attributes["envoy.filters.http.ext_proc"].CopyFrom(_struct({"response.code": 200}))
    return [message.SerializeToString() for message in
            (first, ep.ProcessingRequest(request_body=ep.HttpBody(body=body, end_of_stream=True)), last)]


UNREAD_KEY = "sk-bench-unread"


def unread_messages() -> list[bytes]:
    """The ext_proc messages of a call whose policy reads nothing of its body
    (stages/body_unread.py): its request headers, and the trailers at its answer's end,
    with the status and the usage Envoy read from the answer."""
    first = ep.ProcessingRequest(request_headers=headers({
        ":method": "POST", ":path": "/v1/chat/completions", ":authority": "gw",
        "authorization": f"Bearer {UNREAD_KEY}", "content-type": "application/json",
        "content-length": "380", "x-request-id": "bench"}))
    first.metadata_context.filter_metadata["llm_gateway.request"].CopyFrom(
        _struct({"stream": False, "model": "gpt-4o-mini"}))
    last = ep.ProcessingRequest(response_trailers=ep.HttpTrailers(trailers=base_pb2.HeaderMap()))
    last.attributes["envoy.filters.http.ext_proc"].CopyFrom(_struct({"response.code": 200, "response.size": 560,
                                                                     "upstream.request_attempt_count": 1}))
    last.metadata_context.filter_metadata["llm_gateway.stream"].CopyFrom(
        _struct({"input_tokens": 60, "output_tokens": 55}))
    return [first.SerializeToString(), last.SerializeToString()]


def bench_config(budget: bool = True, unread: bool = False) -> str:
    """The quickstart (without its response cache: the same call runs again and again),
    plus a budget that always has room for alice's team. `unread`: without the run limits
    and loop stopping, which read every call's body, and with a key no guardrail applies
    to (with `budget`, a budget with room for its team too)."""
    config = quickstart_config()
    # The scan allowance (10 s of scanning a key a minute) as bench/sides.py raises it: under
    # callgrind (bench/instructions.py), ~50x slower, calls of new code would be refused.
    config["guardrails"]["max_scan_ms_per_key_per_minute"] = 3_600_000
    if unread:
        config.pop("runs")
        config["keys"].append({"id": "unread", "key": UNREAD_KEY, "team": "batch", "models": "*"})
        config["guardrails"]["policies"] = {"default": [r["name"] for r in config["guardrails"]["rules"]],
                                            "keys": {"unread": []}}
    if budget:
        config["budgets"].append({"name": "bench", "scope": "team", "match": "research", "unit": "tokens",
                                  "limit": 10**12, "window": "month"})
        if unread:          # the unread key's calls are reserved at their headers (stages/budget/unread.py)
            config["budgets"].append({"name": "bench-batch", "scope": "team", "match": "batch", "unit": "tokens",
                                      "limit": 10**12, "window": "month"})
    path = Path(tempfile.mkdtemp(prefix="llmgw-pipe-")) / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def code_turns(kb: int) -> list[list]:
    """Chat calls whose last turn is a tool result of `kb` KB of this repository's own
    source code, a different piece each (bench/guardrails.py's pieces): what an agent
    sends after reading a file, every call's text new to the guardrails."""
    return [[{"role": "user", "content": "Read the file and explain what it does."},
             {"role": "assistant", "content": None, "tool_calls": [
                 {"id": "call_1", "type": "function", "function": {"name": "read", "arguments": "{}"}}]},
             {"role": "tool", "tool_call_id": "call_1", "content": piece}]
            for piece in guardrails_bench.source_code(kb)]


def envoy_features():
    """What the quickstart's Envoy config announces to the workers (its ext_proc filter's)."""
    envoy = yaml.safe_load((ROOT / "envoy" / "quickstart.yaml").read_text())
    manager = envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return announced_features(next(f["typed_config"] for f in manager["http_filters"] if f["name"] == EXT_PROC))


class Prepared:
    """A runtime of the bench's config, warmed by 200 calls, and the messages to send it."""

    def __init__(self, runtime: Runtime, features, sequences: list) -> None:
        self.runtime, self.features, self.sequences = runtime, features, sequences


async def prepare(budget: bool, prompt: str | list, fresh: list | None = None,
                  warm: list | None = None) -> Prepared:
    """`fresh`: the prompts of the calls to make in turn, new text each, after the calls
    of `warm`, made here."""
    config = load_config(bench_config(budget))
    sys.stdout = open(os.devnull, "w")       # the log line is written, to /dev/null
    runtime = Runtime(config)
    metrics.batch_writes()                   # as a worker does, flushing now and then
    sequence = messages(prompt)
    features = envoy_features()
    for _ in range(200):
        call = Call(runtime.config, features)
        for message in sequence:
            await runtime.pipeline.handle(call, read_message(message))
        await runtime.pipeline.run_done(call)       # as the worker does after the last reply
        await asyncio.sleep(0)
    for prompt_first in warm or []:
        call = Call(runtime.config, features)
        for message in messages(prompt_first):
            await runtime.pipeline.handle(call, read_message(message))
        await runtime.pipeline.run_done(call)
    assert call.response_in_body and call.status == 200 and call.usage, \
        f"not the one-message JSON path: {call.status} {call.error_code} {call.reply.body[:300]!r}"
    return Prepared(runtime, features, [messages(p) for p in fresh] if fresh else [sequence])


async def calls(prepared: Prepared, rounds: int) -> None:
    """`rounds` calls, each its messages and the work after its reply, as a worker runs them."""
    runtime, sequences = prepared.runtime, prepared.sequences
    for index in range(rounds):
        call = Call(runtime.config, prepared.features)
        for message in sequences[index % len(sequences)]:
            await runtime.pipeline.handle(call, read_message(message))
        await runtime.pipeline.run_done(call)       # as the worker does after the last reply
        await asyncio.sleep(0)                      # the loop turns between calls (tasks run)
        if index % 100 == 0:
            metrics.flush()


async def run(rounds: int, budget: bool, prompt: str | list, profile=None, fresh: list | None = None,
              warm: list | None = None) -> float:
    """Microseconds per call; `fresh`: the prompts of calls made in turn, new text each,
    after the calls of `warm`, untimed."""
    prepared = await prepare(budget, prompt, fresh, warm)
    if profile:
        profile.enable()
    started = time.perf_counter()
    await calls(prepared, rounds)
    elapsed = time.perf_counter() - started
    if profile:
        profile.disable()
    sys.stdout = sys.__stdout__
    return elapsed / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--prompt-kb", type=int, help="only this prompt size (KB of README prose)")
    parser.add_argument("--history-kb", type=int,
                        help="only an agent's history of this size, resent every call (4 KB turns)")
    parser.add_argument("--code-kb", type=int,
                        help="only calls whose tool result is this many KB of source code, new each call")
    args = parser.parse_args()
    if args.code_kb:
        # Each piece once, the text new to every call (what the guardrails know, they know
        # for the process: one run); a third of them first, untimed, as a worker that has
        # read code before (its RE2 automata have grown the states such text visits).
        turns = code_turns(args.code_kb)
        warm = len(turns) // 3
        micros = asyncio.run(run(len(turns) - warm, True, turns[0], fresh=turns[warm:], warm=turns[1:warm]))
        print(f"quickstart pipeline, a chat call with {args.code_kb} KB of new source code, with a token budget "
              f"(SQLite, allotments): {micros:.0f} us per request")
        return
    prompts = {"short chat message": PROMPT, "4 KB prompt": long_prompt(4)}
    if args.prompt_kb:
        prompts = {f"{args.prompt_kb} KB prompt": long_prompt(args.prompt_kb)}
    if args.history_kb:
        prompts = {f"{args.history_kb} KB history": guardrails_bench.history(args.history_kb)}
    if args.profile:
        import cProfile
        import pstats
        profile = cProfile.Profile()
        asyncio.run(run(args.rounds, True, next(iter(prompts.values())), profile))
        pstats.Stats(profile).sort_stats("tottime").print_stats(35)
        return
    for size, prompt in prompts.items():
        for budget in (False, True):
            micros = asyncio.run(run(args.rounds, budget, prompt))
            what = "with a token budget (SQLite, allotments)" if budget else "no budget applies"
            print(f"quickstart pipeline, a JSON chat call (3 messages), {size}, {what}: {micros:.0f} us per request")


if __name__ == "__main__":
    main()
