"""Benchmark: calls across API dialects against Envoy alone, same mocks, one run.

    .venv/bin/python bench/dialects.py [--seconds 8] [--rounds 2] [--connections 32]

The sides of bench/run.py (Envoy and one ext_proc worker on core 0, the mock and wrk on
core 1), plus a second Envoy alone in front of the mock's Anthropic listener. Each call
kind, JSON and SSE, goes through the gateway with the full quickstart pipeline (key,
guardrails, a token budget, usage, metrics, the log line):

  chat -> openai          an OpenAI caller on an OpenAI-dialect provider (as bench/run.py)
  messages -> anthropic   an Anthropic caller on an Anthropic provider: nothing translated
  chat -> anthropic       an OpenAI caller on an Anthropic provider: translated both ways
  messages -> openai      an Anthropic caller on an OpenAI-dialect provider: translated
  responses -> anthropic  an OpenAI Responses caller on an Anthropic provider: translated
  chat -> responses-only  an OpenAI caller on a provider of the Responses API only: translated
  messages -> responses-only  an Anthropic caller there: translated
  generate -> gemini      a Gemini API caller on a Gemini API provider: nothing translated
  chat, messages, responses -> gemini   the other dialects' callers there: translated
  generate -> openai, generate -> anthropic   a Gemini API caller elsewhere: translated
  messages -> bedrock claude   an Anthropic caller on Claude on Bedrock (InvokeModel): the
                          body re-wrapped, the event stream re-framed as SSE, each call signed
  chat -> bedrock claude  an OpenAI caller there: translated
  chat, messages -> bedrock nova   callers on a Bedrock Converse model: translated, signed

Each is compared with Envoy alone proxying the same body shape to the mock that serves
it; for Bedrock, Envoy alone signs each request with the same aws_request_signing filter,
so the Envoy CPU of "Envoy alone -> bedrock" against "Envoy alone -> anthropic" is the
signing's own cost. A translated stream is read chunk by chunk (each event is rewritten in the caller's
dialect), so the run ends with the worker's CPU per event of long translated streams
(~400 tokens, a token per chunk), beside an untranslated stream read chunk by chunk.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import statistics
import tempfile
from pathlib import Path

import httpx
from run import PROMPT, ensure_wrk, wrk
from sides import KEYS, GUARDED_KEY, cpu_seconds, envoy_alone, pin, start_sides

ANTHROPIC_MOCK_KEY = "mock-anthropic-key"
GEMINI_MOCK_KEY = "mock-gemini-key"
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}
LONG_ANSWER = " ".join(f"word{i}" for i in range(200))   # the mock echoes it: ~400 tokens


def body(dialect: str, model: str, stream: bool, text: str = PROMPT) -> str:
    if dialect == "generate":               # Gemini's: the path says the model and whether it streams
        return json.dumps({"contents": [{"role": "user", "parts": [{"text": text}]}]})
    if dialect == "converse":               # Bedrock's, as is InvokeModel's Anthropic body below
        return json.dumps({"messages": [{"role": "user", "content": [{"text": text}]}]})
    if dialect == "invoke":
        return json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 1024,
                           "messages": [{"role": "user", "content": text}]})
    if dialect == "chat":
        return json.dumps({"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]})
    if dialect == "responses":
        return json.dumps({"model": model, "stream": stream, "input": text})
    return json.dumps({"model": model, "max_tokens": 1024, "stream": stream,
                       "messages": [{"role": "user", "content": text}]})


def path(template: str, model: str, stream: bool) -> str:
    """A caller's path: Gemini's and Bedrock's name the model and their method."""
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return template.format(model=model.replace(":", "%3A"), method=method,
                           converse="converse-stream" if stream else "converse",
                           invoke="invoke-with-response-stream" if stream else "invoke")


GEMINI_PATH = "/v1beta/models/{model}:{method}"
NOVA, HAIKU = "amazon.nova-micro-v1:0", "us.anthropic.claude-haiku-4-5-20251001-v1:0"
# label: (caller's path, caller's dialect, model, baseline: which Envoy alone)
CALLS = {
    "chat -> openai": ("/v1/chat/completions", "chat", "gpt-4o-mini", "openai"),
    "messages -> anthropic": ("/v1/messages", "messages", "claude-sonnet-4-6", "anthropic"),
    "chat -> anthropic": ("/v1/chat/completions", "chat", "claude-sonnet-4-6", "anthropic"),
    "messages -> openai": ("/v1/messages", "messages", "gpt-4o-mini", "openai"),
    "responses -> anthropic": ("/v1/responses", "responses", "claude-sonnet-4-6", "anthropic"),
    "chat -> responses-only": ("/v1/chat/completions", "chat", "responses-mini", "responses"),
    "messages -> responses-only": ("/v1/messages", "messages", "responses-mini", "responses"),
    "generate -> gemini": (GEMINI_PATH, "generate", "gemini-2.5-flash", "gemini"),
    "chat -> gemini": ("/v1/chat/completions", "chat", "gemini-2.5-flash", "gemini"),
    "messages -> gemini": ("/v1/messages", "messages", "gemini-2.5-flash", "gemini"),
    "responses -> gemini": ("/v1/responses", "responses", "gemini-2.5-flash", "gemini"),
    "generate -> openai": (GEMINI_PATH, "generate", "gpt-4o-mini", "openai"),
    "generate -> anthropic": (GEMINI_PATH, "generate", "claude-sonnet-4-6", "anthropic"),
    "messages -> bedrock claude": ("/v1/messages", "messages", f"bedrock/{HAIKU}", "bedrock claude"),
    "chat -> bedrock claude": ("/v1/chat/completions", "chat", f"bedrock/{HAIKU}", "bedrock claude"),
    "chat -> bedrock nova": ("/v1/chat/completions", "chat", f"bedrock/{NOVA}", "bedrock nova"),
    "messages -> bedrock nova": ("/v1/messages", "messages", f"bedrock/{NOVA}", "bedrock nova"),
}
# baseline: (path at the mock, body dialect, model, key, extra headers)
ALONE = {
    "openai": ("/v1/chat/completions", "chat", "gpt-4o-mini", KEYS["envoy alone"], {}),
    "anthropic": ("/v1/messages", "messages", "claude-sonnet-4-6", ANTHROPIC_MOCK_KEY,
                  {**ANTHROPIC_HEADERS, "x-api-key": ANTHROPIC_MOCK_KEY}),
    "responses": ("/v1/responses", "responses", "gpt-4o-mini", KEYS["envoy alone"], {}),
    "gemini": (GEMINI_PATH, "generate", "gemini-2.5-flash", GEMINI_MOCK_KEY, {"x-goog-api-key": GEMINI_MOCK_KEY}),
    # Envoy alone signing each request (the quickstart's bedrock cluster: aws_request_signing)
    "bedrock claude": ("/model/{model}/{invoke}", "invoke", HAIKU, "unused", {}),
    "bedrock nova": ("/model/{model}/{converse}", "converse", NOVA, "unused", {}),
}
# Which of the quickstart's clusters each Envoy alone proxies through, to which mock listener.
ALONE_CLUSTERS = {"anthropic": ("mock", "mock-anthropic"), "gemini": ("mock", "mock-gemini"),
                  "bedrock claude": ("bedrock", "mock-bedrock"), "bedrock nova": ("bedrock", "mock-bedrock")}
# The worker's CPU per event: label -> (caller's path, dialect, model, key)
LONG_STREAMS = {
    "messages -> openai, translated": ("/v1/messages", "messages", "gpt-4o-mini", KEYS["gateway"]),
    "chat -> anthropic, translated": ("/v1/chat/completions", "chat", "claude-sonnet-4-6", KEYS["gateway"]),
    "responses -> anthropic, translated": ("/v1/responses", "responses", "claude-sonnet-4-6", KEYS["gateway"]),
    "chat -> responses-only, translated": ("/v1/chat/completions", "chat", "responses-mini", KEYS["gateway"]),
    "messages -> responses-only, translated": ("/v1/messages", "messages", "responses-mini",
                                                            KEYS["gateway"]),
    "chat -> gemini, translated": ("/v1/chat/completions", "chat", "gemini-2.5-flash", KEYS["gateway"]),
    "generate -> anthropic, translated": (GEMINI_PATH, "generate", "claude-sonnet-4-6", KEYS["gateway"]),
    "generate -> openai, translated": (GEMINI_PATH, "generate", "gpt-4o-mini", KEYS["gateway"]),
    "chat -> bedrock nova, translated (event stream)": ("/v1/chat/completions", "chat", f"bedrock/{NOVA}",
                                                        KEYS["gateway"]),
    "chat -> bedrock claude, translated (event stream)": ("/v1/chat/completions", "chat", f"bedrock/{HAIKU}",
                                                          KEYS["gateway"]),
    "messages -> bedrock claude, re-framed (event stream)": ("/v1/messages", "messages", f"bedrock/{HAIKU}",
                                                             KEYS["gateway"]),
    "chat -> openai, chunk by chunk, untranslated (a virtual model)":
        ("/v1/chat/completions", "chat", "smart", KEYS["gateway"]),
    "chat -> anthropic, translated (response guardrails)": ("/v1/chat/completions", "chat", "claude-sonnet-4-6",
                                                            GUARDED_KEY),
    "chat -> openai, chunk by chunk, untranslated (response guardrails)":
        ("/v1/chat/completions", "chat", "gpt-4o-mini", GUARDED_KEY),
}


def long_stream_cpu(url: str, dialect: str, model: str, key: str, workers: list[int], streams: int = 40) -> dict:
    url = path(url, model, True)
    """Worker CPU per stream and per event the caller receives, 4 streams at a time."""
    payload = json.loads(body(dialect, model, True, LONG_ANSWER))
    headers = {"authorization": f"Bearer {key}", "x-mock-chunk-delay-ms": "1", "x-mock-chunk-chars": "3",
               **ANTHROPIC_HEADERS}

    def one(_) -> int:
        with httpx.stream("POST", url, json=payload, headers=headers, timeout=60) as response:
            assert response.status_code == 200, response.read()
            return sum(1 for line in response.iter_lines() if line.startswith("data: {"))
    before = sum(cpu_seconds(p) for p in workers)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        events = list(pool.map(one, range(streams)))
    per_stream = (sum(cpu_seconds(p) for p in workers) - before) / streams
    return {"events": statistics.median(events), "stream_ms": per_stream * 1000,
            "event_us": per_stream / statistics.median(events) * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--streams-only", action="store_true", help="only the CPU per event of long streams")
    parser.add_argument("--only", default="", help="only the calls whose label holds this text "
                                                   "(and the Envoy alone they are compared with, and anthropic's)")
    args = parser.parse_args()
    if args.only:
        for table in (CALLS, LONG_STREAMS):
            for label in [label for label in table if args.only not in label]:
                del table[label]
        for name in [n for n in ALONE if n != "anthropic" and n not in {call[3] for call in CALLS.values()}]:
            del ALONE[name]
            ALONE_CLUSTERS.pop(name, None)
    binary = ensure_wrk()
    with contextlib.ExitStack() as cleanup:
        sides = start_sides(cleanup)
        gateway = sides.urls["gateway"].removesuffix("/v1/chat/completions")
        alone_base = {"openai": sides.urls["envoy alone"].removesuffix("/v1/chat/completions")}
        alone_base["responses"] = alone_base["openai"]
        alone_pids = {"openai": [sides.alone.pid], "responses": [sides.alone.pid]}
        for name, (cluster, listener) in ALONE_CLUSTERS.items():
            alone, port = envoy_alone(Path(tempfile.mkdtemp(prefix="llmgw-bench-")), sides.mock_ports[listener],
                                      cluster)
            cleanup.callback(alone.terminate)
            pin(alone.pid, 0)
            alone_base[name], alone_pids[name] = f"http://127.0.0.1:{port}", [alone.pid]
        results: dict[tuple[str, str], list[dict]] = {}
        cpu: dict[tuple[str, str, str], list[float]] = {}

        def measure(label: str, mode: str, url: str, key: str, payload: str, headers: dict,
                    pids: dict[str, list[int]]) -> None:
            before = {what: sum(cpu_seconds(p) for p in group) for what, group in pids.items()}
            result = wrk(binary, url, key, payload, args.seconds, args.connections, headers=headers)
            for what, group in pids.items():
                cpu.setdefault((label, mode, what), []).append(
                    (sum(cpu_seconds(p) for p in group) - before[what]) / max(1, result["requests"]) * 1e6)
            results.setdefault((label, mode), []).append(result)

        for _ in range(0 if args.streams_only else args.rounds):
            for mode, stream in (("json", False), ("sse", True)):
                for name, (where, dialect, model, key, headers) in ALONE.items():
                    measure(f"Envoy alone -> {name}", mode, alone_base[name] + path(where, model, stream), key,
                            body(dialect, model, stream), headers, {"envoy": alone_pids[name]})
                for label, (where, dialect, model, _) in CALLS.items():
                    measure(label, mode, gateway + path(where, model, stream), KEYS["gateway"], body(dialect, model, stream),
                            ANTHROPIC_HEADERS if dialect == "messages" else {},
                            {"service": sides.workers, "envoy": sides.envoys})
        long_streams = {label: long_stream_cpu(gateway + where, dialect, model, key, sides.workers)
                        for label, (where, dialect, model, key) in LONG_STREAMS.items()}

    if not args.streams_only:
        print_table(args, results, cpu)
    for label, measured in long_streams.items():
        print(f"long streams ({measured['events']:.0f} events each), {label}: worker {measured['stream_ms']:.1f} ms "
              f"per stream, {measured['event_us']:.0f} us per event")


def print_table(args, results: dict, cpu: dict) -> None:
    print(f"\n{args.rounds} interleaved rounds x {args.seconds}s, {args.connections} connections; Envoy "
          "(+1 ext_proc worker) on core 0, the mock + wrk on core 1; vs Envoy alone in front of the same mock")
    print(f"{'traffic':<5} {'call':<34} {'req/s':>8} {'p50 ms':>7} {'vs Envoy':>9} {'non-2xx':>8} "
          f"{'service CPU/req':>16} {'Envoy CPU/req':>14}")
    for mode in ("json", "sse"):
        base = {name: statistics.median(r["rps"] for r in results[(f"Envoy alone -> {name}", mode)]) for name in ALONE}
        rows = [(f"Envoy alone -> {name}", name) for name in ALONE] + [(label, CALLS[label][3]) for label in CALLS]
        for label, baseline in rows:
            runs = results[(label, mode)]
            rps = statistics.median(r["rps"] for r in runs)
            service, envoy = (f"{statistics.median(cpu[(label, mode, what)]):.0f} us"
                              if (label, mode, what) in cpu else "-" for what in ("service", "envoy"))
            print(f"{mode:<5} {label:<34} {rps:>8.0f} {statistics.median(r['p50'] for r in runs):>7.2f} "
                  f"{rps / base[baseline]:>8.2f}x {sum(r['errors'] for r in runs):>8} {service:>16} {envoy:>14}")


if __name__ == "__main__":
    main()
