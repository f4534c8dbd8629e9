"""The pipeline's instructions per call, counted by valgrind's callgrind: a figure that
repeats to within a few hundredths of a percent on this shared VM, where the same loop's
microseconds move 2x between runs. For an A/B of a change to the pipeline's own work;
what it does not count is what the cores do between the calls (Envoy, the caches it
evicts, the transport: bench/run.py measures those).

    .venv/bin/python bench/instructions.py [--rounds N] [--fresh] [--sdk-headers]
                                           [--prompt-kb N | --history-kb N [--growing] [--redacted] | --code-kb N]
                                           [--top N] [--without STAGE.PHASE ...]

It runs bench/pipeline.py's loop (the quickstart pipeline, alice's JSON chat call, a
token budget from the worker's allotment) under callgrind, collecting only while the
measured calls run: after the imports, the config and 200 warm-up calls, which take
~1.5 minutes under valgrind. `--growing`: an agent's session rather than one body resent:
each call sends the history of the calls before it and two turns more (the model's
answer, the next question; 4 KB each), as an agent's next turn does. `--code-kb N`: each
call's tool result N KB of this repository's source code, new to the guardrails, after a
third of the pieces read untimed (bench/pipeline.py's). `--fresh`: each
call's prompt numbered, new to the guardrails (a chat user's, mostly: the bench's JSON
row resends one text, which they know after its first read). `--sdk-headers`: each call
with the headers the openai SDK sends and Envoy adds (21 in all; the bench's calls: 6).
Prints the instructions per
call, the share of each library (libpython: the pipeline's Python; upb: protobuf; orjson,
RE2, toktok) and, with
`--top`, the functions that execute most of them. `--without meter.done` leaves a
stage's hook out: the difference is what the hook costs at most (the calls after it may
do less without it).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

INNER = "LLMGW_INSTRUCTIONS_INNER"
# Collection is on only inside this function of CPython's _ctypes: the measured calls run
# inside a ctypes callback, and nothing else in the loop calls one.
TOGGLE = "_CallPythonObject"


def without(prepared, hooks: list[str]) -> None:
    """Takes the hooks named `<stage>.<phase>` (`meter.done`) out of the pipeline: what
    the call costs without them is an upper bound of what they cost."""
    stages = prepared.runtime.pipeline
    names = set(hooks)
    for phase, phase_hooks in stages._hooks.items():
        kept = [(hook, is_async) for hook, is_async in phase_hooks
                if f"{getattr(getattr(hook, '__self__', None), 'name', '')}.{phase}" not in names]
        names -= {f"{getattr(getattr(hook, '__self__', None), 'name', '')}.{phase}" for hook, _ in phase_hooks}
        stages._hooks[phase] = kept
    if names:
        raise SystemExit(f"no such hook: {', '.join(sorted(names))}")


def growing(history: list[dict], rounds: int) -> list[list[dict]]:
    """The bodies of `rounds` turns of a session that starts from `history`: each the one
    before and two turns more."""
    import pipeline
    new = pipeline.guardrails_bench.history(8 * (rounds + 1), mark="turn")
    return [history + new[1:1 + 2 * (index + 1)] for index in range(rounds)]     # the answer first


def measured(rounds: int, prompt: str | list, hooks_left_out: list[str], grows: bool = False,
             fresh: bool = False, code_kb: int = 0) -> None:
    """Runs under callgrind: prepares the pipeline, then makes `rounds` calls inside the
    callback that switches collection on."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import pipeline           # bench/pipeline.py: the config, the messages, the loop

    loop = asyncio.new_event_loop()
    if code_kb:               # a tool result of code each call, new; a third of the pieces read before
        turns = pipeline.code_turns(code_kb)
        warm = len(turns) // 3
        if rounds > len(turns) - warm:
            raise SystemExit(f"--code-kb {code_kb} has {len(turns) - warm} pieces to measure: --rounds at most that")
        prepared = loop.run_until_complete(pipeline.prepare(True, turns[0], turns[warm:], turns[1:warm]))
    elif grows:               # the history itself sent (and known) first, each turn after it once
        prepared = loop.run_until_complete(pipeline.prepare(True, prompt, growing(prompt, rounds), [prompt]))
    elif fresh:               # each call's text new to the guardrails (a chat user's, mostly)
        prepared = loop.run_until_complete(pipeline.prepare(True, prompt, [f"{index} {prompt}" for index in range(rounds)]))
    else:
        prepared = loop.run_until_complete(pipeline.prepare(True, prompt))
    without(prepared, hooks_left_out)
    callback = ctypes.CFUNCTYPE(None)(lambda: loop.run_until_complete(pipeline.calls(prepared, rounds)))
    callback()
    loop.close()


def library(location: str) -> str:
    """A short name for the object file of a callgrind_annotate line."""
    name = Path(location).name
    for known in ("libpython", "_message", "_upb", "orjson", "re2", "toktok", "libc.so", "ld-linux",
                  "libsqlite", "uvloop", "_sqlite3", "libm.so"):
        if known in name:
            return {"_message": "protobuf (upb)", "_upb": "protobuf (upb)", "libc.so": "libc",
                    "libsqlite": "sqlite", "_sqlite3": "sqlite"}.get(known, known)
    return name.split(".cpython-")[0].split(".so")[0] or "?"


def report(out: Path, rounds: int, top: int) -> None:
    total = 0
    for line in out.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            total = int(line.split()[1])
    annotated = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", str(out)],
                               capture_output=True, text=True, check=True).stdout
    per_library: Counter = Counter()
    functions = []
    for line in annotated.splitlines():
        match = re.match(r"\s*([\d,]+)\s+(?:\([\s\d.%]+\)\s+)?(.+?)\s+\[(.+)\]\s*$", line)
        if match:
            count = int(match.group(1).replace(",", ""))
            per_library[library(match.group(3))] += count
            where, _, function = match.group(2).rpartition(":")
            functions.append((count, f"{Path(where).name}:{function}" if where else function, library(match.group(3))))
    print(f"{total / rounds:,.0f} instructions per call ({rounds} calls, {total:,} in all)")
    for name, count in per_library.most_common(10):
        print(f"  {name:<18} {count / rounds:>12,.0f}  {100 * count / total:5.1f}%")
    for count, function, name in sorted(functions, reverse=True)[:top]:
        print(f"  {count / rounds:>12,.0f}  {function}  [{name}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--prompt-kb", type=int, help="a prompt of this many KB of prose")
    parser.add_argument("--history-kb", type=int, help="an agent's history of this size, resent every call")
    parser.add_argument("--growing", action="store_true",
                        help="with --history-kb: each call the history before it and two turns more")
    parser.add_argument("--redacted", action="store_true",
                        help="with --history-kb: an e-mail address in the history's second turn, which "
                             "the PII rule redacts on every call (as an agent resends a file it read)")
    parser.add_argument("--code-kb", type=int, default=0,
                        help="each call's tool result this many KB of source code, new to the guardrails")
    parser.add_argument("--fresh", action="store_true",
                        help="each call's prompt new (numbered), as a chat user's: the guardrails read it")
    parser.add_argument("--sdk-headers", action="store_true",
                        help="each call with the 15 more headers the openai SDK and Envoy add (the bench's: 6)")
    parser.add_argument("--top", type=int, default=0, help="list the functions that execute the most")
    parser.add_argument("--without", action="append", default=[], metavar="STAGE.PHASE",
                        help="leave a stage's hook out (meter.done, guard_request.request_body): its cost by ablation")
    args = parser.parse_args()
    if os.environ.get(INNER):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import pipeline
        if args.sdk_headers:
            pipeline.EXTRA_HEADERS = pipeline.SDK_HEADERS
        prompt = (pipeline.guardrails_bench.history(args.history_kb) if args.history_kb
                  else pipeline.long_prompt(args.prompt_kb) if args.prompt_kb else pipeline.PROMPT)
        if args.redacted and args.history_kb:
            second = prompt[1]["content"]
            prompt[1]["content"] = f"{second[:600]} Write to maria.lopez@gmail.com about it. {second[600:]}"
        measured(args.rounds, prompt, args.without, args.growing and bool(args.history_kb),
                 args.fresh and not args.history_kb, args.code_kb)
        return
    out = Path(tempfile.mkdtemp(prefix="llmgw-callgrind-")) / "callgrind.out"
    # The same hash seed each run: the dicts and sets the calls walk are laid out alike.
    env = {**os.environ, INNER: "1", "PYTHONHASHSEED": "0"}
    subprocess.run(["valgrind", "--tool=callgrind", "--collect-atstart=no", f"--toggle-collect={TOGGLE}",
                    f"--callgrind-out-file={out}", sys.executable, __file__, *sys.argv[1:]],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    report(out, args.rounds, args.top)


if __name__ == "__main__":
    main()
