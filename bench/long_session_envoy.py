"""A 60-turn agent session growing to ~4 MB, each turn resending its whole history,
through real Envoy and the quickstart's pipeline (PII and injection guardrails, token
counts, the log line): the workers' CPU per turn, against a request of that turn's new
text alone (a turn of the same size nobody sent before).

    .venv/bin/python bench/long_session_envoy.py [--turns 60] [--sides known,off,replicas]

Sides:
- `known`: one replica, two workers; each check reads only text no earlier check read.
- `off`: the same with remembered findings off (EXTPROC_KNOWN_FINDINGS=0): every turn reads
  the whole history again (`max_scan_chars` raised so that it may).
- `replicas`: two replicas of two workers each on one Redis, the turns alternating between
  them, as a session's turns land anywhere behind a load balancer.

CPU is each worker's time on a core (/proc/<pid>/schedstat), summed over the workers.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT / "tests"))

from gateway_stack import GatewayStack, free_port, quickstart_config, wait_for_port  # noqa: E402

ALICE = {"authorization": "Bearer sk-demo-alice"}
RESULT = 66_000
SECRET = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"


def turn(n: int) -> list[dict]:
    """A question (the second carries a secret), a tool call and its 66 KB result."""
    line = f"turn {n}: src/module_{n}.py passes its tests, nothing else to report here\n"
    question = f"Turn {n}: what does module {n} do?" + (f" My deploy key is {SECRET}." if n == 2 else "")
    return [{"role": "user", "content": question},
            {"role": "assistant", "content": None, "tool_calls": [{
                "id": f"call{n}", "type": "function",
                "function": {"name": "read_file", "arguments": f'{{"path": "src/module_{n}.py"}}'}}]},
            {"role": "tool", "tool_call_id": f"call{n}", "content": (line * (RESULT // len(line) + 1))[:RESULT]}]


SYSTEM = {"role": "system", "content": "You are a coding agent. Use the tools you have."}


def cpu_ns(stacks: list[GatewayStack]) -> int:
    total = 0
    for stack in stacks:
        for pid in stack.worker_pids():
            total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    return total


def ask(stack: GatewayStack, stacks: list[GatewayStack], messages: list[dict]) -> float:
    """The workers' CPU (ms) for one call, which must answer 200."""
    before = cpu_ns(stacks)
    answer = httpx.post(f"{stack.base_url}/chat/completions", headers=ALICE, timeout=120,
                        json={"model": "gpt-4o-mini", "messages": messages, "max_tokens": 8})
    if answer.status_code != 200:
        raise SystemExit(f"{answer.status_code}: {answer.text[:300]}")
    return (cpu_ns(stacks) - before) / 1e6


def session(stacks: list[GatewayStack], turns: int) -> dict:
    messages = [SYSTEM]
    per_turn, alone = [], {}
    for n in range(1, turns + 1):
        messages += turn(n)
        stack = stacks[n % len(stacks)]
        per_turn.append(ask(stack, stacks, messages))
        if n in (1, turns // 2, turns - 2, turns - 1, turns):
            # That turn's new text alone, as a request of its own nobody sent before.
            alone[n] = ask(stack, stacks, [SYSTEM, *turn(10_000 + n)])
    size = sum(len(str(m.get("content") or "")) for m in messages)
    return {"per_turn": per_turn, "alone": alone, "size": size}


def redis() -> tuple[subprocess.Popen, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (tests/run.sh installs it)")
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, process=process)
    return process, f"redis://127.0.0.1:{port}/0"


def run_side(side: str, turns: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"llmgw-long-{side}-"))
    config, env, server = quickstart_config(), {}, None
    if side == "off":
        env["EXTPROC_KNOWN_FINDINGS"] = "0"
        config["guardrails"]["max_scan_chars"] = 100_000_000
    count = 1
    if side == "replicas":
        server, url = redis()
        config["store"] = {"kind": "redis", "url": url}
        count = 2
    stacks = []
    try:
        for index in range(count):
            (workdir / str(index)).mkdir()
            stacks.append(GatewayStack(workdir / str(index), config, workers=2, env=env).start())
        return session(stacks, turns)
    finally:
        for stack in stacks:
            stack.stop()
        if server is not None:
            server.terminate()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=60)
    parser.add_argument("--sides", default="known,off,replicas")
    args = parser.parse_args()
    print("| side | history at the end | CPU, whole session | CPU, last 3 turns (each) "
          "| the same turns' new text alone | ratio |")
    print("|---|---|---|---|---|---|")
    for side in args.sides.split(","):
        result = run_side(side, args.turns)
        last = result["per_turn"][-3:]
        alone = [result["alone"][n] for n in range(args.turns - 2, args.turns + 1)]
        ratio = sum(last) / max(sum(alone), 1e-9)
        print(f"| {side} | {result['size'] / 1e6:.2f} MB | {sum(result['per_turn']):,.0f} ms "
              f"| {', '.join(f'{x:.1f}' for x in last)} ms | {', '.join(f'{x:.1f}' for x in alone)} ms "
              f"| {ratio:.2f}x |", flush=True)
        middle = args.turns // 2
        print(f"|   (turn 1: {result['per_turn'][0]:.1f} ms, alone {result['alone'][1]:.1f} ms; "
              f"turn {middle}: {result['per_turn'][middle - 1]:.1f} ms, alone {result['alone'][middle]:.1f} ms) "
              "| | | | | |", flush=True)


if __name__ == "__main__":
    main()
