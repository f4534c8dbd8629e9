"""Benchmark, in isolation: reading Bedrock's binary event stream. The recorded
ConverseStream body (extproc/mock/recordings/provider-recordings/bedrock-converse-stream.yaml)
is fed to extproc's EventStreamDecoder and to botocore's EventStreamBuffer in chunks of 1
byte, 64 bytes and whole; the figure is µs per decoded message, the best of the rounds.

    .venv/bin/python bench/eventstream.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import base64
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from botocore.eventstream import EventStreamBuffer

from extproc.api.eventstream import EventStreamDecoder

RECORDING = (Path(__file__).resolve().parent.parent / "extproc" / "mock" / "recordings" / "provider-recordings"
             / "bedrock-converse-stream.yaml")


def recorded_body() -> bytes:
    response = yaml.safe_load(RECORDING.read_text())["interactions"][0]["response"]
    return base64.b64decode(response["body"])


def ours(chunks: list[bytes]) -> int:
    decoder = EventStreamDecoder()
    return sum(len(decoder.feed(chunk)) for chunk in chunks)


def botocores(chunks: list[bytes]) -> int:
    buffer, count = EventStreamBuffer(), 0
    for chunk in chunks:
        buffer.add_data(chunk)
        count += sum(1 for _ in buffer)
    return count


def per_message(decode: Callable[[list[bytes]], int], chunks: list[bytes], rounds: int) -> float:
    """µs per message: the best round, each round long enough (~0.2 s) to time."""
    messages = decode(chunks)
    start = time.perf_counter()
    decode(chunks)
    repeats = max(1, int(0.2 / max(time.perf_counter() - start, 1e-6)))
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            decode(chunks)
        best = min(best, (time.perf_counter() - start) / repeats / messages)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    body = recorded_body()
    print(f"{len(body)} bytes, {ours([body])} messages; µs per message (extproc / botocore)")
    for label, size in (("1-byte", 1), ("64-byte", 64), ("whole", len(body))):
        chunks = [body[i:i + size] for i in range(0, len(body), size)]
        mine, theirs = per_message(ours, chunks, rounds), per_message(botocores, chunks, rounds)
        print(f"{label:>8} chunks: {mine:7.2f} / {theirs:7.2f}   ({theirs / mine:.1f}x)")


if __name__ == "__main__":
    main()
