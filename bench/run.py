"""Benchmark: Envoy alone vs the full gateway, same mock, same core budget, one run.

    .venv/bin/python bench/run.py [--seconds 10] [--rounds 2] [--connections 32] [--peers]
                                  [--store redis]

Envoy (+ the ext_proc worker, for the gateway) is pinned to core 0; the mock
provider and the load generator (wrk, installed from Debian when missing) to
core 1. Rounds alternate between the two sides. The gateway runs the quickstart
pipeline with every feature on: key check, routing, request guardrails (PII
redaction + prompt injection), a token budget reserved and settled in SQLite (with
--store redis: in a redis-server on core 1, over TCP, as several replicas share one),
usage extraction, metrics and the log line. After the throughput rounds, both
sides get the same paced JSON load at half the gateway's maximum, for the added
p50 latency (twice: with the connections in step, so requests arrive in bursts, and
with their pauses drawn at random, so arrivals spread out); then time to first
token, one stream at a time; then the same for
streams generated at a model's pace (a word every 20 ms) with guardrails on the
response too (PII redaction over the stream: only a tail that could still become a
finding is held back, so the first word waits for the next one at most); then the CPU
a long stream (a token per chunk) costs, passed through or chunk by chunk. Streams of a
concrete model pass through Envoy unseen by the service (stages/pass_through.py): as
they come when the client asked for its usage, without their usage chunk (Envoy's Lua
filter takes it out) when it did not; both are measured. A caller whose responses a
guardrail reads still goes chunk by chunk.

With --peers, LiteLLM's proxy and Portkey's gateway (bench/peers.py) get the same
rounds on the same core budget, each proxying to the same mock.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import guardrails as guardrails_bench  # bench/guardrails.py: its prose generator
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from gateway_stack import free_port  # noqa: E402
from sides import GUARDED_KEY, KEYS, children, cpu_seconds, peak_rss_mb, pin, start_sides  # noqa: E402

from extproc.transport import compiled  # noqa: E402

PROMPT = ("Summarize the following note for the weekly report: the gateway team finished the "
          "streaming work, measured the overhead against Envoy alone, and plans the rollout. " * 2)
PACED_CONNECTIONS = 8
PACED_STREAM = {"x-mock-chunk-delay-ms": "20"}
TTFT_BLOCK = 5             # streams counted per kind per turn (time to first token)
# Streams pass through Envoy unseen by the service (stages/pass_through.py); when the
# client did not ask for its usage, Envoy's Lua filter takes the usage chunk out.
# A longer prompt as people and agents write: 4 KB of prose with a few non-ASCII words
# (accents, an ellipsis, kanji), which the guardrails and the token count read whole.
PROSE_4KB = json.dumps(guardrails_bench.message(planted=False, non_ascii=True), ensure_ascii=False)[1:-1]
# traffic kind: (the request's stream fields, its prompt)
# Requests whose text is new on every call carry this, replaced by a count (wrk's script).
FRESH_MARK = "@@N@@"
MODES = {"json": ('"stream":false', PROMPT),
         # the same short call with its text new every time, as a chat user's question is
         "json fresh": ('"stream":false', f"Question {FRESH_MARK}: {PROMPT}"),
         "sse": ('"stream":true', PROMPT),
         "sse+usage": ('"stream":true,"stream_options":{"include_usage":true}', PROMPT),
         "json 4KB": ('"stream":false', PROSE_4KB),
         # a stream a response guardrail reads, chunk by chunk (the gateway's key for it
         # has a PII rule on answers: bench/sides.py's GUARDED_KEY)
         "sse guarded": ('"stream":true', PROMPT)}
GATEWAY_KEY_OF_MODE = {"sse guarded": GUARDED_KEY}
# Agent-sized requests: a conversation of 4 KB turns, resent whole on every call as an
# agent resends its history ("resent": the same body each time), or new each time
# ("fresh": every turn of every request differs, FRESH_MARK replaced by a count).
HISTORY_KB = {"json 100KB": 100, "json 400KB": 400}
HISTORY_MODES = [f"{name} {how}" for name in HISTORY_KB for how in ("resent", "fresh")]
# An agent's session ("grown"): each request the one before it and a turn more (the
# model's answer, the next question: 4 KB of new prose), written compact as agents write
# JSON, from the 400 KB history to 640 KB, then a new session on the same start.
# "redacted": an e-mail address in the history's second turn, which the PII rule redacts
# on every request (an agent resends what it read: most long sessions hold such a value).
GROWN_MODES = ["json 400KB grown", "json 400KB grown redacted"]
GROWN_TURNS = 30
# What an agent sends after reading a file: a tool result of 20 KB of this repository's
# source code, new to the guardrails every call (FRESH_MARK in each of its chunks).
CODE_KB = {"json code 20KB": 20}
CODE_MODES = [f"{name} fresh" for name in CODE_KB]


def history_body(kb: int, fresh: bool) -> str:
    """A chat request of `kb` KB of history (bench/guardrails.py's history)."""
    messages = guardrails_bench.history(kb, FRESH_MARK if fresh else "")
    return json.dumps({"model": "gpt-4o-mini", "stream": False, "messages": messages}, ensure_ascii=False)


def code_body(kb: int) -> str:
    """A chat request whose last turn is a tool result of `kb` KB of source code, a comment
    line with FRESH_MARK every ~1,000 characters: every chunk the guardrails read of it
    (joined.py, 2 KB) differs from call to call, as a new file's would."""
    lines, marked, since = guardrails_bench.source_code(kb)[3].splitlines(keepends=True), [], 1000
    for line in lines:
        if since >= 1000:
            marked.append(f"# {FRESH_MARK}\n")
            since = 0
        marked.append(line)
        since += len(line)
    messages = [{"role": "user", "content": "Read the file and explain what it does."},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "read", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "".join(marked)}]
    return json.dumps({"model": "gpt-4o-mini", "stream": False, "messages": messages}, ensure_ascii=False)


def grown_session(kb: int, redacted: bool = False) -> tuple[str, str, str]:
    """(the body's start, a turn with FRESH_MARK where its texts differ, its end): a grown
    mode's request n is the start, n turns, the end."""
    messages = guardrails_bench.history(kb)
    if redacted:
        second = messages[1]["content"]
        messages[1]["content"] = f"{second[:600]} Write to maria.lopez@gmail.com about it. {second[600:]}"
    start = json.dumps({"model": "gpt-4o-mini", "stream": False, "messages": messages},
                       ensure_ascii=False, separators=(",", ":"))
    assert start.endswith("]}")
    turn = json.dumps([{"role": "assistant", "content": f"{FRESH_MARK} Done: the tests pass."},
                       {"role": "user", "content": f"{FRESH_MARK} {guardrails_bench.message(planted=False, non_ascii=True)}"}],
                      ensure_ascii=False, separators=(",", ":"))
    return start[:-2], "," + turn[1:-1], "]}"


def request_body(mode: str) -> str:
    if mode in GROWN_MODES:
        return "".join(grown_session(400, mode.endswith("redacted")))
    if mode in MODES:
        stream, prompt = MODES[mode]
        return '{"model":"gpt-4o-mini",%s,"messages":[{"role":"user","content":"%s"}]}' % (stream, prompt)
    name, how = mode.rsplit(" ", 1)
    if name in CODE_KB:
        return code_body(CODE_KB[name])
    return history_body(HISTORY_KB[name], how == "fresh")


def ensure_wrk() -> str:
    if shutil.which("wrk") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return shutil.which("wrk")




def wrk(binary: str, url: str, key: str, body: str, seconds: int, connections: int,
        pause_ms: float | None = None, headers: dict[str, str] | None = None, spread: bool = False,
        fresh: bool = False, cores: str | None = "1", threads: int = 1, grown: tuple | None = None) -> dict:
    """Closed-loop load; with pause_ms each connection waits that long between requests
    (paced load: about connections / pause requests per second). The same pause on every
    connection keeps them in step: their requests arrive together, in bursts; `spread`
    draws each pause at random (uniform, same mean), so that arrivals spread out. `fresh`:
    FRESH_MARK in the body is replaced by a count unique to this run, request by request.
    `grown`: (start, turn, end) of a session (grown_session): each request the one before
    and a turn more, its FRESH_MARK replaced by the request's count.
    `cores`: where wrk runs (None: anywhere), with `threads` threads."""
    pause = f"math.random() * {2 * pause_ms:.1f}" if spread else f"{pause_ms:.1f}" if pause_ms else ""
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text('wrk.method = "POST"\n'
                      f'wrk.body = [===[{body}]===]\n'
                      'wrk.headers["content-type"] = "application/json"\n'
                      f'wrk.headers["authorization"] = "Bearer {key}"\n'
                      + "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in (headers or {}).items())
                      + (f"function delay() return {pause} end\n" if pause_ms else "")
                      + ("local n = 0\nrequest = function()\n  n = n + 1\n"
                         f'  local body = (wrk.body:gsub("{FRESH_MARK}", "{time.time_ns()}-" .. n))\n'
                         "  return wrk.format(nil, nil, nil, body)\nend\n" if fresh else "")
                      + (f'local start, turn, finish = [===[{grown[0]}]===], [===[{grown[1]}]===], "{grown[2]}"\n'
                         "local n, added = 0, {}\nrequest = function()\n  n = n + 1\n"
                         f"  if #added == {GROWN_TURNS} then added = {{}} end\n"
                         f'  added[#added + 1] = (turn:gsub("{FRESH_MARK}", "{time.time_ns()}-" .. n))\n'
                         "  return wrk.format(nil, nil, nil, start .. table.concat(added) .. finish)\nend\n"
                         if grown else ""), encoding="utf-8")
    pinned = ["taskset", "-c", cores] if cores else []
    ran = subprocess.run([*pinned, binary, f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
                          "--latency", "-s", str(script), url], capture_output=True, text=True)
    script.unlink()
    out = ran.stdout
    if " requests in" not in out:
        raise RuntimeError(f"wrk against {url} failed (exit {ran.returncode}): {(ran.stderr or out)[-500:]}")

    def latency(label: str) -> float:
        match = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out)
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": latency("50"), "p99": latency("99"), "requests": requests,
            "errors": int(non_2xx.group(1)) if non_2xx else 0}


def ttft(kinds: dict[str, tuple], samples: int = 150, headers: dict | None = None,
         max_tokens: int | None = None) -> dict[str, float]:
    """Median time to the first content chunk of a stream, one request at a time (ms), for
    each kind (label: url, key, usage asked). The kinds take turns, TTFT_BLOCK streams at a
    time, so the VM's drift weighs on each alike; the first stream of each turn is not
    counted: the first request after other processes ran pays for waking this side's
    (~0.3-0.6 ms here, measured), which would fall on whichever kind comes first (and
    on Envoy alone, the only kind on its process, every time)."""
    times: dict[str, list[float]] = {label: [] for label in kinds}
    clients = {label: httpx.Client(headers={"authorization": f"Bearer {key}", **(headers or {})}, timeout=30)
               for label, (_, key, _) in kinds.items()}
    try:
        turns = [label for _ in range(-(-samples // TTFT_BLOCK)) for label in kinds for _ in range(TTFT_BLOCK + 1)]
        previous = None
        for label in turns:
            url, _, usage = kinds[label]
            body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
            if usage:
                body["stream_options"] = {"include_usage": True}
            if max_tokens:
                body["max_tokens"] = max_tokens
            started = time.perf_counter()
            first, seen = None, b""
            with clients[label].stream("POST", url, json=body) as response:
                for chunk in response.iter_raw():     # read to the end, note the first text
                    if first is None:
                        seen += chunk                 # an event may come in two reads
                        if re.search(rb'"content":"[^"]', seen):
                            first = (time.perf_counter() - started) * 1000
            if label == previous:                     # not the turn's wake-up stream
                times[label].append(first)
            previous = label
    finally:
        for client in clients.values():
            client.close()
    return {label: statistics.median(values) for label, values in times.items()}


LONG_ANSWER = " ".join(f"word{i}" for i in range(200))   # the mock echoes it: ~400 tokens
# (label, caller key, usage asked)
LONG_STREAMS = [
    ("passed through, usage not asked (Envoy's Lua filter takes it out)", KEYS["gateway"], False),
    ("passed through, usage asked", KEYS["gateway"], True),
    ("chunk by chunk (response guardrails read it)", GUARDED_KEY, False),
]


def long_stream_cpu(url: str, key: str, pids: dict[str, list[int]], usage: bool, streams: int = 40) -> dict:
    """CPU per stream for answers of ~400 tokens sent a token per chunk, as providers do
    (the mock waits 1 ms between chunks, so Envoy reads each on its own), 4 at a time."""
    import concurrent.futures
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": LONG_ANSWER}]}
    if usage:
        body["stream_options"] = {"include_usage": True}
    headers = {"authorization": f"Bearer {key}", "x-mock-chunk-delay-ms": "1", "x-mock-chunk-chars": "3"}

    def one(_) -> int:
        with httpx.stream("POST", url, json=body, headers=headers, timeout=60) as response:
            return sum(1 for line in response.iter_lines() if line.startswith("data: {"))
    before = {what: sum(cpu_seconds(p) for p in group) for what, group in pids.items()}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        events = list(pool.map(one, range(streams)))
    return {"events": statistics.median(events), **{
        what: (sum(cpu_seconds(p) for p in group) - before[what]) / streams * 1000 for what, group in pids.items()}}


def stored_key(stack) -> str:
    """A key made with `extproc keys create` in the gateway's store (team research, as alice)."""
    made = subprocess.run([sys.executable, "-m", "extproc", "keys", "create", "--user", "bench", "--team",
                           "research", "--config", str(stack.workdir / "gateway.yaml"),
                           "--state-dir", str(stack.state_dir)], capture_output=True, text=True, check=True)
    key = made.stdout.strip().splitlines()[-1]
    deadline = time.monotonic() + 5
    while httpx.post(f"{stack.base_url}/chat/completions", headers={"authorization": f"Bearer {key}"},
                     json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("the stored key was not taken up")
        time.sleep(0.05)
    return key


def print_throughput(args, modes: list[str], urls: dict, results: dict, cpu: dict) -> None:
    print(f"\n{args.rounds} interleaved rounds x {args.seconds}s, {args.connections} connections; "
          f"Envoy (+1 ext_proc worker) on core 0, mock + wrk on core 1; the budget in "
          f"{'Redis (on core 1)' if args.store == 'redis' else 'SQLite'}; the workers' transport: {args.transport}"
          f" ({'compiled' if all(compiled.compiled().values()) else 'plain Python'}, extproc/transport/compiled.py)")
    print(f"{'traffic':<17} {'side':<12} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs Envoy':>9} "
          f"{'non-2xx':>8} {'service CPU/req':>16} {'Envoy CPU/req':>14}")
    for mode in modes:
        base = statistics.median(r["rps"] for r in results[("envoy alone", mode)])
        for side in urls:
            runs = results[(side, mode)]
            rps = statistics.median(r["rps"] for r in runs)
            cpu_text, envoy_text = (f"{statistics.median(cpu[(side, mode, what)]):.0f} us"
                                    if (side, mode, what) in cpu else "-" for what in ("service", "envoy"))
            print(f"{mode:<17} {side:<12} {rps:>9.0f} {statistics.median(r['p50'] for r in runs):>8.2f} "
                  f"{statistics.median(r['p99'] for r in runs):>8.2f} {rps / base:>8.2f}x "
                  f"{sum(r['errors'] for r in runs):>8} {cpu_text:>16} {envoy_text:>14}")


def _drop_rules(names: list[str], config: dict) -> None:
    guardrails = config["guardrails"]
    unknown = set(names) - {rule["name"] for rule in guardrails["rules"]}
    if unknown:
        raise SystemExit(f"--drop-rule: no such rule: {', '.join(sorted(unknown))}")
    guardrails["rules"] = [rule for rule in guardrails["rules"] if rule["name"] not in names]
    policies = guardrails.get("policies", {})
    if "default" in policies:
        policies["default"] = [name for name in policies["default"] if name not in names]
    for group in ("teams", "keys"):
        for owner, listed in policies.get(group, {}).items():
            policies[group][owner] = [name for name in listed if name not in names]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--peers", action="store_true", help="also LiteLLM and Portkey (installed on first use)")
    parser.add_argument("--store", choices=("sqlite", "redis"), default="sqlite", help="where the budget is kept")
    parser.add_argument("--transport", choices=("h2", "grpc"), default="h2",
                        help="the workers' gRPC transport (server.transport)")
    parser.add_argument("--key", choices=("config", "stored"), default="config",
                        help="the gateway side's key: from the config file, or made at run time in the store")
    parser.add_argument("--modes", default=",".join([*MODES, *HISTORY_MODES, *GROWN_MODES, *CODE_MODES]),
                        help="the traffic rows, comma-separated (default: all)")
    parser.add_argument("--throughput-only", action="store_true",
                        help="only the throughput rounds (no paced load, time to first token, long streams)")
    parser.add_argument("--drop-rule", action="append", default=[],
                        help="the quickstart without this guardrail rule (a rule's cost: a run with, a run without)")
    args = parser.parse_args()
    modes = [mode.strip() for mode in args.modes.split(",")]
    binary = ensure_wrk()
    # Whatever has started is stopped on the way out, whichever start fails.
    with contextlib.ExitStack() as cleanup:
        sides = start_sides(cleanup, args.store, args.transport,
                            edit=functools.partial(_drop_rules, args.drop_rule) if args.drop_rule else None)
        urls, workers, envoys = sides.urls, sides.workers, sides.envoys
        alone = sides.alone
        keys, extra_headers = dict(KEYS), {}
        if args.key == "stored":
            keys["gateway"] = stored_key(sides.stack)
        cpu_pids = {"gateway": workers}                    # whose CPU per request is reported
        envoy_pids = {"envoy alone": [alone.pid], "gateway": envoys}
        peers = []
        if args.peers:
            from peers import start_peers
            peers = start_peers(sides.mock_port, (free_port(), free_port()))
            for peer in peers:
                cleanup.callback(peer.process.terminate)
                cpu_pids[peer.name] = [peer.process.pid] + children(peer.process.pid)
                for pid in cpu_pids[peer.name]:
                    pin(pid, 0)
                urls[peer.name], keys[peer.name], extra_headers[peer.name] = peer.url, peer.key, peer.headers
        results: dict[tuple[str, str], list[dict]] = {}
        cpu: dict[tuple[str, str], list[float]] = {}
        for round_ in range(args.rounds):
            for mode in modes:
                body = request_body(mode)
                for side, url in urls.items():
                    measured = {"service": cpu_pids.get(side, []), "envoy": envoy_pids.get(side, [])}
                    before = {what: sum(cpu_seconds(p) for p in pids) for what, pids in measured.items()}
                    key = GATEWAY_KEY_OF_MODE.get(mode, keys[side]) if side == "gateway" else keys[side]
                    result = wrk(binary, url, key, body, args.seconds, args.connections,
                                 headers=extra_headers.get(side), fresh=mode.endswith("fresh"),
                                 grown=grown_session(400, mode.endswith("redacted")) if mode in GROWN_MODES else None)
                    for what, pids in measured.items():
                        if pids:
                            cpu.setdefault((side, mode, what), []).append(
                                (sum(cpu_seconds(p) for p in pids) - before[what])
                                / max(1, result["requests"]) * 1e6)
                    results.setdefault((side, mode), []).append(result)
        if args.throughput_only:
            print_throughput(args, modes, urls, results, cpu)
            return
        # Latency at half the gateway's maximum JSON rate, same paced load on both sides.
        half = statistics.median(r["rps"] for r in results[("gateway", "json")]) / 2
        # Two arrival patterns: in step (every connection pauses alike, so requests come
        # in bursts of PACED_CONNECTIONS) and spread (pauses drawn at random).
        paced: dict[tuple[str, str], list[dict]] = {}
        body = '{"model":"gpt-4o-mini","stream":false,"messages":[{"role":"user","content":"%s"}]}' % PROMPT
        for _ in range(args.rounds):
            for arrivals in ("in step", "spread"):
                for side in ("envoy alone", "gateway"):
                    paced.setdefault((arrivals, side), []).append(wrk(
                        binary, urls[side], KEYS[side], body, args.seconds, PACED_CONNECTIONS,
                        1000 * PACED_CONNECTIONS / half, spread=arrivals == "spread"))
        first_tokens = ttft({"alone": (urls["envoy alone"], KEYS["envoy alone"], False),
                             "not asked": (urls["gateway"], KEYS["gateway"], False),
                             "asked": (urls["gateway"], KEYS["gateway"], True),
                             "guarded": (urls["gateway"], GUARDED_KEY, False)})
        ttft_alone, ttft_gateway = first_tokens["alone"], first_tokens["not asked"]
        ttft_passed, ttft_guarded = first_tokens["asked"], first_tokens["guarded"]
        long_streams = {label: long_stream_cpu(urls["gateway"], key, {"service": workers, "envoy": envoys},
                                               usage) for label, key, usage in LONG_STREAMS}
        paced_ttft = ttft({"envoy alone": (urls["envoy alone"], KEYS["envoy alone"], False),
                           "gateway": (urls["gateway"], KEYS["gateway"], False),
                           "guarded": (urls["gateway"], GUARDED_KEY, False)}, 40, PACED_STREAM, 12)
        memory = {"ext_proc worker": max(peak_rss_mb(p) for p in workers),
                  "Envoy": max(peak_rss_mb(p) for p in envoys)}
        for peer in peers:
            memory[peer.name] = sum(peak_rss_mb(p) for p in cpu_pids[peer.name])

    print_throughput(args, modes, urls, results, cpu)
    for arrivals in ("in step", "spread"):
        p50 = {side: statistics.median(r["p50"] for r in paced[(arrivals, side)])
               for side in ("envoy alone", "gateway")}
        rates = " / ".join(f"{statistics.median(r['rps'] for r in paced[(arrivals, side)]):.0f}"
                           for side in ("envoy alone", "gateway"))
        print(f"JSON at half the gateway's maximum, arrivals {arrivals} ({half:.0f} req/s target; achieved {rates} "
              f"req/s): p50 Envoy alone {p50['envoy alone']:.2f} ms, gateway {p50['gateway']:.2f} ms, "
              f"added {p50['gateway'] - p50['envoy alone']:.2f} ms")
    print(f"time to first token (median of 150, one at a time, the kinds in turn): Envoy alone {ttft_alone:.2f} ms; "
          f"gateway, passed through: usage not asked {ttft_gateway:.2f} ms (added "
          f"{ttft_gateway - ttft_alone:.2f} ms), usage asked {ttft_passed:.2f} ms (added "
          f"{ttft_passed - ttft_alone:.2f} ms); chunk by chunk (response guardrails) "
          f"{ttft_guarded:.2f} ms (added {ttft_guarded - ttft_alone:.2f} ms)")
    print(f"time to first token, a word every 20 ms (median of 40): Envoy alone "
          f"{paced_ttft['envoy alone']:.2f} ms, gateway {paced_ttft['gateway']:.2f} ms, with response "
          f"guardrails on the stream {paced_ttft['guarded']:.2f} ms")
    for label, _, _ in LONG_STREAMS:
        measured = long_streams[label]
        print(f"long streams ({measured['events']:.0f} events each), {label}: worker "
              f"{measured['service']:.1f} ms, Envoy {measured['envoy']:.1f} ms of CPU per stream")
    print("peak memory: " + ", ".join(f"{name} {mb:.0f} MB" for name, mb in memory.items()))
    if peers:
        print("service CPU/req: the ext_proc worker's for the gateway; each peer's own processes for the peers")


if __name__ == "__main__":
    main()
