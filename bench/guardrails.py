"""Time per 4 KB message of each guardrail and of the quickstart's request policy, on
ASCII text and on text with a few non-ASCII words (accents, an ellipsis, a city in
kanji: RE2 decides alone on ASCII text, through screens on other text); then time per
SSE event of response guardrails on a stream (stages/guard/stream.py: scan, hold back
what may still become a finding, release the rest).

    .venv/bin/python bench/guardrails.py [--baseline REV]

Each row is printed with the same row measured on the baseline revision (by default the
guardrails before they walked every field of a request, `cac4687`), in the same run:
that revision's `extproc/` is unpacked with `git archive` into a temporary directory and
this script runs there (`--json`), then here.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

import orjson

from extproc.guardrails.config import Guardrail
from extproc.guardrails.injection import InjectionDetector
from extproc.guardrails.pii import PIIDetector
from extproc.stages.guard.stream import StreamGuard
from extproc.pipeline.call import Call

BASELINE = "cac4687"        # the request guardrails before the walk over every field
ROWS: dict[str, float] = {}


def record(name: str, value: float) -> None:
    ROWS[name] = value

WORDS = ("the quick brown fox jumps over a lazy dog while engineers review the quarterly "
         "report and discuss latency budgets for the new gateway release next week").split()
ABROAD = ("café", "naïve", "Zürich", "résumé", "東京", "…", "señor", "São Paulo")


def message(size: int = 4096, seed: int = 7, planted: bool = True, non_ascii: bool = False) -> str:
    rng = random.Random(seed)
    words = []
    while sum(len(w) + 1 for w in words) < size:
        words.append(rng.choice(ABROAD) if non_ascii and rng.random() < 0.05 else rng.choice(WORDS))
    if planted:
        for i, item in enumerate(["jane@example.com", "4111 1111 1111 1111", "123-45-6789",
                                  "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "+1 415 555 2671"]):
            words.insert((i + 1) * len(words) // 7, item)
    return " ".join(words)[:size]


def history(kb: int, mark: str = "") -> list[dict]:
    """An agent's history of about `kb` KB: alternating user and assistant turns of 4 KB
    of prose (a few non-ASCII words, no PII), the last one the user's; `mark` starts
    every turn (bench/run.py makes each request's turns new with it)."""
    turns = max(1, kb // 4) | 1
    return [{"role": "user" if i % 2 == 0 else "assistant",
             "content": (mark + " " if mark else "") + message(4000, seed=i, planted=False, non_ascii=True)}
            for i in range(turns)]


def per_call(fn, text: str | bytes, rounds: int = 300) -> float:
    """Time per call of `fn` on the text, a copy of it each time: the detectors keep their
    answer for the last text object, which a request's next text never is."""
    copies = [text[:1] + text[1:] for _ in range(rounds)]
    fn(copies[0])
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        for copy in copies:
            fn(copy)
        samples.append((time.perf_counter() - started) / rounds)
    return statistics.median(samples)


def measure() -> None:
    detectors = {
        "pii (all entities)": PIIDetector().find,
        "pii (quickstart: email,card,ssn,iban,secret)": PIIDetector(("email", "card", "ssn", "iban", "secret")).find,
        "prompt injection": InjectionDetector().find,
    }
    quickstart = [detectors["pii (quickstart: email,card,ssn,iban,secret)"], detectors["prompt injection"]]
    for name, fn in [*detectors.items(), ("quickstart request policy (both)",
                                          lambda t: [f(t) for f in quickstart])]:
        for non_ascii in (False, True):
            for planted in (True, False):
                text = message(planted=planted, non_ascii=non_ascii)
                record(f"{name}, 4 KB{' non-ASCII' if non_ascii else ''}, {'planted PII' if planted else 'clean'} (ms)",
                       per_call(fn, text) * 1000)
    conversation_rows(quickstart_guards())
    code_rows(detectors, quickstart_guards())
    stream_rows()


def quickstart_guards() -> list[Guardrail]:
    """The quickstart's request guardrails, as its config builds them (folding included)."""
    from extproc.config.filter_config import load_config
    return [g for g in load_config("config/quickstart.yaml", strict_credentials=False).guardrails.default
            if "request" in g.directions and g.scans_text]


def conversation(messages: int = 101, planted: bool = False, non_ascii: bool = False) -> dict:
    """A chat body of `messages` messages of ~100 characters each (~10 KB)."""
    return {"model": "gpt-4o-mini", "messages": [
        {"role": "user" if i % 2 == 0 else "assistant",
         "content": message(100, seed=i, planted=planted and i == messages // 2, non_ascii=non_ascii)}
        for i in range(messages)]}


def conversation_rows(guards: list[Guardrail]) -> None:
    """Time per request of the request guardrails over a whole conversation: the walk over
    the body, then each guardrail over its texts (stages/guard/request.py)."""
    from extproc.guardrails.walk import request_slots
    from extproc.stages.guard.request import check_texts

    def run(body_json: bytes):
        body = orjson.loads(body_json)
        call = Call(None)
        slots = list(request_slots("chat", body))
        for guard in guards:
            try:
                check_texts(call, guard, slots, "request")
            except Exception:       # noqa: BLE001 - a block ends the request: that is its cost
                pass

    def parse_only(body_json: bytes):
        orjson.loads(body_json)
    for name, size in (("101-message conversation (~10 KB)", 101), ("one 4 KB message", 1)):
        for planted, non_ascii in ((True, False), (False, False), (False, True)):
            body = conversation(size, planted, non_ascii) if size > 1 else {"model": "m", "messages": [
                {"role": "user", "content": message(planted=planted, non_ascii=non_ascii)}]}
            raw = orjson.dumps(body)
            label = "non-ASCII, clean" if non_ascii else "planted PII" if planted else "clean"
            record(f"whole request, quickstart policy: {name}, {label} (ms)",
                   (per_call(run, raw, rounds=100) - per_call(parse_only, raw, rounds=100)) * 1000)


def source_code(kb: int = 20) -> list[str]:
    """This repository's own Python sources, cut into pieces of `kb` KB: what an agent's
    tool results mostly hold (the same files whichever revision is measured)."""
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "extproc")
    text = "".join(open(os.path.join(folder, name), encoding="utf-8").read()
                   for folder, _, names in sorted(os.walk(root)) for name in sorted(names) if name.endswith(".py"))
    return [text[i:i + kb * 1024] for i in range(0, len(text) - kb * 1024, kb * 1024)]


def per_new_text(fn, texts: list[str], warm: int = 10) -> float:
    """Time per call, each call on a text not read before (after `warm` to start)."""
    for text in texts[:warm]:
        fn(text)
    started = time.perf_counter()
    for text in texts[warm:]:
        fn(text)
    return (time.perf_counter() - started) / len(texts[warm:])


def code_rows(detectors: dict, guards: list[Guardrail]) -> None:
    """Source code read for the first time, as an agent's tool result is: each detector, and
    the quickstart's request policy over a chat request whose last turn is the code."""
    from extproc.guardrails.walk import request_slots
    from extproc.stages.guard.request import check_texts
    pieces = source_code()
    for name in ("pii (quickstart: email,card,ssn,iban,secret)", "prompt injection"):
        record(f"{name}, 20 KB of source code, new each call (ms)", per_new_text(detectors[name], pieces) * 1000)

    def run(code: str):
        body = {"model": "gpt-4o-mini", "messages": [
            {"role": "user", "content": "Read extproc/cli.py and explain it."},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "read", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": code}]}
        call, slots = Call(None), list(request_slots("chat", body))
        for guard in guards:
            try:
                check_texts(call, guard, slots, "request")
            except Exception:       # noqa: BLE001 - a block ends the request: that is its cost
                pass
    record("whole request, quickstart policy: a tool result of 20 KB of source code, new each call (ms)",
           per_new_text(run, pieces) * 1000)


def stream_events(text: str) -> list[tuple[dict, bytes]]:
    """The text as chat SSE content events of a word each, space first (as OpenAI's tokens)."""
    events = []
    for word in re.findall(r"\s*\S+", text):
        data = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
        events.append((data, b"data: " + orjson.dumps(data) + b"\n\n"))
    return events


def per_event(guards: list[Guardrail], events: list[tuple[dict, bytes]]) -> float:
    def run(_):
        call = Call(None)
        call.endpoint = SimpleNamespace(kind="chat")
        stream = StreamGuard(call, guards, 128)
        for data, raw in events:
            stream(None, data, raw)
        stream(None, None, b"data: [DONE]\n\n")
    return per_call(run, "", rounds=20) / len(events)


def stream_rows() -> None:
    def rule(name, kind, action, detector):
        return Guardrail(name, kind, action, frozenset({"response"}), "closed", detector)
    pii = rule("pii", "pii", "redact", PIIDetector())
    injection = rule("injection", "prompt_injection", "block", InjectionDetector())
    clean, planted = stream_events(message(planted=False)), stream_events(message())
    for name, guards in (("pii (all entities)", [pii]), ("pii + prompt injection", [pii, injection])):
        record(f"stream, {name}, per SSE event, planted PII (us)", per_event(guards, planted) * 1e6)
        record(f"stream, {name}, per SSE event, clean (us)", per_event(guards, clean) * 1e6)
    # A long run without spaces (a base64 blob) may still be an encoded injection, so it
    # is held whole, up to the bound: the work per event must stay linear in it.
    blob = [({"choices": [{"index": 0, "delta": {"content": "aGVsbG8+"}}]}, b"") for _ in range(500)]
    record("stream, pii + injection, 4,000-char run held, per event (us)", per_event([pii, injection], blob) * 1e6)


def baseline_rows(revision: str) -> dict[str, float]:
    """This script's rows measured on `revision`'s extproc (unpacked with git archive)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as tree:
        archive = subprocess.run(["git", "-C", repo, "archive", revision], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--json"], cwd=tree, check=True,
                             capture_output=True, env={**os.environ, "PYTHONPATH": tree}).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true", help="print this tree's rows as JSON, nothing else")
    parser.add_argument("--baseline", default=BASELINE, help="the revision to compare with ('' for none)")
    args = parser.parse_args()
    if args.json:
        measure()
        print(json.dumps(ROWS))
        return
    before = baseline_rows(args.baseline) if args.baseline else {}
    measure()
    print(f"{'row':<92} {'baseline':>9} {'this tree':>10} {'ratio':>6}")
    for name, value in ROWS.items():
        base = before.get(name)
        ratio = f"{value / base:>5.2f}x" if base else "   n/a"
        print(f"{name:<92} {base if base is not None else float('nan'):>9.3f} {value:>10.3f} {ratio}")


if __name__ == "__main__":
    main()
